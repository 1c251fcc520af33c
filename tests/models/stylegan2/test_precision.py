"""bf16 synthesis (``G.synthesis(ws, dtype=torch.bfloat16)``) and bf16 edits.

One pass: our bf16 path (bf16 activations and kernels, fp32 styles, demodulation, skip image
and per-channel sums) is at least as close to fp32 as the plain bf16 cast of the whole
network through the reference composition (the reference's own bf16 error), for the image
and for the gradients w.r.t. ws and a noise map; frozen kernels are cast once, not per call.

A 30-step edit (slow: bf16 is emulated, ~4× slower than fp32, on CPUs without it): the bf16
edit's result against the fp32 edit's from the same sources, PSNR ≥ 30 dB and |Δ final
cosine| ≤ 0.01, on the StyleGAN2 reference fixtures. The edits use lr 0.02, where the fp32
edit is itself reproducible: at the default lr 0.1 these random networks make a 30-step
edit chaotic (measured: fp32 against fp64 down to 20 dB and 0.013 in cosine on the
fixtures), so no precision could meet the bound there and the test would measure the chaos,
not bf16. Both hold with native bf16 kernels and where bf16 is emulated
(``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``). Full-size random networks (where an
emulated bf16 edit takes minutes): ``benchmarks/precision.py --fidelity``."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from sound2img.manipulation.optimizer import AUTHORS_COS_SCALE, optimize_latents
from sound2img.metrics import psnr
from sound2img.models.clip import build_clip
from sound2img.models.stylegan2 import load_generator, sample_source_latents

from .conftest import fixture_dir, small_generator

pytestmark = pytest.mark.usefixtures("single_thread")
BF16 = torch.bfloat16


@pytest.fixture(scope="module")
def G():
    # 64 px: up-convs and several ToRGB skips at a few widths; non-zero biases and noise strengths
    return small_generator(seed=3, resolution=64, z_dim=32, w_dim=32, channel_base=1024, channel_max=32)


@pytest.fixture(scope="module")
def tiny_clip():
    return build_clip("tiny", seed=0, preprocess="styleclip")


def _pass(G, ws, dtype, *, reference=False):
    """Image [B,3,H,W] (as returned) and the gradients w.r.t. ws and the 32-px noise map
    of a fixed projection of the image."""
    G.synthesis.fused_modconv = reference
    layer = G.synthesis.b32.conv1
    noise = layer.noise_const
    layer.noise_const = noise.detach().clone().requires_grad_(True)
    try:
        w = ws.detach().clone().to(G.w_avg.dtype).requires_grad_(True)
        img = G.synthesis(w, dtype=None if reference else dtype)
        proj = torch.linspace(-1, 1, img.numel()).reshape(img.shape)
        (img.float() * proj).sum().backward()
        return img.detach(), w.grad.float(), layer.noise_const.grad.float()
    finally:
        G.synthesis.fused_modconv = False
        layer.noise_const = noise


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("channels_last", [True, False])
def test_bf16_pass_is_as_close_to_fp32_as_the_plain_bf16_cast(G, batch, channels_last):
    ws = G.mapping(torch.randn(batch, G.z_dim, generator=torch.Generator().manual_seed(batch)), 0.7)
    G.synthesis.channels_last = channels_last
    naive_G = copy.deepcopy(G).to(BF16)  # every weight and activation in bf16, plain autograd
    try:
        truth = _pass(G, ws, None)
        ours = _pass(G, ws, BF16)
        naive = _pass(naive_G, ws, None, reference=True)
    finally:
        G.synthesis.channels_last = None
    assert ours[0].dtype == torch.float32  # the image (and the skip sum behind it) stays fp32
    for name, o, n, t in zip(("image", "ws gradient", "noise gradient"), ours, naive, truth):
        err, err_naive = _rel(o, t), _rel(n.float(), t)
        assert 0 < err <= 1.25 * err_naive, f"{name}: relative error {err:.2e}, plain bf16 cast {err_naive:.2e}"


def test_frozen_kernels_are_cast_once(G):
    ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(0)))
    layer = G.synthesis.b64.conv1
    G.synthesis(ws, dtype=BF16)
    cached = {k: v[1] for k, v in layer._frozen_cache.items() if k.startswith("kernel") and "bfloat16" in k}
    assert cached and all(v.dtype == BF16 for v in cached.values())
    G.synthesis(ws, dtype=BF16)
    again = {k: v[1] for k, v in layer._frozen_cache.items() if k.startswith("kernel") and "bfloat16" in k}
    assert again.keys() == cached.keys() and all(again[k] is v for k, v in cached.items())
    assert layer.weight.dtype == torch.float32  # the stored weight is untouched


def test_low_precision_needs_the_frozen_unfused_path(G):
    ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(0)))
    G.synthesis.fused_modconv = True
    try:
        with pytest.raises(ValueError, match="frozen, unfused path only"):
            G.synthesis(ws, dtype=BF16)
    finally:
        G.synthesis.fused_modconv = False


def test_a_bf16_edit_keeps_latents_losses_and_renders_in_fp32(G, tiny_clip):
    ws = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0)), 0.7)
    target = F.normalize(torch.randn(2, tiny_clip.embed_dim, generator=torch.Generator().manual_seed(1)), dim=-1)
    res = _edits(G, tiny_clip, ws, target, lr=0.1, steps=3)
    fp32, bf16 = res["fp32"], res["bf16"]
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    assert bf16.ws.dtype == torch.float32 and all(v.dtype == torch.float32 for v in bf16.losses.values())
    assert (bf16.ws - ws).abs().max() > 0.1  # the steps ran
    with torch.no_grad():  # source and result are fp32 renders of the latents
        assert torch.equal(bf16.source_img, G.synthesis(ws)) and torch.equal(bf16.source_img, fp32.source_img)
        assert torch.equal(bf16.result_img, G.synthesis(bf16.ws))
        final = (tiny_clip.encode_image(bf16.result_img) * target).sum(-1)
    assert torch.equal(bf16.final_cosine, final)
    assert (bf16.initial_cosine - fp32.initial_cosine).abs().max() <= 1e-5


def _edits(G, clip, sources, target, lr=0.02, steps=30):
    return {
        p: optimize_latents(
            G,
            clip.encode_image,
            sources,
            target,
            steps=steps,
            lr=lr,
            lambda_sim=0.002,
            cos_scale=AUTHORS_COS_SCALE,
            precision=p,
        )
        for p in ("fp32", "bf16")
    }


def check_fidelity(G, clip, n: int):
    sources = sample_source_latents(G, list(range(n)), 0.7, "cpu")
    target = F.normalize(torch.randn(n, clip.embed_dim, generator=torch.Generator().manual_seed(5)), dim=-1)
    res = _edits(G, clip, sources, target)
    fp32, bf16 = res["fp32"], res["bf16"]
    assert (fp32.final_cosine - fp32.initial_cosine).min() > 0.02, "the edit must move towards the target"
    assert bf16.precision == "bf16" and bf16.ws.dtype == torch.float32
    # the start is rendered and scored in fp32 whatever the steps' precision (fp32's initial
    # cosine is its first step's, computed with autograd on: equal up to kernel choice)
    assert torch.equal(bf16.source_img, fp32.source_img)
    assert (bf16.initial_cosine - fp32.initial_cosine).abs().max() <= 1e-5
    assert all(v.dtype == torch.float32 for v in bf16.losses.values())
    quality = psnr(bf16.result_img, fp32.result_img)
    d_cos = (bf16.final_cosine - fp32.final_cosine).abs()
    assert quality.min() >= 30, f"result PSNR {quality.tolist()} dB"
    assert d_cos.max() <= 0.01, f"|Δ final cosine| {d_cos.tolist()}"


FIXTURES = {
    "rosinality": ("rosinality", "rosinality_converted_style.pt"),
    "nvlabs_ada": ("nvlabs_ada", "network-snapshot-000000.pkl"),
    "nvlabs_ada_clamp": ("nvlabs_ada_clamp", "network-snapshot-000000.pkl"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_bf16_edit_matches_fp32_on_the_reference_fixtures(name, tiny_clip):
    folder, file = FIXTURES[name]
    check_fidelity(load_generator(fixture_dir(folder) / file), tiny_clip, n=3)
