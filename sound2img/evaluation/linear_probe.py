"""Linear probe (docs/method.md §9, "logistic regression on frozen embeddings"): standardised
features, scikit-learn logistic regression, train on the other folds and test on one."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sound2img.errors import UserInputError
from sound2img.evaluation.embed import DatasetSpec, encode_folds

DEFAULT_CS = (0.01, 0.1, 1.0, 10.0)


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def single_blas_thread():
    """Context limiting BLAS to one thread: L-BFGS on probe-sized problems spends more time
    in spinning BLAS threads than computing (measured ~10x on 2 busy cores)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def build_probe(C: float, max_iter: int = 1000, seed: int = 0):
    """StandardScaler + multinomial logistic regression with inverse regularisation ``C``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, random_state=seed))


def select_C(
    features: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    Cs: Sequence[float],
    max_iter: int = 1000,
    seed: int = 0,
) -> float:
    """The C of ``Cs`` with the best mean accuracy in a cross-validation *inside* the
    training folds (grouped by fold, so no clip's fold-mates leak into its validation)."""
    from sklearn.model_selection import GroupKFold, cross_val_score

    n_groups = len(np.unique(groups))
    if len(Cs) == 1 or n_groups < 2:
        return float(Cs[0])
    cv = GroupKFold(n_splits=min(3, n_groups))
    scores = [
        cross_val_score(build_probe(c, max_iter, seed), features, labels, groups=groups, cv=cv).mean() for c in Cs
    ]
    return float(Cs[int(np.argmax(scores))])


def linear_probe_cv(
    features,
    labels,
    folds,
    *,
    C: float | None = None,
    Cs: Sequence[float] = DEFAULT_CS,
    max_iter: int = 1000,
    seed: int = 0,
) -> dict:
    """Fold-wise cross-validated linear-probe accuracy.

    ``features [N,D]`` (frozen ``audio_emb``), ``labels [N]``, ``folds [N]`` (the dataset's
    official folds). For each fold: fit on the other folds, test on it. ``C`` fixed, or
    ``None`` to choose it from ``Cs`` on the training folds only. Returns
    ``{"per_fold": {fold: acc}, "mean": float, "C": {fold: C}, "n": int}``.
    """
    X, y, g = _numpy(features).astype(np.float64), _numpy(labels), _numpy(folds)
    if not (len(X) == len(y) == len(g)):
        raise ValueError(f"linear probe: {len(X)} features, {len(y)} labels, {len(g)} fold ids")
    fold_ids = sorted(int(f) for f in np.unique(g))
    if len(fold_ids) < 2:
        raise UserInputError(f"linear probe needs at least 2 folds, got {fold_ids}")
    per_fold, chosen = {}, {}
    with single_blas_thread():
        for f in fold_ids:
            train, test = g != f, g == f
            if len(np.unique(y[train])) < 2:
                raise UserInputError(f"linear probe: training folds for fold {f} hold fewer than 2 classes")
            c = float(C) if C is not None else select_C(X[train], y[train], g[train], Cs, max_iter, seed)
            probe = build_probe(c, max_iter, seed).fit(X[train], y[train])
            per_fold[f] = float((probe.predict(X[test]) == y[test]).mean())
            chosen[f] = c
    return {"per_fold": per_fold, "mean": float(np.mean(list(per_fold.values()))), "C": chosen, "n": int(len(y))}


def run_linear_probe(
    datasets: Sequence[DatasetSpec],
    encoder: torch.nn.Module,
    frontend: torch.nn.Module,
    *,
    C: float | None = None,
    Cs: Sequence[float] = DEFAULT_CS,
    max_iter: int = 1000,
    batch_size: int = 64,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> dict:
    """The linear-probe table end to end: embed each dataset's folds with the frozen
    encoder, then ``linear_probe_cv``. Returns ``{dataset name: result | {"data": line}}``."""
    results = {}
    for spec in datasets:
        emb = encode_folds(
            spec, encoder, frontend, batch_size=batch_size, num_workers=num_workers, device=device, progress=progress
        )
        results[spec.name] = linear_probe_cv(emb.audio_emb, emb.labels, emb.folds, C=C, Cs=Cs, max_iter=max_iter) | {
            "data": emb.describe(spec)
        }
    return results
