"""The generator's fast path (one autograd function per layer, kernels and gain folded
for a batch of one, channels_last on the CPU) computes the same edit as the reference
composition (grouped per-sample convolutions, plain autograd): 20 steps of the real
optimiser agree to float64 rounding, and in float32 the fast path is as close to the
float64 result as the reference is (in float32 two mathematically equal paths differ by
~1e-3 in W+ after 20 Adam steps on this small net, each being that far from float64)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sound2img.manipulation.optimizer import AUTHORS_COS_SCALE, optimize_latents
from sound2img.models.clip import build_clip

from .conftest import small_generator


@pytest.fixture(scope="module")
def G():
    # 64 px so that every kind of layer (up-convs, several ToRGB skips) runs at a few widths;
    # noise strengths and biases non-zero so that their terms of the backward are exercised.
    return small_generator(seed=3, resolution=64, z_dim=32, w_dim=32, channel_base=1024, channel_max=32)


@pytest.fixture(scope="module")
def clip():
    return build_clip("tiny", seed=0, preprocess="styleclip")


def edit(G, clip, ws, target, dtype, *, reference: bool, channels_last: bool | None = None):
    """W+ after 20 steps in ``dtype`` (CLIP called below ``encode_image``, which casts to fp32)."""
    G.synthesis.fused_modconv = reference
    G.synthesis.channels_last = False if reference else channels_last
    G.to(dtype)
    clip.model.to(dtype)
    try:
        encode = lambda img: clip.model.encode_image(clip.preprocess(img), normalize=True)  # noqa: E731
        res = optimize_latents(
            G, encode, ws.to(dtype), target.to(dtype), steps=20, lr=0.1, lambda_sim=0.002, cos_scale=AUTHORS_COS_SCALE
        )
        return res.ws.double()
    finally:
        G.synthesis.fused_modconv, G.synthesis.channels_last = False, None
        G.to(torch.float32)
        clip.model.to(torch.float32)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("channels_last", [True, False])
def test_fast_path_edit_matches_the_reference_composition(G, clip, batch, channels_last):
    gen = torch.Generator().manual_seed(batch)
    ws = G.mapping(torch.randn(batch, G.z_dim, generator=gen), 0.7)
    target = F.normalize(torch.randn(batch, clip.model.text_projection.shape[1], generator=gen), dim=-1)
    truth = edit(G, clip, ws, target, torch.float64, reference=True)
    assert (truth - ws).abs().max() > 0.5, "the edit must move the latent"
    fast64 = edit(G, clip, ws, target, torch.float64, reference=False, channels_last=channels_last)
    assert (fast64 - truth).abs().max() <= 1e-9
    fast32 = edit(G, clip, ws, target, torch.float32, reference=False, channels_last=channels_last)
    ref32 = edit(G, clip, ws, target, torch.float32, reference=True)
    err_fast, err_ref = (fast32 - truth).abs().max().item(), (ref32 - truth).abs().max().item()
    assert err_fast <= 2 * err_ref + 1e-4, (err_fast, err_ref)


def test_split_backward_phases_are_recorded(G, clip):
    ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(0)), 0.7)
    target = F.normalize(torch.randn(1, 32, generator=torch.Generator().manual_seed(1)), dim=-1)
    res = optimize_latents(G, clip.encode_image, ws, target, steps=3, time_phases=True)
    assert set(res.phase_seconds) == {
        "synthesis_forward",
        "clip_forward",
        "clip_backward",
        "synthesis_backward",
        "optimizer",
    }
    for name, times in res.phase_seconds.items():
        assert len(times) == 3 and all(t > 0 for t in times), name
    for i, step in enumerate(res.step_seconds):  # the phases partition the step (up to bookkeeping)
        assert sum(t[i] for t in res.phase_seconds.values()) <= step
    assert optimize_latents(G, clip.encode_image, ws, target, steps=1).phase_seconds == {}
