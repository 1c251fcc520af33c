"""Loudness-driven motion (docs/method.md §10.3): Lucid Sonic Dreams' "pulse" and "motion"
as a walk in the generator's z space, turned into a W offset per frame that is added to
every W+ row of the frame's latent."""

from __future__ import annotations

import torch

Z_BOUND = 2.0  # the walk turns back where a z component would leave [-2, 2] (a truncated normal's range)
SPEED_PER_STRENGTH = 20.0  # z units per second at full loudness per unit of motion_strength (Lucid Sonic Dreams)
REDRAW_SECONDS = 4.0  # how often the per-component speed factors are drawn again (Lucid Sonic Dreams)


def z_walk(
    loudness: torch.Tensor,     # [N] in [0, 1]: drives motion
    onset: torch.Tensor,        # [N] in [0, 1]: drives pulse
    *,
    z_dim: int,                 # the generator's z width
    fps: float,                 # frames per second
    pulse_strength: float,      # z units added along the all-ones direction at a full onset
    motion_strength: float,     # walk speed: SPEED_PER_STRENGTH × this z units per second at full loudness
    motion_randomness: float,   # share of components slowed to (1 − this) of the speed
    seed: int,                  # start point, directions and speed factors
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """→ (z0 [z_dim], z [N,z_dim]): the walk's start and its point at every frame.

    Per frame i (Lucid Sonic Dreams' definitions, its smoothing applied to the envelopes
    beforehand): pulse_i = pulse_strength·onset_i along the all-ones direction, not
    accumulated (the image jumps on a hit and returns); motion_i = speed·loudness_i·s⊙r per
    component, accumulated (the image drifts while the sound is loud, stands still while it
    is silent), with s ∈ {±1} a direction that flips where a component would leave
    [−Z_BOUND, Z_BOUND] and r ∈ {1, 1 − motion_randomness} redrawn every REDRAW_SECONDS.
    z_i = z0 + pulse_i·1 + Σ_{j≤i} motion_j. Deterministic for a seed (CPU generator)."""
    n = int(loudness.shape[0])
    gen = torch.Generator().manual_seed(int(seed))
    z0 = torch.nn.init.trunc_normal_(torch.empty(z_dim), a=-Z_BOUND, b=Z_BOUND, generator=gen)
    signs = torch.randint(0, 2, (z_dim,), generator=gen).float() * 2 - 1
    step = SPEED_PER_STRENGTH * motion_strength / fps  # z units per frame at full loudness
    redraw = max(1, round(fps * REDRAW_SECONDS))
    slow = 1.0 - motion_randomness
    walked = z0.clone()
    z = torch.empty(n, z_dim)
    for i in range(n):
        if i % redraw == 0:
            factors = torch.where(torch.rand(z_dim, generator=gen) < 0.5, 1.0, slow)
        walked = walked + step * float(loudness[i]) * signs * factors
        z[i] = walked + pulse_strength * float(onset[i])
        # turn back before the next step would leave the range
        signs = torch.where(walked - step < -Z_BOUND, 1.0, torch.where(walked + step >= Z_BOUND, -1.0, signs))
    return z0, z


@torch.no_grad()
def w_offsets(mapping, z0: torch.Tensor, z: torch.Tensor, truncation: float, chunk: int = 256) -> torch.Tensor:
    """The walk in W: mapping(z_i) − mapping(z0) → [N,w_dim] (row 0 of the mapping's
    output: every W+ row of a z is the same w), with the source's truncation ψ, so the
    offset is ψ·(w_i − w_0), of the size of the generator's own variation. In chunks of a
    fixed size: a frame's offset does not depend on how frames are later batched, and only
    [N,w_dim] is kept (not [N,num_ws,w_dim])."""
    device = next(mapping.parameters()).device
    w0 = mapping(z0[None].to(device), truncation_psi=truncation)[:, 0]
    parts = [
        (mapping(z[i : i + chunk].to(device), truncation_psi=truncation)[:, 0] - w0).cpu()
        for i in range(0, z.shape[0], chunk)
    ]
    return torch.cat(parts) if parts else torch.zeros(0, w0.shape[-1])
