"""IR-SE50, the ArcFace face-recognition backbone behind the identity loss (docs/method.md §6,
docs/formats.md §6): the network in the public ``model_ir_se50.pth`` key layout,
its reader, StyleCLIP's face crop for any resolution, and the identity loss."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from sound2img.errors import CheckpointError, UserInputError
from sound2img.models.state_dict import freeze, load_state_dict_strict, read_torch_file, unwrap_state_dict
from sound2img.registry import Registry

# (width, units) per stage, by depth. IR-SE50 is TreB1eN's num_layers=50; "tiny" keeps the
# topology (stem, four stride-2 stages, SE units, 7x7 head) but is narrow and shallow, for tests.
STAGES: Registry[tuple[tuple[int, int], ...]] = Registry("IR-SE depth")
STAGES.register("50", ((64, 3), (128, 4), (256, 14), (512, 3)))
STAGES.register("tiny", ((16, 1), (32, 1), (64, 1), (128, 1)))
INPUT_SIZE = 112  # the head flattens a 7x7 map: 112 / 2**4
CROP_RES = 256  # StyleCLIP's crop box is given in 256x256 pixels
CROP_ROWS = (35, 223)
CROP_COLS = (32, 220)


class SEModule(nn.Module):
    """Squeeze-and-excitation gate: x · σ(fc2(relu(fc1(mean_hw x))))."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))


class BottleneckIRSE(nn.Module):
    """One IR-SE unit: BN → conv3x3 → PReLU → conv3x3(stride) → BN → SE, plus a shortcut
    (1×1 subsampling max-pool when the width is unchanged, else 1×1 conv + BN); no
    activation after the sum."""

    def __init__(self, in_channels: int, depth: int, stride: int):
        super().__init__()
        if in_channels == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, depth, 1, stride, bias=False), nn.BatchNorm2d(depth)
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
            SEModule(depth, 16),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IRSE(nn.Module):
    """IR-SE backbone with TreB1eN's module names (``input_layer``, ``body.N``,
    ``output_layer``), so its ``state_dict`` is the public file's layout.

    ``forward(face [B,3,112,112] in [-1,1]) -> id_emb [B,D]`` (L2-normalised, no ε, as
    the reference). Frozen networks (``frozen=True``) stay in eval mode even when a
    parent module calls ``train()``: BatchNorm must use its running statistics.
    """

    def __init__(self, stages=STAGES[50], embed_dim: int = 512, drop_ratio: float = 0.6):
        super().__init__()
        self.stages = tuple((int(w), int(n)) for w, n in stages)
        self.embed_dim = int(embed_dim)
        self.frozen = False
        stem = self.stages[0][0]
        self.input_layer = nn.Sequential(nn.Conv2d(3, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.PReLU(stem))
        units, in_ch = [], stem
        for width, n in self.stages:
            for i in range(n):
                units.append(BottleneckIRSE(in_ch, width, 2 if i == 0 else 1))
                in_ch = width
        self.body = nn.Sequential(*units)
        side = INPUT_SIZE // 2 ** len(self.stages)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(in_ch),
            nn.Dropout(drop_ratio),
            nn.Flatten(),  # C, H, W order, as the reference's view(B, -1)
            nn.Linear(in_ch * side * side, self.embed_dim),
            nn.BatchNorm1d(self.embed_dim),
        )

    def train(self, mode: bool = True) -> IRSE:
        return super().train(False if self.frozen else mode)

    def forward(self, face: torch.Tensor) -> torch.Tensor:
        if face.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            raise UserInputError(
                f"IR-SE input must be [B,3,{INPUT_SIZE},{INPUT_SIZE}], got {list(face.shape)} "
                f"(use identity_embedding for generator images)"
            )
        feat = self.output_layer(self.body(self.input_layer(face)))
        return feat / feat.norm(dim=1, keepdim=True)

    def identity_embedding(self, img: torch.Tensor) -> torch.Tensor:
        """``img [B,3,H,W] in [-1,1]`` (generator output, RGB) → ``id_emb [B,D]``, through
        :func:`face_crop`."""
        return self(face_crop(img))


def face_crop(img: torch.Tensor) -> torch.Tensor:
    """StyleCLIP's identity-loss crop: ``img [B,3,H,W]`` → ``face [B,3,112,112]``.

    The image is brought to 256×256 with adaptive average pooling when it is not already
    (exact 4×4 / 2×2 box averages at 1024 / 512 as in StyleCLIP; below 256 adaptive
    pooling repeats pixels, i.e. nearest upsampling; a non-square image is squashed to a
    square, so the box always covers the same relative region), then rows 35:223 and
    columns 32:220 are kept and adaptive-average-pooled to 112×112 (non-uniform windows,
    188/112 is not an integer, exactly as the reference).
    """
    if img.ndim != 4 or img.shape[1] != 3:
        raise UserInputError(f"face_crop expects img [B,3,H,W], got {list(img.shape)}")
    if tuple(img.shape[-2:]) != (CROP_RES, CROP_RES):
        img = F.adaptive_avg_pool2d(img, (CROP_RES, CROP_RES))
    img = img[:, :, CROP_ROWS[0] : CROP_ROWS[1], CROP_COLS[0] : CROP_COLS[1]]
    return F.adaptive_avg_pool2d(img, (INPUT_SIZE, INPUT_SIZE))


class IdentityLoss(nn.Module):
    """L_ID = 1 − ⟨R(img), R(source)⟩ per sample (docs/method.md §6), in StyleCLIP's argument
    order: the gradient flows through ``img`` (the edit), the source features are
    detached. (The authors' code swaps the arguments, so no gradient reaches the
    latent; docs/method.md §6.)"""

    def __init__(self, arcface: IRSE):
        super().__init__()
        self.arcface = arcface

    @torch.no_grad()
    def source_embedding(self, source_img: torch.Tensor) -> torch.Tensor:
        """``source_img [B,3,H,W]`` → ``id_emb [B,D]``, computed once per edit."""
        return self.arcface.identity_embedding(source_img)

    def forward(
        self,
        img: torch.Tensor,
        source_img: torch.Tensor | None = None,
        *,
        source_emb: torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> torch.Tensor:
        """``img [B,3,H,W]`` and either ``source_img [B,3,H,W]`` or ``source_emb [B,D]``
        → loss: scalar for ``mean``/``sum``, ``[B]`` for ``none`` (the optimiser sums
        per-sample losses so that batched edits equal single ones)."""
        if (source_img is None) == (source_emb is None):
            raise ValueError("pass exactly one of source_img and source_emb")
        if source_emb is None:
            source_emb = self.arcface.identity_embedding(source_img)
        per_sample = 1.0 - (self.arcface.identity_embedding(img) * source_emb.detach()).sum(dim=1)
        if reduction == "none":
            return per_sample
        if reduction == "sum":
            return per_sample.sum()
        if reduction == "mean":
            return per_sample.mean()
        raise ValueError(f"unknown reduction {reduction!r} (mean, sum, none)")


def build_arcface(
    depth: str | int = 50, seed: int = 0, device: str | torch.device = "cpu", embed_dim: int = 512
) -> IRSE:
    """Randomly initialised IR-SE (``depth`` 50 or ``"tiny"``), frozen; the global RNG is
    left untouched. For tests and ``preset=tiny``; real use loads weights."""
    stages = STAGES[depth]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = IRSE(stages, embed_dim=embed_dim)
    net.frozen = True
    return freeze(net).to(device)


def _depth_from_state(state: Mapping[str, torch.Tensor], source) -> str:
    """Which known IR-SE depth a state dict holds, from its number of body units; the
    strict load then names any tensor of the wrong shape."""
    n = 0
    while f"body.{n}.res_layer.1.weight" in state:
        n += 1
    if n == 0 or "output_layer.3.weight" not in state:
        raise CheckpointError(f"{source}: not an IR-SE state dict (found keys like {sorted(state)[:4]})")
    for key, stages in STAGES.items():
        if sum(units for _, units in stages) == n:
            return key
    raise CheckpointError(
        f"{source}: IR-SE state dict with {n} body units; known depths have "
        f"{', '.join(str(sum(u for _, u in s)) for _, s in STAGES.items())}"
    )


def load_arcface(path: str | os.PathLike, device: str | torch.device = "cpu") -> IRSE:
    """Read TreB1eN's ``model_ir_se50.pth`` (a plain state dict, legacy or zip
    serialisation, with or without ``num_batches_tracked``) → frozen IR-SE in eval mode.
    The depth (50 or tiny) is read from the number of units; wrong shapes name the key."""
    state = unwrap_state_dict(read_torch_file(path), path)
    net = IRSE(STAGES[_depth_from_state(state, path)])
    load_state_dict_strict(net, state, path)
    net.frozen = True
    return freeze(net).to(device)
