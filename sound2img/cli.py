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
    every usage error follows the same one-line, exit-2 path."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        raise UserInputError(f"{self.prog}: {message} (see --help)")


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
        raise UserInputError(f"config: {_config_error(exc, config_name)}") from exc
    if validate:
        schema.validate(config_name, cfg)
    return cfg


def check_config(config_name: str, cfg) -> None:
    """The schema's range checks (``sound2img.config.validate``) on a composed config."""
    from sound2img import config as schema

    schema.validate(config_name, cfg)


def _config_error(exc: BaseException, config_name: str) -> str:
    """One line for a composition error: Hydra's first line, or, when OmegaConf refused a
    key or a value, which key, why, and where an unknown key would be declared."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    from sound2img.config import type_message, unknown_key_message

    seen, cause = set(), exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        key = getattr(cause, "full_key", None)
        if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and key:
            return unknown_key_message(str(key), config_name)
        if isinstance(cause, ValidationError) and key:
            return type_message(str(key), str(cause))
        cause = cause.__cause__ or cause.__context__
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
                    raise UserInputError(f"config: {_config_error(exc, config_name)}") from exc
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
    parser.add_argument("--cfg", choices=["job"], help="print the resolved config and exit")
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")


def parse_with_overrides(parser: argparse.ArgumentParser, argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """Parse known flags; every leftover word must be a Hydra ``key=value`` override."""
    args, rest = parser.parse_known_args(list(argv))
    for word in rest:
        if word.startswith("-") or "=" not in word:
            raise UserInputError(f"{parser.prog}: unrecognised argument {word!r} (see --help)")
    return args, rest
