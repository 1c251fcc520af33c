"""Supplementary Table 1: cosine similarity between the source latent w_s, the
sound-guided result w_a and the text-guided result w_t, per attribute and averaged."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from sound2img.evaluation.attribute_edits import AttributeEdits
from sound2img.evaluation.report import PAPER_SUPP_TABLE1, Report, markdown_table, provenance_markdown

PAIRS = (("s", "a"), ("s", "t"), ("a", "t"))


def pair_name(pair: tuple[str, str]) -> str:
    """``("s", "a")`` → ``"w_s,w_a"`` (the table's row label)."""
    return f"w_{pair[0]},w_{pair[1]}"


def flatten_ws(ws: torch.Tensor) -> torch.Tensor:
    """``ws [B,num_ws,w_dim]`` → ``[B,num_ws*w_dim]``: one vector per sample, as the table
    compares whole W+ codes."""
    if ws.ndim != 3:
        raise ValueError(f"expected ws [B,num_ws,w_dim], got shape {tuple(ws.shape)}")
    return ws.reshape(ws.shape[0], -1)


def latent_cosines(ws_s: torch.Tensor, ws_a: torch.Tensor, ws_t: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample cosine of each pair of ``ws_* [B,num_ws,w_dim]`` (same sources, same order).
    Returns ``{"w_s,w_a": [B], "w_s,w_t": [B], "w_a,w_t": [B]}`` (float64, on the CPU)."""
    if not (ws_s.shape == ws_a.shape == ws_t.shape):
        raise ValueError(f"latent shapes differ: {tuple(ws_s.shape)}, {tuple(ws_a.shape)}, {tuple(ws_t.shape)}")
    flat = {k: flatten_ws(v.detach()).cpu().double() for k, v in (("s", ws_s), ("a", ws_a), ("t", ws_t))}
    return {pair_name(p): F.cosine_similarity(flat[p[0]], flat[p[1]], dim=-1) for p in PAIRS}


def summarise_latent_cosines(per_attribute: Mapping[str, Mapping[str, torch.Tensor]]) -> dict:
    """Mean and (population) std per attribute and pair, plus the paper's "Average" column:
    the mean of the per-attribute means and the mean of the per-attribute stds (this is
    how the supplement's averages are formed — they reproduce from its columns).

    ``per_attribute``: ``{attribute: latent_cosines(...)}``. Returns
    ``{"attributes": {attr: {pair: {"mean", "std", "n"}}}, "average": {pair: {"mean", "std"}}}``.
    """
    if not per_attribute:
        raise ValueError("no attributes to summarise")
    table: dict = {"attributes": {}, "average": {}}
    for attr, cos in per_attribute.items():
        table["attributes"][attr] = {
            pair: {"mean": float(v.mean()), "std": float(v.std(unbiased=False)), "n": int(v.numel())}
            for pair, v in cos.items()
        }
    for p in PAIRS:
        name = pair_name(p)
        rows = [table["attributes"][a][name] for a in table["attributes"]]
        table["average"][name] = {
            "mean": sum(r["mean"] for r in rows) / len(rows),
            "std": sum(r["std"] for r in rows) / len(rows),
        }
    return table


def supp_table1(edits: Sequence[AttributeEdits]) -> dict:
    """Supplement Table 1 from the edits of each attribute (same sources for w_a and w_t)."""
    return summarise_latent_cosines(
        {e.attribute.name: latent_cosines(e.ws_source, e.ws_audio, e.ws_text) for e in edits}
    )


def supp_table1_report(summary: dict, provenance: dict, n_latents: int) -> Report:
    """Markdown + JSON: per pair, our mean/std per attribute and average, the paper's
    beneath (attributes matched by name; the paper's average always shown)."""
    attrs = list(summary["attributes"])
    rows = []
    for p in PAIRS:
        pair = pair_name(p)
        paper = PAPER_SUPP_TABLE1[pair]
        for stat in ("mean", "std"):
            ours = [f"{summary['attributes'][a][pair][stat]:.5f}" for a in attrs]
            rows.append([f"({pair})", f"{stat} (this run)", *ours, f"{summary['average'][pair][stat]:.5f}"])
            theirs = [paper["attributes"].get(a, {}).get(stat) for a in attrs]
            rows.append(
                [
                    "",
                    f"{stat} (paper)",
                    *[None if v is None else f"{v:.5f}" for v in theirs],
                    f"{paper['average'][stat]:.5f}",
                ]
            )
    md = [
        "# Supplement Table 1 — cosine similarity between latent codes",
        "",
        f"w_s: source, w_a: sound-guided result, w_t: text-guided result; W+ flattened per sample; "
        f"mean and std over {n_latents} source latents per attribute. Average = mean of the attribute "
        "columns (as the paper's).",
        "",
        markdown_table(["latent codes", "metric", *attrs, "Average"], rows, numeric_from=2),
        "",
        provenance_markdown(provenance),
    ]
    return Report(
        "supp_table1",
        "\n".join(md),
        {
            "table": "supp_table1",
            "n_latents": n_latents,
            "ours": summary,
            "paper": PAPER_SUPP_TABLE1,
            "provenance": provenance,
        },
    )
