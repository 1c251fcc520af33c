"""Shared fixtures: small random generators with non-zero noise strengths, their NVlabs
state dicts, and the location of the reference fixtures beside the project."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sound2img.models.stylegan2 import build_generator

PROJECT_ROOT = Path(__file__).resolve().parents[3]
FIXTURES = PROJECT_ROOT / ".." / "shared" / "fixtures" / "stylegan2"

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
    path = FIXTURES / name
    if not path.is_dir():
        pytest.skip(f"reference fixtures not found at {path}")
    return path


@pytest.fixture(scope="module")
def small_G():
    return small_generator()
