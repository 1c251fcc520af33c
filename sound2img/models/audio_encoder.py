"""Audio encoders that map a mel spectrogram into CLIP's embedding space (docs/method.md §1; files: docs/formats.md §5),
listed by name in a registry, and their checkpoints: our safetensors files (weights +
what rebuilds encoder and front end) and the authors' ``resnet18_57.pth``."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sound2img.errors import CheckpointError, UserInputError
from sound2img.models.state_dict import (
    freeze,
    is_safetensors,
    load_state_dict_strict,
    read_torch_file,
    unwrap_state_dict,
)
from sound2img.registry import Registry
from sound2img.utils.files import atomic_path, check_can_write

ENCODERS = Registry("audio encoder")
FORMAT = "sound2img.audio_encoder"
FORMAT_VERSION = 1
LEGACY_FRONTEND = "soundclip_legacy"


class AudioEncoder(nn.Module):
    """Base class: ``forward(mel [B,1,F,T]) -> audio_emb_raw [B,D]``,
    ``encode_audio(mel) -> audio_emb [B,D]`` (L2-normalised). ``arch`` and
    ``arch_kwargs`` (set by :func:`build_audio_encoder`) rebuild the architecture."""

    def __init__(self, embed_dim: int):
        super().__init__()
        self.embed_dim = int(embed_dim)
        self.arch: str = ""
        self.arch_kwargs: dict[str, Any] = {}
        self.clip_spec: dict[str, Any] | None = None  # the CLIP towers it embeds into (set by loaders)

    def _check_mel(self, mel: torch.Tensor) -> None:
        if mel.ndim != 4 or mel.shape[1] != 1:
            raise UserInputError(f"audio encoder input must be mel [B,1,n_mels,T], got {list(mel.shape)}")

    def encode_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """``mel [B,1,F,T]`` → ``audio_emb [B,D]`` (L2-normalised)."""
        return F.normalize(self(mel), dim=-1)


class StemTimmEncoder(AudioEncoder):
    """The authors' layout: ``conv`` = Conv2d(1→3, 3×3, no padding, bias), then
    ``feature_extractor`` = a timm classifier whose ``num_classes=embed_dim`` head is the
    output (no extra projection), so the state-dict keys match ``resnet18_57.pth``.
    ``pretrained_backbone``: ``True`` loads timm's default ImageNet weights for ``backbone``,
    a string names timm's pretrained tag (``tv_in1k``: the torchvision weights that
    ``resnet18`` meant in timm 0.5.4, the authors' version; today's default is ``a1_in1k``)."""

    def __init__(self, backbone: str, embed_dim: int = 512, pretrained_backbone: bool | str = False):
        super().__init__(embed_dim)
        import timm

        self.conv = nn.Conv2d(1, 3, kernel_size=3)
        if isinstance(pretrained_backbone, str):  # the same architecture, the tag's weights
            backbone, pretrained_backbone = f"{backbone}.{pretrained_backbone}", True
        self.feature_extractor = timm.create_model(backbone, pretrained=pretrained_backbone, num_classes=embed_dim)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        self._check_mel(mel)
        return self.feature_extractor(self.conv(mel))


class TimmEncoder(AudioEncoder):
    """Any timm backbone, its stem built for one input channel by timm (``in_chans=1``)
    and its classifier head sized ``embed_dim``."""

    def __init__(self, model_name: str, embed_dim: int = 512, pretrained_backbone: bool = False, **timm_kwargs):
        super().__init__(embed_dim)
        import timm

        try:
            self.backbone = timm.create_model(
                model_name, pretrained=pretrained_backbone, in_chans=1, num_classes=embed_dim, **timm_kwargs
            )
        except RuntimeError as exc:
            if "Unknown model" in str(exc):
                raise UserInputError(f"unknown timm model {model_name!r} (see timm.list_models())") from exc
            raise

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        self._check_mel(mel)
        return self.backbone(mel)


class TinyCNN(AudioEncoder):
    """A few stride-2 conv/BN/ReLU layers, global average pool and a linear head: for
    tests and ``preset=tiny``."""

    def __init__(self, embed_dim: int = 32, channels: Sequence[int] = (8, 16, 32)):
        super().__init__(embed_dim)
        layers, c_in = [], 1
        for c in channels:
            layers += [nn.Conv2d(c_in, int(c), 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(int(c)), nn.ReLU()]
            c_in = int(c)
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, embed_dim)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        self._check_mel(mel)
        return self.head(self.features(mel).mean(dim=(2, 3)))


@ENCODERS.register("resnet18_legacy")
def _resnet18_legacy(embed_dim: int = 512, pretrained_backbone: bool | str = False) -> AudioEncoder:
    """The authors' released architecture (``resnet18_57.pth``)."""
    return StemTimmEncoder("resnet18", embed_dim, pretrained_backbone)


@ENCODERS.register("resnet50")
def _resnet50(embed_dim: int = 512, pretrained_backbone: bool | str = False) -> AudioEncoder:
    """The paper's encoder: the same 1→3 conv stem on a timm ResNet-50."""
    return StemTimmEncoder("resnet50", embed_dim, pretrained_backbone)


@ENCODERS.register("tiny_cnn")
def _tiny_cnn(embed_dim: int = 32, channels: Sequence[int] = (8, 16, 32)) -> AudioEncoder:
    return TinyCNN(embed_dim, channels)


@ENCODERS.register("timm", family=True)
def _timm(model_name: str, embed_dim: int = 512, pretrained_backbone: bool = False, **timm_kwargs) -> AudioEncoder:
    return TimmEncoder(model_name, embed_dim, pretrained_backbone, **timm_kwargs)


@ENCODERS.register("audioclip")
def _audioclip(embed_dim: int = 1024, **kwargs: Any) -> AudioEncoder:
    """AudioCLIP's ESResNeXt-FBSP audio head (input: the ``audioclip`` front end)."""
    from sound2img.models.audioclip import ESResNeXtFBSP

    return ESResNeXtFBSP(embed_dim, **kwargs)


@ENCODERS.register("wav2clip")
def _wav2clip(embed_dim: int = 512, **kwargs: Any) -> AudioEncoder:
    """Wav2CLIP's ResNet-18 + projection (input: the ``wav2clip`` front end)."""
    from sound2img.models.wav2clip import Wav2ClipEncoder

    return Wav2ClipEncoder(embed_dim, **kwargs)


def list_audio_encoders() -> list[str]:
    """Registered encoder names; any timm model is also available as ``timm:<name>``."""
    return ENCODERS.names()


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


def build_audio_encoder(name: str, embed_dim: int = 512, **kwargs: Any) -> AudioEncoder:
    """A fresh (trainable) encoder by registry name (or ``timm:<model>``) →
    ``forward(mel [B,1,F,T]) -> audio_emb_raw [B,embed_dim]``. ``pretrained_backbone=True``
    asks timm for ImageNet weights (a download); by default nothing is fetched."""
    builder = ENCODERS.get(name)
    try:
        encoder = builder(embed_dim=int(embed_dim), **kwargs)
    except TypeError as exc:
        raise UserInputError(f"audio encoder {name!r}: {exc}") from exc
    # pretrained_backbone only matters at first build; a checkpoint carries the weights
    arch_kwargs = {"embed_dim": int(embed_dim), **{k: v for k, v in kwargs.items() if k != "pretrained_backbone"}}
    try:
        encoder.arch_kwargs = _jsonable(arch_kwargs)
    except TypeError as exc:
        raise UserInputError(f"audio encoder {name!r}: arguments must be JSON values ({exc})") from exc
    encoder.arch = name
    return encoder


# ---------------------------------------------------------------------------------------
# Checkpoints


def _spec_of(frontend_or_spec: Any) -> dict[str, Any]:
    spec = frontend_or_spec.spec() if hasattr(frontend_or_spec, "spec") else frontend_or_spec
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise UserInputError(f"front end spec must be a dict with a 'name', got {spec!r}")
    return _jsonable(dict(spec))


def save_audio_encoder(
    path: str | os.PathLike,
    encoder: AudioEncoder,
    frontend_spec: Any,
    clip_spec: Mapping[str, Any] | None = None,
    extra_metadata: Mapping[str, Any] | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``encoder`` as safetensors (a plain state dict) whose metadata holds, as
    separate JSON-encoded keys, ``arch``, ``arch_kwargs``, ``frontend`` (the front end's
    ``spec()``; a front end object is accepted too), ``clip`` (the CLIP spec it was
    aligned to), ``extra`` and ``format``/``format_version``. Atomic; an existing file
    is refused unless ``overwrite``."""
    from safetensors.torch import save_file

    path = Path(path)
    check_can_write([path], overwrite)
    if not getattr(encoder, "arch", ""):
        raise UserInputError("save_audio_encoder needs an encoder made by build_audio_encoder (no arch recorded)")
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "arch": encoder.arch,
        "arch_kwargs": json.dumps(encoder.arch_kwargs),
        "frontend": json.dumps(_spec_of(frontend_spec)),
        "clip": json.dumps(_jsonable(dict(clip_spec)) if clip_spec is not None else None),
        "extra": json.dumps(_jsonable(dict(extra_metadata or {}))),
    }
    state = {k: v.detach().to("cpu").contiguous() for k, v in encoder.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return path


def load_audio_encoder_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The rebuild recipe stored in one of our encoder files: ``arch``, ``arch_kwargs``,
    ``frontend``, ``clip``, ``extra``, ``format_version``."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: audio encoder checkpoint not found")
    if not is_safetensors(path):
        raise CheckpointError(f"{path}: not a safetensors file")
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = fh.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{path}: unreadable safetensors header ({exc})") from exc
    if raw.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: safetensors file without sound2img audio-encoder metadata (metadata keys: {sorted(raw)})"
        )
    try:
        version = int(raw["format_version"])
        meta = {key: json.loads(raw[key]) for key in ("arch_kwargs", "frontend", "clip", "extra")}
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: damaged audio-encoder metadata ({exc})") from exc
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: audio-encoder format version {version} is newer than this code "
            f"({FORMAT_VERSION}); upgrade sound2img"
        )
    return {"arch": raw.get("arch"), "format_version": version, **meta}


def _legacy_arch(state: Mapping[str, torch.Tensor], path: Path) -> tuple[str, int]:
    """The authors' layout (``conv.*`` + ``feature_extractor.*``) → (arch, embed_dim)."""
    prefixes = sorted({k.split(".", 1)[0] for k in state})
    if prefixes != ["conv", "feature_extractor"] or "feature_extractor.fc.weight" not in state:
        raise CheckpointError(
            f"{path}: unknown audio-encoder layout: expected keys conv.* and "
            f"feature_extractor.* (the authors' resnet18_57.pth), audio.* (AudioCLIP) or "
            f"audio_encoder.* (Wav2CLIP), found top-level "
            f"names {prefixes[:6]} (e.g. {sorted(state)[:3]})"
        )
    arch = "resnet50" if "feature_extractor.layer1.0.conv3.weight" in state else "resnet18_legacy"
    return arch, int(state["feature_extractor.fc.weight"].shape[0])


# the authors' encoder was trained against OpenAI's CLIP ViT-B/32
LEGACY_CLIP_SPEC = {"model_name": "ViT-B-32", "pretrained": "openai", "space": "openai/ViT-B-32"}


def clip_spec_of_kind(kind: str) -> dict[str, Any] | None:
    """The CLIP towers an encoder file of ``kind`` (``checkpoint_kind``) embeds into: the
    authors' and Wav2CLIP's OpenAI ViT-B/32, AudioCLIP's own towers (``loader: audioclip``,
    in the same file); None for ours (each file records its own) and unknown files."""
    from sound2img.models import wav2clip

    spec = {"soundclip": LEGACY_CLIP_SPEC, "wav2clip": wav2clip.CLIP_SPEC, "audioclip": {"loader": "audioclip"}}
    return dict(spec[kind]) if kind in spec else None


def recorded_clip_spec(path: str | os.PathLike) -> dict[str, Any] | None:
    """The CLIP towers spec the encoder file at ``path`` carries once loaded, read from its
    keys or metadata only (no weights): what ``clip=from_encoder`` will build."""
    kind = checkpoint_kind(path)
    if kind == "sound2img":
        return load_audio_encoder_metadata(path).get("clip")
    return clip_spec_of_kind(kind)


def checkpoint_kind(path: str | os.PathLike) -> str:
    """What an encoder file holds, from its keys alone (tensors memory-mapped, not read):
    ``sound2img`` (our safetensors), ``audioclip``, ``wav2clip``, ``soundclip`` (the
    authors' layout) or ``unknown``."""
    from sound2img.models import audioclip, wav2clip

    path = Path(path)
    if is_safetensors(path):
        return "sound2img"
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        state = unwrap_state_dict(obj, path)
    except Exception:  # an unreadable file is reported by load_audio_encoder, with its reason
        return "unknown"
    if audioclip.is_audioclip_state(state):
        return "audioclip"
    if wav2clip.is_wav2clip_state(state):
        return "wav2clip"
    return "soundclip" if any(k.startswith("feature_extractor.") for k in state) else "unknown"


def _torch_file_encoder(state: dict[str, torch.Tensor], path: Path) -> tuple[AudioEncoder, dict[str, Any]]:
    """A torch state dict by its layout: AudioCLIP (``audio.*`` + CLIP RN50), Wav2CLIP
    (``audio_encoder.*`` + ``audio_transform.*``) or the authors' ``resnet18_57.pth``
    → (loaded encoder carrying ``clip_spec``, front end spec)."""
    from sound2img.models import audioclip, wav2clip

    if audioclip.is_audioclip_state(state):
        return audioclip.load_audioclip_audio(state, path), {"name": "audioclip"}
    if wav2clip.is_wav2clip_state(state):
        return wav2clip.load_wav2clip(state, path), {"name": "wav2clip"}
    arch, embed_dim = _legacy_arch(state, path)
    encoder = build_audio_encoder(arch, embed_dim=embed_dim)
    load_state_dict_strict(encoder, state, path)
    encoder.clip_spec = dict(LEGACY_CLIP_SPEC)
    return encoder, {"name": LEGACY_FRONTEND}


def load_audio_encoder(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[AudioEncoder, Any]:
    """Read an encoder checkpoint → ``(encoder, frontend)``, both rebuilt from the file
    alone; the encoder frozen, in eval mode.

    Our safetensors files carry their architecture and front end. The authors'
    ``.pth`` (a state dict, keys ``conv.*``/``feature_extractor.*``, optionally
    ``module.``-prefixed or wrapped under ``state_dict``/``model``) gives
    ``resnet18_legacy`` with the ``soundclip_legacy`` front end; AudioCLIP's and
    Wav2CLIP's public files give their encoders with the ``audioclip`` / ``wav2clip``
    front ends. ``encoder.clip_spec`` names the CLIP towers the embeddings live with
    (None when the file does not say). The stored front end is
    always the one returned: an encoder only works on the features it was trained on
    (``factory.build_encoder_from_cfg`` warns when a config asks for another).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: audio encoder checkpoint not found")
    if is_safetensors(path):
        from safetensors.torch import load_file

        meta = load_audio_encoder_metadata(path)
        try:
            encoder = build_audio_encoder(meta["arch"], **meta["arch_kwargs"])
        except UserInputError as exc:
            raise CheckpointError(f"{path}: cannot rebuild its architecture: {exc}") from exc
        state = load_file(str(path))
        stored_frontend = meta["frontend"]
        load_state_dict_strict(encoder, state, path)
        encoder.clip_spec = meta["clip"]
    else:
        state = unwrap_state_dict(read_torch_file(path), path)
        encoder, stored_frontend = _torch_file_encoder(state, path)
    freeze(encoder).to(device)

    from sound2img.audio.frontend import build_frontend  # audio/ is below models/ in the layering

    frontend = _make_frontend(build_frontend, stored_frontend, path)
    if hasattr(frontend, "to"):
        frontend = frontend.to(device)
    return encoder, frontend


def _make_frontend(build_frontend, spec: Mapping[str, Any], source: Any) -> Any:
    """``build_frontend`` from a spec dict ``{"name": ..., settings...}``; a spec this code
    cannot build is reported against ``source``."""
    settings = dict(spec)
    try:
        return build_frontend(settings.pop("name"), **settings)
    except (TypeError, UserInputError) as exc:
        raise CheckpointError(f"{source}: front end {dict(spec)} cannot be built ({exc})") from exc
