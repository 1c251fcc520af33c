"""Source latents w_s for an edit: a seed (z → mapping → truncation), saved latent files,
or the generator's mean latent (free generation)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from sound2img.errors import UserInputError


def seed_to_z(seed: int, z_dim: int) -> torch.Tensor:
    """z [1,z_dim] from a CPU ``torch.Generator`` seeded with ``seed``: the same z on any
    device and whatever else is in the batch."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randn(1, z_dim, generator=gen)


@torch.no_grad()
def sample_source_latents(generator, seeds: Sequence[int], truncation: float,
                          device: torch.device | str = "cpu") -> torch.Tensor:
    """One source per seed: ws [len(seeds),num_ws,w_dim], truncated towards ``G.w_avg``."""
    if not seeds:
        raise UserInputError("no seeds given")
    if not 0.0 <= truncation <= 1.0:
        raise UserInputError(f"truncation must be in [0, 1], got {truncation}")
    z = torch.cat([seed_to_z(s, generator.z_dim) for s in seeds]).to(device)
    return generator.mapping(z, truncation_psi=truncation)


def load_source_latents(paths: Sequence[str | Path], generator) -> torch.Tensor:
    """Latents saved by ``generate.py``/projectors, concatenated: ws [B,num_ws,w_dim]
    (a file's shape must fit the generator; ``load_latents`` says which file does not)."""
    from sound2img.models.stylegan2 import load_latents

    if not paths:
        raise UserInputError("no latent files given")
    return torch.cat([load_latents(p, generator.num_ws, generator.w_dim).float() for p in paths])


def mean_source_latents(generator, count: int = 1) -> torch.Tensor:
    """The mean latent broadcast to W+: ws [count,num_ws,w_dim] (free generation)."""
    w_avg = torch.as_tensor(generator.w_avg).float().reshape(1, 1, -1)
    return w_avg.expand(count, generator.num_ws, -1).clone()
