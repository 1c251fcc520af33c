"""The projector recovers latents a random generator made, is deterministic under a
seed, leaves the generator alone, and its noise regulariser penalises correlation."""

from __future__ import annotations

import pytest
import torch

from sound2img.inversion.projector import ProjectorSettings, noise_regularizer, project
from sound2img.metrics import psnr


def eight_bit_target(G, seed: int, tmp_path) -> torch.Tensor:
    """The generator's own image (truncation 0.7, its stored noise) saved as an 8-bit PNG
    and read back as invert.py reads a photo: [1,3,R,R] in [-1,1]. A random network's
    image runs past [-1, 1], so much of it is clipped at 0 or 255."""
    from sound2img.inversion.images import load_image, to_unit
    from sound2img.utils.images import png_bytes

    z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        img = G.synthesis(G.mapping(z, truncation_psi=0.7), noise_mode="const")
    (tmp_path / f"t{seed}.png").write_bytes(png_bytes(img[0]))
    return to_unit(load_image(tmp_path / f"t{seed}.png"))


@pytest.mark.slow  # two 500-step projections (~10 s each on an idle 2-core CPU)
@pytest.mark.parametrize("space,bound,seed", [("wplus", 30.0, 5), ("w", 25.0, 6)])
def test_default_settings_reconstruct_a_generated_image(G, tmp_path, space, bound, seed):
    """The defaults (500 steps, pixel loss) reach the README's bounds on an image the
    generator made: ≥ 30 dB in W+, ≥ 25 dB in W. They reach far more on this network
    (39 and 64 dB), so the bound holds on any CPU; a plain MSE, which pulls the clipped
    pixels back, ends at 14 and 10 dB."""
    target = eight_bit_target(G, seed, tmp_path)
    assert float((target.abs() >= 1).float().mean()) > 0.3  # clipped regions are part of the test
    res = project(G, target, settings=ProjectorSettings(space=space))
    assert len(res.losses) == 500 and res.ws.shape == (1, G.num_ws, G.w_dim)
    with torch.no_grad():
        assert float(psnr(G.synthesis(res.ws, noise_mode="const"), target)) >= bound


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
