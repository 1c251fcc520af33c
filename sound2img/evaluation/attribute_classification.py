"""Supplementary Table 2: how recognisable each attribute is in the manipulated images —
a logistic-regression classifier over CLIP image features of the results, per method."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sound2img.errors import UserInputError
from sound2img.evaluation.attribute_edits import AttributeEdits
from sound2img.evaluation.linear_probe import build_probe, single_blas_thread
from sound2img.evaluation.report import PAPER_SUPP_TABLE2, Report, markdown_table, provenance_markdown


def attribute_classification(
    features,
    labels,
    sources,
    attribute_names: Sequence[str],
    *,
    n_splits: int = 5,
    C: float = 1.0,
    max_iter: int = 1000,
    seed: int = 0,
) -> dict:
    """Cross-validated attribute accuracy, split by *source latent*.

    ``features [N,D]`` (CLIP image features of the manipulated images), ``labels [N]``
    (attribute index), ``sources [N]`` (index of the source latent each result came from).
    Every sample is predicted by a classifier trained on the other splits, and all edits of
    one source latent stay in the same split, so the classifier cannot recognise the source
    image instead of the attribute. The per-attribute numbers therefore have the same
    denominator as the paper's (all N latents of that attribute).

    Returns ``{"per_attribute": {name: acc}, "average": mean of per-attribute accuracies,
    "overall": float, "n": int, "n_splits": int}``.
    """
    from sklearn.model_selection import GroupKFold, cross_val_predict

    to_np = lambda x: x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)  # noqa: E731
    X, y, g = to_np(features).astype(np.float64), to_np(labels), to_np(sources)
    if not (len(X) == len(y) == len(g)):
        raise ValueError(f"attribute classification: {len(X)} features, {len(y)} labels, {len(g)} source ids")
    n_groups = len(np.unique(g))
    if n_groups < 2 or len(np.unique(y)) < 2:
        raise UserInputError("attribute classification needs at least 2 attributes and 2 source latents")
    k = min(n_splits, n_groups)
    with single_blas_thread():
        pred = cross_val_predict(build_probe(C, max_iter, seed), X, y, groups=g, cv=GroupKFold(n_splits=k))
    per_attr = {name: float((pred[y == i] == i).mean()) for i, name in enumerate(attribute_names) if (y == i).any()}
    return {
        "per_attribute": per_attr,
        "average": float(np.mean(list(per_attr.values()))),
        "overall": float((pred == y).mean()),
        "n": int(len(y)),
        "n_splits": k,
    }


def supp_table2(edits: Sequence[AttributeEdits], *, n_splits: int = 5, C: float = 1.0, seed: int = 0) -> dict:
    """Supplement Table 2 from the edits of each attribute: one classifier per method over
    the CLIP image features of its results. ``{"StyleCLIP": ..., "ours": ...}`` — the
    text-guided edits through our optimiser are the StyleCLIP-style latent optimisation."""
    names = [e.attribute.name for e in edits]
    labels = torch.cat([torch.full((len(e.ws_source),), i) for i, e in enumerate(edits)])
    sources = torch.cat([torch.arange(len(e.ws_source)) for e in edits])
    out = {}
    for method, key in (("StyleCLIP", "feat_text"), ("ours", "feat_audio")):
        feats = torch.cat([getattr(e, key) for e in edits])
        out[method] = attribute_classification(feats, labels, sources, names, n_splits=n_splits, C=C, seed=seed)
    return out


def supp_table2_report(results: dict, provenance: dict, n_latents: int) -> Report:
    """Markdown + JSON: per method, the paper's row and ours (TediGAN: paper only, not run)."""
    attrs = list(results["ours"]["per_attribute"])
    rows = []
    for method in ("TediGAN", "StyleCLIP", "ours"):
        paper = PAPER_SUPP_TABLE2[method]
        rows.append([f"{method} (paper)", *[_f3(paper.get(a)) for a in attrs], _f3(paper["average"])])
        if method in results:
            r = results[method]
            rows.append([f"**{method} (this run)**", *[_f3(r["per_attribute"][a]) for a in attrs], _f3(r["average"])])
        else:
            rows.append([f"{method} (this run)", *["not run"] * len(attrs), "not run"])
    k = results["ours"]["n_splits"]
    md = [
        "# Supplement Table 2 — attribute classification of manipulated images",
        "",
        f"{n_latents} source latents per attribute, edited by text (StyleCLIP-style latent optimisation, our "
        "optimiser) and by sound (ours). Features: CLIP image embeddings of the results. Classifier: "
        f"standardised logistic regression, {k}-fold cross-validation grouped by source latent (all edits of "
        "a source are in the same split), so every latent is predicted once; accuracy per attribute and their "
        "mean. TediGAN is not run here (it needs its own inverted-GAN pipeline): the paper's number only.",
        "",
        markdown_table(["method", *attrs, "Average"], rows),
        "",
        provenance_markdown(provenance),
    ]
    return Report(
        "supp_table2",
        "\n".join(md),
        {
            "table": "supp_table2",
            "n_latents": n_latents,
            "ours": results,
            "not_run": ["TediGAN"],
            "paper": PAPER_SUPP_TABLE2,
            "provenance": provenance,
        },
    )


def _f3(x: float | None) -> str | None:
    return None if x is None else f"{x:.3f}"
