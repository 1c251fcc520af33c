"""The edge where Hydra config groups (``generator``, ``clip``, ``encoder``, ``audio``,
identity network) become models: each ``build_*_from_cfg`` reads its group, resolves
weights through the registry (:mod:`sound2img.weights`) and calls the model library's
``build_*``/``load_*`` with plain arguments. Model modules are imported lazily."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from sound2img.cli import to_plain
from sound2img.errors import UserInputError
from sound2img.utils.device import resolve_device
from sound2img.weights import AUDIO_ENCODER_FORMATS, get_entry, resolve_weights

log = logging.getLogger(__name__)

GENERATOR_FORMATS = ("rosinality_pt", "nvlabs_pkl", "e4e_pt")  # an e4e/pSp file holds its decoder


def _plain(cfg: Any, group: str) -> dict[str, Any]:
    """A config group (DictConfig, mapping or None) → a plain dict (``cli.to_plain``),
    refusing anything that is not a mapping."""
    if cfg is None:
        return {}
    cfg = to_plain(cfg)
    if not isinstance(cfg, Mapping):
        raise UserInputError(f"config group {group!r} must be a mapping, got {type(cfg).__name__}")
    return dict(cfg)


def _registered(name: str) -> Any:
    """The registry entry called ``name``, or None when it is not a registered name."""
    try:
        return get_entry(name)
    except UserInputError:
        return None


def _weights_file(name_or_path: str, formats: tuple[str, ...], what: str) -> Path:
    """A local file for a registry name or path, refusing a registry entry of another
    kind (e.g. a CLIP file given as the generator) before anything is downloaded."""
    text = str(name_or_path)
    entry = None if Path(text).expanduser().is_file() else _registered(text)
    if entry is not None and entry.format not in formats:
        raise UserInputError(f"{text!r} is a {entry.format} file ({entry.description}), not {what}")
    return resolve_weights(text)


def build_generator_from_cfg(gcfg: Any, device: str | torch.device = "cpu"):
    """``cfg.generator`` → a frozen ``Generator``.

    ``path`` (a local file or registry name) wins over ``name``; ``name: tiny`` builds a
    random generator from the ``tiny`` kwargs of ``build_generator``; any other name is a
    weights-registry entry, fetched on first use. ``truncation`` and ``noise_mode`` are
    run-time settings the caller reads from the same group (checked at composition,
    ``sound2img/config.py``)."""
    from sound2img.models.stylegan2 import build_generator, load_generator

    g = _plain(gcfg, "generator")
    device = resolve_device(device)
    source = g.get("path") or g.get("name")
    if not source:
        raise UserInputError("generator: set generator.name (a registry name or tiny) or generator.path")
    if source == "tiny":
        tiny = dict(g.get("tiny") or {})
        if "resolution" not in tiny:
            raise UserInputError("generator: name=tiny needs generator.tiny.resolution (kwargs of build_generator)")
        try:
            return build_generator(**tiny, device=device)
        except TypeError as exc:
            raise UserInputError(f"generator.tiny: {exc}") from exc
    return load_generator(_weights_file(source, GENERATOR_FORMATS, "a StyleGAN2 generator"), device)


def build_clip_from_cfg(ccfg: Any, device: str | torch.device = "cpu"):
    """``cfg.clip`` → frozen ``ClipTowers``.

    ``model: tiny`` (or ``pretrained: null``) gives random towers (``tiny`` kwargs of
    ``build_clip``, ``seed``). ``pretrained`` is otherwise an open_clip tag, a local file
    or a weights-registry name. ``pretrained: openai`` on ViT-B-32 is read from open_clip's
    own cache when it is there, else from the registry entry ``openai_vit_b32`` (fetched
    on first use), so a missing file offline gets the registry's message."""
    from sound2img.errors import WeightsNotAvailableError
    from sound2img.models.clip import build_clip, load_clip

    c = _plain(ccfg, "clip")
    model = str(c.get("model") or "ViT-B-32")
    if model == "from_encoder":
        raise UserInputError(
            "clip=from_encoder needs an audio encoder to take the towers from; choose the towers "
            "(e.g. clip=vit_b32) here"
        )
    pretrained = c.get("pretrained")
    preprocess = c.get("preprocess") or "clip"
    device = resolve_device(device)
    if model == "tiny" or not pretrained:
        return build_clip(
            model, seed=int(c.get("seed") or 0), preprocess=preprocess, device=device, **dict(c.get("tiny") or {})
        )
    pretrained = str(pretrained)
    if pretrained == "openai" and model.replace("/", "-") == "ViT-B-32":
        try:
            return load_clip(model, "openai", device, preprocess=preprocess)
        except WeightsNotAvailableError:
            pretrained = "openai_vit_b32"
    entry = None if Path(pretrained).expanduser().is_file() else _registered(pretrained)
    if entry is not None:
        path = _weights_file(pretrained, ("openai_clip",), "a CLIP weight file")
        # OpenAI-trained towers use QuickGELU; a file does not say so itself.
        return load_clip(model, str(path), device, preprocess=preprocess, quick_gelu=True)
    return load_clip(model, pretrained, device, preprocess=preprocess)


def build_clip_for_encoder(ccfg: Any, encoder: Any, device: str | torch.device = "cpu"):
    """``cfg.clip`` → frozen towers in the audio encoder's CLIP space.

    ``model: from_encoder`` builds the towers the encoder names (``encoder.clip_spec``:
    AudioCLIP's from its own file, Wav2CLIP's and the authors' encoder's OpenAI ViT-B/32,
    ours from the spec stored at training). Any other choice is built as usual and refused
    with one line when it is of another space than the encoder's."""
    from sound2img.models.clip import check_same_space, load_clip_from_spec

    c = _plain(ccfg, "clip")
    spec = getattr(encoder, "clip_spec", None) if encoder is not None else None
    if c.get("model") == "from_encoder":
        if not spec:
            raise UserInputError(
                "clip=from_encoder: the audio encoder does not record which CLIP towers it was "
                "aligned to; choose the towers (e.g. clip=vit_b32)"
            )
        preprocess = c.get("preprocess") or "clip"
        if spec.get("loader") or not spec.get("pretrained"):
            return load_clip_from_spec(dict(spec), resolve_device(device), preprocess=preprocess)
        return build_clip_from_cfg(
            {"model": spec["model_name"], "pretrained": spec["pretrained"], "preprocess": preprocess}, device
        )
    towers = build_clip_from_cfg(c, device)
    if spec:
        check_same_space(spec, towers, f"the audio encoder ({getattr(encoder, 'arch', '') or 'checkpoint'})")
    return towers


def is_peer_encoder(value: str) -> bool:
    """Whether an encoder name or file is AudioCLIP's or Wav2CLIP's (registry format, or
    the file's keys), i.e. an encoder of its own CLIP space."""
    from sound2img.models.audio_encoder import checkpoint_kind

    path = Path(str(value)).expanduser()
    if path.is_file():
        return checkpoint_kind(path) in ("audioclip", "wav2clip")
    entry = _registered(str(value))
    return entry is not None and entry.format in ("audioclip_pt", "wav2clip_pt")


def towers_override(encoder: str, overrides: Sequence[str]) -> list[str]:
    """``["clip=from_encoder"]`` when ``encoder`` is a peer encoder and the ``overrides``
    choose no CLIP towers themselves (those are then checked against the encoder's space)."""
    chose_clip = any(o.split("=", 1)[0].lstrip("+~").split(".")[0] == "clip" for o in overrides)
    return [] if chose_clip or not is_peer_encoder(encoder) else ["clip=from_encoder"]


def _frontend_from_cfg(a: dict[str, Any]):
    from sound2img.audio.frontend import build_frontend

    a = dict(a)
    name = a.pop("name", None)
    if not name:
        raise UserInputError("audio: set audio.name (a front end, e.g. logmel or soundclip_legacy)")
    return build_frontend(name, **a)


def build_encoder_from_cfg(ecfg: Any, acfg: Any = None, device: str | torch.device = "cpu"):
    """``cfg.encoder`` + ``cfg.audio`` → ``(encoder, frontend)``.

    With ``encoder.path`` (a file or registry name) the checkpoint is loaded frozen with
    the front end stored in it; when ``cfg.audio`` describes a different front end that
    is warned about loudly and the stored one is kept (an encoder only understands the
    features it was trained on). With ``path: null`` a fresh encoder is built from
    ``arch``, ``embed_dim`` and the remaining keys (``seed`` fixes its init) and the front
    end comes from ``cfg.audio``. Either way the encoder comes back frozen (eval mode, no
    gradients); training unfreezes it (``training.step.ContrastiveModel``)."""
    from sound2img.models.audio_encoder import build_audio_encoder, load_audio_encoder
    from sound2img.models.state_dict import freeze

    e, a = _plain(ecfg, "encoder"), _plain(acfg, "audio")
    device = resolve_device(device)
    path = e.pop("path", None)
    if path:
        encoder, frontend = load_audio_encoder(_weights_file(path, AUDIO_ENCODER_FORMATS, "an audio encoder"), device)
        if e.get("arch") and e["arch"] != encoder.arch:
            log.warning(
                "encoder.arch=%s but %s holds a %s encoder; using the checkpoint", e["arch"], path, encoder.arch
            )
        # a peer encoder (AudioCLIP, Wav2CLIP) has its own input: the mel config does not apply to it
        if a and frontend.spec()["name"] not in ("audioclip", "wav2clip"):
            wanted, stored = _frontend_from_cfg(a).spec(), frontend.spec()
            if wanted != stored:
                message = (
                    f"the audio config asks for front end {wanted} but the encoder {path} was trained on "
                    f"{stored}: keeping the encoder's own front end"
                )
                warnings.warn(message, UserWarning, stacklevel=2)
                log.warning(message)
        return encoder, frontend
    arch = e.pop("arch", None)
    if not arch:
        raise UserInputError("encoder: set encoder.arch (with path: null) or encoder.path")
    embed_dim = int(e.pop("embed_dim", 512))
    seed = e.pop("seed", None)
    kwargs = {k: v for k, v in e.items() if v is not None}  # null means "the builder's default"
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(int(seed))
        encoder = build_audio_encoder(arch, embed_dim=embed_dim, **kwargs)
    if not a:
        raise UserInputError("encoder: a random encoder (path: null) needs an audio front end config (cfg.audio)")
    frontend = _frontend_from_cfg(a)
    return freeze(encoder).to(device), (frontend.to(device) if hasattr(frontend, "to") else frontend)


def build_augment_from_cfg(acfg: Any):
    """``cfg.augment`` → an ``AudioAugment`` (gain and SpecAugment views), or None when
    the group is not set."""
    from sound2img.audio.augment import build_augment

    a = _plain(acfg, "augment")
    return build_augment(**a) if a else None


def build_arcface_from_cfg(icfg: Any = "ir_se50", device: str | torch.device = "cpu"):
    """The frozen identity loss (``arcface.IdentityLoss``) — build it only when λ_ID > 0.

    ``icfg`` is a registry name or file (default ``ir_se50``), ``tiny`` for a random
    small IR-SE, or a mapping with ``path`` (same meaning) and optional ``seed``."""
    from sound2img.models.arcface import IdentityLoss, build_arcface, load_arcface

    i = {"path": icfg} if isinstance(icfg, (str, Path)) else _plain(icfg, "identity")
    source = str(i.get("path") or "ir_se50")
    device = resolve_device(device)
    if source == "tiny":
        net = build_arcface("tiny", seed=int(i.get("seed") or 0), device=device)
    else:
        net = load_arcface(_weights_file(source, ("arcface_pth",), "an ArcFace IR-SE50 state dict"), device)
    return IdentityLoss(net)


def build_lpips(
    name_or_path: str = "torchvision_vgg16",
    device: str | torch.device = "cpu",
    *,
    net: str = "vgg",
    max_size: int | None = 256,
):
    """LPIPS (``metrics.load_lpips``) with torchvision's ImageNet backbone (``net``: vgg
    for VGG16, alex for AlexNet) from the weights registry (or a local file); offline
    without it: the registry's one-line error."""
    from sound2img.metrics import load_lpips

    what = {"vgg": "torchvision's VGG16 state dict", "alex": "torchvision's AlexNet state dict"}[net]
    path = _weights_file(str(name_or_path), ("torchvision_pth",), what)
    return load_lpips(path, resolve_device(device), net=net, max_size=max_size)


def resolve_checkpoint(name_or_path: str, formats: tuple[str, ...], what: str) -> Path:
    """A local file for a registry name or path whose registry format is one of
    ``formats`` (refused before any download otherwise)."""
    return _weights_file(str(name_or_path), formats, what)


def generator_identity(gcfg: Any) -> dict[str, Any]:
    """What identifies the generator a config builds (a cache key part): the sha256 of
    its file, or the random network's construction arguments."""
    from sound2img.utils.files import sha256_file

    g = _plain(gcfg, "generator")
    source = g.get("path") or g.get("name")
    if source == "tiny":
        return {"tiny": dict(g.get("tiny") or {})}
    return {"sha256": sha256_file(_weights_file(str(source), GENERATOR_FORMATS, "a StyleGAN2 generator"))}
