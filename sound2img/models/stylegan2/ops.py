"""StyleGAN2 ops in plain PyTorch (CPU and CUDA, fp32): the [1,3,3,1] FIR resampling,
modulated convolution with demodulation, and the fused bias + leaky ReLU (× √2, clamp).
Semantics follow checkpoint-formats.md §1.4–1.6."""
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
    x: torch.Tensor,        # [B, C_in, H, W] input activations
    weight: torch.Tensor,   # [C_out, C_in, k, k] stored (un-modulated) kernel
    styles: torch.Tensor,   # [B, C_in] modulation, already scaled by any gain
    demodulate: bool,       # normalise each output channel (3×3 convs) or not (ToRGB)
    up: bool = False,       # stride-2 transposed conv + FIR (first conv of a block)
    fir_up: torch.Tensor | None = None,  # [4,4] FIR with gain 4, required when up
    eps: float = 1e-8,      # demodulation epsilon, in NVlabs' placement (unscaled weights)
    fused: bool = False,    # grouped conv with per-sample weights instead of modulating x
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


class _FrozenModConv(torch.autograd.Function):
    """``conv(x · s, K)`` for a constant kernel K: saves only ``x`` (already kept alive by
    the previous layer) and ``s``, and its backward computes no kernel gradient."""

    @staticmethod
    def forward(ctx, x, styles, kernel, up, fir_up):
        ctx.save_for_backward(x, styles, kernel, fir_up)
        ctx.up = up
        return _conv_forward(x * styles[:, :, None, None], kernel, up, fir_up)

    @staticmethod
    def backward(ctx, g):
        x, styles, kernel, fir_up = ctx.saved_tensors
        gxm = _conv_adjoint(g, kernel, ctx.up, fir_up)
        grad_x = gxm * styles[:, :, None, None] if ctx.needs_input_grad[0] else None
        grad_s = channel_dot(gxm, x) if ctx.needs_input_grad[1] else None
        return grad_x, grad_s, None, None, None


def frozen_modulated_conv2d(x: torch.Tensor, styles: torch.Tensor, kernel: torch.Tensor, up: bool = False,
                            fir_up: torch.Tensor | None = None) -> torch.Tensor:
    """``conv(x [B,C_in,H,W] · styles [B,C_in], kernel)`` without demodulation, for a kernel
    that needs no gradient: ``[C_out,C_in,k,k]``, or the transposed ``[C_in,C_out,k,k]``
    when ``up`` (stride-2 transposed conv + FIR). Same values as the ``fused=False`` path
    of ``modulated_conv2d``; lighter backward."""
    if kernel.requires_grad:
        return _conv_forward(x * styles[:, :, None, None], kernel, up, fir_up)
    return _FrozenModConv.apply(x, styles, kernel, up, fir_up)


class _DemodNoiseBiasAct(torch.autograd.Function):
    """``clamp(lrelu(y·d + noise + b, 0.2)·√2)`` in one buffer; saves ``y`` and the output."""

    @staticmethod
    def forward(ctx, y, d, noise, bias, clamp):
        out = y * d[:, :, None, None]
        if noise is not None:
            out.add_(noise)
        out.add_(bias[None, :, None, None])
        F.leaky_relu_(out, LRELU_SLOPE)
        out.mul_(LRELU_GAIN)
        if clamp is not None:
            out.clamp_(-clamp, clamp)
        ctx.save_for_backward(y, d, noise, out)
        ctx.clamp = clamp
        return out

    @staticmethod
    def backward(ctx, g):
        y, d, noise, out = ctx.saved_tensors
        # lrelu(z)·√2 > 0 exactly when z > 0; a clamped output passes no gradient.
        gz = g * torch.where(out > 0, LRELU_GAIN, LRELU_GAIN * LRELU_SLOPE)
        if ctx.clamp is not None:
            gz = gz.masked_fill(out.abs() >= ctx.clamp, 0)
        need = ctx.needs_input_grad
        grad_y = gz * d[:, :, None, None] if need[0] else None
        grad_d = channel_dot(gz, y) if need[1] else None
        grad_noise = gz.sum(dim=1, keepdim=True).sum_to_size(noise.shape) if need[2] else None
        grad_b = gz.sum(dim=(0, 2, 3)) if need[3] else None
        return grad_y, grad_d, grad_noise, grad_b, None


def demod_noise_bias_lrelu(y: torch.Tensor, d: torch.Tensor, noise: torch.Tensor | None, bias: torch.Tensor,
                           clamp: float | None = None) -> torch.Tensor:
    """``clamp(lrelu(y·d + noise + bias, 0.2)·√2, ±clamp)`` for ``y [B,C,H,W]``, demodulation
    ``d [B,C]``, ``noise`` broadcastable to ``[B,1,H,W]`` (or None), ``bias [C]``: the tail
    of a synthesis layer, fused so that it allocates one tensor and saves two."""
    return _DemodNoiseBiasAct.apply(y, d, noise, bias, clamp)


def modulated_1x1(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-sample 1×1 conv ``x [B,C,H,W]`` with ``weight [B,O,C]`` → ``[B,O,H,W]`` as one
    batched matmul (ToRGB), for either memory layout."""
    b, c, h, w = x.shape
    if x.is_contiguous():
        return torch.bmm(weight, x.reshape(b, c, h * w)).reshape(b, -1, h, w)
    y = torch.bmm(x.permute(0, 2, 3, 1).reshape(b, h * w, c), weight.transpose(1, 2))
    return y.reshape(b, h, w, -1).permute(0, 3, 1, 2)


def normalize_2nd_moment(z: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``z · rsqrt(mean(z², dim=1) + eps)`` (rosinality's PixelNorm)."""
    return z * (z.square().mean(dim=1, keepdim=True) + eps).rsqrt()
