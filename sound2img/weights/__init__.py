"""Registry of the public checkpoints and sample sounds the defaults use (URL, sha256 or
"unverified", format, licence; the entries are in ``table``) and ``resolve_weights``, which
finds a name's file in the download cache (``cache``) or fetches it there."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sound2img.errors import UserInputError, WeightsNotAvailableError
from sound2img.registry import Registry
from sound2img.utils.files import looks_like_path
from sound2img.weights.cache import (
    CHUNK_BYTES,
    MAX_HTML_BYTES,
    USER_AGENT,
    NetworkUnreachable,
    _exclusive_lock,  # noqa: F401 - tests hold the lock through this module
    _manual_hint,
    cache_dir,
    cached_path,
    download,
)
from sound2img.weights.table import AUDIO_ENCODER_FORMATS, ENTRIES, FORMATS, WeightsEntry

__all__ = [
    "AUDIO_ENCODER_FORMATS",
    "CHUNK_BYTES",
    "FORMATS",
    "MAX_HTML_BYTES",
    "USER_AGENT",
    "WEIGHTS",
    "WeightsEntry",
    "cache_dir",
    "cached_path",
    "download",
    "fetch_missing",
    "format_weights_table",
    "get_entry",
    "is_offline",
    "list_weights",
    "register_weights",
    "resolve_weights",
]

log = logging.getLogger("sound2img.weights")

WEIGHTS: Registry[WeightsEntry] = Registry("weights name", hint="list them with scripts/fetch_weights.py --list")
for _entry in ENTRIES:
    WEIGHTS.register(_entry.name, _entry)
del _entry


def register_weights(entry: WeightsEntry, *, overwrite: bool = False) -> WeightsEntry:
    """Add ``entry`` to the registry (refused when the name or cache file name is taken,
    unless ``overwrite``)."""
    if not overwrite and any(e.filename == entry.filename for _, e in WEIGHTS.items()):
        raise ValueError(f"cache file name {entry.filename!r} is already used by another entry")
    return WEIGHTS.register(entry.name, entry, overwrite=overwrite)


def list_weights() -> list[WeightsEntry]:
    """Every registered entry, sorted by name."""
    return [WEIGHTS.get(k) for k in WEIGHTS.names()]


def _canonical(name: str) -> str:
    name = name.strip()
    # ``sample:rain`` is how sample sounds are named on the command line.
    return "sample_" + name[len("sample:") :] if name.startswith("sample:") else name


def _unknown_name(name: str) -> UserInputError:
    return UserInputError(
        f"{name!r} is neither an existing file nor a registered weights name ({WEIGHTS.suggest(_canonical(name))})"
    )


def get_entry(name: str) -> WeightsEntry:
    """The entry called ``name`` (``sample:rain`` means ``sample_rain``); an unknown name
    raises ``UserInputError`` listing the closest registered names."""
    try:
        return WEIGHTS.get(_canonical(str(name)))
    except UserInputError:
        raise _unknown_name(str(name)) from None


def is_offline(offline: bool | None = None) -> bool:
    """``offline`` when given, else ``SOUND2IMG_OFFLINE`` set to 1/true/yes/on."""
    if offline is not None:
        return bool(offline)
    return os.environ.get("SOUND2IMG_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def resolve_weights(
    name_or_path: str | os.PathLike, *, allow_download: bool = True, offline: bool | None = None, progress: bool = True
) -> Path:
    """A local file for ``name_or_path``: an existing file is returned as is; a registry
    name is looked up in the cache and downloaded there when missing (unless
    ``allow_download=False`` or offline, which raise ``WeightsNotAvailableError`` naming the
    file, its URL and the exact path to put it at)."""
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise UserInputError(f"{text} is a directory, expected a weights file or a registered name")
    if _canonical(text) not in WEIGHTS:
        if looks_like_path(text):
            raise UserInputError(f"{text}: no such file")
        raise _unknown_name(text)
    entry = WEIGHTS.get(_canonical(text))
    dest = cached_path(entry)
    if dest.is_file():
        return dest
    if is_offline(offline) or not allow_download:
        why = (
            "downloads are off"
            if not allow_download
            else "SOUND2IMG_OFFLINE is set"
            if offline is None
            else "offline mode is on"
        )
        raise WeightsNotAvailableError(
            f"{entry.filename} ({entry.name}) is not in the cache and {why}: {_manual_hint(entry, dest)}"
        )
    return _download_entry(entry, dest, progress=progress)


# resolve_weights has a keyword called ``download``; it reaches the function through this name.
_download_entry = download


def fetch_missing(
    purposes: dict[str, str], *, offline: bool | None = None, progress: bool = True, hint: str = ""
) -> dict[str, Path]:
    """Every file of ``purposes`` (registry name → what it is for, e.g. ``"generator"``) in
    the cache, downloading the missing ones in turn (none when offline; none after one that
    could not reach its server). Returns name → path; when some are still missing, raises
    one ``WeightsNotAvailableError`` naming each of them with its URL and the path to put it
    at: one line for one file, else a line per file (``hint``: a last line, e.g. the
    ``fetch_weights.py`` command)."""
    found: dict[str, Path] = {}
    missing: list[tuple[WeightsEntry, str]] = []
    why = "SOUND2IMG_OFFLINE is set" if offline is None and is_offline() else "offline mode is on"
    reachable = not is_offline(offline)
    for name, purpose in purposes.items():
        entry = get_entry(name)
        dest = cached_path(entry)
        if dest.is_file():
            found[entry.name] = dest
            continue
        if reachable:
            try:
                found[entry.name] = _download_entry(entry, dest, progress=progress)
                continue
            except NetworkUnreachable as exc:
                reachable, why = False, f"the network is unreachable ({exc.reason})"
            except WeightsNotAvailableError as exc:
                log.warning("%s", exc)
        missing.append((entry, purpose))
    if len(missing) == 1:  # one file: the one-line message of every user error
        (entry, purpose), state = missing[0], "was not downloaded" if reachable else "cannot be downloaded"
        cause = "see the warning above" if reachable else why
        raise WeightsNotAvailableError(
            f"{entry.filename} ({entry.name}, {purpose}) is not in the cache and {state} ({cause}): "
            f"{_manual_hint(entry, cached_path(entry))}"
        )
    if missing:
        n = len(missing)
        lines = [
            f"{n} file{'s' if n > 1 else ''} this command needs {'are' if n > 1 else 'is'} not in the cache "
            f"and {'were' if reachable else 'cannot be'} downloaded ({'see the warnings above' if reachable else why}); "
            "download each URL and put the file at the path after it:"
        ]
        lines += [f"  {p} ({e.name}): {e.url} -> {cached_path(e)}" for e, p in missing]
        if hint:
            lines.append(hint)
        raise WeightsNotAvailableError("\n".join(lines))
    return found


def format_weights_table(entries: list[WeightsEntry] | None = None) -> str:
    """Each entry: name, format, verified or not, cached or not, and on the lines below its
    URL, where it goes in the cache and its licence."""
    entries = list_weights() if entries is None else entries
    blocks = []
    for e in entries:
        dest = cached_path(e)
        blocks.append(
            f"{e.name}  ({e.format}, {'verified' if e.verified else 'unverified'}, "
            f"{'cached' if dest.is_file() else 'not cached'})\n"
            f"    url:     {e.url}\n    file:    {dest}\n    licence: {e.licence}"
        )
    return "\n".join(blocks)
