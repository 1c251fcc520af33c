"""Small random generators for the inversion tests (the stylegan2 tests' helper)."""

from __future__ import annotations

import pytest
import torch

from tests.models.stylegan2.conftest import small_generator


@pytest.fixture(scope="module")
def G():
    return small_generator(seed=3)


@pytest.fixture(scope="module")
def known(G):
    """(w* [1,num_ws,w_dim] from a mapped z, its image [1,3,R,R])."""
    w = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(5)))
    with torch.no_grad():
        img = G.synthesis(w, noise_mode="const")
    return w, img
