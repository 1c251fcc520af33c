"""Zero-shot audio classification (docs/method.md §1.6, §9): class prompts through templates into
CLIP's text tower (``encode_class_texts``, shared with training's validation), cosine
against L2-normalised audio embeddings, accuracy per fold."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from sound2img.errors import UserInputError
from sound2img.evaluation.embed import DatasetSpec, encode_folds

# Unit-norm check tolerance: embeddings are float32, so 1e-3 is loose enough for any
# device and tight enough to catch a raw (un-normalised) feature, whose norm is arbitrary.
_NORM_TOL = 1e-3


def _unit(x: torch.Tensor, what: str) -> torch.Tensor:
    """Normalise rows and check they really are unit length afterwards (a zero vector
    or a NaN would otherwise pass silently)."""
    if x.ndim != 2:
        raise ValueError(f"{what}: expected [N,D], got shape {tuple(x.shape)}")
    x = F.normalize(x.float(), dim=-1)
    norms = x.norm(dim=-1)
    if not torch.all((norms - 1).abs() < _NORM_TOL):
        raise ValueError(f"{what}: rows are not unit-norm after normalisation (zero or non-finite features)")
    return x


def zero_shot_logits(audio_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """Cosine similarities ``[N,C]`` between ``audio_emb [N,D]`` and ``text_emb [C,D]``.

    Both sides are normalised here, whatever the caller passed, so un-normalised features
    (the cause of a 3 % ESC-50 result with the authors' code) cannot reach the argmax.
    """
    a = _unit(audio_emb, "audio embeddings")
    t = _unit(text_emb.to(a.device), "text embeddings")
    if a.shape[1] != t.shape[1]:
        raise UserInputError(f"zero-shot: audio embedding width {a.shape[1]} != text embedding width {t.shape[1]} "
                             "(encoder aligned to a different CLIP model?)")
    return a @ t.T


def accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of ``pred [N]`` equal to ``labels [N]``."""
    if pred.numel() == 0:
        raise ValueError("accuracy of an empty set")
    return float((pred.cpu() == labels.cpu()).float().mean())


def evaluate_zero_shot(audio_emb: torch.Tensor, labels: torch.Tensor, folds: torch.Tensor,
                       text_emb: torch.Tensor) -> dict:
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
    return {"per_fold": per_fold, "mean": sum(per_fold.values()) / len(per_fold),
            "overall": accuracy(pred, labels), "n": int(labels.numel()), "n_per_fold": counts}


def run_zero_shot(datasets: Sequence[DatasetSpec], encoder: torch.nn.Module, frontend: torch.nn.Module, clip, *,
                  templates: Sequence[str] | None = None, batch_size: int = 64, num_workers: int = 0,
                  device: torch.device | str = "cpu", progress: bool = False) -> dict:
    """The zero-shot table end to end: embed each dataset's folds, encode its class
    prompts (``templates`` default: ``zero_shot_templates()``), score.

    Returns ``{dataset name: evaluate_zero_shot(...) | {"data": provenance line}}``."""
    from sound2img.training.validation import encode_class_texts

    for t in templates or ():
        if not isinstance(t, str) or "{}" not in t:
            raise UserInputError(f"zero-shot template {t!r} has no '{{}}' for the class name")
    results = {}
    for spec in datasets:
        emb = encode_folds(spec, encoder, frontend, batch_size=batch_size, num_workers=num_workers, device=device,
                           progress=progress)
        text_emb = encode_class_texts(clip.encode_text, emb.class_names, templates)
        results[spec.name] = evaluate_zero_shot(emb.audio_emb, emb.labels, emb.folds, text_emb) | {
            "data": emb.describe(spec), "num_classes": len(emb.class_names)}
    return results
