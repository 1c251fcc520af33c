"""Finding downloaded clips by name: YouTube-scraped datasets (VGGSound, AudioSet) are
stored under whatever name the downloader chose, and only part of each list is still
online, so files are looked up by a list of name formats and the misses are counted."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence


def index_files(directory: str | Path, extensions: Sequence[str]) -> dict[str, str]:
    """Every file under ``directory`` (recursively) with one of ``extensions`` → ``{stem:
    path}``. When a stem exists with several extensions, the earlier extension wins."""
    rank = {ext.lower(): i for i, ext in enumerate(extensions)}
    found: dict[str, tuple[int, str]] = {}
    for dirpath, _dirs, files in os.walk(directory, followlinks=True):
        for name in files:
            stem, ext = os.path.splitext(name)
            r = rank.get(ext.lower())
            if r is not None and (stem not in found or r < found[stem][0]):
                found[stem] = (r, os.path.join(dirpath, name))
    return {stem: path for stem, (_r, path) in found.items()}


def find_clip(index: dict[str, str], name_formats: Sequence[str], **fields) -> str | None:
    """The first of ``name_formats`` (``str.format`` patterns without extension, e.g.
    ``"{ytid}_{start:06d}"``) that names an indexed file, or None."""
    for fmt in name_formats:
        path = index.get(fmt.format(**fields))
        if path is not None:
            return path
    return None


def check_name_formats(name_formats: Sequence[str], name: str, **example) -> list[str]:
    """Validate user name formats against an example row; ``DatasetError`` on a bad one."""
    from sound2img.data.base import DatasetError

    formats = [name_formats] if isinstance(name_formats, str) else list(name_formats)
    if not formats:
        raise DatasetError(f"{name}: name_formats is empty")
    for fmt in formats:
        try:
            fmt.format(**example)
        except (KeyError, IndexError, ValueError) as exc:
            raise DatasetError(f"{name}: bad file name format {fmt!r} ({type(exc).__name__}: {exc}); "
                               f"fields are {sorted(example)}") from exc
    return formats
