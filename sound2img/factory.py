"""The one place where config groups become objects: models (``generator``, ``clip``,
``encoder`` + ``audio``, ``augment``, the identity network, LPIPS), each ``build_*_from_cfg``
reading its group, resolving weights through the registry (:mod:`sound2img.weights`) and
calling the model library's ``build_*``/``load_*`` with plain arguments; datasets
(``build_training_sets``, ``build_shard_source``, ``build_fold_dataset``); and ``Networks``,
the one build-once cache of frozen networks. Model modules are imported lazily."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from sound2img.cli import to_plain
from sound2img.errors import UserInputError
from sound2img.utils.device import resolve_device
from sound2img.weights import AUDIO_ENCODER_FORMATS, get_entry, resolve_weights

if TYPE_CHECKING:
    from sound2img.config import ClipOptions, GeneratorOptions, PrepareDataConfig, TrainEncoderConfig

log = logging.getLogger(__name__)
T = TypeVar("T")

GENERATOR_FORMATS = ("rosinality_pt", "nvlabs_pkl", "e4e_pt")  # an e4e/pSp file holds its decoder


def _plain(cfg: Any, group: str) -> dict[str, Any]:
    """A config group whose options differ in shape (``audio``, ``encoder``, ``clip``,
    ``augment``: the schema's ``Any``, builder keyword arguments) → a plain dict, refusing
    anything that is not a mapping."""
    if cfg is None:
        return {}
    cfg = to_plain(cfg)
    if not isinstance(cfg, Mapping):
        raise UserInputError(f"config group {group!r} must be a mapping, got {type(cfg).__name__}")
    return dict(cfg)


def _options(schema: type[T], value: Any, group: str) -> T:
    """A config group as the schema's dataclass: as given, or converted from a mapping (a
    partial one such as ``{"name": ...}``, a record, or the composed DictConfig)."""
    if isinstance(value, schema):
        return value
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), to_plain(value) or {}))
    except OmegaConfBaseException as exc:
        raise UserInputError(f"{group}: {str(exc).splitlines()[0]}") from exc


def _generator_options(gcfg: Any) -> GeneratorOptions:
    """``cfg.generator`` as the schema's ``GeneratorOptions``."""
    from sound2img.config import GeneratorOptions

    return _options(GeneratorOptions, gcfg, "generator")


def _clip_options(ccfg: Any) -> ClipOptions:
    """``cfg.clip`` as the schema's ``ClipOptions`` (null: its defaults)."""
    from sound2img.config import ClipOptions

    return _options(ClipOptions, ccfg, "clip")


def _registered(name: str) -> Any:
    """The registry entry called ``name``, or None when it is not a registered name."""
    try:
        return get_entry(name)
    except UserInputError:
        return None


def _weights_file(name_or_path: str, formats: tuple[str, ...], what: str, *, allow_download: bool = True) -> Path:
    """A local file for a registry name or path, refusing a registry entry of another
    kind (e.g. a CLIP file given as the generator) before anything is downloaded."""
    text = str(name_or_path)
    entry = None if Path(text).expanduser().is_file() else _registered(text)
    if entry is not None and entry.format not in formats:
        raise UserInputError(f"{text!r} is a {entry.format} file ({entry.description}), not {what}")
    return resolve_weights(text, allow_download=allow_download)


def build_generator_from_cfg(gcfg: GeneratorOptions | Mapping, device: str | torch.device = "cpu"):
    """``cfg.generator`` → a frozen ``Generator``.

    ``path`` (a local file or registry name) wins over ``name``; ``name: tiny`` builds a
    random generator from the ``tiny`` kwargs of ``build_generator``; any other name is a
    weights-registry entry, fetched on first use. ``truncation`` and ``noise_mode`` are
    run-time settings the caller reads from the same group (checked at composition,
    ``sound2img/config.py``)."""
    from sound2img.models.stylegan2 import build_generator, load_generator

    g = _generator_options(gcfg)
    device = resolve_device(device)
    source = g.path or g.name
    if not source:
        raise UserInputError("generator: set generator.name (a registry name or tiny) or generator.path")
    if source == "tiny":
        tiny = dict(g.tiny or {})
        if "resolution" not in tiny:
            raise UserInputError("generator: name=tiny needs generator.tiny.resolution (kwargs of build_generator)")
        try:
            return build_generator(**tiny, device=device)
        except TypeError as exc:
            raise UserInputError(f"generator.tiny: {exc}") from exc
    return load_generator(_weights_file(source, GENERATOR_FORMATS, "a StyleGAN2 generator"), device)


def generator_source(gcfg: Any) -> str | None:
    """The file or registry name ``cfg.generator`` loads (``path`` wins over ``name``);
    None for the random ``tiny`` generator."""
    g = _generator_options(gcfg)
    source = g.path or g.name
    return None if not source or source == "tiny" else str(source)


def encoder_source(ecfg: Any) -> str | None:
    """The file or registry name ``cfg.encoder`` loads (``path``); None for an encoder
    built at random from ``arch``."""
    return _plain(ecfg, "encoder").get("path")


def _openai_registry_name(model: str, pretrained: str) -> str | None:
    """The registry entry standing in for an open_clip tag (OpenAI's ViT-B/32 weights,
    which OpenAI publishes only as TorchScript), or None."""
    return "openai_vit_b32" if pretrained == "openai" and model.replace("/", "-") == "ViT-B-32" else None


def clip_source(ccfg: Any, encoder_source: str | None = None) -> str | None:
    """The weights file or registry name ``cfg.clip`` loads, as ``build_clip_for_encoder``
    chooses it: None for random towers, for towers already in open_clip's own cache and
    for AudioCLIP's (in its encoder file); ``model: from_encoder`` → the towers recorded by
    the encoder ``encoder_source`` (a file or registry name)."""
    from sound2img.models.audio_encoder import clip_spec_of_kind, recorded_clip_spec
    from sound2img.models.clip import find_cached_clip_weights

    c = _clip_options(ccfg)
    model, pretrained = c.model, c.pretrained
    if model == "from_encoder":
        if not encoder_source:
            return None
        path = Path(str(encoder_source)).expanduser()
        if path.is_file():
            spec = recorded_clip_spec(path)
        else:
            entry = _registered(str(encoder_source))
            kinds = {"soundclip_pth": "soundclip", "wav2clip_pt": "wav2clip", "audioclip_pt": "audioclip"}
            spec = clip_spec_of_kind(kinds.get(entry.format, "")) if entry is not None else None
        if not spec or spec.get("loader") or not spec.get("pretrained"):
            return None
        model, pretrained = spec["model_name"], spec["pretrained"]
    model = str(model or "ViT-B-32")
    if model == "tiny" or not pretrained:
        return None
    name = _openai_registry_name(model, str(pretrained))
    if name is None:
        return str(pretrained)
    try:
        find_cached_clip_weights(model, "openai")
        return None
    except UserInputError:
        return name


def build_clip_from_cfg(ccfg: Any, device: str | torch.device = "cpu"):
    """``cfg.clip`` → frozen ``ClipTowers``.

    ``model: tiny`` (or ``pretrained: null``) gives random towers (``tiny`` kwargs of
    ``build_clip``, ``seed``). ``pretrained`` is otherwise an open_clip tag, a local file
    or a weights-registry name. ``pretrained: openai`` on ViT-B-32 is read from open_clip's
    own cache when it is there, else from the registry entry ``openai_vit_b32`` (fetched
    on first use), so a missing file offline gets the registry's message."""
    from sound2img.errors import WeightsNotAvailableError
    from sound2img.models.clip import build_clip, load_clip

    c = _clip_options(ccfg)
    model = str(c.model or "ViT-B-32")
    if model == "from_encoder":
        raise UserInputError(
            "clip=from_encoder needs an audio encoder to take the towers from; choose the towers "
            "(e.g. clip=vit_b32) here"
        )
    pretrained, preprocess = c.pretrained, c.preprocess or "clip"
    device = resolve_device(device)
    if model == "tiny" or not pretrained:
        return build_clip(model, seed=c.seed or 0, preprocess=preprocess, device=device, **dict(c.tiny or {}))
    pretrained = str(pretrained)
    if _openai_registry_name(model, pretrained):
        try:
            return load_clip(model, "openai", device, preprocess=preprocess)
        except WeightsNotAvailableError:
            pretrained = _openai_registry_name(model, pretrained)
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

    c = _clip_options(ccfg)
    spec = getattr(encoder, "clip_spec", None) if encoder is not None else None
    if c.model == "from_encoder":
        if not spec:
            raise UserInputError(
                "clip=from_encoder: the audio encoder does not record which CLIP towers it was "
                "aligned to; choose the towers (e.g. clip=vit_b32)"
            )
        preprocess = c.preprocess or "clip"
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


def build_frontend_from_cfg(acfg: Any):
    """``cfg.audio`` → the front end it describes (``audio.build_frontend``)."""
    from sound2img.audio.frontend import build_frontend

    a = _plain(acfg, "audio")
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
            wanted, stored = build_frontend_from_cfg(a).spec(), frontend.spec()
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
    frontend = build_frontend_from_cfg(a)
    return freeze(encoder).to(device), (frontend.to(device) if hasattr(frontend, "to") else frontend)


def build_augment_from_cfg(acfg: Any):
    """``cfg.augment`` → an ``AudioAugment`` (gain and SpecAugment views), or None when
    the group is not set."""
    from sound2img.audio.augment import build_augment

    a = _plain(acfg, "augment")
    return build_augment(**a) if a else None


def towers_from_encoder(ccfg: Any) -> bool:
    """Whether ``cfg.clip`` asks for the audio encoder's own towers (``clip=from_encoder``):
    then the encoder is built even for an edit without a sound."""
    return _clip_options(ccfg).model == "from_encoder"


def identity_source(cfg: Any) -> Any:
    """The identity network a config's edits and scores use: ``cfg.identity`` (a registry
    name or file), else ir_se50, or the tiny random IR-SE under ``preset=tiny``."""
    return cfg.identity or ("tiny" if cfg.tiny else "ir_se50")


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
    allow_download: bool = True,
):
    """LPIPS (``metrics.load_lpips``) with torchvision's ImageNet backbone (``net``: vgg
    for VGG16, alex for AlexNet) from the weights registry (or a local file); offline
    without it (or, ``allow_download=False``, when it is not in the cache): the registry's
    one-line error."""
    from sound2img.metrics import load_lpips

    what = {"vgg": "torchvision's VGG16 state dict", "alex": "torchvision's AlexNet state dict"}[net]
    path = _weights_file(str(name_or_path), ("torchvision_pth",), what, allow_download=allow_download)
    return load_lpips(path, resolve_device(device), net=net, max_size=max_size)


def resolve_checkpoint(name_or_path: str, formats: tuple[str, ...], what: str) -> Path:
    """A local file for a registry name or path whose registry format is one of
    ``formats`` (refused before any download otherwise)."""
    return _weights_file(str(name_or_path), formats, what)


def generator_identity(gcfg: GeneratorOptions | Mapping) -> dict[str, Any]:
    """What identifies the generator a config builds (a cache key part): the sha256 of
    its file, or the random network's construction arguments."""
    from sound2img.utils.files import sha256_file

    g = _generator_options(gcfg)
    source = g.path or g.name
    if source == "tiny":
        return {"tiny": dict(g.tiny or {})}
    return {"sha256": sha256_file(_weights_file(str(source), GENERATOR_FORMATS, "a StyleGAN2 generator"))}


# ---- datasets ------------------------------------------------------------------------------
# Held-out split of each training set, for zero-shot validation (validation.data=held_out).
HELD_OUT = {
    "vggsound": {"split": "test"},
    "synthetic": {"split": "test"},
    "audioset": {"subset": "eval", "segments_csv": None},
}


def data_arguments(
    data: Mapping[str, Any], sample_rate: int, clip_seconds: float, resampler: str = "soxr_hq"
) -> tuple[str | None, dict]:
    """A data config (``configs/data/*``) → ``(reader name, build_dataset keyword
    arguments)`` at the front end's ``sample_rate`` through its ``resampler``, clips of
    ``clip_seconds`` unless the config fixes ``num_samples``; a null is still there (the
    caller decides what it means)."""
    d = dict(data)
    name = d.pop("name", None)
    d["sample_rate"], d["resampler"] = sample_rate, resampler
    if d.get("num_samples") is None:
        d["num_samples"] = int(round(float(clip_seconds) * sample_rate))
    return name, d


def _has_frames(kwargs: Mapping[str, Any]) -> bool:
    """Whether a reader's config speaks of video frames (it sets load_images or image_size)."""
    return "load_images" in kwargs or "image_size" in kwargs


def build_training_sets(cfg: TrainEncoderConfig, sample_rate: int, need_images: bool, resampler: str = "soxr_hq"):
    """``(train_set, val_set | None)`` from ``data`` (+ ``extra_data``) and ``validation``;
    sample rate and resampler from the front end, clip length from ``train.clip_seconds``
    unless the data config fixes ``num_samples``. A null in a data config is the reader's
    default."""
    from sound2img.data import build_dataset
    from sound2img.data.streams import combine_training_sets

    def reader(data: Mapping[str, Any], **fixed: Any):
        name, kw = data_arguments(data, sample_rate, cfg.train.clip_seconds, resampler)
        if _has_frames(kw):
            kw["load_images"] = bool(kw.get("load_images", True)) and need_images
        kw.update(fixed)
        # null values reach the reader as None (vggsound's split: null = both splits)
        return name, kw

    configs = [cfg.data, *(cfg.extra_data or {}).values()]
    for c in configs:
        if not c or not c.get("name"):
            raise UserInputError("data: every training set config needs a name (e.g. data=vggsound)")
    parts = []
    for c in configs:
        name, kw = reader(c)
        parts.append(build_dataset(name, **kw))
    train_set = combine_training_sets(parts)

    val = cfg.validation.data
    if val is None or val == "none":
        return train_set, None
    if val == "held_out":
        name = cfg.data["name"]
        if name not in HELD_OUT:
            raise UserInputError(
                f"validation.data=held_out: dataset {name!r} has no held-out split; set "
                "validation.data=null or to a dataset config"
            )
        node, fixed = cfg.data, HELD_OUT[name]
    else:
        node, fixed = val, {}
        if not isinstance(node, Mapping) or not node.get("name"):
            raise UserInputError("validation.data: held_out, null, or a dataset config with a name")
    # Validation reads each clip's centre with the plain prompt set and no frames.
    name, kw = reader(node, **fixed, crop="center", text_augment=False)
    if "load_images" in kw:
        kw["load_images"] = False
    return train_set, build_dataset(name, **kw)


def build_shard_source(cfg: PrepareDataConfig):
    """``(dataset, settings)`` for ``prepare_data.py``: the configured reader of files with
    centre crops of ``clip_seconds`` at the front end's rate and frames as decoded, and the
    settings its shards record (``data.prepare.prepare_shards``)."""
    from sound2img.data import build_dataset

    audio = _plain(cfg.audio, "audio")
    resampler = build_frontend_from_cfg(cfg.audio).resampler
    name, kw = data_arguments(_plain(cfg.data, "data"), int(audio["sample_rate"]), cfg.clip_seconds, resampler)
    if not name or name == "shards":
        raise UserInputError("prepare_data.py: data must name a dataset of files (e.g. data=vggsound)")
    kw["crop"] = "center"
    if _has_frames(kw):
        kw.update(load_images=True, image_size=None)  # frames are stored as decoded
    # null values reach the reader as None: in the data configs null means the reader's own
    # default or something of its own (vggsound's split: null = both splits), never "leave out"
    dataset = build_dataset(name, **kw)
    return dataset, {"data": {"name": name, **kw}, "audio": audio}


def build_fold_dataset(spec: Any, folds: Sequence[int], **reader_args: Any):
    """The fold-organised evaluation set ``spec`` names (``evaluation.embed.DatasetSpec``:
    registry name, root and configured reader arguments), restricted to ``folds``, with
    ``reader_args`` (sample rate, crop, frames) on top."""
    from sound2img.data import build_dataset

    kwargs = {**spec.kwargs, **reader_args}
    return build_dataset(spec.name, root=spec.root, folds=[int(f) for f in folds], **kwargs)


# ---- the one cache of built networks -----------------------------------------------------------
def _key(kind: str, *groups: Any) -> str:
    """A cache key: the kind and the content of the config groups that build it."""

    def plain(g: Any) -> Any:
        return dataclasses.asdict(g) if dataclasses.is_dataclass(g) else to_plain(g)

    return kind + ":" + json.dumps([plain(g) for g in groups], sort_keys=True, default=str)


class Networks:
    """Frozen networks built once per process and device and shared by whatever asks for
    them (the reproduce tables; the edit queue, single edits and the web app can use the
    same): each is built from its config group on first use and kept under the group's
    content, so two configs naming the same network share one copy. ``device`` is
    resolved once, here. With ``keep_failures`` a network that failed to build raises its
    error again on every later request instead of being built again (the edit queue:
    every job that needs it fails with the same reason)."""

    def __init__(self, device: str | torch.device = "auto", *, keep_failures: bool = False):
        self.device = resolve_device(device)
        self.keep_failures = keep_failures
        self._built: dict[str, Any] = {}
        self._lock = threading.RLock()  # the web app asks from several threads

    def once(self, key: str, build: Callable[[], T]) -> T:
        """``build()``'s result under ``key``, built on the first request only."""
        with self._lock:
            if key not in self._built:
                try:
                    self._built[key] = build()
                except Exception as exc:
                    if not self.keep_failures:
                        raise
                    self._built[key] = exc
            value = self._built[key]
        if isinstance(value, Exception):
            raise value
        return value

    def encoder(self, ecfg: Any, acfg: Any = None):
        """``(encoder, frontend)`` (``build_encoder_from_cfg``)."""
        return self.once(_key("encoder", ecfg, acfg), lambda: build_encoder_from_cfg(ecfg, acfg, self.device))

    def clip(self, ccfg: Any, encoder: Any = None):
        """CLIP towers in ``encoder``'s space (``build_clip_for_encoder``): ``from_encoder``
        towers are kept per encoder; other towers once, checked against each encoder."""
        from sound2img.models.clip import check_same_space

        if towers_from_encoder(ccfg):
            key = _key("clip", ccfg) + f":{id(encoder)}"  # the encoder is kept alive by this cache or its caller
            return self.once(key, lambda: build_clip_for_encoder(ccfg, encoder, self.device))
        towers = self.once(_key("clip", ccfg), lambda: build_clip_from_cfg(ccfg, self.device))
        spec = getattr(encoder, "clip_spec", None) if encoder is not None else None
        if spec:
            check_same_space(spec, towers, f"the audio encoder ({getattr(encoder, 'arch', '') or 'checkpoint'})")
        return towers

    def generator(self, gcfg: Any):
        """A frozen ``Generator`` (``build_generator_from_cfg``)."""
        g = _generator_options(gcfg)
        key = _key("generator", {"source": g.path or g.name, "tiny": g.tiny})  # truncation etc. are run-time
        return self.once(key, lambda: build_generator_from_cfg(g, self.device))

    def identity(self, icfg: Any):
        """The identity loss (``build_arcface_from_cfg``)."""
        return self.once(_key("identity", icfg), lambda: build_arcface_from_cfg(icfg, self.device))

    def lpips(self, name_or_path: str = "torchvision_vgg16"):
        """LPIPS-VGG16 (``build_lpips``)."""
        return self.once(_key("lpips", name_or_path), lambda: build_lpips(name_or_path, self.device))
