"""Frozen CLIP image and text towers (open_clip), found offline, with differentiable
preprocessing of generator images: ``clip`` (antialiased resize + CLIP normalisation,
the default) and ``styleclip`` (the authors' ×7 upsample + average pool; docs/method.md §7)."""

from __future__ import annotations

import copy
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sound2img.errors import CheckpointError, UserInputError, WeightsNotAvailableError
from sound2img.models.state_dict import freeze
from sound2img.registry import Registry
from sound2img.utils.files import sha256_file

log = logging.getLogger(__name__)

# ``ClipTowers.preprocess`` modes: name → fn(towers, img [B,3,H,W] in [-1,1]) → [B,3,S,S]
# (registered below their functions; an unknown name is the registry's one-line error)
PREPROCESSORS: Registry[Callable[[ClipTowers, torch.Tensor], torch.Tensor]] = Registry("CLIP preprocessing")
# build_clip("tiny") defaults: the real tokenizer works (vocab 49408, context 77), the
# rest is as small as a transformer gets while staying a transformer.
TINY_DEFAULTS = dict(
    embed_dim=32,
    image_size=32,
    patch_size=8,
    vision_width=64,
    vision_layers=2,
    text_width=64,
    text_layers=2,
    text_heads=4,
    context_length=77,
    vocab_size=49408,
)


# ---------------------------------------------------------------------------------------
# Preprocessing (pure functions of tensors, so they are tested against references)


def _square_size(size: int | Sequence[int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def preprocess_clip(
    img: torch.Tensor,
    size: int | Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: str = "bicubic",
    resize_mode: str = "shortest",
) -> torch.Tensor:
    """``img [B,3,H,W] in [-1,1]`` → CLIP input ``[B,3,S,S]``: (img+1)/2, antialiased
    resize of the shorter side to S (``shortest``, then centre crop, as torchvision's
    Resize + CenterCrop that open_clip uses) or of both sides (``squash``), then
    (x − mean)/std. Differentiable; values are not clamped (a generator may overshoot
    [-1,1] and clamping would cut the gradient there)."""
    out_h, out_w = _square_size(size)
    if interpolation not in ("bicubic", "bilinear"):
        raise UserInputError(f"CLIP preprocessing: unsupported interpolation {interpolation!r} (bicubic, bilinear)")
    x = (img + 1.0) / 2.0
    h, w = x.shape[-2:]
    if resize_mode == "squash" or out_h != out_w:
        new_h, new_w = out_h, out_w
    elif resize_mode == "shortest":
        short, long = min(h, w), max(h, w)
        new_short, new_long = out_h, int(out_h * long / short)  # torchvision's rounding
        new_h, new_w = (new_long, new_short) if w <= h else (new_short, new_long)
    else:
        raise UserInputError(f"CLIP preprocessing: unsupported resize_mode {resize_mode!r} (shortest, squash)")
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x, size=(new_h, new_w), mode=interpolation, align_corners=False, antialias=True)
    top, left = int(round((new_h - out_h) / 2.0)), int(round((new_w - out_w) / 2.0))
    x = x[..., top : top + out_h, left : left + out_w]
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean_t) / std_t


def _area_matrix(n_in: int, n_out: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``[n_out, n_in]`` box-filter weights: output cell i averages the input interval
    [i·n_in/n_out, (i+1)·n_in/n_out), each pixel weighted by its overlap (integer
    arithmetic in units of 1/n_out pixel, so the weights are exact)."""
    i = torch.arange(n_out, device=device).view(-1, 1)
    j = torch.arange(n_in, device=device).view(1, -1)
    lo = torch.maximum(i * n_in, j * n_out)
    hi = torch.minimum((i + 1) * n_in, (j + 1) * n_out)
    return (hi - lo).clamp(min=0).to(dtype) / n_in


def preprocess_styleclip(img: torch.Tensor, size: int | Sequence[int] = 224) -> torch.Tensor:
    """The authors' (StyleCLIP's) CLIP input: ``Upsample(scale_factor=7)`` (nearest) then
    ``AvgPool2d(kernel_size=H // 32)``, no (img+1)/2 and no mean/std normalisation:
    ``img [B,3,H,W]`` → ``[B,3,S,S]``.

    Computed as the equivalent separable box filter (each output pixel is the average
    of a 7H/S-wide window of the ×7 nearest-upsampled image, i.e. an area-weighted
    average of the original pixels), which gives StyleCLIP's numbers (to float
    rounding) without materialising the 7168² image at 1024 px. For square H with 7H a
    multiple of S (every StyleGAN resolution ≥ 32 with S = 224) this is exactly
    StyleCLIP's operation; otherwise (where StyleCLIP's pooled image would not be S×S
    and CLIP would fail) it is the same area resampling to S, each axis separately, so a
    non-square image is squashed to a square.
    """
    out_h, out_w = _square_size(size)
    h, w = img.shape[-2:]
    a_h = _area_matrix(h, out_h, img.dtype, img.device)
    a_w = _area_matrix(w, out_w, img.dtype, img.device)
    return a_h @ img @ a_w.T


# ---------------------------------------------------------------------------------------
# The towers


class ClipTowers(nn.Module):
    """Frozen CLIP (any open_clip ``CLIP``/``CustomTextCLIP``) with a tokenizer and a
    differentiable image preprocessing.

    ``encode_text(list[str]) -> text_emb [N,D]``; ``encode_image(img [B,3,H,W] in [-1,1])
    -> image_emb [B,D]`` (both L2-normalised; the image path is differentiable w.r.t.
    ``img``, no parameter ever receives a gradient). The module stays in eval mode even
    when a parent calls ``train()``.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        spec: dict[str, Any],
        preprocess: str = "clip",
        weights_file: str | os.PathLike | None = None,
    ):
        super().__init__()
        PREPROCESSORS.get(preprocess)  # an unknown mode fails here, before any image
        self.model = model
        self.tokenizer = tokenizer
        self.preprocess_mode = preprocess
        self._spec = dict(spec)
        self._weights_file = Path(weights_file) if weights_file else None
        self._sha256: str | None = None
        cfg = dict(getattr(model.visual, "preprocess_cfg", {}) or {})
        self.image_size: tuple[int, int] = _square_size(cfg.get("size", model.visual.image_size))
        self.image_mean = tuple(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)))
        self.image_std = tuple(cfg.get("std", (0.26862954, 0.26130258, 0.27577711)))
        self.interpolation = cfg.get("interpolation", "bicubic")
        self.resize_mode = cfg.get("resize_mode", "shortest")
        self.embed_dim = int(model.visual.output_dim)
        self._low_precision: dict = {}  # (dtype, device) → image tower copy (_image_tower)
        freeze(self)

    def train(self, mode: bool = True) -> ClipTowers:
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def preprocess(self, img: torch.Tensor, mode: str | None = None) -> torch.Tensor:
        """``img [B,3,H,W] in [-1,1]`` → the tower's input ``[B,3,S,S]`` by ``mode``
        (default: the one chosen at construction)."""
        mode = mode or self.preprocess_mode
        if img.ndim != 4 or img.shape[1] != 3:
            raise UserInputError(f"CLIP image input must be [B,3,H,W], got {list(img.shape)}")
        return PREPROCESSORS.get(mode)(self, img)

    def encode_image(
        self, img: torch.Tensor, mode: str | None = None, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """``img [B,3,H,W] in [-1,1]`` → ``image_emb [B,D]`` (normalised, fp32). ``dtype``:
        the image tower's precision (None: fp32); bf16 runs a bf16 copy of the tower (made
        once) on the fp32-preprocessed input and normalises its output in fp32."""
        x = self.preprocess(img.to(self.device, torch.float32), mode)
        if dtype is None or dtype == torch.float32:
            return self.model.encode_image(x, normalize=True)
        return F.normalize(self._image_tower(dtype)(x.to(dtype)).float(), dim=-1)

    def _image_tower(self, dtype: torch.dtype) -> nn.Module:
        """A frozen copy of the image tower in ``dtype`` on the towers' device, made on first
        use and kept (outside the module's state, so it is neither saved nor moved): the
        weights are cast once, not on every call as autocast would for frozen weights."""
        key = (dtype, self.device)
        tower = self._low_precision.get(key)
        if tower is None:
            self._low_precision.clear()  # a copy on another device is stale
            tower = self._low_precision[key] = copy.deepcopy(self.model.visual).to(dtype).eval().requires_grad_(False)
        return tower

    def tokenize(self, texts: str | Sequence[str]) -> torch.Tensor:
        """Prompts → token ids ``[N, context_length]`` on the towers' device."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise UserInputError("CLIP text input must be a non-empty list of strings")
        return self.tokenizer(texts).to(self.device)

    def encode_text(self, texts: str | Sequence[str]) -> torch.Tensor:
        """``list[str]`` (N prompts) → ``text_emb [N,D]`` (normalised)."""
        return self.model.encode_text(self.tokenize(texts), normalize=True)

    def spec(self) -> dict[str, Any]:
        """What identifies these towers (an embedding-cache key, stored with encoders):
        ``model_name``, ``pretrained``, ``sha256`` of the weight file (None for random
        towers), ``preprocess``, and for random towers the ``seed`` and ``tiny`` args."""
        if self._weights_file is not None and self._sha256 is None:
            self._sha256 = sha256_file(self._weights_file)
        return {**self._spec, "preprocess": self.preprocess_mode, "sha256": self._sha256}


PREPROCESSORS.register(
    "clip",
    lambda t, img: preprocess_clip(img, t.image_size, t.image_mean, t.image_std, t.interpolation, t.resize_mode),
)
PREPROCESSORS.register("styleclip", lambda t, img: preprocess_styleclip(img, t.image_size))
PREPROCESS_MODES = tuple(PREPROCESSORS.names())


def _tiny_clip_model(
    embed_dim,
    image_size,
    patch_size,
    vision_width,
    vision_layers,
    text_width,
    text_layers,
    text_heads,
    context_length,
    vocab_size,
) -> nn.Module:
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg, set_model_preprocess_cfg
    from open_clip.transform import PreprocessCfg

    vision = CLIPVisionCfg(
        layers=vision_layers,
        width=vision_width,
        head_width=max(vision_width // 2, 1),
        patch_size=patch_size,
        image_size=image_size,
    )
    text = CLIPTextCfg(
        context_length=context_length, vocab_size=vocab_size, width=text_width, heads=text_heads, layers=text_layers
    )
    model = CLIP(embed_dim=embed_dim, vision_cfg=vision, text_cfg=text)
    set_model_preprocess_cfg(model, asdict(PreprocessCfg(size=(image_size, image_size))))
    return model


def build_clip(
    model_name: str = "tiny",
    *,
    seed: int = 0,
    preprocess: str = "clip",
    device: str | torch.device = "cpu",
    **tiny: Any,
) -> ClipTowers:
    """Random (untrained) frozen towers: ``"tiny"`` (small ViT + text transformer; keyword
    overrides of ``TINY_DEFAULTS``) for tests and ``preset=tiny``, or any open_clip model
    name at full size (for benchmarks). The global RNG is left untouched."""
    import open_clip

    if model_name == "tiny":
        unknown = set(tiny) - set(TINY_DEFAULTS)
        if unknown:
            raise UserInputError(f"unknown tiny CLIP argument(s) {sorted(unknown)} (known: {sorted(TINY_DEFAULTS)})")
        args = {**TINY_DEFAULTS, **{k: int(v) for k, v in tiny.items()}}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = _tiny_clip_model(**args)
        tokenizer = open_clip.SimpleTokenizer(context_length=args["context_length"])
        spec = {"model_name": "tiny", "pretrained": None, "seed": int(seed), "tiny": args, "quick_gelu": False}
    else:
        if tiny:
            raise UserInputError(f"tiny CLIP arguments {sorted(tiny)} given for model {model_name!r}")
        _check_model_name(model_name)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = open_clip.create_model(model_name, pretrained=None)
        tokenizer = open_clip.get_tokenizer(model_name)
        spec = {"model_name": model_name, "pretrained": None, "seed": int(seed), "tiny": None, "quick_gelu": False}
    return ClipTowers(model, tokenizer, spec, preprocess=preprocess).to(device)


def _check_model_name(model_name: str) -> None:
    import open_clip

    if model_name.replace("/", "-") not in open_clip.list_models():
        raise UserInputError(f"unknown open_clip model {model_name!r} (see open_clip.list_models())")


def find_cached_clip_weights(model_name: str, tag: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The local file holding open_clip's ``tag`` weights for ``model_name``, looked up
    only in the caches open_clip itself downloads to (the Hugging Face hub cache, or
    ``~/.cache/clip`` for URL entries; ``cache_dir`` replaces both). Never downloads:
    a missing file raises ``WeightsNotAvailableError`` naming what to fetch and where."""
    import open_clip
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    name = model_name.replace("/", "-")
    cfg = open_clip.get_pretrained_cfg(name, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise UserInputError(
            f"unknown pretrained tag {tag!r} for CLIP {model_name!r} (known: {', '.join(tags) or 'none'})"
        )
    wanted: list[str] = []
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        # open_clip's convention: "org/repo/file", or "org/repo/" for its default file name
        repo, filename = os.path.split(cfg["hf_hub"])
        filename = filename or HF_WEIGHTS_NAME
        candidates = [filename]
        if filename == HF_WEIGHTS_NAME:
            candidates.insert(0, HF_SAFE_WEIGHTS_NAME)
        elif filename.endswith((".bin", ".pth")):
            candidates.insert(0, filename[:-4] + ".safetensors")
        for cand in candidates:
            found = try_to_load_from_cache(repo, cand, cache_dir=str(cache_dir) if cache_dir else None)
            if isinstance(found, str) and os.path.isfile(found):
                return Path(found)
        wanted.append(f"https://huggingface.co/{repo}/resolve/main/{candidates[0]}")
    if cfg.get("url"):
        local = Path(cache_dir or Path.home() / ".cache" / "clip") / os.path.basename(cfg["url"])
        if local.is_file():
            return local
        # OpenAI's own URLs serve TorchScript archives, which load_clip refuses: only
        # suggest a URL file when there is no hub file.
        if not wanted:
            wanted.append(f"{cfg['url']} (open_clip looks for it at {local})")
    raise WeightsNotAvailableError(
        f"CLIP weights {name}/{tag} are not in the local cache and nothing is downloaded at run time: "
        f"fetch {' or '.join(wanted)} and pass pretrained=<that file>"
    )


def load_clip(
    model_name: str = "ViT-B-32",
    pretrained: str = "openai",
    device: str | torch.device = "cpu",
    *,
    preprocess: str = "clip",
    cache_dir: str | os.PathLike | None = None,
    quick_gelu: bool | None = None,
) -> ClipTowers:
    """Frozen pretrained towers: ``model_name`` any open_clip model name, ``pretrained``
    an open_clip tag (resolved offline by :func:`find_cached_clip_weights`) or a local
    weight file (state dict / safetensors; TorchScript archives are refused). A tag
    brings its own QuickGELU and mean/std settings; for a file, pass ``quick_gelu=True``
    (or a ``-quickgelu`` model name) for OpenAI-trained weights."""
    import open_clip

    _check_model_name(model_name)
    name = model_name.replace("/", "-")
    if not pretrained:
        raise UserInputError(
            "load_clip needs pretrained=<open_clip tag or weight file>; use build_clip for random towers"
        )
    tag_cfg = open_clip.get_pretrained_cfg(name, pretrained)
    force_pp: dict[str, Any] = {}
    if tag_cfg:
        weights = find_cached_clip_weights(name, pretrained, cache_dir)
        force_pp = {k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg}
        if quick_gelu is None:
            quick_gelu = bool(tag_cfg.get("quick_gelu", False))
    else:
        weights = Path(pretrained)
        if not weights.is_file():
            tags = open_clip.list_pretrained_tags_by_model(name)
            raise UserInputError(
                f"CLIP pretrained {pretrained!r} is neither a file nor a tag of {model_name!r} "
                f"(tags: {', '.join(tags) or 'none'})"
            )
    try:
        with warnings.catch_warnings():
            # torch's restricted unpickler warns about raw pickles before reading or refusing
            # them; the refusal below is the one line the user needs
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            model = open_clip.create_model(
                name,
                pretrained=str(weights),
                force_quick_gelu=bool(quick_gelu),
                force_preprocess_cfg=force_pp or None,
                weights_only=True,
            )
    except Exception as exc:  # open_clip reports bad files as RuntimeError/KeyError/…
        text = str(exc).strip()
        if "TorchScript" in text:
            raise CheckpointError(
                f"{weights}: is a TorchScript archive (code), which is never loaded; use the "
                f"state-dict or safetensors release of these weights"
            ) from exc
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        first = lines[0] if lines else type(exc).__name__
        if first.endswith(":") and len(lines) > 1:  # load_state_dict names the first bad key on the next line
            first = f"{first} {lines[1]}"
        raise CheckpointError(f"{weights}: cannot load as CLIP {model_name} weights ({first})") from exc
    tokenizer = open_clip.get_tokenizer(name)
    spec = {
        "model_name": name,
        "pretrained": str(pretrained),
        "seed": None,
        "tiny": None,
        "quick_gelu": bool(quick_gelu),
    }
    log.info("loaded CLIP %s from %s", name, weights)
    return ClipTowers(model, tokenizer, spec, preprocess=preprocess, weights_file=weights).to(device)


def clip_space(spec: dict[str, Any] | None) -> str | None:
    """The embedding space a towers spec (``ClipTowers.spec()`` or an encoder's
    ``clip_spec``) stands for, e.g. ``openai/ViT-B-32``: an explicit ``space`` entry, else
    OpenAI's weights of ``model_name`` (the ``openai`` tag, or a file whose name says so).
    ``None`` when unknown (random towers, other files): then nothing is checked."""
    if not spec:
        return None
    if spec.get("space"):
        return str(spec["space"])
    name = str(spec.get("model_name") or "").replace("/", "-").removesuffix("-quickgelu")
    pretrained = spec.get("pretrained")
    if not pretrained:
        return None
    base = os.path.basename(str(pretrained))
    if pretrained == "openai" or ".openai." in base or base == f"{name}.pt":
        return f"openai/{name}"
    return None


def check_same_space(
    encoder_spec: dict[str, Any] | None, towers: ClipTowers, encoder_name: str = "the audio encoder"
) -> None:
    """Refuse (one line) towers of another CLIP space than the encoder's: its audio
    embeddings would be compared with image/text embeddings they were never aligned to."""
    want, have = clip_space(encoder_spec), clip_space(towers.spec())
    if want is not None and have is not None and want != have:
        raise UserInputError(
            f"{encoder_name} embeds into CLIP space {want}, but the CLIP towers given are {have}: "
            f"use clip=from_encoder (the encoder's own towers) or towers of {want}"
        )


def load_clip_from_spec(
    spec: dict[str, Any],
    device: str | torch.device = "cpu",
    *,
    preprocess: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> ClipTowers:
    """Rebuild towers from :meth:`ClipTowers.spec` (random towers from their seed,
    pretrained ones by :func:`load_clip`, AudioCLIP's from its file); a stored ``sha256``
    must match the file."""
    mode = preprocess or spec.get("preprocess") or "clip"
    if spec.get("loader") == "audioclip":
        from sound2img.models.audioclip import load_audioclip_towers

        towers = load_audioclip_towers(spec["pretrained"], device, preprocess=mode)
        want = spec.get("sha256")
        if want and towers.spec()["sha256"] != want:
            raise CheckpointError(f"{spec['pretrained']}: weight file sha256 differs from the recorded {want[:12]}…")
        return towers
    if not spec.get("pretrained"):
        return build_clip(
            spec["model_name"],
            seed=int(spec.get("seed") or 0),
            preprocess=mode,
            device=device,
            **(spec.get("tiny") or {}),
        )
    towers = load_clip(
        spec["model_name"],
        spec["pretrained"],
        device,
        preprocess=mode,
        cache_dir=cache_dir,
        quick_gelu=spec.get("quick_gelu"),
    )
    want = spec.get("sha256")
    if want and towers.spec()["sha256"] != want:
        raise CheckpointError(
            f"CLIP {spec['model_name']}/{spec['pretrained']}: weight file sha256 "
            f"{towers.spec()['sha256'][:12]}… differs from the recorded {want[:12]}…"
        )
    return towers
