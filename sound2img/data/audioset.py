"""AudioSet (Gemmeke et al. 2017) balanced / unbalanced / eval segments: the official
segment CSVs + ``class_labels_indices.csv``, audio files named by the usual downloaders
(``{YTID}.wav``, ``Y{YTID}.wav``, ...). Text comes from all the clip's label names (docs/method.md §1)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sound2img.data.base import DatasetError, Record, read_csv_table
from sound2img.data.clip_index import ClipFinder, ScrapedClipDataset

SUBSETS = {
    "balanced_train": "balanced_train_segments.csv",
    "unbalanced_train": "unbalanced_train_segments.csv",
    "eval": "eval_segments.csv",
}
# ``{YTID}.wav`` (most download scripts), ``Y{YTID}.wav`` (the PANNs-style packs people
# share), and segment-stamped variants.
DEFAULT_NAME_FORMATS = (
    "{ytid}",
    "Y{ytid}",
    "{ytid}_{start_int}_{end_int}",
    "{ytid}_{start_int}",
    "Y{ytid}_{start:.3f}_{end:.3f}",
    "{ytid}_{start:.3f}_{end:.3f}",
)
DEFAULT_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")


def load_audioset_labels(path: str | Path) -> tuple[list[str], dict[str, int]]:
    """``class_labels_indices.csv`` (``index,mid,display_name``) → (display names by index,
    ``{mid: index}``); a bad row raises ``DatasetError`` with its line number."""
    rows = read_csv_table(path, ("index", "mid", "display_name"), "audioset")
    names: dict[int, str] = {}
    mids: dict[str, int] = {}
    for line, row in rows:
        try:
            idx = int(row["index"])
        except (TypeError, ValueError):
            raise DatasetError(f"audioset: {path} row {line}: unparsable index {row.get('index')!r}") from None
        if idx < 0 or idx in names or not row.get("mid") or not row.get("display_name"):
            raise DatasetError(f"audioset: {path} row {line}: negative or repeated index, or empty mid/name")
        names[idx] = row["display_name"]
        mids[row["mid"]] = idx
    if sorted(names) != list(range(len(names))):
        raise DatasetError(f"audioset: {path}: indices are not 0..{len(names) - 1}")
    return [names[i] for i in range(len(names))], mids


class AudioSetDataset(ScrapedClipDataset):
    """AudioSet segments. ``root`` holds the segment CSVs and ``class_labels_indices.csv``;
    audio is searched recursively under ``audio_dir`` (default ``root/audio`` if it exists,
    else ``root``). Clips that were never downloaded are counted in ``num_missing`` (at most
    ``max_missing_fraction`` of the rows), not as unreadable.

    Multi-label: ``text`` is a template filled with all display names joined by ", ";
    ``label`` / ``class_name`` are the first label's."""

    name = "audioset"

    def __init__(
        self,
        root: str | Path,
        *,
        subset: str = "balanced_train",
        segments_csv: str | Path | None = None,  # overrides ``subset``
        labels_csv: str | Path | None = None,  # default root/class_labels_indices.csv
        audio_dir: str | Path | None = None,
        name_formats: Sequence[str] = DEFAULT_NAME_FORMATS,
        extensions: Sequence[str] = DEFAULT_EXTENSIONS,
        max_missing_fraction: float = 1.0,
        sample_rate: int = 44100,
        num_samples: int | None = None,
        **kwargs: Any,
    ):
        root = Path(root)
        if segments_csv is None:
            if subset not in SUBSETS:
                raise DatasetError(f"audioset: subset must be one of {sorted(SUBSETS)}, got {subset!r}")
            segments_csv = root / SUBSETS[subset]
        class_names, mids = load_audioset_labels(labels_csv or root / "class_labels_indices.csv")
        clips = ClipFinder(
            self.name,
            root,
            audio_dir,
            "audio",
            name_formats,
            extensions,
            ytid="x",
            start=0.0,
            end=10.0,
            start_int=0,
            end_int=10,
        )
        records, bad = [], []
        for line, row in _read_segments(segments_csv):
            if len(row) != 4:
                bad.append(
                    f"{Path(segments_csv).name} row {line}: expected 4 fields "
                    f"(YTID, start_seconds, end_seconds, positive_labels), got {len(row)}"
                )
                continue
            ytid, start_s, end_s, labels = (v.strip() for v in row)
            try:
                start, end = float(start_s), float(end_s)
            except ValueError:
                bad.append(f"{Path(segments_csv).name} row {line}: unparsable start/end {start_s!r}, {end_s!r}")
                continue
            label_mids = [m.strip() for m in labels.split(",") if m.strip()]
            unknown = [m for m in label_mids if m not in mids]
            if not ytid or not label_mids or unknown:
                bad.append(f"{Path(segments_csv).name} row {line}: empty YTID/labels or unknown label id(s) {unknown}")
                continue
            path = clips.find(ytid, ytid=ytid, start=start, end=end, start_int=int(start), end_int=int(end))
            if path is None:
                continue
            names = [class_names[mids[m]] for m in label_mids]
            records.append(
                Record(
                    key=f"audioset/{ytid}_{int(start)}",
                    audio=path,
                    label=mids[label_mids[0]],
                    class_name=names[0],
                    prompt_name=", ".join(names),
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


def _read_segments(path: str | Path) -> list[tuple[int, list[str]]]:
    """Segment CSV rows with their line numbers; ``#`` comment lines and blank lines dropped."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"audioset: segment list {path} not found")
    out = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, skipinitialspace=True)
        for row in reader:
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            out.append((reader.line_num, row))
    return out
