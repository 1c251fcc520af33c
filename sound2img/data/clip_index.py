"""Finding downloaded clips by name: YouTube-scraped datasets (VGGSound, AudioSet) are
stored under whatever name the downloader chose, and only part of each list is still
online, so files are looked up by a list of name formats and the misses are counted."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sound2img.data.base import AudioClipDataset, Record


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
            raise DatasetError(
                f"{name}: bad file name format {fmt!r} ({type(exc).__name__}: {exc}); fields are {sorted(example)}"
            ) from exc
    return formats


class ClipFinder:
    """The skeleton shared by readers of YouTube-scraped lists (VGGSound, AudioSet): the
    media directory (``media_dir``, default ``root/<default_sub>`` when it exists, else
    ``root``), its file index, the user's name formats (checked against ``example``), and
    the rows whose clip was never downloaded."""

    def __init__(
        self,
        dataset: str,
        root: Path,
        media_dir: str | Path | None,
        default_sub: str,
        name_formats: Sequence[str],
        extensions: Sequence[str],
        **example,
    ):
        from sound2img.data.base import DatasetError

        self.dataset = dataset
        self.dir = (
            Path(media_dir)
            if media_dir is not None
            else (root / default_sub if (root / default_sub).is_dir() else root)
        )
        if not self.dir.is_dir():
            raise DatasetError(f"{dataset}: {default_sub} directory {self.dir} not found")
        self.formats = check_name_formats(name_formats, dataset, **example)
        self.extensions = list(extensions)
        self.files = index_files(self.dir, self.extensions)
        self.missing: list[str] = []  # the reader's key of each row without a file
        self._first_miss: dict | None = None

    def find(self, missing_key: str, **fields) -> str | None:
        """The file of one row (``fields`` fill the name formats), or None, counting the
        row as missing under ``missing_key``."""
        path = find_clip(self.files, self.formats, **fields)
        if path is None:
            self.missing.append(missing_key)
            self._first_miss = self._first_miss or fields
        return path

    def check_missing(self, num_found: int, max_missing_fraction: float) -> None:
        """Warn about the missing rows; ``DatasetError`` when none was found or more than
        ``max_missing_fraction`` are missing (naming the first missing file)."""
        from sound2img.data.base import check_missing_clips

        if self.missing:
            example = self.formats[0].format(**self._first_miss) + self.extensions[0]
            check_missing_clips(self.dataset, self.missing, num_found, max_missing_fraction, self.dir, example)


class ScrapedClipDataset(AudioClipDataset):
    """A reader of a YouTube-scraped list (VGGSound, AudioSet) over the ``records`` whose
    files ``clips`` found: rows never downloaded are counted in ``missing`` /
    ``num_missing`` (at most ``max_missing_fraction`` of them), not as unreadable; clips are
    ``clip_seconds`` long unless ``num_samples`` says otherwise."""

    clip_seconds = 10.0

    def __init__(
        self,
        clips: ClipFinder,
        records: Sequence[Record],
        class_names: Sequence[str],
        bad_rows: Sequence[str],
        *,
        max_missing_fraction: float,
        sample_rate: int,
        num_samples: int | None,
        **kwargs: Any,
    ):
        self.missing, self.num_missing = clips.missing, len(clips.missing)
        clips.check_missing(len(records), max_missing_fraction)
        num_samples = num_samples or round(self.clip_seconds * sample_rate)
        super().__init__(
            records, class_names, sample_rate=sample_rate, num_samples=num_samples, bad_rows=bad_rows, **kwargs
        )
