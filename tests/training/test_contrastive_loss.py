"""The contrastive loss alone: a hand-computed case, the symmetric / one-directional
forms, the three temperature modes and the weighted sum of terms."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sound2img.errors import UserInputError
from sound2img.training.losses import ContrastiveLoss, LogitScale, gather_with_grad, info_nce

# Rows of B are unit vectors; A = I, so <a_i, b_j> = B[j, i]: the a→b direction reads
# columns of B and the b→a direction its rows, which differ because B is not symmetric.
B_ROWS = [[0.6, 0.8, 0.0], [0.0, 1.0, 0.0], [0.8, 0.0, 0.6]]


def _by_hand(scale: float) -> tuple[float, float]:
    """(mean a→b CE, mean b→a CE) written out with exp and log."""
    a2b = 0.0
    for i in range(3):
        logits = [scale * B_ROWS[j][i] for j in range(3)]
        a2b += -math.log(math.exp(logits[i]) / sum(math.exp(v) for v in logits))
    b2a = 0.0
    for j in range(3):
        logits = [scale * B_ROWS[j][i] for i in range(3)]
        b2a += -math.log(math.exp(logits[j]) / sum(math.exp(v) for v in logits))
    return a2b / 3, b2a / 3


def _pair():
    return torch.eye(3, dtype=torch.float64), torch.tensor(B_ROWS, dtype=torch.float64)


def test_info_nce_matches_hand_computation():
    a, b = _pair()
    a2b, b2a = _by_hand(2.0)
    assert a2b != pytest.approx(b2a)  # the example really is asymmetric
    one = info_nce(a, b, 2.0, symmetric=False)
    sym = info_nce(a, b, 2.0, symmetric=True)
    assert one.item() == pytest.approx(a2b, rel=1e-6)
    assert sym.item() == pytest.approx((a2b + b2a) / 2, rel=1e-6)


def test_symmetric_is_mean_of_both_directions_on_random_data():
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(8, 16, generator=g), dim=-1)
    b = F.normalize(torch.randn(8, 16, generator=g), dim=-1)
    ab = info_nce(a, b, 5.0, symmetric=False)
    ba = info_nce(b, a, 5.0, symmetric=False)
    assert not torch.allclose(ab, ba)
    assert torch.allclose(info_nce(a, b, 5.0), (ab + ba) / 2)
    # matching pairs give a lower loss than shuffled ones
    assert info_nce(a, a, 5.0) < info_nce(a, a[torch.randperm(8, generator=g)], 5.0)


def test_info_nce_refuses_unnormalised_features():
    a, b = _pair()
    with pytest.raises(ValueError, match="L2-normalised"):
        info_nce(3 * a, b, 2.0)
    with pytest.raises(ValueError, match="same shape"):
        info_nce(a, b[:2], 2.0)


def test_logit_scale_modes():
    learn = LogitScale("learnable")
    assert isinstance(learn.log_scale, torch.nn.Parameter)
    assert learn.log_scale.item() == pytest.approx(math.log(1 / 0.07), rel=1e-6)
    assert learn().item() == pytest.approx(1 / 0.07, rel=1e-5)
    # the clamp: a value above max reads as max, and clamp_ pulls the parameter back
    with torch.no_grad():
        learn.log_scale.fill_(8.0)
    assert learn().item() == pytest.approx(100.0, rel=1e-5)
    learn.clamp_()
    assert learn.log_scale.item() == pytest.approx(math.log(100.0), rel=1e-6)

    legacy = LogitScale("legacy")
    assert legacy().item() == pytest.approx(1.0725081812542165, rel=1e-6)
    assert list(legacy.parameters()) == []
    fixed = LogitScale("fixed", init=20.0)
    assert fixed().item() == pytest.approx(20.0, rel=1e-5)
    assert list(fixed.parameters()) == []
    assert "log_scale" in fixed.state_dict()  # saved and restored with the run
    with pytest.raises(UserInputError, match="mode"):
        LogitScale("cosine")


def test_learnable_scale_gets_a_gradient_in_log_space():
    scale = LogitScale("learnable")
    a, b = _pair()
    loss = info_nce(a.float(), b.float(), scale())
    loss.backward()
    s = 1 / 0.07
    # d loss / d log s = s · d loss / d s; check against a finite difference in s
    eps = 1e-3
    fd = (info_nce(a, b, s + eps) - info_nce(a, b, s - eps)).item() / (2 * eps)
    assert scale.log_scale.grad.item() == pytest.approx(s * fd, rel=1e-3)


def test_contrastive_loss_weighted_terms():
    g = torch.Generator().manual_seed(1)
    a, t, v, a2 = (F.normalize(torch.randn(6, 8, generator=g), dim=-1) for _ in range(4))
    scale = LogitScale("fixed", init=10.0)
    full = ContrastiveLoss({"at": 1.0, "av": 0.5, "aa": 2.0}, symmetric=True, scale=scale)
    out = full(a, text=t, image=v, audio_view=a2)
    parts = {k: info_nce(a, x, 10.0) for k, x in (("at", t), ("av", v), ("aa", a2))}
    for k in parts:
        assert torch.allclose(out[f"loss_{k}"], parts[k], atol=1e-6)
    assert torch.allclose(out["loss"], parts["at"] + 0.5 * parts["av"] + 2.0 * parts["aa"], atol=1e-6)

    no_aa = ContrastiveLoss({"at": 1.0, "av": 1.0, "aa": 0.0}, scale=scale)
    out = no_aa(a, text=t, image=v)  # no second view needed when a↔â is off
    assert "loss_aa" not in out
    assert torch.allclose(out["loss"], parts["at"] + parts["av"], atol=1e-6)

    one_dir = ContrastiveLoss({"at": 1.0}, symmetric=False, scale=scale)
    assert torch.allclose(one_dir(a, text=t)["loss"], info_nce(a, t, 10.0, symmetric=False), atol=1e-6)

    with pytest.raises(ValueError, match="'av' is enabled"):
        full(a, text=t, audio_view=a2)
    with pytest.raises(UserInputError, match="unknown contrastive term"):
        ContrastiveLoss({"at": 1.0, "ai": 1.0})
    with pytest.raises(UserInputError, match="at least one"):
        ContrastiveLoss({"at": 0.0})


def test_valid_mask_equals_dropping_the_rows():
    """Items without a frame (valid=False) are neither anchors nor negatives."""
    g = torch.Generator().manual_seed(2)
    a = F.normalize(torch.randn(6, 8, generator=g), dim=-1).requires_grad_(True)
    b = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    b[[1, 4]] = 0.0  # what the targets give for items without a frame
    valid = torch.tensor([True, False, True, True, False, True])
    for symmetric in (True, False):
        masked = info_nce(a, b, 7.0, symmetric=symmetric, valid=valid)
        dropped = info_nce(a[valid], b[valid], 7.0, symmetric=symmetric)
        assert torch.allclose(masked, dropped, atol=1e-6)
    masked.backward()
    assert torch.all(a.grad[~valid] == 0) and torch.all(a.grad[valid].abs().sum(-1) > 0)
    none = info_nce(a, b, 7.0, valid=torch.zeros(6, dtype=torch.bool))
    assert none.item() == 0.0 and none.requires_grad


def test_gather_without_process_group_is_identity():
    x = torch.randn(4, 3, requires_grad=True)
    assert gather_with_grad(x) is x
