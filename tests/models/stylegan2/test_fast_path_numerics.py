"""The generator's fast path (one autograd function per layer, kernels and gain folded for
a batch of one, channels_last on the CPU) computes rosinality's synthesis and its gradient
(the shared reference fixture, batch 1 and 3, both layouts), and a whole edit with it is
the edit of the plain-autograd composition: step for step in float64, and in float32 to
the same outcome (never a float32 trajectory: Adam turns the rounding of different kernels
into W+ differences of ~1e-2 after 20 steps, on any path)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sound2img.manipulation.optimizer import AUTHORS_COS_SCALE, optimize_latents
from sound2img.models.clip import build_clip
from sound2img.models.stylegan2 import load_generator

from .conftest import GRAD_REL_TOL, IMAGE_TOL, fixture_dir, small_generator


@pytest.fixture(scope="module")
def ros():
    d = fixture_dir("rosinality")
    return load_generator(d / "rosinality_converted_style.pt"), dict(np.load(d / "rosinality_ref.npz"))


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("path", ["fast_nhwc", "fast_nchw", "composition"])
def test_synthesis_paths_match_rosinality_values_and_gradients(ros, batch, path, single_thread):
    """rosinality's ``g([wplus], input_is_latent=True, randomize_noise=False)`` and
    d/d wplus of sum(image · proj), on the fixture's first ``batch`` rows (rows are
    independent in both codebases, so the first row is what a batch of one computes)."""
    G, r = ros
    assert not any(p.requires_grad for p in G.parameters())  # frozen: the fast path runs
    G.synthesis.fused_modconv = path == "composition"
    G.synthesis.channels_last = path == "fast_nhwc"
    try:
        wplus = torch.from_numpy(r["wplus"][:batch]).requires_grad_(True)
        img = G.synthesis(wplus)
        (img * torch.from_numpy(r["proj"][:batch])).sum().backward()
    finally:
        G.synthesis.fused_modconv, G.synthesis.channels_last = False, None
    want_img, want_grad = torch.from_numpy(r["img_wplus"][:batch]), torch.from_numpy(r["grad_wplus"][:batch])
    assert (img.detach() - want_img).abs().max() <= IMAGE_TOL
    assert (wplus.grad - want_grad).abs().max() <= GRAD_REL_TOL * want_grad.abs().max()


@pytest.fixture(scope="module")
def G():
    # 64 px so that every kind of layer (up-convs, several ToRGB skips) runs at a few widths;
    # noise strengths and biases non-zero so that their terms of the backward are exercised.
    return small_generator(seed=3, resolution=64, z_dim=32, w_dim=32, channel_base=1024, channel_max=32)


@pytest.fixture(scope="module")
def clip():
    return build_clip("tiny", seed=0, preprocess="styleclip")


def edit(G, clip, ws, target, dtype, *, composition: bool, channels_last: bool | None = None):
    """20 steps of the real optimiser in ``dtype`` (CLIP called below ``encode_image``, which
    casts to fp32): ``(ws [B,num_ws,w_dim], d_cos [steps,B])`` in float64."""
    G.synthesis.fused_modconv = composition
    G.synthesis.channels_last = False if composition else channels_last
    G.to(dtype)
    clip.model.to(dtype)
    try:
        encode = lambda img: clip.model.encode_image(clip.preprocess(img), normalize=True)  # noqa: E731
        res = optimize_latents(
            G, encode, ws.to(dtype), target.to(dtype), steps=20, lr=0.1, lambda_sim=0.002, cos_scale=AUTHORS_COS_SCALE
        )
        return res.ws.double(), res.losses["d_cos"].double()
    finally:
        G.synthesis.fused_modconv, G.synthesis.channels_last = False, None
        G.to(torch.float32)
        clip.model.to(torch.float32)


@pytest.mark.parametrize("batch", [1, 3])
def test_fast_path_edit_is_the_composition_edit(G, clip, batch, single_thread):
    """In float64 the two paths give the same 20 steps (rounding differences of ~1e-16
    stay far below 1e-9 through Adam). In float32, on either layout, the edit improves d_cos
    as much as the float64 edit does, within 5 % of that improvement (the float32 runs end
    ~1e-4 from it in d_cos, of an improvement of 0.1–0.3)."""
    gen = torch.Generator().manual_seed(batch)
    ws = G.mapping(torch.randn(batch, G.z_dim, generator=gen), 0.7)
    target = F.normalize(torch.randn(batch, clip.model.text_projection.shape[1], generator=gen), dim=-1)
    truth, d64 = edit(G, clip, ws, target, torch.float64, composition=True)
    assert (truth - ws).abs().max() > 0.5, "the edit must move the latent"
    fast64, _ = edit(G, clip, ws, target, torch.float64, composition=False, channels_last=True)
    assert (fast64 - truth).abs().max() <= 1e-9
    gain64 = d64[0] - d64[-1]
    assert (gain64 > 0.05).all(), gain64
    for channels_last in (True, False):
        _, d32 = edit(G, clip, ws, target, torch.float32, composition=False, channels_last=channels_last)
        assert ((d32[0] - d32[-1]) - gain64).abs().max() <= 0.05 * gain64.min(), (channels_last, d32[-1], d64[-1])


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
