"""VGGSound (Chen et al. 2020): the official ``vggsound.csv`` (no header: ``youtube_id,
start_seconds, label, split``) + the scraped clips, ``{ytid}_{start:06d}.mp4`` by default.
Audio is the clip's sound track; the image its middle frame, as the paper pairs them (docs/method.md §1)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sound2img.data.base import DatasetError, Record, clean_class_name
from sound2img.data.clip_index import ClipFinder, ScrapedClipDataset

# ``{ytid}_{start:06d}.mp4`` is what the common VGGSound scrapers and the shared archives
# use (``-0CamVQdP_Y_000030.mp4``); some write the start unpadded.
DEFAULT_NAME_FORMATS = ("{ytid}_{start:06d}", "{ytid}_{start}", "{ytid}_{start:06d}_{end:06d}")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov")
DEFAULT_EXTENSIONS = VIDEO_EXTENSIONS + (".wav", ".flac")  # audio-only downloads: no image
SPLITS = ("train", "test")


class VGGSoundDataset(ScrapedClipDataset):
    """VGGSound clips of one ``split`` (``train``/``test``; None = both).

    ``root`` holds ``vggsound.csv`` (or pass ``csv_path``); clips are searched recursively
    under ``video_dir`` (default ``root/video`` if it exists, else ``root``). Labels index
    the sorted set of every label in the CSV, so they agree between splits. Clips that
    were never downloaded are counted in ``num_missing``, not as unreadable."""

    name = "vggsound"

    def __init__(
        self,
        root: str | Path,
        *,
        split: str | None = "train",
        csv_path: str | Path | None = None,
        video_dir: str | Path | None = None,
        name_formats: Sequence[str] = DEFAULT_NAME_FORMATS,
        extensions: Sequence[str] = DEFAULT_EXTENSIONS,
        max_missing_fraction: float = 1.0,
        sample_rate: int = 44100,
        num_samples: int | None = None,
        **kwargs: Any,
    ):
        root = Path(root)
        if split is not None and split not in SPLITS:
            raise DatasetError(f"vggsound: split must be one of {SPLITS} or None, got {split!r}")
        csv_path = Path(csv_path) if csv_path is not None else root / "vggsound.csv"
        clips = ClipFinder(self.name, root, video_dir, "video", name_formats, extensions, ytid="x", start=0, end=10)
        rows, bad = _read_rows(csv_path)
        class_names = sorted({clean_class_name(label) for _line, _y, _s, label, _sp in rows})
        label_of = {name: i for i, name in enumerate(class_names)}
        records = []
        for _line, ytid, start, label, row_split in rows:
            if split is not None and row_split != split:
                continue
            path = clips.find(f"{ytid}_{start:06d}", ytid=ytid, start=start, end=start + 10)
            if path is None:
                continue
            name = clean_class_name(label)
            is_video = Path(path).suffix.lower() in VIDEO_EXTENSIONS
            records.append(
                Record(
                    key=f"vggsound/{ytid}_{start:06d}",
                    audio=path,
                    label=label_of[name],
                    class_name=name,
                    image=path if is_video else None,
                    image_is_video=is_video,
                )
            )
        super().__init__(
            clips,
            records,
            class_names,
            bad,
            max_missing_fraction=max_missing_fraction,
            sample_rate=sample_rate,
            num_samples=num_samples,
            **kwargs,
        )


def _read_rows(path: Path) -> tuple[list[tuple[int, str, int, str, str]], list[str]]:
    """``vggsound.csv`` → ``[(line, ytid, start, label, split)]`` and rejected-row reasons."""
    if not path.is_file():
        raise DatasetError(f"vggsound: {path} not found")
    rows, bad = [], []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        for row in reader:
            line = reader.line_num
            if not row or not "".join(row).strip():
                continue
            if len(row) != 4:
                bad.append(
                    f"{path.name} row {line}: expected 4 fields (youtube_id, start_seconds, label, "
                    f"split), got {len(row)}"
                )
                continue
            ytid, start, label, row_split = (v.strip() for v in row)
            try:
                start_i = int(float(start))
            except ValueError:
                bad.append(f"{path.name} row {line}: unparsable start_seconds {start!r}")
                continue
            if not ytid or not label or row_split not in SPLITS:
                bad.append(f"{path.name} row {line}: empty youtube_id/label or split {row_split!r} not in {SPLITS}")
                continue
            rows.append((line, ytid, start_i, label, row_split))
    return rows, bad
