"""What a reproduction writes: the paper's numbers (docs/method.md §9),
Markdown tables with ours beside them, a provenance line, JSON, PNGs — all atomically."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sound2img.utils.files import atomic_write_bytes, atomic_write_text, check_can_write

DISPLAY_NAMES = {"esc50": "ESC-50", "us8k": "US8K"}
ATTRIBUTES = (
    "giggling",
    "sobbing",
    "nose blowing",
    "fire crackling",
    "wind noise",
    "underwater bubbling",
    "explosion",
    "thunderstorm",
)

# The paper's zero-shot and linear-probe accuracy (%), ESC-50 / US8K (docs/method.md §9).
PAPER_CLASSIFICATION = {
    "zeroshot": [
        ("Wav2CLIP zero-shot", 41.4, 40.4),
        ("AudioCLIP zero-shot", 69.4, 68.8),
        ("ours w/o a↔â, zero-shot", 49.4, 45.6),
        ("ours zero-shot", 57.8, 45.7),
    ],
    "linear_probe": [
        ("ResNet-50, supervised", 66.8, 71.3),
        ("ours w/o a↔â, logistic regression", 58.7, 63.3),
        ("ours, logistic regression on frozen embeddings", 72.2, 66.8),
    ],
}

# Supplement Table 1: {pair: {attribute: (mean, std)}} and the Average column.
_T1 = {
    "w_s,w_a": (
        [0.99528, 0.99510, 0.99448, 0.97907, 0.97679, 0.98040, 0.97956, 0.98479],
        [0.00178, 0.00162, 0.00242, 0.00786, 0.00829, 0.00614, 0.00698, 0.00512],
        (0.98568, 0.00502),
    ),
    "w_s,w_t": (
        [0.99866, 0.99849, 0.99779, 0.99002, 0.99294, 0.99024, 0.99117, 0.99136],
        [0.00067, 0.00065, 0.00097, 0.00379, 0.00322, 0.00318, 0.00321, 0.00340],
        (0.99383, 0.00238),
    ),
    "w_a,w_t": (
        [0.99554, 0.99510, 0.99448, 0.97511, 0.97307, 0.97695, 0.97497, 0.97843],
        [0.00166, 0.00162, 0.00242, 0.00972, 0.00935, 0.00703, 0.00827, 0.00713],
        (0.98295, 0.00590),
    ),
}
PAPER_SUPP_TABLE1 = {
    pair: {
        "attributes": {a: {"mean": m, "std": s} for a, m, s in zip(ATTRIBUTES, means, stds)},
        "average": {"mean": avg[0], "std": avg[1]},
    }
    for pair, (means, stds, avg) in _T1.items()
}

# Supplement Table 2: attribute accuracy of a logistic regression on CLIP image features.
PAPER_SUPP_TABLE2 = {
    "TediGAN": dict(zip(ATTRIBUTES, [0.967, 0.940, 0.947, 0.686, 0.940, 0.727, 0.858, 0.720])) | {"average": 0.848},
    "StyleCLIP": dict(zip(ATTRIBUTES, [0.933, 0.913, 0.866, 0.846, 0.953, 0.933, 0.987, 0.987])) | {"average": 0.927},
    "ours": dict(zip(ATTRIBUTES, [0.987, 0.993, 0.966, 0.953, 0.993, 0.987, 0.993, 0.993])) | {"average": 0.983},
}

TINY_WARNING = (
    "> **preset=tiny**: small random networks — an install check of the pipeline, "
    "not a result. Do not compare these numbers with the paper's."
)


@dataclass
class Report:
    """One table's or figure's output: ``<name>.md``, ``<name>.json`` and PNGs (bytes,
    already encoded, so nothing is written until everything has been computed)."""

    name: str
    markdown: str
    data: dict
    pngs: dict[str, bytes] = field(default_factory=dict)

    def paths(self, out_dir: str | Path) -> list[Path]:
        out = Path(out_dir)
        return [out / f"{self.name}.md", out / f"{self.name}.json", *(out / f for f in self.pngs)]


def save_report(report: Report, out_dir: str | Path, overwrite: bool = False) -> list[Path]:
    """Write every file of ``report`` into ``out_dir`` atomically; refuses (before writing
    anything) when one exists and ``overwrite`` is false. Returns the paths written."""
    paths = report.paths(out_dir)
    check_can_write(paths, overwrite)
    for name, data in report.pngs.items():
        atomic_write_bytes(Path(out_dir) / name, data)
    atomic_write_text(paths[1], json.dumps(_jsonable(report.data), indent=2, sort_keys=False) + "\n")
    atomic_write_text(paths[0], report.markdown.rstrip() + "\n")
    return paths


def _jsonable(x: Any) -> Any:
    """Dict keys as strings, NaN as null, tuples as lists — strict JSON."""
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if hasattr(x, "item") and callable(x.item):  # numpy / torch scalars
        return _jsonable(x.item())
    return x


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric_from: int = 1) -> str:
    """A GitHub Markdown table; columns from ``numeric_from`` on are right-aligned."""
    align = ["---" if i < numeric_from else "--:" for i in range(len(headers))]
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join("–" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def pct(x: float | None) -> str | None:
    """Accuracy in [0,1] → ``"57.8"`` (the paper's format)."""
    return None if x is None else f"{100 * x:.1f}"


def provenance_markdown(prov: Mapping[str, Any]) -> str:
    """The "what was used" paragraph from a provenance dict with keys ``weights`` (role →
    description), ``data`` (list of descriptions), ``frontend``, ``clip_preprocess``,
    ``device``, and ``tiny``."""
    lines = []
    if prov.get("tiny"):
        lines.append(TINY_WARNING)
        lines.append("")
    weights = prov.get("weights") or {}
    if weights:
        lines.append("- Weights: " + "; ".join(f"{role}: {desc}" for role, desc in weights.items()))
    for d in prov.get("data") or []:
        lines.append(f"- Data: {d}")
    for key, label in (
        ("frontend", "Audio front end"),
        ("clip_preprocess", "CLIP preprocessing of generator images"),
        ("device", "Device"),
    ):
        if prov.get(key):
            lines.append(f"- {label}: {prov[key]}")
    return "\n".join(lines)


def _distinct(value: Any) -> Any:
    """A per-fold mapping shown as its distinct values (``{1: 0.1, 2: 0.1}`` → ``0.1``)."""
    if isinstance(value, Mapping):
        return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in dict.fromkeys(value.values()))
    return value


def classification_report(
    table: str, title: str, results: dict, provenance: dict, extra_columns: Sequence[str] = (), method: str = ""
) -> Report:
    """Markdown + JSON of a zero-shot or linear-probe run: the paper's rows (docs/method.md §9)
    with ours beneath them, then accuracy per fold. ``table``: ``zeroshot`` or
    ``linear_probe``; ``results``: ``{dataset name: {"per_fold", "mean", ...}}``."""
    names = ("esc50", "us8k")
    rows = [[f"{model} (paper)", f"{esc:.1f}", f"{us:.1f}"] for model, esc, us in PAPER_CLASSIFICATION[table]]
    rows.append(["**this run**"] + [pct(results[n]["mean"]) if n in results else "not run" for n in names])
    md = [
        f"# {title}",
        "",
        markdown_table(["model", "ESC-50", "US8K"], rows),
        "",
        f"Accuracy (%), mean over the official folds. {method}".rstrip(),
    ]
    for n, res in results.items():
        folds = list(res["per_fold"])
        cols = ["dataset"] + [f"fold {f}" for f in folds] + ["mean"] + list(extra_columns)
        row = [DISPLAY_NAMES.get(n, n)] + [pct(res["per_fold"][f]) for f in folds] + [pct(res["mean"])]
        row += [_distinct(res.get(c)) for c in extra_columns]
        md += ["", markdown_table(cols, [row])]
    md += ["", provenance_markdown(provenance | {"data": [r["data"] for r in results.values()]})]
    paper = {model: {"esc50": esc / 100, "us8k": us / 100} for model, esc, us in PAPER_CLASSIFICATION[table]}
    return Report(table, "\n".join(md), {"table": table, "paper": paper, "ours": results, "provenance": provenance})
