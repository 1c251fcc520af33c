"""Which public files (weights-registry entries) a command needs, read from its composed
config with the choices the builders make (``factory.generator_source``, ``clip_source``, …),
so that a command fetches them all before it starts and, offline, names every missing one
in one message (``ensure_weights``); and what ``scripts/fetch_weights.py --for COMMAND``
lists and fetches (``COMMANDS``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sound2img.errors import UserInputError

if TYPE_CHECKING:
    from sound2img.config import (
        EmbedConfig,
        GenerateConfig,
        InvertConfig,
        InvertOptions,
        ManipulateConfig,
        TrainEncoderConfig,
    )


@dataclass
class Needs:
    """Registry names a command reads, each with what it is for: ``required`` ones stop the
    command when missing; ``optional`` ones only give a score (recorded as unavailable
    without them)."""

    required: dict[str, str] = field(default_factory=dict)
    optional: dict[str, str] = field(default_factory=dict)

    def add(self, source: Any, purpose: str, *, optional: bool = False) -> None:
        """Count ``source`` if it is a registry name (files and random networks need nothing)."""
        from sound2img.weights import get_entry

        if not source or Path(str(source)).expanduser().is_file():  # a file wins over a name, as in factory
            return
        try:
            entry = get_entry(str(source))
        except UserInputError:  # a path, a random network's name: nothing to fetch
            return
        if entry.name in self.required:
            return
        if optional:
            self.optional.setdefault(entry.name, purpose)
        else:
            self.optional.pop(entry.name, None)
            self.required[entry.name] = purpose

    def add_sound(self, spec: str) -> None:
        if str(spec).startswith("sample:"):
            self.add(spec, f"sound {spec}")


def _photo_needs(needs: Needs, cfg: ManipulateConfig | InvertConfig, section: InvertOptions) -> None:
    """What inverting a photo reads: an e4e/pSp encoder, or LPIPS' VGG16 for the projector's
    perceptual loss (``inversion.command.options_from`` picks the method)."""
    from sound2img.inversion.command import options_from

    opts = options_from(section, cfg.generator)
    if opts.method in ("e4e", "psp"):
        needs.add(opts.encoder, f"photo encoder ({opts.method})")
    elif opts.perceptual == "lpips":
        needs.add(cfg.lpips or "torchvision_vgg16", "LPIPS (projector loss)")
        if opts.method == "pti":
            needs.add(getattr(cfg, "pti_lpips", None) or "torchvision_alexnet", "LPIPS-AlexNet (PTI's tuning loss)")


def _score_needs(needs: Needs, cfg: ManipulateConfig | InvertConfig) -> None:
    """The networks of the quality block (``inversion.command.quality_metrics``): optional,
    and never fetched under preset=tiny."""
    from sound2img.factory import identity_source

    if cfg.tiny:
        return
    needs.add(cfg.lpips, "LPIPS score", optional=True)
    if cfg.generator.faces:
        needs.add(identity_source(cfg), "identity score", optional=True)


def edit_needs(cfg: ManipulateConfig) -> Needs:
    """``manipulate.py`` (and the web app, per edit): generator, sound encoder (for sounds),
    CLIP, sample sounds, the identity network at λ_ID > 0, what photos are inverted with."""
    from sound2img import factory

    needs = Needs()
    edit, encoder = cfg.edit, factory.encoder_source(cfg.encoder)
    needs.add(factory.generator_source(cfg.generator), "generator")
    if edit.audio or factory.towers_from_encoder(cfg.clip):
        needs.add(encoder, "sound encoder")
    needs.add(factory.clip_source(cfg.clip, encoder), "CLIP")
    for spec in edit.audio:
        needs.add_sound(spec)
    if cfg.manipulate.lambda_id > 0 and not edit.mean_latent:
        needs.add(factory.identity_source(cfg), "identity loss (λ_ID)")
    if edit.images:
        _photo_needs(needs, cfg, edit.photo_section())
    _score_needs(needs, cfg)
    return needs


def invert_needs(cfg: InvertConfig) -> Needs:
    """``invert.py``: the generator, then the e4e/pSp encoder or the projector's LPIPS."""
    from sound2img import factory

    needs = Needs()
    needs.add(factory.generator_source(cfg.generator), "generator")
    _photo_needs(needs, cfg, cfg.invert)
    _score_needs(needs, cfg)
    return needs


def train_needs(cfg: TrainEncoderConfig | dict[str, Any]) -> Needs:
    """``train_encoder.py``: CLIP for the targets and validation, a starting encoder file."""
    from sound2img import factory
    from sound2img.cli import to_schema

    cfg = to_schema("train_encoder", cfg)  # training.run passes it as plain data
    needs = Needs()
    terms = cfg.loss.terms
    # training.run.train_from_cfg's rule: text or frame targets, or zero-shot validation
    if terms.at > 0 or terms.av > 0 or cfg.validation.data is not None:
        needs.add(factory.clip_source(cfg.clip), "CLIP")
    needs.add(factory.encoder_source(cfg.encoder), "starting encoder")
    return needs


def embed_needs(cfg: EmbedConfig) -> Needs:
    """``embed.py``: the sound encoder, its CLIP towers for prompts and images, sample sounds."""
    from sound2img import factory

    needs = Needs()
    path = factory.encoder_source(cfg.encoder)
    needs.add(path, "sound encoder")
    if cfg.texts or cfg.images:
        needs.add(factory.clip_source(cfg.clip, path), "CLIP")
    for spec in cfg.sounds:
        needs.add_sound(spec)
    return needs


def generate_needs(cfg: GenerateConfig) -> Needs:
    from sound2img import factory

    needs = Needs()
    needs.add(factory.generator_source(cfg.generator), "generator")
    return needs


# fetch_weights.py --for NAME: (config, overrides, needs of that config, what it stands for)
COMMANDS: dict[str, tuple[str, tuple[str, ...], Callable[[Any], Needs], str]] = {
    "edit": ("manipulate", ("edit.audio=[sample:rain]",), edit_needs, "make edit / manipulate.py --audio sample:rain"),
    "faces": (
        "manipulate",
        ("manipulate=faces", "edit.audio=[sample:giggling]"),
        edit_needs,
        "manipulate.py --audio sample:giggling manipulate=faces (FFHQ 1024, λ_ID)",
    ),
    "invert": ("invert", (), invert_needs, "invert.py --image (FFHQ 1024, e4e)"),
    "invert-projector": (
        "invert",
        ("generator=lhq256",),
        invert_needs,
        "invert.py --generator lhq256 (the projector, LPIPS)",
    ),
    "train": ("train_encoder", (), train_needs, "train_encoder.py (CLIP targets)"),
    "embed": ("embed", ("texts=[x]",), embed_needs, "embed.py (the default encoder and its CLIP towers)"),
    "generate": ("generate", (), generate_needs, "generate.py (the default generator)"),
    "demo": ("demo", (), edit_needs, "demo.py (the default models)"),
}


def command_needs(name: str, overrides: Sequence[str] = ()) -> Needs:
    """The needs of ``fetch_weights.py --for name`` (plus ``key=value`` ``overrides``)."""
    from sound2img.cli import compose, to_object

    if name not in COMMANDS:
        raise UserInputError(f"--for {name!r}: choose one of {', '.join(COMMANDS)}")
    config, fixed, needs_of, _ = COMMANDS[name]
    from omegaconf import OmegaConf, open_dict

    cfg = compose(config, [*fixed, *overrides])
    with open_dict(cfg):  # a value the command wants set (train's data.root) names no weights file
        for key in OmegaConf.missing_keys(cfg):
            OmegaConf.update(cfg, key, None, merge=False)
    return needs_of(to_object(cfg))


def ensure_weights(needs: Needs, *, progress: bool = True) -> None:
    """Fetch every required file of ``needs`` that is not in the cache; when some cannot be
    had (offline, no network), one ``WeightsNotAvailableError`` names them all."""
    from sound2img.weights import fetch_missing

    if needs.required:
        names = " ".join(needs.required)
        fetch_missing(
            needs.required,
            progress=progress,
            hint=f"(where there is a network, python scripts/fetch_weights.py {names} fetches them into the cache)",
        )


def format_needs(needs: Needs) -> str:
    """The files of ``needs``, each as ``format_weights_table`` shows it, under its purpose."""
    from sound2img.weights import format_weights_table, get_entry

    lines = []
    for title, group in (
        ("needs", needs.required),
        ("optional (a score is recorded as unavailable without it)", needs.optional),
    ):
        if group:
            lines.append(f"{title}:")
            for name, purpose in group.items():
                block = format_weights_table([get_entry(name)]).splitlines()
                lines += [f"  {purpose}: {block[0]}", *(f"  {line}" for line in block[1:])]
    return "\n".join(lines) if lines else "needs no weights file"


FETCH_EPILOG = """\
examples:
  python scripts/fetch_weights.py --list                      # every registered file: URL, path in the cache, licence
  python scripts/fetch_weights.py --for edit                  # what `make edit` needs, then fetch it
  python scripts/fetch_weights.py --for faces --list          # only list
  python scripts/fetch_weights.py --for edit encoder=tiny     # key=value overrides of that command's config
  python scripts/fetch_weights.py soundclip_resnet18 sample:rain
  python scripts/fetch_weights.py ir_se50 --offline           # only check the cache
commands for --for: """ + ", ".join(f"{k} ({v[3]})" for k, v in COMMANDS.items())


def fetch_weights_main(argv: Sequence[str]) -> int:
    """``scripts/fetch_weights.py``: list the registry, list what a command needs, or fetch."""
    from sound2img.cli import script_parser, to_yaml
    from sound2img.weights import cache_dir, fetch_missing, format_weights_table, get_entry, is_offline

    parser = script_parser(
        "fetch_weights.py",
        "List the registered public weights and sample sounds (URL, where each goes, licence), list what a "
        "command needs, or fetch files into the cache.",
        FETCH_EPILOG,
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="registry names to fetch (see --list); with --for, key=value overrides of that command's config",
    )
    parser.add_argument(
        "--for", dest="command", choices=list(COMMANDS), help="the files this command needs (default: the NAMEs)"
    )
    parser.add_argument(
        "--list", action="store_true", help="list (the registry, or --for's files) without fetching (default: off)"
    )
    parser.add_argument(
        "--offline", action="store_true", help="do not download; fail unless already cached (default: off)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (default: a bar per file)")
    parser.add_argument("--cfg", choices=["job"], help="print the resolved options and exit (default: off)")
    args = parser.parse_args(list(argv))
    overrides = [n for n in args.names if "=" in n]
    if overrides and not args.command:
        raise UserInputError(f"fetch_weights.py: {overrides[0]!r}: key=value overrides go with --for COMMAND")
    needs = command_needs(args.command, overrides) if args.command else None
    names = list(needs.required) if needs else [get_entry(n).name for n in args.names]  # all checked first
    if args.cfg:
        from omegaconf import OmegaConf

        options = {"names": names, "for": args.command, "list": args.list, "offline": args.offline}
        print(to_yaml(OmegaConf.create({**options, "cache_dir": str(cache_dir())})), end="")
        return 0
    if needs is not None:
        print(f"cache: {cache_dir()}\n{args.command}: {COMMANDS[args.command][3]}\n{format_needs(needs)}")
    elif args.list or not names:
        print(f"cache: {cache_dir()}\n{format_weights_table()}")
        return 0
    if args.list:
        return 0
    paths = fetch_missing(
        {n: (needs.required[n] if needs else n) for n in names},
        offline=True if args.offline else None,
        progress=not args.no_progress,
    )
    for name, path in paths.items():
        print(f"{name}: {path}")
    if needs is not None and needs.optional and not is_offline(True if args.offline else None):
        print(f"optional files are not fetched: python scripts/fetch_weights.py {' '.join(needs.optional)}")
    return 0
