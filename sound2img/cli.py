"""Command-line conventions shared by every script in ``scripts/``.

A script is ``main()`` → ``run_cli(fn)``: user mistakes (``UserInputError``, argparse
usage errors, bad Hydra overrides) print one line and exit 2; anything else prints
``internal error: …`` (plus the traceback when ``SOUND2IMG_DEBUG=1``) and exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sound2img.errors import UserInputError
from sound2img.utils.files import looks_like_path
from sound2img.utils.memory import keep_freed_memory

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises ``UserInputError`` instead of printing usage and exiting, so
    every usage error follows the same one-line, exit-2 path. ``config_defaults`` =
    ``(config name, {flag dest: config key})``: ``--help`` shows each such flag's default as
    that config composes it (composed only when help is printed)."""

    config_defaults: tuple[str, dict[str, str]] | None = None

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        raise UserInputError(f"{self.prog}: {message} (see --help)")

    def format_help(self) -> str:
        if self.config_defaults is not None:
            _fill_in_defaults(self, *self.config_defaults)
        return super().format_help()


def _shown(value: Any) -> str:
    """A config value as --help shows it."""
    if value is None or value == []:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


def _fill_in_defaults(parser: argparse.ArgumentParser, config_name: str, flag_keys: dict[str, str]) -> None:
    from omegaconf import OmegaConf

    try:
        cfg = compose(config_name, validate=False)
    except UserInputError:  # a broken config tree: help without the defaults
        return
    for action in parser._actions:
        key = flag_keys.get(action.dest)
        if key and "default" not in (action.help or ""):
            value = to_plain(OmegaConf.select(cfg, key, default=None))
            action.help = f"{action.help or ''} (default: {_shown(value)})".strip().replace("%", "%%")


def script_parser(prog: str, description: str, epilog: str) -> ArgumentParser:
    """A script's parser: ``--help`` prints the ``epilog`` (its examples) with its line
    breaks kept."""
    return ArgumentParser(
        prog=prog, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def config_dir() -> Path:
    """The ``configs/`` tree: ``SOUND2IMG_CONFIG_DIR`` or the one beside the package."""
    env = os.environ.get("SOUND2IMG_CONFIG_DIR")
    return Path(env).resolve() if env else CONFIG_DIR


def compose(config_name: str, overrides: Sequence[str] = (), *, validate: bool = True):
    """Compose ``configs/<config_name>.yaml`` with Hydra ``key=value`` overrides.

    Returns an OmegaConf ``DictConfig`` checked against its schema (``sound2img.config``;
    ``validate=False`` leaves the range checks to the caller, who must call
    ``check_config``). Unknown keys, wrong types, bad values, groups or options raise
    ``UserInputError`` with one line."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from sound2img import config as schema

    for item in overrides:
        if "=" not in item:
            raise UserInputError(f"unexpected argument {item!r}: config overrides look like key=value")
    schema.register()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name=config_name):
            cfg = hydra_compose(config_name=config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise UserInputError(f"config: {_config_error(exc, config_name, overrides)}") from exc
    if validate:
        schema.validate(config_name, cfg)
    return cfg


def check_config(config_name: str, cfg) -> None:
    """The schema's range checks (``sound2img.config.validate``) on a composed config."""
    from sound2img import config as schema

    schema.validate(config_name, cfg)


def _config_error(exc: BaseException, config_name: str, overrides: Sequence[str] = ()) -> str:
    """One line for a composition error: when OmegaConf refused a key or a value, which
    key and why (an unknown key with the closest known ones: "did you mean …?"); an unknown
    option of a config group with the closest options; else Hydra's first line."""
    import re

    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    from sound2img.config_keys import did_you_mean, type_message, unknown_key_message

    seen, cause = set(), exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        key = getattr(cause, "full_key", None)
        if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and key:
            return unknown_key_message(str(key), config_name, candidates=_known_keys(config_name, overrides, str(key)))
        if isinstance(cause, ValidationError) and key:
            return type_message(str(key), str(cause))
        cause = cause.__cause__ or cause.__context__
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    missing = re.search(r"Could not find '(.+)/([^/']+)'", first)
    if missing and (config_dir() / missing.group(1)).is_dir():
        group, option = missing.groups()
        options = group_options(group)
        close = did_you_mean(option, options)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        return f"{group}={option}: no such option in configs/{group}/ ({hint}options: {', '.join(options)})"
    return first


def _override_key(override: str) -> str:
    """The key an override sets: ``+a.b=1`` → ``a.b``, ``data@extra.x=y`` → ``extra.x``."""
    key = override.split("=", 1)[0].lstrip("+~")
    return key.split("@", 1)[1] if "@" in key else key


def _known_keys(config_name: str, overrides: Sequence[str], bad_key: str) -> list[str]:
    """The dotted keys a config can take: its schema's, those of the config composed with
    the user's other overrides (the chosen group options' keys included) and the names of
    the config groups (``preset``). Only called to explain an error."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from sound2img import config as schema
    from sound2img.config_keys import schema_keys

    keys = set(schema_keys(schema.SCHEMAS[config_name])) if config_name in schema.SCHEMAS else set()
    keys |= {p.name for p in config_dir().iterdir() if p.is_dir()}

    def walk(node, where: str) -> None:
        for k, v in node.items():
            path = f"{where}.{k}" if where else str(k)
            keys.add(path)
            if isinstance(v, dict):
                walk(v, path)

    rest = [o for o in overrides if _override_key(o) != bad_key]
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name=config_name):
            walk(OmegaConf.to_container(hydra_compose(config_name=config_name, overrides=rest), resolve=False), "")
    except Exception:  # noqa: BLE001 - the other overrides fail too (e.g. a typo in a YAML file): the schema's keys
        pass
    return sorted(keys)


def group_options(group: str) -> list[str]:
    """The options of config group ``group`` (``configs/<group>/*.yaml`` stems)."""
    return sorted(f.stem for f in (config_dir() / group).glob("*.yaml"))


def model_choice(
    flag: str, group: str, value: str, formats: tuple[str, ...], what: str
) -> tuple[list[str], dict[str, Any]]:
    """``--generator``/``--encoder`` → (group overrides, key updates): a file sets
    ``<group>.path``; a config name picks the group option; a registry name sets
    ``<group>.path`` to it (fetched on first use). Anything else is refused here."""
    text = str(value)
    path = Path(text).expanduser()
    if path.is_file():
        return [], {f"{group}.path": str(path.resolve())}
    if looks_like_path(text):
        raise UserInputError(f"{flag} {text}: no such file")
    if text in group_options(group):
        return [f"{group}={text}"], {}
    from sound2img.weights import get_entry

    try:
        entry = get_entry(text)
    except UserInputError:
        raise UserInputError(
            f"{flag} {text!r}: unknown {group} (not a file, not a config in configs/{group}/ "
            f"({', '.join(group_options(group))}) and not a registered weights name)"
        ) from None
    if entry.format not in formats:
        raise UserInputError(f"{flag} {text!r} is a {entry.format} file, not {what}")
    return [], {f"{group}.path": text}


def compose_with_flags(
    config_name: str, overrides: Sequence[str], updates: dict[str, Any], *, groups: Sequence[str] = ()
):
    """``compose`` with group choices ``groups`` (e.g. from ``model_choice``) before the
    user's ``key=value`` overrides, then the flags' values ``updates`` (dotted key → value;
    None = flag not given) on top: a flag beats an override. The one flag → config path
    of every script."""
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    cfg = compose(config_name, [*groups, *overrides], validate=False)
    with open_dict(cfg):
        for key, value in updates.items():
            if value is not None:
                try:
                    OmegaConf.update(cfg, key, value, merge=False)
                except OmegaConfBaseException as exc:
                    raise UserInputError(f"config: {_config_error(exc, config_name, overrides)}") from exc
    check_config(config_name, cfg)
    return cfg


def to_yaml(cfg) -> str:
    """The resolved config as YAML (what ``--cfg job`` prints and runs record)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(cfg, resolve=True)


def user_message(exc: UserInputError) -> str:
    """The message of a user error. One raised in a DataLoader worker comes back with the
    worker's traceback in its text ("Caught X in DataLoader worker process N. Original
    Traceback ... X: message"); the user's message is that last line's."""
    text = str(exc).strip()
    if text.startswith("Caught ") and "Original Traceback" in text:
        last = text.splitlines()[-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return text


def to_object(cfg):
    """A composed config → its schema's dataclasses (``OmegaConf.to_object``): what the
    library functions take, converted once at the edge. A value still ``???`` is a
    one-line error naming it."""
    from omegaconf import OmegaConf

    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise UserInputError(f"config: {', '.join(missing)} must be set (e.g. {missing[0]}=DIR)")
    return OmegaConf.to_object(cfg)


def to_schema(schema: type | str, data):
    """Plain data or a config without a schema (a job row merged into the base config, a
    reproduce table's queue config) → the dataclasses of ``schema`` (a schema class, or a
    top-level config's name: ``"manipulate"``), checked as composition checks them (types,
    unknown keys: one line). Already that schema's dataclass: returned as it is."""
    import dataclasses

    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(schema, str):
        from sound2img.config import SCHEMAS

        schema = SCHEMAS[schema]
    if isinstance(data, schema):
        return data
    if dataclasses.is_dataclass(data):
        data = dataclasses.asdict(data)
    try:
        return to_object(OmegaConf.merge(OmegaConf.structured(schema), to_plain(data)))
    except OmegaConfBaseException as exc:
        raise UserInputError(f"config: {_config_error(exc, '')}") from exc


def to_plain(cfg):
    """A composed config (DictConfig / ListConfig, or already plain data) → nested dicts and
    lists with interpolations resolved (a config group whose options differ in shape)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg


def run_cli(fn: Callable[[Sequence[str]], int | None], argv: Sequence[str] | None = None) -> int:
    """Run ``fn(argv)`` with the exit-status conventions above; returns the status.
    Freed host memory is kept for reuse (``utils.memory``: large CPU tensors would
    otherwise be page-faulted in afresh every step)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    keep_freed_memory()
    try:
        status = fn(argv)
        return int(status or 0)
    except UserInputError as exc:
        print(f"error: {user_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `script --list | head`: the reader left, nothing went wrong
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except SystemExit as exc:  # --help, or an explicit exit
        return exc.code if isinstance(exc.code, int) else 0
    except Exception as exc:  # noqa: BLE001 - the one place that turns crashes into exit 1
        if os.environ.get("SOUND2IMG_DEBUG"):
            traceback.print_exc()
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(
            f"internal error: {type(exc).__name__}: {message} (set SOUND2IMG_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Flags every script has: ``--cfg job`` (print the resolved config and exit) and
    ``--device`` (``auto`` = CUDA when present)."""
    parser.add_argument("--cfg", choices=["job"], help="print the resolved config and exit (default: off)")
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")


def parse_with_overrides(parser: argparse.ArgumentParser, argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """Parse known flags; every leftover word must be a Hydra ``key=value`` override."""
    args, rest = parser.parse_known_args(list(argv))
    for word in rest:
        if word.startswith("-") or "=" not in word:
            raise UserInputError(f"{parser.prog}: unrecognised argument {word!r} (see --help)")
    return args, rest
