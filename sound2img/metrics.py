"""Image-quality metrics shared by inversion, manipulation and evaluation: LPIPS (the
``lpips`` package's VGG16 and AlexNet variants), PSNR, identity cosine (IR-SE50) and CLIP cosine to a
target, plus per-layer latent distances. A metric whose network is missing is recorded
as unavailable with the reason (:class:`QualityMetrics`), never a crash.

Images are ``img [B,3,H,W]`` in [-1,1] throughout."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sound2img.errors import CheckpointError, UserInputError
from sound2img.models.state_dict import freeze, read_torch_file, unwrap_state_dict

log = logging.getLogger(__name__)

# torchvision's <net>().features indices that lpips groups into its slices, per backbone
_SLICES = {
    "vgg": ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30)),
    "alex": ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12)),
}
_BACKBONE = {"vgg": "vgg16", "alex": "alexnet"}
LPIPS_SIZE = 256  # VGG: inputs larger than this are area-downsampled first (NVlabs' projector does the same)


def lpips_head_file(net: str = "vgg") -> Path:
    """The LPIPS v0.1 linear heads for ``net`` (vgg, alex), shipped inside the ``lpips`` package."""
    import lpips

    return Path(lpips.__file__).resolve().parent / "weights" / "v0.1" / f"{net}.pth"


def load_lpips(
    backbone_path: str | os.PathLike,
    device: str | torch.device = "cpu",
    *,
    net: str = "vgg",
    max_size: int | None = LPIPS_SIZE,
) -> nn.Module:
    """LPIPS (v0.1) from torchvision's ImageNet state dict of the backbone at
    ``backbone_path`` (``net='vgg'``: vgg16; ``'alex'``: alexnet) and the package's linear
    heads, both read with ``weights_only=True``; built without lpips' own download.
    ``max_size``: larger inputs are area-downsampled to it (None: full resolution, as
    PTI's AlexNet loss). Returns a frozen module ``(a, b) -> [B]``."""
    import warnings

    import lpips

    if net not in _SLICES:
        raise ValueError(f"LPIPS backbone must be one of {tuple(_SLICES)}, got {net!r}")
    with warnings.catch_warnings():  # lpips calls torchvision's deprecated pretrained= argument
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(pretrained=False, net=net, version="0.1", lpips=True, pnet_rand=True, verbose=False)
    backbone = unwrap_state_dict(read_torch_file(backbone_path), backbone_path)
    own = model.net.state_dict()
    state = {}
    for k, (lo, hi) in enumerate(_SLICES[net], start=1):
        for i in range(lo, hi):
            for p in ("weight", "bias"):
                ours = f"slice{k}.{i}.{p}"
                if ours not in own:
                    continue
                t = backbone.get(f"features.{i}.{p}")
                if t is None or t.shape != own[ours].shape:
                    raise CheckpointError(
                        f"{backbone_path}: not torchvision's {_BACKBONE[net]} state dict "
                        f"(features.{i}.{p} missing or of the wrong shape)"
                    )
                state[ours] = t
    model.net.load_state_dict(state, strict=True)
    heads = read_torch_file(lpips_head_file(net))
    model.load_state_dict({**model.state_dict(), **heads}, strict=True)
    return freeze(LPIPSDistance(model, max_size)).to(device)


class LPIPSDistance(nn.Module):
    """``(a [B,3,H,W], b [B,3,H,W]) in [-1,1] -> [B]`` LPIPS distance; inputs above
    ``max_size`` px are area-downsampled to it first (None: never). Differentiable w.r.t.
    both inputs."""

    def __init__(self, net: nn.Module, max_size: int | None = LPIPS_SIZE):
        super().__init__()
        self.net = net
        self.max_size = max_size

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x [B,3,H,W]`` in [-1,1] → the backbone's channel-normalised feature maps, the
        package's own layers in its order (``lpips.LPIPS.forward`` for one input)."""
        import lpips

        if self.max_size is not None:
            x = downsample(x, self.max_size)
        outs = self.net.net.forward(self.net.scaling_layer(x))
        return [lpips.normalize_tensor(outs[k]) for k in range(self.net.L)]

    def distance(self, fa: list[torch.Tensor], fb: list[torch.Tensor]) -> torch.Tensor:
        """Two inputs' ``features`` → ``[B]``: the package's heads and spatial average."""
        import lpips

        val = 0
        for k in range(self.net.L):
            val = val + lpips.spatial_average(self.net.lins[k]((fa[k] - fb[k]) ** 2), keepdim=True)
        return val.reshape(-1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.distance(self.features(a), self.features(b))

    def against(self, target: torch.Tensor):
        """``a -> [B]``, the distance of ``a`` to a fixed ``target [1|B,3,H,W]``, whose
        features are computed once here instead of on every call (an optimisation loop's
        target never changes)."""
        with torch.no_grad():
            fb = self.features(target)
        return lambda a: self.distance(self.features(a), fb)


def downsample(img: torch.Tensor, size: int = LPIPS_SIZE) -> torch.Tensor:
    """``img [B,C,H,W]`` → area-downsampled to ``size`` when larger, unchanged otherwise."""
    if img.shape[-1] > size:
        img = F.interpolate(img, size=(size, size), mode="area")
    return img


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of ``a``, ``b`` [B,3,H,W] in [-1,1] (values
    clamped to that range, i.e. as the 8-bit images would be seen) → [B]."""
    mse = (a.clamp(-1, 1) - b.clamp(-1, 1)).float().square().flatten(1).mean(1)
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-12))  # peak-to-peak range 2 → peak² = 4


def identity_cosine(arcface: nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine of the IR-SE50 identity embeddings of two face images → [B] (1 = same)."""
    dev = next(arcface.parameters()).device
    return (arcface.identity_embedding(a.to(dev)) * arcface.identity_embedding(b.to(dev))).sum(1)


def clip_cosine(clip, img: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cosine between CLIP's embedding of ``img`` and a unit ``target [D]`` or [B,D] → [B]."""
    emb = clip.encode_image(img)
    return (emb * target.to(emb.device)).sum(-1)


def layer_distance(ws: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Euclidean distance per W+ row of ``ws`` and ``ref`` [B,num_ws,w_dim] → [B,num_ws]."""
    return (ws.float() - ref.float()).norm(dim=-1)


def unavailable(reason: str) -> dict[str, Any]:
    return {"value": None, "unavailable": reason}


class QualityMetrics:
    """The metric networks an output is scored with, each optional: a network that
    could not be built is kept as its reason and its metrics are recorded as
    ``{"value": None, "unavailable": reason}``.

    ``builders`` maps ``lpips`` / ``identity`` / ``clip`` to a zero-argument function
    returning the network (LPIPS module, IR-SE50, CLIP towers) or to ``None`` (not
    applicable, e.g. identity for a non-face generator: the key is then left out).
    Builders run lazily, once."""

    def __init__(self, builders: dict[str, Callable[[], Any] | None]):
        self._builders = dict(builders)
        self._nets: dict[str, Any] = {}
        self._reasons: dict[str, str] = {}

    def net(self, name: str) -> Any:
        """The network called ``name`` or None (not applicable or unavailable)."""
        if name in self._nets or name in self._reasons:
            return self._nets.get(name)
        builder = self._builders.get(name)
        if builder is None:
            return None
        try:
            self._nets[name] = builder()
        except (UserInputError, OSError, ImportError) as exc:
            self._reasons[name] = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            # recorded with its reason in metrics.json; not printed, so that a refused edit (or any
            # other one-line error) stays one line on stderr
            log.info("metric %s unavailable: %s", name, self._reasons[name])
            return None
        return self._nets[name]

    def applicable(self, name: str) -> bool:
        return self._builders.get(name) is not None

    @torch.no_grad()
    def _score(self, name: str, fn: Callable[[Any], torch.Tensor]) -> dict[str, Any]:
        net = self.net(name)
        if net is None:
            return unavailable(self._reasons.get(name, "not applicable"))
        return {"value": float(fn(net).reshape(-1)[0])}

    @torch.no_grad()
    def compare(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, Any]:
        """Scores of one image pair ``a``, ``b`` [1,3,H,W]: ``psnr`` (dB), ``lpips`` and,
        where applicable, ``identity_cosine``; each a dict with ``value`` (and
        ``unavailable`` when the network is missing)."""
        b = b.to(a.device)
        out: dict[str, Any] = {
            "psnr": {"value": float(psnr(a, b)[0])},
            "lpips": self._score("lpips", lambda n: n(a.to(_dev(n)), b.to(_dev(n)))),
        }
        if self.applicable("identity"):
            out["identity_cosine"] = self._score("identity", lambda n: identity_cosine(n, a, b))
        return out

    @torch.no_grad()
    def clip_to_target(self, img: torch.Tensor, target: torch.Tensor) -> dict[str, Any]:
        """CLIP cosine of ``img [1,3,H,W]`` to the unit ``target [D]``."""
        return self._score("clip", lambda n: clip_cosine(n, img, target))


def _dev(module: nn.Module) -> torch.device:
    return next(module.parameters()).device
