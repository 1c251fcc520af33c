"""Schemas of the configs in ``configs/``: one dataclass per checked config group or
top-level config, registered in Hydra's ConfigStore (each top-level YAML lists its schema
first in ``defaults``), so that at composition time

* a key that no schema declares fails (``unknown key``, naming the class to declare it in),
* a value of the wrong type fails (OmegaConf converts ``"3"`` → 3 and refuses ``"abc"``),
* and ``validate`` checks every declared range and choice: one line, naming the key.

Adding a key is ONE line in the right class below, e.g. ``new_key: float = key(ge=0)``;
``key()`` with no limits declares an unchecked key. Groups whose options differ in shape
(``audio``, ``encoder``, ``clip``, ``data``, ``augment``, ``eval``, ``tiny``) are ``Any``
here and checked by the builder they go to. The library never sees these classes: the
edge turns a validated config into plain data with ``cli.to_plain``. Only the edge (cli,
scripts' commands) imports this module; the library never does, and this module imports
nothing of ours but errors (tests/test_import_rules.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from sound2img.errors import UserInputError

# The choices of the library's string settings. Written out (not imported) because the
# library sits below this module and cli; tests/test_config_schema.py checks each against
# the library's own tuple (manipulation.masking.LATENT_TERMS, manipulation.run.MODES,
# models.stylegan2.NOISE_MODES, training.losses.SCALE_MODES / TERMS).
LATENT_TERMS = ("l2", "adaptive")
MODES = ("separate", "embedding_mix", "latent_mix", "layer_mix", "interpolate")
NOISE_MODES = ("const", "random", "none")
SCALE_MODES = ("learnable", "fixed", "legacy")
TERMS = ("at", "av", "aa")
OPTIMIZERS = ("sgd", "adamw")  # training.optimizer.build_optimizer
AMP_MODES = ("auto", "bf16", "fp16", "off")  # training.optimizer.autocast_dtype

SCHEMA_MODULE = "sound2img/config.py"
MISSING = "???"  # OmegaConf's mandatory value: the YAML must set the key


def key(
    default: Any = MISSING,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple | None = None,
) -> Any:
    """One declared key: its default (``MISSING``: the YAML must set it) and its allowed
    range (``ge``/``gt``/``le``/``lt``) or ``choices``, checked by ``validate``."""
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
    interp_mode: str = key("slerp", choices=("slerp", "lerp"))
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


@dataclass
class GeneratorOptions:
    """``generator/*``: which StyleGAN2 and its run-time settings."""

    name: str | None = key(None)
    path: str | None = key(None)
    truncation: float = key(0.7, ge=0, le=1)
    noise_mode: str = key("const", choices=NOISE_MODES)
    tiny: Any = key(None)  # kwargs of build_generator (name: tiny), checked by it
    faces: bool = key(False)  # a face generator: FFHQ alignment, identity scores
    inversion: Any = key(None)  # {method, encoder, perceptual}: how --image inverts for this generator


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
    schedule: str = key("cosine_restarts", choices=("cosine_restarts", "cyclic"))
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
    directions: str = key("mean", choices=("mean", "sum"))


@dataclass
class TrainOptions:
    """``train`` of ``train_encoder.yaml``: passed to ``training_loop`` as keyword
    arguments (``clip_seconds`` goes to the datasets)."""

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


# ---- top-level configs --------------------------------------------------------------------
@dataclass
class _Models:
    """The model groups every script composes (``preset=tiny`` overrides all four)."""

    audio: Any = key(None)
    clip: Any = key(None)
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
    # the web app's page settings (only demo.yaml sets them, on top of this config; checked by
    # sound2img.app): a schema cannot be extended by a config that includes manipulate.yaml
    app: Any = key(None)
    lpips: str = key("torchvision_vgg16")  # LPIPS backbone of the quality scores and photo inversion
    out: str = key("outputs/edit")
    overwrite: bool = key(False)
    progress: bool = key(True)


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
    eval: Any = key(None)  # eval/*: each table's own keys, checked by its runner
    datasets: dict[str, Any] = key({})
    progress: bool = key(True)
    identity: Any = key(None)
    domains: dict[str, DomainOptions] = key({})
    sounds_dir: str = key("data/sounds")
    attributes: list[Any] = key([])


@dataclass
class GenerateConfig(_Models):
    """``generate.yaml`` (scripts/generate.py)."""

    seeds: Any = key("0-7")  # N, A-B or a list: parsed by generation.parse_seeds
    out: str = key("outputs/generate")
    overwrite: bool = key(False)
    batch_size: int = key(8, ge=1)
    latent_format: str = key("npy", choices=("npy", "pt", "npz"))


# The top-level config files and their schemas: ``configs/<name>.yaml`` lists
# ``<name>_schema`` first in its defaults.
SCHEMAS: dict[str, type] = {
    "manipulate": ManipulateConfig,
    "train_encoder": TrainEncoderConfig,
    "reproduce": ReproduceConfig,
    "generate": GenerateConfig,
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


def _schema_at(full_key: str, config_name: str) -> type | None:
    """The schema class holding ``full_key`` (``manipulate.steps`` → ``ManipulateOptions``)."""
    import typing

    schema = SCHEMAS.get(config_name)
    for part in [p for p in full_key.split(".") if p][:-1]:
        if schema is None:
            return None
        hint = _hints(schema).get(part)
        args = typing.get_args(hint)
        if typing.get_origin(hint) in (dict, dict) and len(args) == 2:
            hint = args[1]  # domains.<name>: a Dict[str, DomainOptions] entry
            continue
        schema = next((t for t in (hint, *args) if is_dataclass(t)), None)
    return schema


def unknown_key_message(full_key: str, config_name: str = "", schema: type | None = None) -> str:
    """One line for a key no schema declares: the key, and where to declare it."""
    schema = schema or _schema_at(full_key, config_name)
    name = full_key.rsplit(".", 1)[-1]
    where = f"class {schema.__name__} in {SCHEMA_MODULE}" if schema else SCHEMA_MODULE
    return (
        f"unknown key {full_key!r} (a typo? a new key is declared by one line in {where}, "
        f"e.g. `{name}: float = key(ge=0)`)"
    )


def type_message(full_key: str, omegaconf_message: str) -> str:
    """One line for a value of the wrong type, from OmegaConf's conversion error."""
    import re

    first = omegaconf_message.strip().splitlines()[0]
    value = re.search(r"Value '(.*?)'", first)
    # OmegaConf: "... could not be converted to Integer|Float", "... is not a valid bool (type str)"
    wanted = {"to Integer": "an integer", "to Float": "a number", "valid bool": "true or false"}
    kind = next((v for k, v in wanted.items() if k in first), None)
    if kind is None or value is None:
        return f"{full_key}: {first}"
    return f"{full_key} must be {kind}, got {value.group(1)!r}"
