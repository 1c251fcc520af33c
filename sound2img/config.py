"""Schemas of the configs in ``configs/``: one dataclass per checked config group or
top-level config, registered in Hydra's ConfigStore (each top-level YAML lists its schema
first in ``defaults``), so that at composition time

* a key that no schema declares fails (``unknown key``, with the closest declared keys:
  "did you mean manipulate.steps?"),
* a value of the wrong type fails (OmegaConf converts ``"3"`` → 3 and refuses ``"abc"``),
* and ``validate`` checks every declared range and choice: one line, naming the key.

Adding a key is ONE line in the right class below, e.g. ``new_key: float = key(ge=0)``;
``key()`` with no limits declares an unchecked key. Groups whose options differ in shape
(``audio``, ``encoder``, ``data``, ``augment``, ``tiny``) are ``Any`` here and
checked by the builder they go to.

The edge (a script's command) turns the composed config into these dataclasses once
(``cli.to_object``); library functions take them, or the part they need, and read
attributes. A choice that names a thing of the library is that library's registry or
tuple, imported from it (the optimisers, the schedules, the loss modes, …), never a copy.
The library imports this module only for type annotations (``TYPE_CHECKING``), so the
arrow points one way (tests/test_import_rules.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from sound2img.errors import UserInputError
from sound2img.manipulation.guidance import INTERP_MODES
from sound2img.manipulation.masking import LATENT_TERMS
from sound2img.manipulation.run import MODES
from sound2img.models.clip import PREPROCESSORS
from sound2img.models.stylegan2 import LATENT_SUFFIXES, NOISE_MODES
from sound2img.registry import Registry
from sound2img.training.losses import DIRECTIONS, SCALE_MODES, TERMS
from sound2img.training.optimizer import AMP_MODES, OPTIMIZERS, SCHEDULES
from sound2img.utils.precision import PRECISIONS
from sound2img.video.keyframes import INTERPOLATIONS
from sound2img.video.run import MODES as VIDEO_MODES

SCHEMA_MODULE = "sound2img/config.py"
MISSING = "???"  # OmegaConf's mandatory value: the YAML must set the key


def key(
    default: Any = MISSING,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple | Registry | None = None,
) -> Any:
    """One declared key: its default (``MISSING``: the YAML must set it) and its allowed
    range (``ge``/``gt``/``le``/``lt``) or ``choices`` (a tuple, or a registry: its names),
    checked by ``validate``."""
    if isinstance(choices, Registry):
        choices = tuple(choices.names())
    limits = {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices}
    metadata = {k: v for k, v in limits.items() if v is not None}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def _sub(cls: type) -> Any:
    return field(default_factory=cls)


# ---- groups -----------------------------------------------------------------------------
@dataclass
class ManipulateOptions:
    """``manipulate/*``: the latent optimisation (README "Manipulation")."""

    steps: int = key(ge=1)
    lr: float = key(gt=0)
    lambda_sim: float = key(ge=0)
    lambda_id: float = key(ge=0)
    latent_term: str = key(choices=LATENT_TERMS)
    mask_step: float = key(ge=0)
    truncation: float = key(ge=0, le=1)
    strip_every: int = key(ge=0)
    cos_scale: float = key(1.0, gt=0)  # d_cos = 1 − cos_scale·cos (the authors' presets: e^0.07)
    precision: str = key("auto", choices=PRECISIONS)  # generator + CLIP compute: bf16 where native (auto)


@dataclass
class EditOptions:
    """``edit`` of ``manipulate.yaml``: what to edit towards and from."""

    audio: list[str] = key([])
    text: list[str] = key([])
    mode: str = key(choices=MODES)
    mix_weight: float = key(ge=0, le=1)
    layer_split: int | None = key(None, ge=0)
    coarse_from: str = key("sound", choices=("sound", "text"))
    interp_steps: int = key(ge=2)
    interp_mode: str = key("slerp", choices=INTERP_MODES)
    gain_db: float = key(0.0)
    seeds: list[int] = key([], ge=0)
    latents: list[str] = key([])
    mean_latent: bool = key(False)
    batch_size: int = key(ge=1)
    full_file_seconds: float = key(60.0, gt=0)
    images: list[str] = key([])
    image_method: str | None = key(None, choices=("projector", "e4e", "psp"))
    image_encoder: str | None = key(None)
    image_space: str | None = key(None, choices=("w", "wplus"))  # None: the projector recipe's
    image_perceptual: str | None = key(None, choices=("lpips", "none"))  # None: generator.inversion's, else lpips
    image_steps: int | None = key(None, ge=1)
    image_align: str = key("auto", choices=("auto", "ffhq", "center", "none"))

    def photo_section(self, precision: str = "auto") -> InvertOptions:
        """The ``edit.image_*`` keys as the ``invert`` section they stand for (the other
        keys the recipe's defaults; ``precision``: the edit's)."""
        return InvertOptions(
            method=self.image_method,
            encoder=self.image_encoder,
            space=self.image_space,
            perceptual=self.image_perceptual,
            steps=self.image_steps,
            align=self.image_align,
            precision=precision,
        )


@dataclass
class VideoOptions:
    """``video`` of ``video.yaml``: sound → video (README "Sound to video", docs/method.md §10)."""

    mode: str = key("both", choices=VIDEO_MODES)
    fps: int = key(24, ge=1, le=240)
    max_seconds: float = key(600.0, gt=0)  # longer sounds are refused before anything is built
    keyframe_seconds: float = key(1.0, gt=0)
    keyframe_steps: int = key(50, ge=1)  # per keyframe after the first (which takes manipulate.steps)
    lambda_prev: float = key(0.01, ge=0)  # weight of ‖w − previous keyframe‖²
    window_seconds: float | None = key(None, gt=0)  # null: the encoder's own window
    interpolation: str = key("cubic", choices=INTERPOLATIONS)
    batch_size: int = key(1, ge=1)  # keyframes optimised together
    render_batch: int = key(8, ge=1)  # frames synthesised together
    pulse_strength: float = key(0.5, ge=0)
    motion_strength: float = key(0.5, ge=0)
    motion_randomness: float = key(0.5, ge=0, le=1)
    smooth_seconds: float = key(0.08, ge=0)
    seed: int = key(0, ge=0)  # the reactive walk's start and directions
    crf: int = key(18, ge=0, le=51)  # H.264 quality (0 lossless, 51 worst)
    sheet_frames: int = key(12, ge=1)  # at most this many keyframes on contact_sheet.png


@dataclass
class InvertOptions:
    """``invert`` of ``invert.yaml`` (scripts/invert.py). Each value is checked, with the
    generator's defaults filled in, by ``inversion.run.InversionOptions.check`` (a null:
    the generator config's ``inversion`` or the recipe's)."""

    image: str | None = key(None)
    method: str | None = key(None)  # projector | e4e | psp | pti
    projector: str = key("ours")  # ours | nvlabs
    encoder: str | None = key(None)
    space: str | None = key(None)  # w | wplus
    perceptual: str | None = key(None)  # lpips | none
    pixel_weight: float | None = key(None)
    noise: str | None = key(None)  # fixed | optimize
    steps: int | None = key(None)
    pti_steps: int | None = key(None)
    seed: int = key(0)
    align: str = key("auto")  # auto | ffhq | center | none
    precision: str = key("auto")


@dataclass
class AppOptions:
    """``app`` of ``demo.yaml``: the web app's page settings (README "Web app")."""

    concurrency: int = key(1, ge=1)
    max_queue: int = key(8, ge=0)
    max_upload_mb: float = key(100, gt=0)
    live_every: int = key(5, ge=1)
    work_dir: str | None = key(None)
    bounds: dict[str, Any] = key({})  # slider → [low, high]


@dataclass
class GeneratorInversion:
    """``generator.inversion``: how ``--image`` inverts a photo for this generator (the
    defaults of ``invert.*`` and ``edit.image_*``)."""

    method: str | None = key(None)  # projector | e4e | psp
    encoder: str | None = key(None)  # the e4e/pSp checkpoint of that method
    perceptual: str | None = key(None)  # the projector's loss (null: lpips)


@dataclass
class GeneratorOptions:
    """``generator/*``: which StyleGAN2 and its run-time settings."""

    name: str | None = key(None)
    path: str | None = key(None)
    truncation: float = key(0.7, ge=0, le=1)
    noise_mode: str = key("const", choices=NOISE_MODES)
    tiny: Any = key(None)  # kwargs of build_generator (name: tiny), checked by it
    faces: bool = key(False)  # a face generator: FFHQ alignment, identity scores
    inversion: GeneratorInversion | None = key(None)


@dataclass
class ClipOptions:
    """``clip/*``: the CLIP towers (``factory.build_clip_from_cfg``)."""

    model: str | None = key(None)  # an open_clip model (null: ViT-B-32), tiny, or from_encoder
    pretrained: str | None = key(None)  # open_clip tag, file or registry name; null: random towers
    preprocess: str = key("clip", choices=PREPROCESSORS)
    tiny: Any = key(None)  # build_clip keyword arguments of random towers (checked by it)
    seed: int = key(0)  # random towers' initialisation


@dataclass
class OptimOptions:
    """``optim/*``: the encoder's optimiser and learning-rate schedule."""

    name: str = key(choices=OPTIMIZERS)
    lr: float = key(gt=0)
    momentum: float = key(ge=0, lt=1)
    weight_decay: float = key(ge=0)
    lr_cycle_epochs: float = key(gt=0)
    lr_min: float = key(ge=0)
    warmup_steps: int = key(ge=0)
    schedule: str = key("cosine_restarts", choices=SCHEDULES)
    max_lr: float = key(0.1, gt=0)  # cyclic: the peak
    step_epochs: int = key(5, ge=1)  # cyclic: epochs from base to peak
    base_momentum: float = key(0.8, ge=0, lt=1)  # cyclic: momentum at the peak lr


@dataclass
class LossTerms:
    """``loss.terms``: the weight of each InfoNCE term (0 turns it off)."""

    at: float = key(1.0, ge=0)
    av: float = key(1.0, ge=0)
    aa: float = key(1.0, ge=0)


@dataclass
class LossOptions:
    terms: LossTerms = _sub(LossTerms)
    symmetric: bool = key(True)
    logit_scale: str = key("learnable", choices=SCALE_MODES)
    logit_scale_init: float = key(gt=0)
    logit_scale_max: float = key(gt=0)
    directions: str = key("mean", choices=DIRECTIONS)


@dataclass
class TrainOptions:
    """``train`` of ``train_encoder.yaml``: read by ``training_loop`` (``clip_seconds`` by
    the datasets)."""

    batch_size: int = key(ge=1)
    epochs: int = key(ge=1)
    max_steps: int | None = key(None, ge=0)
    clip_seconds: float = key(gt=0)
    amp: str = key("auto", choices=AMP_MODES)
    channels_last: bool = key(True)
    num_workers: int = key(ge=0)
    grad_clip: float | None = key(None, gt=0)
    embedding_cache_dir: str | None = key(None)
    checkpoint_every: int = key(ge=1)
    keep_checkpoints: int = key(ge=1)
    log_every: int = key(ge=1)
    progress: bool = key(True)
    clean_first_view: bool = key(False)  # the authors' recipe: a clean first view
    separate_view_passes: bool = key(False)  # the authors' recipe: one encoder pass per view


@dataclass
class ValidationOptions:
    data: Any = key("held_out")  # held_out | null | a dataset config


@dataclass
class LoggingOptions:
    wandb: bool = key(False)
    wandb_project: str = key("sound2img")


@dataclass
class DomainOptions:
    """``domains.<name>`` of ``reproduce.yaml``: a table's generator and λ values."""

    generator: str | None = key(None)
    lambda_sim: float | None = key(None, ge=0)
    lambda_id: float | None = key(None, ge=0)


@dataclass
class PeerOptions:
    """``eval.peer`` of ``fig_audioclip_comparison``: the other audio encoder."""

    encoder: str | None = key(None)  # registry name or file
    label: str | None = key(None)  # its column title (null: the encoder's name)
    clip: Any = key(None)  # a clip config; null: the towers of the encoder's own space


@dataclass
class EvalOptions:
    """``eval/*`` of ``reproduce.yaml``: one table's settings; each table reads its own
    (``configs/eval/<table>.yaml`` sets them, with what they mean)."""

    table: str = key()
    datasets: list[str] = key([])  # zeroshot, linear_probe: keys of ``datasets``
    dataset: str | None = key(None)  # fig_audio_text_tsne
    folds: list[int] | None = key(None)  # null: every fold of the dataset
    templates: list[str] | None = key(None)  # null: data.prompts.zero_shot_templates()
    batch_size: int | None = key(None, ge=1)  # null: 64 clips per embedding batch, 8 sources per edit batch
    num_workers: int = key(0, ge=0)
    C: float | None = key(None)  # linear_probe: null chooses from Cs; supp_table2: null is 1.0
    Cs: list[float] = key([0.01, 0.1, 1.0, 10.0])
    max_iter: int = key(1000, ge=1)
    attributes: list[str] | None = key(None)  # null: every row of ``attributes``
    n_latents: int = key(150, ge=1)
    seed: int = key(0)
    n_splits: int = key(5)
    perplexity: float = key(30.0)
    domain: str | None = key(None)  # null: cfg.generator and cfg.manipulate
    sound: str | None = key(None)
    text: str | None = key(None)
    lambda_sims: list[float] = key([])
    lambda_ids: list[float] = key([])
    gains_db: list[float] = key([])
    alphas: list[float] = key([])
    sounds: list[str] = key([])
    n_sources: int = key(1)
    peer: PeerOptions = _sub(PeerOptions)


# ---- top-level configs --------------------------------------------------------------------
@dataclass
class _Models:
    """The model groups every script composes (``preset=tiny`` overrides all four)."""

    audio: Any = key(None)
    clip: ClipOptions | None = key(None)
    encoder: Any = key(None)
    generator: GeneratorOptions | None = key(None)
    tiny: bool = key(False)
    device: str = key("auto")


@dataclass
class ManipulateConfig(_Models):
    """``manipulate.yaml`` (scripts/manipulate.py)."""

    manipulate: ManipulateOptions = _sub(ManipulateOptions)
    edit: EditOptions = _sub(EditOptions)
    identity: Any = key(None)
    jobs: str | None = key(None)  # --jobs FILE: the edit queue
    # the web app's page settings: only demo.yaml sets them (a schema cannot be extended by a
    # config that includes manipulate.yaml), checked and typed by DemoConfig
    app: Any = key(None)
    lpips: str | None = key(
        "torchvision_vgg16"
    )  # LPIPS backbone of the quality scores and photo inversion (null: none)
    # scripts/video.py's keys (video.yaml sets them on top of this config; other scripts ignore them)
    video: VideoOptions = _sub(VideoOptions)
    out: str = key("outputs/edit")
    overwrite: bool = key(False)
    progress: bool = key(True)


@dataclass
class DemoConfig(ManipulateConfig):
    """``demo.yaml`` (scripts/demo.py): ``manipulate.yaml`` plus the page's ``app`` section.
    The file composes under the manipulate schema; the web app converts it into this class
    (``cli.to_schema("demo", …)``) and ``validate("demo", …)`` checks its ``app`` ranges."""

    app: AppOptions = _sub(AppOptions)


@dataclass
class TrainEncoderConfig(_Models):
    """``train_encoder.yaml`` (scripts/train_encoder.py)."""

    augment: Any = key(None)
    data: Any = key(None)
    optim: OptimOptions = _sub(OptimOptions)
    run_dir: str = key("outputs/train_encoder")
    resume: bool = key(False)
    overwrite: bool = key(False)
    seed: int = key(0)
    extra_data: dict[str, Any] = key({})
    loss: LossOptions = _sub(LossOptions)
    train: TrainOptions = _sub(TrainOptions)
    validation: ValidationOptions = _sub(ValidationOptions)
    logging: LoggingOptions = _sub(LoggingOptions)
    tiny_run: Any = key(None)  # preset=tiny's data and train settings (merged over train)


@dataclass
class ReproduceConfig(_Models):
    """``reproduce.yaml`` (scripts/reproduce.py)."""

    manipulate: ManipulateOptions = _sub(ManipulateOptions)
    eval: EvalOptions = _sub(EvalOptions)
    datasets: dict[str, Any] = key({})  # evaluation sets: data configs by name
    progress: bool = key(True)
    identity: Any = key(None)
    domains: dict[str, DomainOptions] = key({})
    sounds_dir: str = key("data/sounds")
    attributes: list[Any] = key([])  # rows {name, domain, sound, text}: a list of records


@dataclass
class GenerateConfig(_Models):
    """``generate.yaml`` (scripts/generate.py)."""

    seeds: Any = key("0-7")  # N, A-B or a list: parsed by generation.parse_seeds
    out: str = key("outputs/generate")
    overwrite: bool = key(False)
    batch_size: int = key(8, ge=1)
    latent_format: str = key("npy", choices=tuple(s.lstrip(".") for s in LATENT_SUFFIXES))


@dataclass
class PrepareDataConfig(_Models):
    """``prepare_data.yaml`` (scripts/prepare_data.py); of the model groups only ``audio``
    (the shards' rate) and ``clip`` (``embedding_cache_dir``) are used, the others are
    there so that ``preset=tiny`` applies."""

    data: Any = key(None)
    out: str = key()
    clip_seconds: float = key(gt=0)
    shard_size: int = key(1000)  # checked (with --workers) by data.prepare.prepare_shards
    workers: int = key(1)
    seed: int = key(0)
    jpeg_quality: int = key(90)
    overwrite: bool = key(False)
    progress: bool = key(True)
    embedding_cache_dir: str | None = key(None)


@dataclass
class InvertConfig(_Models):
    """``invert.yaml`` (scripts/invert.py)."""

    invert: InvertOptions = _sub(InvertOptions)
    lpips: str | None = key("torchvision_vgg16")  # LPIPS-VGG16: the projector's loss and the quality scores
    pti_lpips: str | None = key("torchvision_alexnet")  # LPIPS-AlexNet of PTI's tuning loss
    identity: Any = key(None)
    out: str = key("outputs/invert")
    overwrite: bool = key(False)
    progress: bool = key(True)


@dataclass
class EmbedConfig(_Models):
    """``embed.yaml`` (scripts/embed.py)."""

    sounds: list[str] = key([])
    texts: list[str] = key([])
    images: list[str] = key([])
    full_file_seconds: float = key(60.0, gt=0)
    out: str | None = key(None)
    overwrite: bool = key(False)


# The top-level config files and their schemas: ``configs/<name>.yaml`` lists
# ``<name>_schema`` first in its defaults.
SCHEMAS: dict[str, type] = {
    "manipulate": ManipulateConfig,
    "train_encoder": TrainEncoderConfig,
    "reproduce": ReproduceConfig,
    "generate": GenerateConfig,
    "prepare_data": PrepareDataConfig,
    "embed": EmbedConfig,
    "invert": InvertConfig,
    "demo": DemoConfig,  # demo.yaml = manipulate.yaml + its ``app`` section
    "video": ManipulateConfig,  # video.yaml = manipulate.yaml + its ``video`` section
}


def register() -> None:
    """Store every schema in Hydra's ConfigStore as ``<config>_schema`` (idempotent)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        store.store(name=f"{name}_schema", node=schema)


# ---- the one checker ----------------------------------------------------------------------
def _describe(meta: dict[str, Any]) -> str:
    if "choices" in meta:
        return f"one of {', '.join(map(str, meta['choices']))}"
    parts = [f"{op} {meta[k]:g}" for k, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")) if k in meta]
    return " and ".join(parts)


def check_value(where: str, value: Any, meta: dict[str, Any]) -> None:
    """One key's value against its declared range/choices; raises ``UserInputError``
    with one line naming the key and what is allowed."""
    if value is None or value == "???":
        return
    if "choices" in meta:
        if value not in meta["choices"]:
            raise UserInputError(f"{where} must be {_describe(meta)}, got {value!r}")
        return
    if not meta:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserInputError(f"{where} must be a finite number ({_describe(meta)}), got {value!r}")
    for k, bad in (
        ("ge", value < meta.get("ge", -math.inf)),
        ("gt", value <= meta.get("gt", -math.inf)),
        ("le", value > meta.get("le", math.inf)),
        ("lt", value >= meta.get("lt", math.inf)),
    ):
        if k in meta and bad:
            op = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}[k]
            raise UserInputError(f"{where} must be {op} {meta[k]:g}, got {value:g}")


def _walk(schema: type, node: Any, where: str) -> None:
    if isinstance(node, dict):  # keys added with +key=value bypass the composition's check
        from sound2img.config_keys import unknown_key_message

        declared = {f.name for f in fields(schema)}
        extra = [k for k in node if k not in declared]
        if extra:
            raise UserInputError(unknown_key_message(f"{where}.{extra[0]}" if where else str(extra[0]), schema=schema))
    for f in fields(schema):
        value = node.get(f.name) if isinstance(node, dict) else None
        path = f"{where}.{f.name}" if where else f.name
        dict_of = _dict_value_dataclass(schema, f)
        if dict_of is not None:
            for name, item in (value or {}).items():
                if isinstance(item, dict):
                    _walk(dict_of, item, f"{path}.{name}")
            continue
        sub = _dataclass_of(schema, f)
        if sub is not None:
            if isinstance(value, dict):
                _walk(sub, value, path)
            continue
        if isinstance(value, list):
            for item in value:
                check_value(path, item, dict(f.metadata))
        else:
            check_value(path, value, dict(f.metadata))


def _hints(schema: type) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(schema)


def _dataclass_of(schema: type, f) -> type | None:
    import typing

    hint = _hints(schema)[f.name]
    for t in (hint, *typing.get_args(hint)):
        if is_dataclass(t):
            return t
    return None


def _dict_value_dataclass(schema: type, f) -> type | None:
    import typing

    hint = _hints(schema)[f.name]
    if typing.get_origin(hint) in (dict, dict):
        args = typing.get_args(hint)
        if len(args) == 2 and is_dataclass(args[1]):
            return args[1]
    return None


def check_loss_terms(c: dict[str, Any]) -> None:
    """``loss.terms``: at least one term must count (the schema checks each is >= 0)."""
    terms = (c.get("loss") or {}).get("terms") or {}
    if terms and not any(terms.get(t, 0) > 0 for t in TERMS):
        raise UserInputError(f"loss.terms: at least one of {', '.join(TERMS)} needs a positive weight")


# Checks across keys, per top-level config (each key's own range lives on its line above).
CROSS_CHECKS = {"train_encoder": (check_loss_terms,)}


def validate(config_name: str, cfg: Any) -> None:
    """Check a composed ``configs/<config_name>.yaml`` against its schema's ranges and
    choices (types and unknown keys were checked by the composition itself)."""
    schema = SCHEMAS.get(config_name)
    if schema is None:
        return
    from omegaconf import OmegaConf

    try:
        c = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg
    except Exception:  # noqa: BLE001 - a missing mandatory value (???) is reported by its consumer
        c = OmegaConf.to_container(cfg, resolve=False)
    _walk(schema, c, "")
    for check in CROSS_CHECKS.get(config_name, ()):
        check(c)
