"""Shared fixtures: small random generators with non-zero noise strengths, their NVlabs
state dicts, and the StyleGAN2 reference fixtures (``helpers.fixtures``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sound2img.models.stylegan2 import build_generator

from helpers.fixtures import fixture_path

PROJECT_ROOT = Path(__file__).resolve().parents[3]

# Bounds for the StyleGAN2 reference fixtures: 4x the reference's own float32 error, the
# largest difference between a fixture's float32 array and the same network in float64 (run
# by this package in float64, which reproduces every array to within exactly that). Over the
# three fixtures: latents 2.9e-6, images 1.2e-5, gradients 5.3e-7 of their largest magnitude.
# No activation of the gradient check in nvlabs_ada_clamp lies within 2e-5 of the clamp (20x
# the float32 error of an activation), so rounding cannot move one across it on any machine.
LATENT_TOL, IMAGE_TOL, GRAD_REL_TOL = 1.2e-5, 5e-5, 2.2e-6

# 32 px, narrow and with a mapping shorter than 8: fast, and nothing matches a default table.
SMALL = dict(resolution=32, z_dim=32, w_dim=32, n_mlp=3, channel_base=256, channel_max=16)


def randomise_noise_strengths(G, seed=1):
    """Reference init leaves noise strengths at 0, which would hide noise bugs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.copy_(torch.rand([], generator=gen) + 0.5)
            elif name.endswith(".bias") and "affine" not in name and "mapping" not in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return G


def small_generator(seed=0, **over):
    return randomise_noise_strengths(build_generator(**{**SMALL, "seed": seed, **over}), seed + 1)


def fixture_dir(name: str) -> Path:
    """``stylegan2/<name>`` in the shared reference fixtures (skips or fails as
    ``fixture_path`` does)."""
    return fixture_path("stylegan2", name)


@pytest.fixture(scope="module")
def small_G():
    return small_generator()
