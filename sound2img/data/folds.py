"""The two fold-organised evaluation sets of the paper (docs/method.md §9): ESC-50
(``meta/esc50.csv`` + ``audio/*.wav``, folds 1–5) and UrbanSound8K
(``metadata/UrbanSound8K.csv`` + ``audio/fold{N}/*.wav``, folds 1–10)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sound2img.data.base import AudioClipDataset, Record, clean_class_name, parse_folds, read_csv_table


def _int(value: str | None) -> int:
    if value is None or value == "":
        raise ValueError("empty")
    return int(value)


def _class_table(ids_names: dict[int, str], size: int) -> list[str]:
    """``{id: name}`` → a list indexed by id; ids absent from the metadata get ``class {id}``."""
    return [ids_names.get(i, f"class {i}") for i in range(size)]


# UrbanSound8K's fixed classID → class table (its README); rows that disagree are rejected.
US8K_CLASSES = (
    "air_conditioner",
    "car_horn",
    "children_playing",
    "dog_bark",
    "drilling",
    "engine_idling",
    "gun_shot",
    "jackhammer",
    "siren",
    "street_music",
)
ESC50_NUM_CLASSES = 50


class ESC50Dataset(AudioClipDataset):
    """ESC-50: 2,000 five-second clips, 50 classes, 5 folds (Piczak 2015).

    ``root`` holds ``meta/esc50.csv`` (``filename,fold,target,category,esc10,src_file,take``)
    and ``audio/``. ``esc10_only`` keeps the ESC-10 subset (labels stay ESC-50 targets)."""

    name = "esc50"
    clip_seconds = 5.0

    def __init__(
        self,
        root: str | Path,
        *,
        folds: Sequence[int] | int | None = None,
        esc10_only: bool = False,
        sample_rate: int = 44100,
        num_samples: int | None = None,
        **kwargs: Any,
    ):
        root = Path(root)
        table = read_csv_table(root / "meta" / "esc50.csv", ("filename", "fold", "target", "category"), self.name)
        wanted = parse_folds(folds, range(1, 6), self.name)
        names: dict[int, str] = {}
        records, bad = [], []
        for line, row in table:
            try:
                fold, target = _int(row.get("fold")), _int(row.get("target"))
            except ValueError:
                bad.append(f"esc50.csv row {line}: unparsable fold {row.get('fold')!r} or target {row.get('target')!r}")
                continue
            category, filename = row.get("category") or "", row.get("filename") or ""
            if fold not in range(1, 6) or target not in range(ESC50_NUM_CLASSES) or not category or not filename:
                bad.append(
                    f"esc50.csv row {line}: fold {fold} not in 1..5, unknown target {target} (0..49) or empty field"
                )
                continue
            if names.setdefault(target, clean_class_name(category)) != clean_class_name(category):
                bad.append(f"esc50.csv row {line}: target {target} is {category!r} here but {names[target]!r} earlier")
                continue
            if fold not in wanted or (esc10_only and (row.get("esc10") or "").lower() != "true"):
                continue
            records.append(
                Record(
                    key=f"esc50/{filename}",
                    audio=str(root / "audio" / filename),
                    label=target,
                    class_name=clean_class_name(category),
                )
            )
        super().__init__(
            records,
            _class_table(names, ESC50_NUM_CLASSES),
            sample_rate=sample_rate,
            num_samples=num_samples or round(self.clip_seconds * sample_rate),
            bad_rows=bad,
            **kwargs,
        )


class UrbanSound8KDataset(AudioClipDataset):
    """UrbanSound8K: 8,732 clips of at most 4 s, 10 classes, 10 folds (Salamon et al. 2014).

    ``root`` holds ``metadata/UrbanSound8K.csv``
    (``slice_file_name,fsID,start,end,salience,fold,classID,class``) and ``audio/fold{N}/``."""

    name = "us8k"
    clip_seconds = 4.0

    def __init__(
        self,
        root: str | Path,
        *,
        folds: Sequence[int] | int | None = None,
        sample_rate: int = 44100,
        num_samples: int | None = None,
        **kwargs: Any,
    ):
        root = Path(root)
        table = read_csv_table(
            root / "metadata" / "UrbanSound8K.csv", ("slice_file_name", "fold", "classID", "class"), self.name
        )
        wanted = parse_folds(folds, range(1, 11), self.name)
        records, bad = [], []
        for line, row in table:
            try:
                fold, class_id = _int(row.get("fold")), _int(row.get("classID"))
            except ValueError:
                bad.append(
                    f"UrbanSound8K.csv row {line}: unparsable fold {row.get('fold')!r} "
                    f"or classID {row.get('classID')!r}"
                )
                continue
            cls, filename = row.get("class") or "", row.get("slice_file_name") or ""
            if fold not in range(1, 11) or not filename:
                bad.append(f"UrbanSound8K.csv row {line}: fold {fold} not in 1..10 or empty file name")
                continue
            if class_id not in range(len(US8K_CLASSES)) or cls != US8K_CLASSES[class_id]:
                bad.append(
                    f"UrbanSound8K.csv row {line}: unknown classID {class_id} / class {cls!r} "
                    "(UrbanSound8K has classIDs 0..9)"
                )
                continue
            if fold not in wanted:
                continue
            records.append(
                Record(
                    key=f"us8k/fold{fold}/{filename}",
                    audio=str(root / "audio" / f"fold{fold}" / filename),
                    label=class_id,
                    class_name=clean_class_name(cls),
                )
            )
        super().__init__(
            records,
            [clean_class_name(c) for c in US8K_CLASSES],
            sample_rate=sample_rate,
            num_samples=num_samples or round(self.clip_seconds * sample_rate),
            bad_rows=bad,
            **kwargs,
        )
