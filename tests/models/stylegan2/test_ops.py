"""The ops against literal re-statements of their definitions (zero insertion + FIR,
per-sample kernels, explicit demodulation) and the hand-written backward passes
against autograd (gradcheck in float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sound2img.models.stylegan2.ops import (
    channel_dot,
    conv_transpose_stride2,
    demod_coefficients,
    fir_kernel_2d,
    frozen_synthesis_layer,
    modulated_1x1,
    modulated_conv2d,
    upsample2d,
)


def upfirdn_up2_naive(x: np.ndarray, f: np.ndarray, pad0: int, pad1: int) -> np.ndarray:
    """Zero insertion ×2, pad (pad0, pad1), then a true 2-D convolution with f (docs/formats.md §2)."""
    c, h, w = x.shape
    up = np.zeros((c, 2 * h, 2 * w))
    up[:, ::2, ::2] = x
    up = np.pad(up, ((0, 0), (pad0, pad1), (pad0, pad1)))
    k = f[::-1, ::-1]
    oh, ow = up.shape[1] - 3, up.shape[2] - 3
    out = np.zeros((c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[:, i, j] = (up[:, i : i + 4, j : j + 4] * k).sum(axis=(1, 2))
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
    as stored (no flip), then the FIR with padding 1 (docs/formats.md §2)."""
    torch.manual_seed(0)
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64)
    w = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    s = torch.ones(1, 2, dtype=torch.float64)
    f = fir_kernel_2d().double() * 4
    ours = modulated_conv2d(x, w, s, demodulate=False, up=True, fir_up=f)[0].numpy()
    scat = np.zeros((4, 7, 7))
    for i in range(3):
        for j in range(3):
            scat[:, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3] += np.einsum("oikl,i->okl", w.numpy(), x[0, :, i, j].numpy())
    scat = np.pad(scat, ((0, 0), (1, 1), (1, 1)))
    ref = np.stack(
        [[[(scat[o, a : a + 4, b : b + 4] * f.numpy()).sum() for b in range(6)] for a in range(6)] for o in range(4)]
    )
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
            y = F.conv_transpose2d(x[b : b + 1], wb.transpose(0, 1), stride=2)
            y = F.conv2d(y, f[None, None].expand(5, 1, 4, 4), padding=1, groups=5)
        else:
            y = F.conv2d(x[b : b + 1], wb, padding=1)
        outs.append(y)
    ref = torch.cat(outs)
    for fused in (False, True):
        got = modulated_conv2d(x, w, s, demodulate=True, up=up, fir_up=f, fused=fused)
        assert torch.allclose(got, ref, atol=1e-10)
    d = demod_coefficients(w, s, 1e-8)
    assert torch.allclose(
        modulated_conv2d(x, w, s, demodulate=False, up=up, fir_up=f) * d[:, :, None, None], ref, atol=1e-10
    )


def _layer_inputs(batch, up, noise_kind, seed=2, c_in=5, c_out=6, size=7):
    gen = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    w = r(c_out, c_in, 3, 3)
    x, s = r(batch, c_in, size, size), r(batch, c_in)
    d = demod_coefficients(w, s, 1e-8) * (1 + 0.1 * r(batch, c_out))  # any positive d
    out_size = 2 * size if up else size
    noise = {"const": r(out_size, out_size), "random": r(batch, 1, out_size, out_size), "none": None}[noise_kind]
    return x, s, d, noise, 0.3 * r(c_out), w


def layer_by_definition(x, s, d, noise, b, w, up, f, clamp):
    """The synthesis layer as docs/formats.md §2 defines it, one sample at a time in plain
    torch: the kernel modulated by the sample's styles, a 3×3 conv (up: the transposed conv
    with the unflipped kernel, stride 2, then the FIR with padding 1), × d per output
    channel, + noise, + bias, leaky ReLU(0.2)·√2, then the clamp."""
    outs = []
    for i in range(x.shape[0]):
        wi = w * s[i][None, :, None, None]
        if up:
            y = F.conv_transpose2d(x[i : i + 1], wi.transpose(0, 1), stride=2)
            y = F.conv2d(y, f[None, None].expand(y.shape[1], 1, 4, 4), padding=1, groups=y.shape[1])
        else:
            y = F.conv2d(x[i : i + 1], wi, padding=1)
        y = y * d[i][None, :, None, None]
        if noise is not None:
            y = y + (noise[i : i + 1] if noise.dim() == 4 else noise)
        y = F.leaky_relu(y + b[None, :, None, None], 0.2) * np.sqrt(2)
        outs.append(y if clamp is None else y.clamp(-clamp, clamp))
    return torch.cat(outs)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("up", [False, True])
@pytest.mark.parametrize("noise_kind, clamp", [("const", None), ("random", 0.8), ("none", 0.5)])
def test_frozen_synthesis_layer_matches_reference_values_and_gradients(batch, up, noise_kind, clamp, single_thread):
    """The fused layer (weights folded for a batch of one, pre-activation recovered from
    the output in backward) against the layer's definition written out per sample, values
    and the gradients autograd takes through that definition, in float64."""
    x, s, d, noise, b, w = _layer_inputs(batch, up, noise_kind)
    f = fir_kernel_2d().double() * 4
    leaves = [t.requires_grad_(True) for t in (x, s, d, b) + ((noise,) if noise is not None else ())]
    kernel = w.transpose(0, 1).contiguous() if up else w
    ours = frozen_synthesis_layer(x, s, d, noise, b, kernel, up, f, clamp)
    ref = layer_by_definition(x, s, d, noise, b, w, up, f, clamp)
    assert torch.allclose(ours, ref, atol=1e-12)
    if clamp is not None:
        assert (ref.abs() == clamp).any(), "the clamp must bite in this test"
    g = torch.randn(ours.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    for a, e in zip(torch.autograd.grad(ours, leaves, g), torch.autograd.grad(ref, leaves, g)):
        assert torch.allclose(a, e, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("up", [False, True])
def test_frozen_synthesis_layer_gradcheck(up, single_thread):
    x, s, d, noise, b, w = _layer_inputs(1, up, "const", c_in=2, c_out=2, size=3)
    f = fir_kernel_2d().double() * 4
    kernel = w.transpose(0, 1).contiguous() if up else w
    inputs = tuple(t.requires_grad_(True) for t in (x, s, d, noise, b))
    assert torch.autograd.gradcheck(lambda *a: frozen_synthesis_layer(*a, kernel, up, f, 1.0), inputs)
    with pytest.raises(ValueError, match="requires no gradient"):
        frozen_synthesis_layer(*inputs, kernel.clone().requires_grad_(True), up, f)


@pytest.mark.parametrize("channels_last", [False, True])
def test_modulated_1x1(channels_last):
    x = torch.randn(2, 5, 3, 4, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(2, 3, 5, dtype=torch.float64)
    ref = torch.cat([F.conv2d(x[b : b + 1], w[b][:, :, None, None]) for b in range(2)])
    assert torch.allclose(modulated_1x1(x, w), ref, atol=1e-12)


@pytest.mark.parametrize("channels_last", [False, True])
def test_modulated_1x1_gradients(channels_last):
    x = torch.randn(2, 5, 3, 4, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    w = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(modulated_1x1, (x, w))


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("batch", [1, 2])
def test_conv_transpose_stride2_by_phases(channels_last, batch):
    """The four-phase stride-1 form equals the transposed convolution (odd and even sizes)."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(batch, 5, 6, 7, dtype=torch.float64, generator=gen)
    k = torch.randn(5, 4, 3, 3, dtype=torch.float64, generator=gen)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    ours = conv_transpose_stride2(x, k)
    assert ours.shape == (batch, 4, 13, 15)
    assert ours.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    assert torch.allclose(ours, F.conv_transpose2d(x, k, stride=2), atol=1e-12)


@pytest.mark.parametrize("layouts", [("nchw", "nchw"), ("nhwc", "nhwc"), ("nhwc", "nchw")])
def test_channel_dot_in_chunks(layouts):
    gen = torch.Generator().manual_seed(5)
    a, b = (torch.randn(2, 6, 5, 7, dtype=torch.float64, generator=gen) for _ in range(2))
    a, b = (
        t.contiguous(memory_format=torch.channels_last) if layout == "nhwc" else t for t, layout in zip((a, b), layouts)
    )
    ref = (a * b).sum(dim=(2, 3))
    for chunk in (1, 13, 1 << 20):  # one row, uneven chunks, all at once
        assert torch.allclose(channel_dot(a, b, chunk), ref, atol=1e-12)
