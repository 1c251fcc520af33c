"""StyleGAN2 ops in plain PyTorch (CPU and CUDA): the [1,3,3,1] FIR resampling,
modulated convolution with demodulation, and the fused bias + leaky ReLU (× √2, clamp).
fp32; the frozen fast path also runs in bf16 (activations and kernels in bf16, per-channel
quantities and their reductions in fp32). Semantics: docs/formats.md §2."""

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


def _depthwise(f: torch.Tensor, channels: int, dtype: torch.dtype) -> torch.Tensor:
    # the FIR's taps (k/16, k/64 × 4) are exact in bf16
    return f.to(dtype)[None, None].expand(channels, 1, *f.shape)


def blur_after_upconv(x: torch.Tensor, fir_up: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The 4×4 FIR that follows the stride-2 transposed conv: ``x [B,C,2H+1,2W+1]`` →
    ``[B,C,2H,2W]``, padding 1 on every side, plus ``bias [C]`` if given. ``fir_up [4,4]``
    already carries the upsampling gain 4. A true convolution, but the filter is
    symmetric so no flip."""
    return F.conv2d(x, _depthwise(fir_up, x.shape[1], x.dtype), bias, padding=1, groups=x.shape[1])


def upsample2d(x: torch.Tensor, fir_up: torch.Tensor) -> torch.Tensor:
    """×2 FIR upsampling of the skip image, ``x [B,C,H,W]`` → ``[B,C,2H,2W]``.

    Zero-insertion then the 4×4 FIR with padding (2, 1) equals a stride-2 depthwise
    transposed conv cropped by one pixel on each side (``padding=1``), which avoids
    materialising the zero-stuffed image."""
    return F.conv_transpose2d(x, _depthwise(fir_up, x.shape[1], x.dtype), stride=2, padding=1, groups=x.shape[1])


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


def channel_dot(a: torch.Tensor, b: torch.Tensor, chunk: int = 1 << 20) -> torch.Tensor:
    """``Σ_hw a·b`` → ``[B,C]`` for two ``[B,C,H,W]`` tensors, without a full-size temporary:
    einsum on NCHW; on channels_last (where einsum is slow) products of about ``chunk``
    elements at a time, summed, so the temporary stays in cache (a full-size one is
    134 MB per tensor at 1024 px). Sums of bf16 tensors are accumulated and returned in
    fp32 (they feed differences, e.g. the demodulation gradient)."""
    acc = torch.result_type(a, b)
    acc = torch.float32 if acc == torch.bfloat16 else acc
    if a.is_contiguous() and b.is_contiguous():
        if acc != a.dtype:
            return (a * b).sum(dim=(2, 3), dtype=acc)
        return torch.einsum("bchw,bchw->bc", a, b)
    af, a_nhwc = _flat_hw(a)
    bf, b_nhwc = _flat_hw(b)
    if not (a_nhwc and b_nhwc):
        return (a * b).sum(dim=(2, 3), dtype=acc)
    rows = max(1, chunk // a.shape[1])
    out = torch.zeros(a.shape[:2], dtype=acc, device=a.device)
    for start in range(0, af.shape[1], rows):
        out += (af[:, start : start + rows] * bf[:, start : start + rows]).sum(dim=1, dtype=acc)
    return out


def conv_transpose_stride2(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``F.conv_transpose2d(x, kernel, stride=2)`` for a 3×3 ``kernel [C_in,C_out,3,3]``:
    ``x [B,C_in,H,W]`` → ``[B,C_out,2H+1,2W+1]``, in the layout of ``x``.

    On the CPU as four ordinary stride-1 convolutions, one per output phase (even rows
    take taps 0 and 2, odd rows tap 1; columns alike), written into their interleaved
    places: the same 9 taps of arithmetic, but oneDNN runs stride-1 convolutions about
    twice as fast as a strided transposed one at the high resolutions (README, Benchmarks).
    Elsewhere (cuDNN) the transposed convolution itself."""
    if x.device.type != "cpu":
        return F.conv_transpose2d(x, kernel, stride=2)
    b, _, h, w = x.shape
    fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    corr = kernel.transpose(0, 1).flip(2, 3)  # [C_out, C_in, 3, 3]: the correlation kernel
    out = torch.empty(b, corr.shape[0], 2 * h + 1, 2 * w + 1, dtype=x.dtype, device=x.device, memory_format=fmt)
    # Even output rows take (flipped) taps 0 and 2 with one row of zero padding; odd rows tap 1.
    out[:, :, 0::2, 0::2] = F.conv2d(x, corr[:, :, 0::2, 0::2].contiguous(memory_format=fmt), padding=1)
    out[:, :, 0::2, 1::2] = F.conv2d(x, corr[:, :, 0::2, 1:2].contiguous(memory_format=fmt), padding=(1, 0))
    out[:, :, 1::2, 0::2] = F.conv2d(x, corr[:, :, 1:2, 0::2].contiguous(memory_format=fmt), padding=(0, 1))
    # The 1×1 phase as a matrix product (PyTorch sends a 1×1 convolution to a slow path here).
    xf, nhwc = _flat_hw(x)
    centre = corr[:, :, 1, 1]  # [C_out, C_in]
    odd = (xf @ centre.t()).reshape(b, h, w, -1).permute(0, 3, 1, 2) if nhwc else (centre @ xf).reshape(b, -1, h, w)
    out[:, :, 1::2, 1::2] = odd
    return out


def _conv_forward(
    x: torch.Tensor, kernel: torch.Tensor, up: bool, fir_up: torch.Tensor | None, bias: torch.Tensor | None = None
) -> torch.Tensor:
    if up:  # kernel is the stored weight transposed to [C_in, C_out, k, k]
        return blur_after_upconv(conv_transpose_stride2(x, kernel), fir_up, bias)
    return F.conv2d(x, kernel, bias, padding=kernel.shape[-1] // 2)


def _conv_adjoint(g: torch.Tensor, kernel: torch.Tensor, up: bool, fir_up: torch.Tensor | None) -> torch.Tensor:
    """The transpose (input gradient) of ``_conv_forward`` for a constant kernel."""
    if up:
        c = g.shape[1]
        g = F.conv_transpose2d(g, _depthwise(fir_up, c, g.dtype), padding=1, groups=c)
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


def _fold_kernel(kernel: torch.Tensor, in_scale: torch.Tensor, out_scale: torch.Tensor, up: bool) -> torch.Tensor:
    """``kernel`` with ``in_scale [C_in]`` and ``out_scale [C_out]`` multiplied into its
    input and output axes (the first two are [C_out, C_in], or [C_in, C_out] when ``up``).
    The product keeps the kernel's memory format, so a channels_last kernel reaches
    oneDNN without a per-call reorder, and its dtype: fp32 scales are rounded to a bf16
    kernel's dtype first (a product of mixed dtypes takes a path ~30× slower on the CPU)."""
    sd = in_scale[:, None] * out_scale[None, :] if up else out_scale[:, None] * in_scale[None, :]
    return kernel * sd.to(kernel.dtype)[:, :, None, None]


def _hw_sums(g: torch.Tensor, noise: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(Σ_hw g, Σ_hw g·noise)``, each ``[B,C]``, for ``g [B,C,H,W]`` (either layout) and
    ``noise`` broadcastable to ``[B,1,H,W]``: one batched matrix product, one read of ``g``."""
    b, c, h, w = g.shape
    rows = [torch.ones(1, h * w, dtype=g.dtype, device=g.device).expand(b, -1, -1)]
    if noise is not None:
        rows.append(noise.to(g.dtype).expand(b, 1, h, w).reshape(b, 1, h * w))
    lhs = torch.cat(rows, dim=1)  # [B, 1 or 2, HW]
    gf, nhwc = _flat_hw(g)
    sums = torch.bmm(lhs, gf) if nhwc else torch.bmm(gf, lhs.transpose(1, 2)).transpose(1, 2)  # [B, k, C]
    sums = sums.float() if sums.dtype == torch.bfloat16 else sums  # summed in fp32 by the matmul
    return sums[:, 0], (sums[:, 1] if noise is not None else None)


class _FrozenSynthesisLayer(torch.autograd.Function):
    """A whole synthesis layer for a constant kernel K:
    ``out = clamp(lrelu(conv(x·s, K)·d + noise + b)·√2)``, computed as
    ``clamp(lrelu(conv(x·s, √2·K)·d + √2·(noise + b)))`` (lrelu is positively homogeneous).

    Forward: for a batch of one, ``s``, ``d`` and the gain are folded into the (small)
    kernel and the bias goes into the convolution, so the activation is written once by
    the convolution and finished by two in-place passes (noise, lrelu). Backward saves
    only ``out`` (plus ``x``, which the previous layer keeps anyway) and never computes a
    kernel gradient: with ``z`` the gained pre-activation, ``Σ ∂L/∂z·z = Σ ∂L/∂out·out``
    (``z = out / lrelu′``), so the demodulation gradient needs no pre-activation.

    Precision follows ``x`` (and ``kernel``, in the same dtype): in bf16 the activations,
    the folded kernel and the convolutions are bf16 while ``styles``, ``d``, ``noise``
    and ``bias`` stay fp32, are rounded once where they meet the activations, and get
    fp32 gradients summed in fp32."""

    @staticmethod
    def forward(ctx, x, styles, d, noise, bias, kernel, up, fir_up, clamp):
        gain_bias = (bias * LRELU_GAIN).to(x.dtype)
        if x.shape[0] == 1:
            out = _conv_forward(x, _fold_kernel(kernel, styles[0], d[0] * LRELU_GAIN, up), up, fir_up, gain_bias)
        else:
            out = _conv_forward(x * styles.to(x.dtype)[:, :, None, None], kernel, up, fir_up)
            out.mul_((d[:, :, None, None] * LRELU_GAIN).to(x.dtype)).add_(gain_bias[None, :, None, None])
        if noise is not None:  # (in-place ops with an operand of another dtype take a slow path)
            out.add_((noise * LRELU_GAIN).to(x.dtype))
        F.leaky_relu_(out, LRELU_SLOPE)
        if clamp is not None:
            out.clamp_(-clamp, clamp)
        ctx.save_for_backward(x, styles, d, noise, bias, kernel, fir_up, out)
        ctx.up, ctx.clamp = up, clamp
        return out

    @staticmethod
    def backward(ctx, g):
        x, styles, d, noise, bias, kernel, fir_up, out = ctx.saved_tensors
        need = ctx.needs_input_grad
        if ctx.clamp is not None:  # a clamped output passes no gradient
            g = g.masked_fill(out.abs() >= ctx.clamp, 0)
        gz = torch.ops.aten.leaky_relu_backward(g, out, LRELU_SLOPE, True)  # ∂L/∂z, z = √2·pre-activation
        grad_x = grad_s = grad_d = grad_noise = grad_b = None
        if need[2] or need[4]:
            sum_gz, sum_gz_noise = _hw_sums(gz, noise if need[2] else None)  # [B, C_out] each
            if need[4]:
                grad_b = sum_gz.sum(dim=0) * LRELU_GAIN
            if need[2]:
                # ∂L/∂d = Σ ∂L/∂z·√2·conv = (Σ ∂L/∂z·z − √2·Σ ∂L/∂z·(noise + b)) / d
                noise_b = sum_gz * bias[None] if sum_gz_noise is None else sum_gz * bias[None] + sum_gz_noise
                grad_d = (channel_dot(g, out) - LRELU_GAIN * noise_b) / d
        if need[3]:
            grad_noise = gz.sum(dim=1, keepdim=True, dtype=noise.dtype).mul_(LRELU_GAIN).sum_to_size(noise.shape)
        if need[0] or need[1]:
            if x.shape[0] == 1:  # ∂L/∂(x·s) with √2·d folded into the kernel
                gxm = _conv_adjoint(
                    gz, _fold_kernel(kernel, torch.ones_like(styles[0]), d[0] * LRELU_GAIN, ctx.up), ctx.up, fir_up
                )
            else:
                gxm = _conv_adjoint(gz.mul_((d[:, :, None, None] * LRELU_GAIN).to(gz.dtype)), kernel, ctx.up, fir_up)
            grad_x = gxm * styles.to(gxm.dtype)[:, :, None, None] if need[0] else None
            grad_s = channel_dot(gxm, x) if need[1] else None
        return grad_x, grad_s, grad_d, grad_noise, grad_b, None, None, None, None


def frozen_synthesis_layer(
    x: torch.Tensor,  # [B, C_in, H, W]
    styles: torch.Tensor,  # [B, C_in]
    d: torch.Tensor,  # [B, C_out] demodulation coefficients
    noise: torch.Tensor | None,  # broadcastable to [B, 1, H', W'], or None
    bias: torch.Tensor,  # [C_out]
    kernel: torch.Tensor,  # [C_out, C_in, k, k], or [C_in, C_out, k, k] when up; needs no grad; x's dtype
    up: bool = False,
    fir_up: torch.Tensor | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """``clamp(lrelu(conv(x·s, kernel)·d + noise + bias, 0.2)·√2, ±clamp)`` → ``[B,C_out,H',W']``
    (``H' = 2H`` when ``up``) in the dtype of ``x``: the same values as ``modulated_conv2d``
    followed by ``noise_bias_lrelu``, with gradients for everything except the kernel."""
    if kernel.requires_grad:
        raise ValueError("frozen_synthesis_layer needs a kernel that requires no gradient")
    if kernel.dtype != x.dtype:
        raise ValueError(f"frozen_synthesis_layer needs the kernel in x's dtype {x.dtype}, got {kernel.dtype}")
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
