"""A generic CSV manifest for your own data: columns ``audio`` (path relative to the
manifest's folder, or absolute), ``text``, optional ``image`` (an image file, or a video
whose middle frame is used) and optional ``label`` (a class name)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sound2img.data.base import AudioClipDataset, Record, read_csv_table
from sound2img.data.vggsound import VIDEO_EXTENSIONS


def _sort_names(names: set[str]) -> list[str]:
    """Class names in a stable order: numerically when every name is an integer."""
    if names and all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


class ManifestDataset(AudioClipDataset):
    """Rows of ``manifest`` (a CSV with a header). ``text`` is used verbatim as the prompt
    (EDA-augmented when ``text_augment``). Classes are the distinct ``label`` values, or the
    distinct texts when there is no ``label`` column; ``label`` indexes ``class_names``.
    Rows with an empty ``audio`` or ``text`` are rejected and counted with their line."""

    name = "manifest"

    def __init__(
        self,
        manifest: str | Path,
        *,
        sample_rate: int = 44100,
        num_samples: int | None = None,
        clip_seconds: float = 10.0,
        **kwargs: Any,
    ):
        manifest = Path(manifest)
        table = read_csv_table(manifest, ("audio", "text"), self.name)
        base = manifest.resolve().parent
        has_label = any("label" in row for _line, row in table)
        rows, bad = [], []
        for line, row in table:
            audio, text = row.get("audio") or "", row.get("text") or ""
            label = (row.get("label") or "") if has_label else text
            if not audio or not text or not label:
                bad.append(f"{manifest.name} row {line}: empty audio, text{' or label' if has_label else ''}")
                continue
            rows.append((line, audio, text, row.get("image") or None, label))
        class_names = _sort_names({label for *_rest, label in rows})
        label_of = {name: i for i, name in enumerate(class_names)}
        records, seen = [], {}
        for _line, audio, text, image, label in rows:
            seen[audio] = seen.get(audio, 0) + 1
            key = f"manifest/{audio}" + (f"#{seen[audio]}" if seen[audio] > 1 else "")
            image_path = str(base / image) if image else None
            records.append(
                Record(
                    key=key,
                    audio=str(base / audio),
                    label=label_of[label],
                    class_name=label,
                    text=text,
                    image=image_path,
                    image_is_video=bool(image) and Path(image).suffix.lower() in VIDEO_EXTENSIONS,
                )
            )
        super().__init__(
            records,
            class_names,
            sample_rate=sample_rate,
            num_samples=num_samples or round(clip_seconds * sample_rate),
            bad_rows=bad,
            **kwargs,
        )
