"""The ops against literal re-statements of their definitions (zero insertion + FIR,
per-sample kernels, explicit demodulation) and the hand-written backward passes
against autograd (gradcheck in float64)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sound2img.models.stylegan2.ops import (
    demod_coefficients,
    demod_noise_bias_lrelu,
    fir_kernel_2d,
    frozen_modulated_conv2d,
    modulated_1x1,
    modulated_conv2d,
    upsample2d,
)


def upfirdn_up2_naive(x: np.ndarray, f: np.ndarray, pad0: int, pad1: int) -> np.ndarray:
    """Zero insertion ×2, pad (pad0, pad1), then a true 2-D convolution with f (spec §1.6)."""
    c, h, w = x.shape
    up = np.zeros((c, 2 * h, 2 * w))
    up[:, ::2, ::2] = x
    up = np.pad(up, ((0, 0), (pad0, pad1), (pad0, pad1)))
    k = f[::-1, ::-1]
    oh, ow = up.shape[1] - 3, up.shape[2] - 3
    out = np.zeros((c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[:, i, j] = (up[:, i:i + 4, j:j + 4] * k).sum(axis=(1, 2))
    return out


def test_fir_kernel():
    f = fir_kernel_2d()
    assert f.shape == (4, 4) and torch.isclose(f.sum(), torch.tensor(1.0))
    assert torch.allclose(f * 64, torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])))


def test_upsample2d_is_zero_insertion_then_fir():
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    f = fir_kernel_2d().double() * 4
    ours = upsample2d(x, f)[0].numpy()
    assert ours.shape == (2, 10, 10)
    np.testing.assert_allclose(ours, upfirdn_up2_naive(x[0].numpy(), f.numpy(), 2, 1), atol=1e-12)


def test_upconv_is_zero_insertion_then_unflipped_transpose_then_fir():
    """conv_transpose with the stored kernel == scattering each input pixel with the kernel
    as stored (no flip), then the FIR with padding 1 (spec §1.5)."""
    torch.manual_seed(0)
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64)
    w = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    s = torch.ones(1, 2, dtype=torch.float64)
    f = fir_kernel_2d().double() * 4
    ours = modulated_conv2d(x, w, s, demodulate=False, up=True, fir_up=f)[0].numpy()
    scat = np.zeros((4, 7, 7))
    for i in range(3):
        for j in range(3):
            scat[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3] += np.einsum("oikl,i->okl", w.numpy(), x[0, :, i, j].numpy())
    scat = np.pad(scat, ((0, 0), (1, 1), (1, 1)))
    ref = np.stack([[[(scat[o, a:a + 4, b:b + 4] * f.numpy()).sum() for b in range(6)] for a in range(6)]
                    for o in range(4)])
    np.testing.assert_allclose(ours, ref, atol=1e-12)


@pytest.mark.parametrize("up", [False, True])
def test_modulated_conv_forms_agree_with_per_sample_kernels(up):
    torch.manual_seed(1)
    x = torch.randn(3, 4, 6, 6, dtype=torch.float64)
    w = torch.randn(5, 4, 3, 3, dtype=torch.float64)
    s = torch.randn(3, 4, dtype=torch.float64)
    f = fir_kernel_2d().double() * 4
    outs = []
    for b in range(3):  # literal definition: modulate, demodulate, convolve
        wb = w * s[b][None, :, None, None]
        wb = wb * (wb.square().sum(dim=(1, 2, 3)) + 1e-8).rsqrt()[:, None, None, None]
        if up:
            y = F.conv_transpose2d(x[b:b + 1], wb.transpose(0, 1), stride=2)
            y = F.conv2d(y, f[None, None].expand(5, 1, 4, 4), padding=1, groups=5)
        else:
            y = F.conv2d(x[b:b + 1], wb, padding=1)
        outs.append(y)
    ref = torch.cat(outs)
    for fused in (False, True):
        got = modulated_conv2d(x, w, s, demodulate=True, up=up, fir_up=f, fused=fused)
        assert torch.allclose(got, ref, atol=1e-10)
    d = demod_coefficients(w, s, 1e-8)
    kernel = w.transpose(0, 1).contiguous() if up else w
    got = frozen_modulated_conv2d(x, s, kernel, up=up, fir_up=f) * d[:, :, None, None]
    assert torch.allclose(got, ref, atol=1e-10)


@pytest.mark.parametrize("up", [False, True])
def test_frozen_modconv_backward_is_autograd(up, single_thread):
    torch.manual_seed(2)
    f = fir_kernel_2d().double() * 4
    w = torch.randn(6, 5, 3, 3, dtype=torch.float64)
    kernel = w.transpose(0, 1).contiguous() if up else w
    x = torch.randn(2, 5, 7, 7, dtype=torch.float64, requires_grad=True)
    s = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 6, 14 if up else 7, 14 if up else 7, dtype=torch.float64)
    ours = torch.autograd.grad(frozen_modulated_conv2d(x, s, kernel, up, f), (x, s), g)
    k_ref = kernel.clone().requires_grad_(True)  # a kernel that needs grad takes the plain autograd path
    ref = torch.autograd.grad(frozen_modulated_conv2d(x, s, k_ref, up, f), (x, s), g)
    for a, b in zip(ours, ref):
        assert torch.allclose(a, b, atol=1e-10)
    # and a numerical check on a tiny case
    xs, ss = x[:1, :2, :3, :3].detach().requires_grad_(True), s[:1, :2].detach().requires_grad_(True)
    ks = kernel[:2, :3].contiguous() if up else kernel[:3, :2].contiguous()
    assert torch.autograd.gradcheck(lambda a, b: frozen_modulated_conv2d(a, b, ks, up, f), (xs, ss))


@pytest.mark.parametrize("clamp", [None, 0.8])
def test_demod_noise_bias_lrelu_matches_definition_and_autograd(clamp):
    torch.manual_seed(3)
    y = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    d = torch.rand(2, 3, dtype=torch.float64, requires_grad=True)
    noise = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    ref = F.leaky_relu(y * d[:, :, None, None] + noise + b[None, :, None, None], 0.2) * np.sqrt(2)
    if clamp is not None:
        ref = ref.clamp(-clamp, clamp)
        assert (ref.abs() == clamp).any(), "the clamp must bite in this test"
    assert torch.allclose(demod_noise_bias_lrelu(y, d, noise, b, clamp), ref, atol=1e-12)
    assert torch.autograd.gradcheck(lambda *a: demod_noise_bias_lrelu(*a, clamp), (y, d, noise, b))
    per_sample_noise = torch.randn(2, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: demod_noise_bias_lrelu(*a, clamp), (y, d, per_sample_noise, b))


@pytest.mark.parametrize("channels_last", [False, True])
def test_modulated_1x1(channels_last):
    x = torch.randn(2, 5, 3, 4, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(2, 3, 5, dtype=torch.float64)
    ref = torch.cat([F.conv2d(x[b:b + 1], w[b][:, :, None, None]) for b in range(2)])
    assert torch.allclose(modulated_1x1(x, w), ref, atol=1e-12)
