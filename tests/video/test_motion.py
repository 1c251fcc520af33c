"""Lucid Sonic Dreams' pulse and motion as a z walk (docs/method.md §10.3): still in
silence, a step of the stated size per frame of full loudness, pulses that return, bounded,
deterministic for a seed."""

from __future__ import annotations

import torch

from sound2img.video.motion import SPEED_PER_STRENGTH, Z_BOUND, z_walk

Z, FPS = 64, 10.0


def walk(loudness, onset, seed=0, **kw):
    args = dict(z_dim=Z, fps=FPS, pulse_strength=0.5, motion_strength=0.5, motion_randomness=0.5, seed=seed)
    return z_walk(
        torch.as_tensor(loudness, dtype=torch.float32), torch.as_tensor(onset, dtype=torch.float32), **{**args, **kw}
    )


def test_silence_keeps_z_at_its_start():
    z0, z = walk([0.0] * 30, [0.0] * 30)
    assert torch.equal(z, z0.expand(30, -1)) and float(z0.abs().max()) <= Z_BOUND


def test_a_loud_frame_moves_every_component_by_the_stated_step():
    z0, z = walk([1.0, 0.5], [0.0, 0.0])
    step = SPEED_PER_STRENGTH * 0.5 / FPS
    moved = (z[0] - z0).abs()
    # each component moves step × its factor, the factor being 1 or 1 − randomness
    assert torch.all(torch.isclose(moved, torch.tensor(step)) | torch.isclose(moved, torch.tensor(step * 0.5)))
    assert torch.allclose((z[1] - z[0]).abs(), moved * 0.5)  # half the loudness, half the step


def test_a_pulse_returns_and_motion_accumulates():
    z0, z = walk([0.0, 0.0, 0.0], [0.0, 1.0, 0.0])
    assert torch.allclose(z[1] - z0, torch.full((Z,), 0.5)) and torch.equal(z[2], z0)
    _, z = walk([1.0] * 400, [0.0] * 400)
    step = SPEED_PER_STRENGTH * 0.5 / FPS
    assert float(z.abs().max()) <= Z_BOUND + step  # it turns back at the range's edge
    assert float((z[-1] - z[0]).abs().max()) > 0


def test_the_walk_is_fixed_by_its_seed():
    a, b, c = walk([1.0] * 50, [0.3] * 50), walk([1.0] * 50, [0.3] * 50), walk([1.0] * 50, [0.3] * 50, seed=1)
    assert torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])
