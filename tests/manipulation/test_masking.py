"""Adaptive layer masking (docs/method.md §3) against numbers evaluated by hand from the
authors' rule, and plain L2."""

from __future__ import annotations

import math

import pytest
import torch

from sound2img.manipulation.masking import AdaptiveLayerMask, layer_penalties


def test_two_steps_by_hand():
    """Two samples, two layers, w_dim 2, w_s = 0; g starts at 1, σ(1) = 0.731058578630005.

    Sample 0, step 1: ‖w_0‖² = 0.5² + 0.5² = 0.5, ‖w_1‖² = 1² + 1² = 2
        ℓ = σ(1)·(0.5, 2) = (0.365529289315002, 1.46211715726001), Σℓ = 1.82764644657501
        g ← 1 − 0.1·ℓ(1 − ℓ) = (0.976808237203213, 1.06756694242941)   (ℓ > 1 raises g)
    Sample 0, step 2: ‖w_0‖² = 0.6² + 0.8² = 1, ‖w_1‖² = 0.3² + 0.4² = 0.25
        σ(g) = (0.726474441966960, 0.744133940257712)
        ℓ = (0.726474441966960, 0.186033485064428), Σℓ = 0.912507927031387
        g ← (0.956937304489637, 1.05242443967949)
    Sample 1, both steps: ‖w_0‖² = 0.1² = 0.01, ‖w_1‖² = 0.2² = 0.04
        step 1: Σℓ = 0.0365529289315002, g ← (0.999274285887824, 0.997161277148742)
        step 2: Σℓ = 0.0365291621423466, g ← (0.998548712397272, 0.994324657665239)
    (Evaluated with 40-digit decimals from ℓ_l = σ(g_l)·‖w_l − w_s,l‖² and
    g_l ← g_l − 0.1·ℓ_l·(1 − ℓ_l).)
    """
    source = torch.zeros(2, 2, 2, dtype=torch.float64)
    w1 = torch.tensor([[[0.5, 0.5], [1.0, 1.0]], [[0.0, 0.1], [0.2, 0.0]]], dtype=torch.float64)
    w2 = torch.tensor([[[0.6, 0.8], [0.3, 0.4]], [[0.0, 0.1], [0.2, 0.0]]], dtype=torch.float64)
    mask = AdaptiveLayerMask(2, 2, dtype=torch.float64)

    w1.requires_grad_(True)
    p1 = layer_penalties(w1, source, mask)
    assert torch.equal(mask.g, torch.ones(2, 2, dtype=torch.float64)), "computing the penalty must not move g"
    assert p1.sum(1).tolist() == pytest.approx([1.82764644657501, 0.0365529289315002], rel=1e-12)
    mask.update(p1)
    assert mask.g.tolist() == [
        pytest.approx([0.976808237203213, 1.06756694242941], rel=1e-12),
        pytest.approx([0.999274285887824, 0.997161277148742], rel=1e-12),
    ]

    p2 = layer_penalties(w2, source, mask)
    assert p2[0].tolist() == pytest.approx([0.726474441966960, 0.186033485064428], rel=1e-12)
    assert p2.sum(1).tolist() == pytest.approx([0.912507927031387, 0.0365291621423466], rel=1e-12)
    mask.update(p2)
    assert mask.g.tolist() == [
        pytest.approx([0.956937304489637, 1.05242443967949], rel=1e-12),
        pytest.approx([0.998548712397272, 0.994324657665239], rel=1e-12),
    ]

    # the gradient uses σ(g) from before any update: ∂ℓ_l/∂w_l = 2·σ(1)·(w_l − w_s,l)
    p1.sum().backward()
    assert torch.allclose(w1.grad, 2 * 0.731058578630005 * w1.detach(), rtol=1e-12)


@pytest.mark.parametrize("num_ws", [14, 18])
def test_every_layer_is_masked(num_ws):
    """The authors' code stops at 14 layers; every row of W+ gets its own weight here:
    with ‖w_l − w_s,l‖² = 1 everywhere, g_l = 1 − 0.1·σ(1)·(1 − σ(1)) = 0.980338806675852 for all l."""
    ws = torch.zeros(1, num_ws, 4, dtype=torch.float64)
    ws[..., 0] = 1.0
    mask = AdaptiveLayerMask(1, num_ws, dtype=torch.float64)
    mask.update(layer_penalties(ws, torch.zeros_like(ws), mask))
    assert mask.g.shape == (1, num_ws)
    assert mask.g[0].tolist() == pytest.approx([0.980338806675852] * num_ws, rel=1e-12)


def test_plain_l2_is_sum_of_squares():
    """w − w_s = 3 in one coordinate of layer 0 and 4 in one of layer 2: ‖·‖² per layer (9, 0, 16)."""
    src = torch.randn(1, 3, 5)
    ws = src.clone()
    ws[0, 0, 1] += 3.0
    ws[0, 2, 4] -= 4.0
    assert layer_penalties(ws, src, None)[0].tolist() == pytest.approx([9.0, 0.0, 16.0], abs=1e-5)
    assert math.isclose(float(layer_penalties(ws, src, None).sum()), 25.0, abs_tol=1e-4)
