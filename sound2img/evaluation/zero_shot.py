"""Zero-shot audio classification (docs/method.md §1.6, §9): class prompts through templates into
CLIP's text tower (``data.prompts.encode_class_texts``), scored by
``models.embedding.zero_shot_logits`` (the scorer training's validation uses too),
accuracy per fold."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sound2img.data.prompts import encode_class_texts
from sound2img.errors import UserInputError
from sound2img.evaluation.embed import DatasetSpec, encode_folds
from sound2img.models.embedding import zero_shot_logits


def accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of ``pred [N]`` equal to ``labels [N]``."""
    if pred.numel() == 0:
        raise ValueError("accuracy of an empty set")
    return float((pred.cpu() == labels.cpu()).float().mean())


def evaluate_zero_shot(
    audio_emb: torch.Tensor, labels: torch.Tensor, folds: torch.Tensor, text_emb: torch.Tensor
) -> dict:
    """Zero-shot accuracy per fold and their mean (the paper reports the mean over the
    dataset's official folds).

    ``audio_emb [N,D]``, ``labels [N]`` (class index into ``text_emb``), ``folds [N]``,
    ``text_emb [C,D]``. Returns ``{"per_fold": {fold: acc}, "mean": float,
    "overall": float, "n": int, "n_per_fold": {fold: int}}``.
    """
    pred = zero_shot_logits(audio_emb, text_emb).argmax(dim=-1).cpu()
    labels, folds = labels.cpu(), folds.cpu()
    per_fold, counts = {}, {}
    for f in sorted(int(v) for v in folds.unique()):
        m = folds == f
        per_fold[f] = accuracy(pred[m], labels[m])
        counts[f] = int(m.sum())
    return {
        "per_fold": per_fold,
        "mean": sum(per_fold.values()) / len(per_fold),
        "overall": accuracy(pred, labels),
        "n": int(labels.numel()),
        "n_per_fold": counts,
    }


def run_zero_shot(
    datasets: Sequence[DatasetSpec],
    encoder: torch.nn.Module,
    frontend: torch.nn.Module,
    clip,
    *,
    templates: Sequence[str] | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> dict:
    """The zero-shot table end to end: embed each dataset's folds, encode its class
    prompts (``templates`` default: ``zero_shot_templates()``), score.

    Returns ``{dataset name: evaluate_zero_shot(...) | {"data": provenance line}}``."""
    for t in templates or ():
        if not isinstance(t, str) or "{}" not in t:
            raise UserInputError(f"zero-shot template {t!r} has no '{{}}' for the class name")
    results = {}
    for spec in datasets:
        emb = encode_folds(
            spec, encoder, frontend, batch_size=batch_size, num_workers=num_workers, device=device, progress=progress
        )
        text_emb = encode_class_texts(clip.encode_text, emb.class_names, templates)
        results[spec.name] = evaluate_zero_shot(emb.audio_emb, emb.labels, emb.folds, text_emb) | {
            "data": emb.describe(spec),
            "num_classes": len(emb.class_names),
        }
    return results
