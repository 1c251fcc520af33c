"""Adaptive layer masking against a two-step example computed by hand (paper.md §4's
rule: ℓ_l = σ(g_l)·‖w_l − w_s,l‖², then g_l ← g_l − 0.1·ℓ_l·(1 − ℓ_l), g starting at 1)."""
from __future__ import annotations

import math

import pytest
import torch

from sound2img.manipulation.masking import AdaptiveLayerMask, latent_penalty


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@pytest.mark.parametrize("num_ws", [14, 18])
def test_two_steps_by_hand(num_ws):
    w_dim = 3
    source = torch.zeros(2, num_ws, w_dim, dtype=torch.float64)
    # step 1: sample 0 offsets layer l by 0.1·(l+1) in every coordinate, sample 1 by 0.05
    w1 = source.clone()
    w2 = source.clone()
    for l in range(num_ws):
        w1[0, l] = 0.1 * (l + 1)
        w1[1, l] = 0.05
        w2[0, l] = 0.2
        w2[1, l] = -0.01 * l
    mask = AdaptiveLayerMask(2, num_ws, device="cpu")
    mask.g = mask.g.double()
    w1.requires_grad_(True)
    p1 = latent_penalty(w1, source, mask)
    g_after_1 = mask.g.clone()
    p2 = latent_penalty(w2, source, mask)

    for b in range(2):
        g = [1.0] * num_ws
        totals = []
        for w in (w1, w2):
            total = 0.0
            for l in range(num_ws):
                d = sum(float(w[b, l, k].detach()) ** 2 for k in range(w_dim))  # ‖w_l − w_s,l‖², w_s = 0
                loss_l = sigmoid(g[l]) * d
                total += loss_l
                g[l] = g[l] - 0.1 * loss_l * (1.0 - loss_l)
            totals.append(total)
            if w is w1:
                assert mask_g_row(g_after_1, b) == pytest.approx(g, rel=1e-12)
        assert float(p1[b].detach()) == pytest.approx(totals[0], rel=1e-12)
        assert float(p2[b]) == pytest.approx(totals[1], rel=1e-12)
        assert mask_g_row(mask.g, b) == pytest.approx(g, rel=1e-12)
    # every layer is masked, the last ones too (the authors' code stops at 14)
    assert (mask.g[0, -4:] != 1.0).all()

    # the gradient uses σ(g) from before the update: ∂ℓ/∂w_l = 2·σ(1)·(w_l − w_s,l)
    p1.sum().backward()
    assert torch.allclose(w1.grad, 2 * sigmoid(1.0) * w1.detach())


def mask_g_row(g: torch.Tensor, b: int) -> list[float]:
    return [float(x) for x in g[b]]


def test_plain_l2_is_sum_of_squares():
    ws = torch.randn(3, 5, 4)
    src = torch.randn(3, 5, 4)
    assert torch.allclose(latent_penalty(ws, src, None), ((ws - src) ** 2).sum(dim=(1, 2)))
