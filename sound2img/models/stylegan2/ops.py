"""StyleGAN2 ops in plain PyTorch (CPU and CUDA, fp32): the [1,3,3,1] FIR resampling,
modulated convolution with demodulation, and the fused bias + leaky ReLU (× √2, clamp).
Semantics: docs/formats.md §2."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
FIR_TAPS = (1.0, 3.0, 3.0, 1.0)


def fir_kernel_2d(taps=FIR_TAPS) -> torch.Tensor:
    """The normalised 2-D low-pass ``outer(taps, taps) / sum²`` [4,4], summing to 1
    (NVlabs' ``resample_filter``; rosinality stores it × 4)."""
    t = torch.tensor(taps, dtype=torch.float32)
    f = torch.outer(t, t)
    return f / f.sum()


def _depthwise(f: torch.Tensor, channels: int) -> torch.Tensor:
    return f[None, None].expand(channels, 1, *f.shape)


def blur_after_upconv(x: torch.Tensor, fir_up: torch.Tensor) -> torch.Tensor:
    """The 4×4 FIR that follows the stride-2 transposed conv: ``x [B,C,2H+1,2W+1]`` →
    ``[B,C,2H,2W]``, padding 1 on every side. ``fir_up [4,4]`` already carries the
    upsampling gain 4. A true convolution, but the filter is symmetric so no flip."""
    return F.conv2d(x, _depthwise(fir_up, x.shape[1]), padding=1, groups=x.shape[1])


def upsample2d(x: torch.Tensor, fir_up: torch.Tensor) -> torch.Tensor:
    """×2 FIR upsampling of the skip image, ``x [B,C,H,W]`` → ``[B,C,2H,2W]``.

    Zero-insertion then the 4×4 FIR with padding (2, 1) equals a stride-2 depthwise
    transposed conv cropped by one pixel on each side (``padding=1``), which avoids
    materialising the zero-stuffed image."""
    return F.conv_transpose2d(x, _depthwise(fir_up, x.shape[1]), stride=2, padding=1, groups=x.shape[1])


def demod_coefficients(weight: torch.Tensor, styles: torch.Tensor, eps: float) -> torch.Tensor:
    """``d [B,C_out] = rsqrt(Σ_{i,kh,kw} (W[o,i]·s[b,i])² + eps)`` for ``weight
    [C_out,C_in,k,k]`` and ``styles [B,C_in]``, as one small matmul instead of building the
    per-sample weights."""
    wsq = weight.square().sum(dim=(2, 3))  # [C_out, C_in]
    return (styles.square() @ wsq.t() + eps).rsqrt()


def modulated_conv2d(
    x: torch.Tensor,  # [B, C_in, H, W] input activations
    weight: torch.Tensor,  # [C_out, C_in, k, k] stored (un-modulated) kernel
    styles: torch.Tensor,  # [B, C_in] modulation, already scaled by any gain
    demodulate: bool,  # normalise each output channel (3×3 convs) or not (ToRGB)
    up: bool = False,  # stride-2 transposed conv + FIR (first conv of a block)
    fir_up: torch.Tensor | None = None,  # [4,4] FIR with gain 4, required when up
    eps: float = 1e-8,  # demodulation epsilon, in NVlabs' placement (unscaled weights)
    fused: bool = False,  # grouped conv with per-sample weights instead of modulating x
) -> torch.Tensor:
    """Modulated (and optionally demodulated) convolution, padding ``k//2``.

    Two mathematically identical forms. ``fused=False`` (default) scales the input by
    the styles, runs one ordinary conv with the shared, frozen kernel and scales the
    output by the demodulation coefficients: its backward never computes a kernel
    gradient, which is what latent optimisation needs. ``fused=True`` is the reference
    codebases' grouped conv over batch-folded per-sample kernels.
    Returns ``[B, C_out, H', W']`` (``H' = 2H`` when ``up``).
    """
    batch, c_in = x.shape[:2]
    c_out, k = weight.shape[0], weight.shape[-1]
    d = demod_coefficients(weight, styles, eps) if demodulate else None
    if fused:
        w = weight[None] * styles[:, None, :, None, None]
        if d is not None:
            w = w * d[:, :, None, None, None]
        xg = x.reshape(1, batch * c_in, *x.shape[2:])
        if up:
            wt = w.transpose(1, 2).reshape(batch * c_in, c_out, k, k)
            y = F.conv_transpose2d(xg, wt, stride=2, groups=batch)
        else:
            y = F.conv2d(xg, w.reshape(batch * c_out, c_in, k, k), padding=k // 2, groups=batch)
        y = y.reshape(batch, c_out, *y.shape[2:])
        return blur_after_upconv(y, fir_up) if up else y
    y = x * styles[:, :, None, None]
    if up:
        # The stored kernel is used as is (no flip): conv_transpose wants [C_in, C_out, k, k].
        y = blur_after_upconv(F.conv_transpose2d(y, weight.transpose(0, 1), stride=2), fir_up)
    else:
        y = F.conv2d(y, weight, padding=k // 2)
    return y if d is None else y * d[:, :, None, None]


def channel_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``Σ_hw a·b`` → ``[B,C]`` for two ``[B,C,H,W]`` tensors, without a full-size temporary
    where the layout allows (einsum is fast on NCHW, slow on channels_last)."""
    if a.is_contiguous() and b.is_contiguous():
        return torch.einsum("bchw,bchw->bc", a, b)
    return (a * b).sum(dim=(2, 3))


def _conv_forward(x: torch.Tensor, kernel: torch.Tensor, up: bool, fir_up: torch.Tensor | None) -> torch.Tensor:
    if up:  # kernel is the stored weight transposed to [C_in, C_out, k, k]
        return blur_after_upconv(F.conv_transpose2d(x, kernel, stride=2), fir_up)
    return F.conv2d(x, kernel, padding=kernel.shape[-1] // 2)


def _conv_adjoint(g: torch.Tensor, kernel: torch.Tensor, up: bool, fir_up: torch.Tensor | None) -> torch.Tensor:
    """The transpose (input gradient) of ``_conv_forward`` for a constant kernel."""
    if up:
        c = g.shape[1]
        g = F.conv_transpose2d(g, _depthwise(fir_up, c), padding=1, groups=c)
        return F.conv2d(g, kernel, stride=2)
    return F.conv_transpose2d(g, kernel, padding=kernel.shape[-1] // 2)


def noise_bias_lrelu(
    y: torch.Tensor, noise: torch.Tensor | None, bias: torch.Tensor, clamp: float | None = None
) -> torch.Tensor:
    """``clamp(lrelu(y + noise + bias, 0.2)·√2, ±clamp)`` for ``y [B,C,H,W]``, ``noise``
    broadcastable to ``[B,1,H,W]`` (or None), ``bias [C]``: the clamp follows the gain, as
    in NVlabs' ``bias_act``. Plain autograd (reference and fine-tuning path)."""
    if noise is not None:
        y = y + noise
    y = F.leaky_relu(y + bias[None, :, None, None], LRELU_SLOPE) * LRELU_GAIN
    return y if clamp is None else y.clamp(-clamp, clamp)


class _FrozenSynthesisLayer(torch.autograd.Function):
    """A whole synthesis layer for a constant kernel K:
    ``out = clamp(lrelu(conv(x·s, K)·d + noise + b)·√2)``.

    Forward allocates one activation-sized tensor (two for ``up``) and finishes in place;
    for a batch of one, ``s`` and ``d`` are folded into the (small) kernel instead of the
    (large) activations. Backward saves only ``out`` (plus ``x``, which the previous layer
    keeps anyway), recovers the pre-activation from ``out`` where it is needed, and never
    computes a kernel gradient."""

    @staticmethod
    def forward(ctx, x, styles, d, noise, bias, kernel, up, fir_up, clamp):
        if x.shape[0] == 1:
            s, dd = styles[0], d[0]
            sd = s[:, None] * dd[None, :] if up else dd[:, None] * s[None, :]  # kernel's first two axes
            out = _conv_forward(x, kernel * sd[:, :, None, None], up, fir_up)
        else:
            out = _conv_forward(x * styles[:, :, None, None], kernel, up, fir_up)
            out.mul_(d[:, :, None, None])
        if noise is not None:
            out.add_(noise)
        out.add_(bias[None, :, None, None])
        F.leaky_relu_(out, LRELU_SLOPE)
        out.mul_(LRELU_GAIN)
        if clamp is not None:
            out.clamp_(-clamp, clamp)
        ctx.save_for_backward(x, styles, d, noise, bias, kernel, fir_up, out)
        ctx.up, ctx.clamp = up, clamp
        return out

    @staticmethod
    def backward(ctx, g):
        x, styles, d, noise, bias, kernel, fir_up, out = ctx.saved_tensors
        need = ctx.needs_input_grad
        # out = z·slope with slope √2 where z > 0 (exactly where out > 0), else 0.2·√2
        slope = (out > 0).to(out.dtype).mul_(LRELU_GAIN * (1 - LRELU_SLOPE)).add_(LRELU_GAIN * LRELU_SLOPE)
        gz = g * slope
        if ctx.clamp is not None:  # a clamped output passes no gradient
            gz.masked_fill_(out.abs() >= ctx.clamp, 0)
        grad_x = grad_s = grad_d = grad_noise = grad_b = None
        if need[2]:
            # conv output · d = z − noise − b, with z recovered from out (exact up to rounding;
            # where the clamp bit, gz is 0 and z does not matter)
            z = slope.reciprocal_().mul_(out)  # slope's buffer is not needed any more
            if noise is not None:
                z.sub_(noise)
            z.sub_(bias[None, :, None, None])
            grad_d = channel_dot(gz, z) / d
        if need[3]:
            grad_noise = gz.sum(dim=1, keepdim=True).sum_to_size(noise.shape)
        if need[4]:
            grad_b = gz.sum(dim=(0, 2, 3))
        if need[0] or need[1]:
            gxm = _conv_adjoint(gz.mul_(d[:, :, None, None]), kernel, ctx.up, fir_up)
            grad_x = gxm * styles[:, :, None, None] if need[0] else None
            grad_s = channel_dot(gxm, x) if need[1] else None
        return grad_x, grad_s, grad_d, grad_noise, grad_b, None, None, None, None


def frozen_synthesis_layer(
    x: torch.Tensor,  # [B, C_in, H, W]
    styles: torch.Tensor,  # [B, C_in]
    d: torch.Tensor,  # [B, C_out] demodulation coefficients
    noise: torch.Tensor | None,  # broadcastable to [B, 1, H', W'], or None
    bias: torch.Tensor,  # [C_out]
    kernel: torch.Tensor,  # [C_out, C_in, k, k], or [C_in, C_out, k, k] when up; needs no grad
    up: bool = False,
    fir_up: torch.Tensor | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """``clamp(lrelu(conv(x·s, kernel)·d + noise + bias, 0.2)·√2, ±clamp)`` → ``[B,C_out,H',W']``
    (``H' = 2H`` when ``up``): the same values as ``modulated_conv2d`` followed by
    ``noise_bias_lrelu``, with gradients for everything except the kernel."""
    if kernel.requires_grad:
        raise ValueError("frozen_synthesis_layer needs a kernel that requires no gradient")
    return _FrozenSynthesisLayer.apply(x, styles, d, noise, bias, kernel, up, fir_up, clamp)


def _flat_hw(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """``x [B,C,H,W]`` as a no-copy matrix view: ``[B,C,HW]`` (NCHW) or ``[B,HW,C]`` (NHWC)."""
    b, c, h, w = x.shape
    if x.is_contiguous():
        return x.reshape(b, c, h * w), False
    return x.permute(0, 2, 3, 1).reshape(b, h * w, c), True


class _Modulated1x1(torch.autograd.Function):
    """Per-sample 1×1 conv as batched matmuls, each oriented so that BLAS sees contiguous
    operands (a transposed ``[HW, C]`` operand with HW ~ 10⁶ is ~10× slower on CPU)."""

    @staticmethod
    def forward(ctx, x, weight):
        b, _, h, w = x.shape
        xf, nhwc = _flat_hw(x)
        y = torch.bmm(weight, xf.transpose(1, 2) if nhwc else xf)
        ctx.save_for_backward(x, weight)
        return y.reshape(b, -1, h, w)

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        b, c, h, w = x.shape
        gf = g.contiguous().reshape(b, -1, h * w)  # [B, O, HW]
        xf, nhwc = _flat_hw(x)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            if nhwc:
                grad_x = torch.bmm(gf.transpose(1, 2), weight).reshape(b, h, w, c).permute(0, 3, 1, 2)
            else:
                grad_x = torch.bmm(weight.transpose(1, 2), gf).reshape(b, c, h, w)
        if ctx.needs_input_grad[1]:
            grad_w = torch.bmm(gf, xf) if nhwc else torch.bmm(gf, xf.transpose(1, 2))
        return grad_x, grad_w


def modulated_1x1(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-sample 1×1 conv (ToRGB): ``x [B,C,H,W]`` (either memory layout) with ``weight
    [B,O,C]`` → ``[B,O,H,W]`` (NCHW)."""
    return _Modulated1x1.apply(x, weight)


def normalize_2nd_moment(z: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``z · rsqrt(mean(z², dim=1) + eps)`` (rosinality's PixelNorm)."""
    return z * (z.square().mean(dim=1, keepdim=True) + eps).rsqrt()
