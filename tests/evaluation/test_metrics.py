"""The numbers behind the tables on constructed cases with known answers: zero-shot
scoring, linear probe, latent cosines (Supp. Table 1), attribute classification (Table 2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sound2img.evaluation.attribute_classification import attribute_classification
from sound2img.evaluation.latent_stats import latent_cosines, summarise_latent_cosines
from sound2img.evaluation.linear_probe import linear_probe_cv
from sound2img.evaluation.report import PAPER_SUPP_TABLE1
from sound2img.evaluation.zero_shot import evaluate_zero_shot
from sound2img.models.embedding import zero_shot_logits


def _class_data(n_classes=5, per_class=12, dim=16, n_folds=4, noise=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(n_classes, dim, generator=g), dim=-1)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    feats = centres[labels] + noise * torch.randn(len(labels), dim, generator=g)
    folds = torch.arange(len(labels)) % n_folds + 1
    return feats, labels, folds, centres


def test_zero_shot_logits_normalise_raw_features():
    """Raw features with wildly different norms score exactly like their unit versions, so
    an un-normalised text or audio feature cannot change the prediction."""
    feats, labels, folds, centres = _class_data(noise=0.3)
    scale = torch.logspace(-3, 3, len(feats))[:, None]
    raw_logits = zero_shot_logits(feats * scale, centres * torch.tensor([[100.0], [0.01], [1], [7], [3]]))
    unit_logits = F.normalize(feats, dim=-1) @ F.normalize(centres, dim=-1).T
    assert torch.allclose(raw_logits, unit_logits, atol=1e-5)
    assert raw_logits.abs().max() <= 1 + 1e-5


def test_zero_shot_refuses_zero_or_nan_features():
    with pytest.raises(ValueError, match="unit-norm"):
        zero_shot_logits(torch.zeros(2, 4), torch.eye(4))
    with pytest.raises(ValueError, match="unit-norm"):
        zero_shot_logits(torch.full((2, 4), float("nan")), torch.eye(4))


def test_evaluate_zero_shot_per_fold_and_mean():
    """Class 0's clips point at class 1's text in fold 2 only: fold 2 loses exactly those."""
    feats, labels, folds, centres = _class_data(n_classes=5, per_class=8, n_folds=2)
    audio = centres[labels].clone()
    wrong = (labels == 0) & (folds == 2)
    audio[wrong] = centres[1]
    res = evaluate_zero_shot(audio, labels, folds, centres)
    n_fold2 = int((folds == 2).sum())
    assert res["per_fold"][1] == 1.0
    assert res["per_fold"][2] == pytest.approx(1 - int(wrong.sum()) / n_fold2)
    assert res["mean"] == pytest.approx((res["per_fold"][1] + res["per_fold"][2]) / 2)
    assert res["overall"] == pytest.approx(1 - int(wrong.sum()) / len(labels))
    assert res["n_per_fold"] == {1: len(labels) - n_fold2, 2: n_fold2}


def test_linear_probe_separable_is_perfect_and_noise_is_chance():
    feats, labels, folds, _ = _class_data(n_classes=4, per_class=30, dim=8, n_folds=5, noise=0.05)
    res = linear_probe_cv(feats, labels, folds, C=1.0)
    assert res["mean"] == 1.0 and set(res["per_fold"]) == {1, 2, 3, 4, 5}

    rng = np.random.default_rng(0)
    n, n_classes = 600, 4
    noise = rng.standard_normal((n, 32))
    labels = rng.integers(0, n_classes, n)
    folds = np.arange(n) % 5 + 1
    res = linear_probe_cv(noise, labels, folds, C=0.01)
    p = 1 / n_classes
    assert abs(res["mean"] - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_linear_probe_chooses_C_on_training_folds_only():
    feats, labels, folds, _ = _class_data(n_classes=3, per_class=20, dim=8, n_folds=4, noise=0.05)
    res = linear_probe_cv(feats, labels, folds, C=None, Cs=(0.001, 1.0))
    assert res["mean"] == 1.0
    assert set(res["C"].values()) <= {0.001, 1.0}


def test_latent_cosines_identical_latents_are_one():
    ws = torch.randn(6, 4, 8)
    cos = latent_cosines(ws, ws.clone(), ws.clone())
    for v in cos.values():
        assert torch.allclose(v, torch.ones(6, dtype=v.dtype))
    summary = summarise_latent_cosines({"a": cos})
    assert summary["average"]["w_s,w_a"] == {"mean": pytest.approx(1.0), "std": pytest.approx(0.0, abs=1e-12)}


def test_latent_cosines_match_a_hand_computed_case():
    """W+ is flattened: a latent with one row negated has cosine (L−2)/L to the original
    when all rows have the same norm."""
    L = 4
    ws_s = torch.ones(1, L, 3)
    ws_a = ws_s.clone()
    ws_a[0, 0] = -1
    ws_t = -ws_s
    cos = latent_cosines(ws_s, ws_a, ws_t)
    assert float(cos["w_s,w_a"]) == pytest.approx((L - 2) / L)
    assert float(cos["w_s,w_t"]) == pytest.approx(-1.0)
    assert float(cos["w_a,w_t"]) == pytest.approx(-(L - 2) / L)


def test_average_column_is_mean_of_attribute_columns_as_in_the_paper():
    """summarise_latent_cosines' "Average" rule reproduces the supplement's own averages
    from its per-attribute columns."""
    for paper in PAPER_SUPP_TABLE1.values():
        means = [v["mean"] for v in paper["attributes"].values()]
        stds = [v["std"] for v in paper["attributes"].values()]
        assert np.mean(means) == pytest.approx(paper["average"]["mean"], abs=1e-5)
        assert np.mean(stds) == pytest.approx(paper["average"]["std"], abs=1e-5)
    # and the function applies that rule: two attributes with known mean/std
    cos = {
        "x": {
            "w_s,w_a": torch.tensor([1.0, 0.0]),
            "w_s,w_t": torch.tensor([1.0, 1.0]),
            "w_a,w_t": torch.tensor([0.5, 0.5]),
        },
        "y": {
            "w_s,w_a": torch.tensor([0.0, 0.0]),
            "w_s,w_t": torch.tensor([1.0, 0.0]),
            "w_a,w_t": torch.tensor([0.5, 0.5]),
        },
    }
    s = summarise_latent_cosines(cos)
    assert s["attributes"]["x"]["w_s,w_a"] == {"mean": 0.5, "std": 0.5, "n": 2}
    assert s["average"]["w_s,w_a"] == {"mean": 0.25, "std": 0.25}
    assert s["average"]["w_s,w_t"] == {"mean": 0.75, "std": 0.25}


def test_attribute_classification_separable_is_one_and_grouped_by_source():
    n_attr, n_src, dim = 4, 10, 12
    g = torch.Generator().manual_seed(0)
    centres = 5 * torch.randn(n_attr, dim, generator=g)
    labels = torch.arange(n_attr).repeat_interleave(n_src)
    sources = torch.arange(n_src).repeat(n_attr)
    feats = centres[labels] + 0.1 * torch.randn(len(labels), dim, generator=g)
    names = [f"attr{i}" for i in range(n_attr)]
    res = attribute_classification(feats, labels, sources, names)
    assert res["average"] == 1.0 and res["overall"] == 1.0
    assert set(res["per_attribute"]) == set(names) and res["n"] == n_attr * n_src


def test_attribute_classification_without_attribute_signal_is_chance():
    """Features that carry only the source image (the same for all its edits) must not
    be classifiable: grouping keeps a source's edits out of its own training split."""
    n_attr, n_src = 4, 60
    g = torch.Generator().manual_seed(1)
    per_source = torch.randn(n_src, 16, generator=g)
    labels = torch.arange(n_attr).repeat_interleave(n_src)
    sources = torch.arange(n_src).repeat(n_attr)
    feats = per_source[sources] + 0.01 * torch.randn(len(labels), 16, generator=g)
    res = attribute_classification(feats, labels, sources, list("abcd"))
    p = 1 / n_attr
    assert abs(res["overall"] - p) < 4 * math.sqrt(p * (1 - p) / len(labels))


def test_save_report_is_strict_json_and_refuses_to_overwrite(tmp_path):
    import json

    from sound2img.errors import UserInputError
    from sound2img.evaluation.report import Report, markdown_table, save_report

    table = markdown_table(["model", "ESC-50"], [["a", "1.0"], ["b", None]])
    assert table.splitlines() == ["| model | ESC-50 |", "|---|--:|", "| a | 1.0 |", "| b | – |"]
    report = Report("t", f"# T\n\n{table}", {"x": float("nan"), 1: torch.tensor(2.5), "t": (1, 2)}, {"t.png": b"png"})
    paths = save_report(report, tmp_path / "out")
    assert [p.name for p in paths] == ["t.md", "t.json", "t.png"]
    assert json.loads(paths[1].read_text()) == {"x": None, "1": 2.5, "t": [1, 2]}
    with pytest.raises(UserInputError, match="already exists"):
        save_report(Report("t", "changed", {}, {}), tmp_path / "out")
    assert paths[0].read_text().startswith("# T")
    save_report(Report("t", "changed", {}, {}), tmp_path / "out", overwrite=True)
    assert paths[0].read_text() == "changed\n"
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temporary files left
