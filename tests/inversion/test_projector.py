"""The projector recovers latents a random generator made, is deterministic under a
seed, leaves the generator alone, and its noise regulariser penalises correlation."""

from __future__ import annotations

import pytest
import torch

from sound2img.inversion.projector import ProjectorSettings, noise_regularizer, project
from sound2img.metrics import psnr


@pytest.mark.slow
def test_wplus_pixel_loss_reaches_30_db(G, known):
    w_star, target = known
    res = project(G, target, settings=ProjectorSettings(steps=800, space="wplus", w_avg_samples=2000))
    with torch.no_grad():
        rec = G.synthesis(res.ws, noise_mode="const")
    assert res.ws.shape == (1, G.num_ws, G.w_dim)
    assert float(psnr(rec, target)) >= 30.0


@pytest.mark.slow
def test_w_space_recovers_w_star(G, known):
    w_star, target = known
    res = project(G, target, settings=ProjectorSettings(steps=400, space="w", w_avg_samples=2000))
    assert torch.equal(res.ws[0, 0], res.ws[0, -1])  # one w for every layer
    start = (G.w_avg - w_star[0, 0]).norm()
    err = (res.ws[0, 0] - w_star[0, 0]).norm()
    assert err < 0.05 * w_star[0, 0].norm() and err < 0.1 * start


def test_deterministic_under_a_seed_and_generator_untouched(G, known):
    _, target = known
    before = {k: v.clone() for k, v in G.state_dict().items()}
    s = dict(steps=6, space="wplus", w_avg_samples=500, noise="optimize")
    a = project(G, target, settings=ProjectorSettings(seed=1, **s))
    b = project(G, target, settings=ProjectorSettings(seed=1, **s))
    c = project(G, target, settings=ProjectorSettings(seed=2, **s))
    assert torch.equal(a.ws, b.ws) and a.losses == b.losses
    assert not torch.equal(a.ws, c.ws)
    after = G.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not p.requires_grad for p in G.parameters())


def test_lpips_distance_is_used_when_given(G, known):
    _, target = known
    calls = []

    def dist(a, b):
        calls.append(a.shape)
        return (a - b).abs().flatten(1).mean(1)

    project(G, target, settings=ProjectorSettings(steps=3, w_avg_samples=100), lpips=dist)
    assert len(calls) == 3 and calls[0][-1] == G.img_resolution


def test_noise_regulariser_penalises_correlated_maps():
    gen = torch.Generator().manual_seed(0)
    white = torch.randn(1, 1, 32, 32, generator=gen)
    smooth = torch.nn.functional.avg_pool2d(torch.randn(1, 1, 35, 35, generator=gen), 4, stride=1)
    smooth = (smooth - smooth.mean()) / smooth.std()
    assert float(noise_regularizer([smooth])) > 20 * float(noise_regularizer([white]))


def test_bad_settings_are_user_errors(G, known):
    from sound2img.errors import UserInputError

    with pytest.raises(UserInputError):
        project(G, known[1], settings=ProjectorSettings(space="z"))
    with pytest.raises(UserInputError):
        project(G, known[1][:, :, :8, :8], settings=ProjectorSettings(steps=1))
