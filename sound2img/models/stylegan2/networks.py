"""StyleGAN2 mapping and synthesis networks ('skip' architecture, fp32), built from plain
arguments. Module and tensor names follow NVlabs' ``G_ema`` (docs/formats.md §4.4)
so that readers only rename for rosinality; ``build_generator`` makes random ones."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from sound2img.models.stylegan2.ops import (
    LRELU_GAIN,
    LRELU_SLOPE,
    fir_kernel_2d,
    frozen_synthesis_layer,
    modulated_1x1,
    modulated_conv2d,
    noise_bias_lrelu,
    normalize_2nd_moment,
    upsample2d,
)
from sound2img.utils.device import resolve_device

NOISE_MODES = ("const", "random", "none")
DEMOD_EPS = 1e-8


@dataclass
class GeneratorArch:
    """Everything that rebuilds a ``Generator`` (stored as JSON in our safetensors)."""

    img_resolution: int  # output side, 4·2^k
    z_dim: int
    w_dim: int
    n_mlp: int  # mapping layers
    channels: list[int]  # width per block, resolutions 4, 8, …, img_resolution
    img_channels: int = 3
    layer_features: int | None = None  # mapping hidden width (None: w_dim)
    lr_multiplier: float = 0.01  # mapping's equalised-lr multiplier
    conv_clamp: float | None = None  # NVlabs activation clamp (None: off)
    use_noise: bool = True
    demod_eps: str = "nvlabs"  # where ε enters demodulation: "nvlabs" or "rosinality" (docs/formats.md §2)
    extra: dict = field(default_factory=dict)  # provenance only, never used to build

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def block_resolutions(self) -> list[int]:
        return block_resolutions(self.img_resolution)


def block_resolutions(resolution: int) -> list[int]:
    """Synthesis block resolutions 4, 8, …, resolution."""
    return [2**i for i in range(2, int(math.log2(resolution)) + 1)]


def num_ws_for(resolution: int) -> int:
    """W+ rows for a resolution: ``2·log2(res) − 2`` (one per conv, plus the last ToRGB)."""
    return 2 * int(math.log2(resolution)) - 2


def check_resolution(resolution: int) -> None:
    if not (isinstance(resolution, int) and resolution >= 4 and resolution & (resolution - 1) == 0):
        raise ValueError(f"StyleGAN2 resolution must be 4·2^k, got {resolution!r}")


def frozen_derived(module: nn.Module, name: str, fn: Callable[[], torch.Tensor], *sources: torch.Tensor):
    """``fn()``, cached on ``module`` while its ``sources`` are frozen and unchanged.

    The generator's weights never change during latent optimisation, so values derived
    from them only (run-time scaled weights, kernel norms, transposed kernels) are
    computed once. The cache is keyed on each source's storage, version counter, device
    and dtype, so in-place updates (``load_state_dict``) and ``.to()`` invalidate it; a
    source that requires grad bypasses it."""
    if any(t.requires_grad for t in sources) or torch.compiler.is_compiling():
        return fn()
    key = tuple((t.data_ptr(), t._version, t.device, t.dtype) for t in sources)
    cache = module.__dict__.setdefault("_frozen_cache", {})
    hit = cache.get(name)
    if hit is None or hit[0] != key:
        with torch.no_grad():
            hit = cache[name] = (key, fn())
    return hit[1]


class FullyConnectedLayer(nn.Module):
    """Equalised-lr linear layer: run-time weight = stored × lr/√fan_in, bias × lr."""

    def __init__(self, in_features: int, out_features: int, lr_multiplier: float = 1.0, lrelu: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.lrelu = lrelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = frozen_derived(self, "w", lambda: self.weight * self.weight_gain, self.weight)
        b = frozen_derived(self, "b", lambda: self.bias * self.bias_gain, self.bias)
        if self.lrelu:
            # Same op order as both references: matmul, then bias inside the activation.
            return F.leaky_relu(x.matmul(w.t()) + b, LRELU_SLOPE) * LRELU_GAIN
        return F.linear(x, w, b)


class MappingNetwork(nn.Module):
    """z [B,z_dim] → ws [B,num_ws,w_dim], with truncation towards ``w_avg``."""

    def __init__(
        self,
        z_dim: int,
        w_dim: int,
        num_ws: int,
        n_mlp: int,
        layer_features: int | None = None,
        lr_multiplier: float = 0.01,
    ):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws = z_dim, w_dim, num_ws
        hidden = layer_features or w_dim
        feats = [z_dim] + [hidden] * (n_mlp - 1) + [w_dim]
        for i in range(n_mlp):
            self.add_module(f"fc{i}", FullyConnectedLayer(feats[i], feats[i + 1], lr_multiplier, lrelu=True))
        self.n_mlp = n_mlp
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(
        self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None
    ) -> torch.Tensor:
        """``z [B,z_dim]`` → ``ws [B,num_ws,w_dim]``; ψ ≠ 1 lerps the first
        ``truncation_cutoff`` rows (all when None) towards ``w_avg``, as NVlabs does."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"mapping expects z of shape [B, {self.z_dim}], got {list(z.shape)}")
        x = normalize_2nd_moment(z)
        for i in range(self.n_mlp):
            x = getattr(self, f"fc{i}")(x)
        ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            cut = self.num_ws if truncation_cutoff is None else int(truncation_cutoff)
            head = self.w_avg.lerp(ws[:, :cut], truncation_psi)
            ws = torch.cat([head, ws[:, cut:]], dim=1)
        return ws


class SynthesisLayer(nn.Module):
    """Modulated 3×3 conv (optionally upsampling) + noise + bias + lrelu·√2 (+ clamp)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        up: bool,
        use_noise: bool,
        conv_clamp: float | None,
        demod_eps: float,
    ):
        super().__init__()
        self.up, self.resolution, self.use_noise = up, resolution, use_noise
        self.conv_clamp, self.demod_eps = conv_clamp, demod_eps
        self.affine = FullyConnectedLayer(w_dim, in_channels)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.empty(out_channels))
        if use_noise:
            self.register_buffer("noise_const", torch.empty(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.empty([]))

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, noise_mode: str, fir_up: torch.Tensor, fused: bool
    ) -> torch.Tensor:
        """``x [B,C_in,r',r']``, ``w [B,w_dim]`` → ``[B,C_out,r,r]``."""
        fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        if not (self.up or fused or self.weight.requires_grad or self.weight.is_contiguous(memory_format=fmt)):
            # A frozen kernel takes the activations' layout once, in place (the same values),
            # rather than being kept twice; before anything derived from it, so that every
            # call computes alike. Saving makes tensors contiguous again.
            self.weight.data = self.weight.data.contiguous(memory_format=fmt)
        styles = self.affine(w)
        wsq = frozen_derived(self, "wsq", lambda: self.weight.square().sum(dim=(2, 3)), self.weight)
        d = (styles.square() @ wsq.t() + self.demod_eps).rsqrt()  # demodulation, [B, C_out]
        noise = None
        if self.use_noise and noise_mode != "none":
            if noise_mode == "const":
                noise = self.noise_const * self.noise_strength
            else:
                noise = (
                    torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device, dtype=w.dtype)
                    * self.noise_strength
                )
        if fused or self.weight.requires_grad:  # reference composition (and fine-tuning)
            if x.dtype != self.weight.dtype:
                raise ValueError("low-precision synthesis runs on the frozen, unfused path only")
            y = modulated_conv2d(x, self.weight, styles, demodulate=False, up=self.up, fir_up=fir_up, fused=fused)
            return noise_bias_lrelu(y * d[:, :, None, None], noise, self.bias, self.conv_clamp)
        # conv_transpose takes [C_in, C_out, k, k] (the stored kernel is not flipped); the
        # kernel is kept in the activations' memory format, which oneDNN would otherwise
        # reorder it to on every call (forward and backward), and in their dtype (a bf16
        # copy made once, beside the stored weight).
        if self.up or x.dtype != self.weight.dtype:
            kernel = frozen_derived(
                self,
                f"kernel_{self.up}_{fmt}_{x.dtype}",
                lambda: (
                    (self.weight.transpose(0, 1) if self.up else self.weight).to(x.dtype).contiguous(memory_format=fmt)
                ),
                self.weight,
            )
        else:
            kernel = self.weight
        return frozen_synthesis_layer(x, styles, d, noise, self.bias, kernel, self.up, fir_up, self.conv_clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1×1 conv without demodulation, + bias (+ clamp)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``x [B,C_in,r,r]`` (fp32 or bf16), ``w [B,w_dim]`` → ``[B,3,r,r]`` in fp32: the
        skip image is summed in fp32 whatever the activations' precision (3 channels: cheap)."""
        styles = self.affine(w) * self.weight_gain
        if x.shape[0] == 1:
            # One sample: an ordinary 1×1 convolution with the styles folded into its
            # kernel; oneDNN keeps the layout of x (channels_last on the CPU), so the
            # skip image is upsampled in that layout too (both measured ~3× faster).
            y = F.conv2d(x, (self.weight[:, :, 0, 0] * styles[0][None, :]).to(x.dtype)[:, :, None, None])
        else:
            y = modulated_1x1(x, (self.weight[None, :, :, 0, 0] * styles[:, None, :]).to(x.dtype))
        y = y.to(self.bias.dtype) + self.bias[None, :, None, None]
        return y if self.conv_clamp is None else y.clamp(-self.conv_clamp, self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution: (const | up-conv) + conv + ToRGB, accumulating the skip image."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        use_noise: bool,
        conv_clamp: float | None,
        eps_mode: str,
    ):
        super().__init__()
        self.resolution = resolution
        self.num_conv = 1 if resolution == 4 else 2

        def eps(c_in: int) -> float:
            # rosinality demodulates gain-scaled weights: its ε is 1e-8·fan_in in our units.
            return DEMOD_EPS * (c_in * 9 if eps_mode == "rosinality" else 1)

        if resolution == 4:
            self.const = nn.Parameter(torch.empty(out_channels, 4, 4))
        else:
            self.conv0 = SynthesisLayer(
                in_channels, out_channels, w_dim, resolution, True, use_noise, conv_clamp, eps(in_channels)
            )
        self.conv1 = SynthesisLayer(
            out_channels, out_channels, w_dim, resolution, False, use_noise, conv_clamp, eps(out_channels)
        )
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp)

    def forward(
        self,
        x,
        img,
        ws,
        noise_mode: str,
        fir_up: torch.Tensor,
        fused: bool,
        memory_format: torch.memory_format = torch.contiguous_format,
        dtype: torch.dtype | None = None,
    ):
        """``ws [B,num_conv+1,w_dim]`` (the ToRGB row is shared with the next block);
        ``dtype``: the activations' (None: the weights'; the skip image ``img`` keeps the
        weights' dtype)."""
        if self.resolution == 4:
            x = self.const[None].expand(ws.shape[0], -1, -1, -1).to(dtype or self.const.dtype)
            x = x.contiguous(memory_format=memory_format)
            x = self.conv1(x, ws[:, 0], noise_mode, fir_up, fused)
        else:
            x = self.conv0(x, ws[:, 0], noise_mode, fir_up, fused)
            x = self.conv1(x, ws[:, 1], noise_mode, fir_up, fused)
        y = self.torgb(x, ws[:, self.num_conv])
        img = y if img is None else upsample2d(img, fir_up) + y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws [B,num_ws,w_dim] → img [B,img_channels,H,W] (roughly [-1,1] for trained nets)."""

    def __init__(self, arch: GeneratorArch):
        super().__init__()
        self.w_dim, self.img_resolution = arch.w_dim, arch.img_resolution
        self.img_channels = arch.img_channels
        self.num_ws = num_ws_for(arch.img_resolution)
        self.block_resolutions = arch.block_resolutions
        # Run-time switches, not part of the architecture. fused_modconv: the references'
        # grouped conv over per-sample kernels (slower backward; for comparison).
        # channels_last: NHWC activations; None = on CPU only, where it measured faster
        # (benchmarks/generator.py), most at high resolutions where channels are few.
        self.fused_modconv = False
        self.channels_last: bool | None = None
        chans = dict(zip(self.block_resolutions, arch.channels))
        for res in self.block_resolutions:
            self.add_module(
                f"b{res}",
                SynthesisBlock(
                    chans.get(res // 2, 0),
                    chans[res],
                    arch.w_dim,
                    res,
                    arch.img_channels,
                    arch.use_noise,
                    arch.conv_clamp,
                    arch.demod_eps,
                ),
            )
        self.register_buffer("fir_up", fir_kernel_2d() * 4, persistent=False)

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", dtype: torch.dtype | None = None) -> torch.Tensor:
        """``ws [B,num_ws,w_dim]`` → ``img [B,C,H,W]`` (in the dtype of ``ws``). ``noise_mode``:
        'const' (the stored buffers: deterministic), 'random' (fresh N(0,1) per call) or
        'none'. ``dtype``: the convolutions' precision (None: that of ``ws``); ``bfloat16``
        runs the activations and a once-made bf16 copy of each frozen kernel in bf16, the
        styles, demodulation and skip image in fp32 (docs/method.md §2); frozen weights only."""
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"synthesis expects ws of shape [B, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        x = img = None
        nhwc = ws.device.type == "cpu" if self.channels_last is None else self.channels_last
        fmt = torch.channels_last if nhwc else torch.contiguous_format
        for i, res in enumerate(self.block_resolutions):
            start = max(2 * i - 1, 0)
            block = getattr(self, f"b{res}")
            rows = ws[:, start : start + block.num_conv + 1]
            x, img = block(
                x, img, rows, noise_mode, self.fir_up, self.fused_modconv, fmt, ws.dtype if dtype is None else dtype
            )
        return img.to(ws.dtype)


class Generator(nn.Module):
    """StyleGAN2 generator: ``G.mapping(z)`` → ws, ``G.synthesis(ws)`` → img.

    Attributes ``z_dim``, ``w_dim``, ``num_ws``, ``img_resolution``, ``img_channels``,
    ``w_avg`` ([w_dim] truncation centre), ``arch`` (rebuilds it) and ``info``
    (provenance: source format, whether ``w_avg`` was estimated).
    """

    def __init__(self, arch: GeneratorArch):
        super().__init__()
        check_resolution(arch.img_resolution)
        if len(arch.channels) != len(arch.block_resolutions) or min(arch.channels) < 1:
            raise ValueError(f"need one positive width per block {arch.block_resolutions}, got {arch.channels}")
        self.arch = arch
        self.z_dim, self.w_dim, self.img_channels = arch.z_dim, arch.w_dim, arch.img_channels
        self.img_resolution = arch.img_resolution
        self.num_ws = num_ws_for(arch.img_resolution)
        self.info: dict = {"format": "random", "w_avg_estimated": False}
        self.mapping = MappingNetwork(
            arch.z_dim, arch.w_dim, self.num_ws, arch.n_mlp, arch.layer_features, arch.lr_multiplier
        )
        self.synthesis = SynthesisNetwork(arch)

    @property
    def w_avg(self) -> torch.Tensor:
        return self.mapping.w_avg

    def forward(
        self,
        z: torch.Tensor,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
    ) -> torch.Tensor:
        """``z [B,z_dim]`` → ``img [B,C,H,W]``."""
        return self.synthesis(self.mapping(z, truncation_psi, truncation_cutoff), noise_mode)

    @torch.no_grad()
    def estimate_w_avg(self, n: int = 4096, seed: int = 0) -> torch.Tensor:
        """Set ``w_avg`` to the mean of ``mapping(randn(n))`` with a fixed seed (what
        rosinality users get from ``mean_latent(4096)``, but reproducible) and record
        that it is an estimate. Returns it, ``[w_dim]``."""
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.z_dim, generator=gen).to(self.w_avg.device)
        self.mapping.w_avg.copy_(self.mapping(z)[:, 0].mean(dim=0))
        self.info["w_avg_estimated"] = True
        return self.w_avg


def mix_ws(ws1: torch.Tensor, ws2: torch.Tensor, inject_index: int) -> torch.Tensor:
    """Style mixing: rows ``0..inject_index−1`` of ``ws1``, the rest from ``ws2``, both
    ``[B,num_ws,w_dim]`` (rosinality's ``inject_index``)."""
    if ws1.shape != ws2.shape or ws1.ndim != 3:
        raise ValueError(
            f"mix_ws needs two ws of equal shape [B,num_ws,w_dim], got {list(ws1.shape)} and {list(ws2.shape)}"
        )
    if not 0 <= inject_index <= ws1.shape[1]:
        raise ValueError(f"inject_index must be in [0, {ws1.shape[1]}], got {inject_index}")
    return torch.cat([ws1[:, :inject_index], ws2[:, inject_index:]], dim=1)


def channels_for(resolution: int, channel_base: int = 32768, channel_max: int = 512) -> list[int]:
    """NVlabs' width table ``C(r) = min(channel_base // r, channel_max)`` for r = 4…res."""
    check_resolution(resolution)
    return [min(channel_base // r, channel_max) for r in block_resolutions(resolution)]


@torch.no_grad()
def init_random_(G: Generator, seed: int = 0) -> Generator:
    """Initialise like the reference codebases: stored weights N(0,1) (mapping N(0,1)/lr),
    affine biases 1, other biases and noise strengths 0, const and noise buffers N(0,1)."""
    gen = torch.Generator().manual_seed(seed)
    for name, t in list(G.named_parameters()) + list(G.named_buffers()):
        if name.endswith("fir_up") or name == "mapping.w_avg":
            continue
        leaf = name.rsplit(".", 1)[-1]
        if name.startswith("mapping.") and leaf == "weight":
            value = torch.randn(t.shape, generator=gen) / G.arch.lr_multiplier
        elif leaf in ("weight", "const", "noise_const"):
            value = torch.randn(t.shape, generator=gen)
        elif name.endswith("affine.bias"):
            value = torch.ones(t.shape)
        else:  # bias, noise_strength
            value = torch.zeros(t.shape)
        t.copy_(value)
    return G


def build_generator(
    resolution: int,  # output side, 4·2^k
    z_dim: int = 512,
    w_dim: int = 512,
    n_mlp: int = 8,  # mapping layers
    channel_base: int = 32768,  # widths C(r) = min(channel_base // r, channel_max)
    channel_max: int = 512,
    conv_clamp: float | None = None,
    img_channels: int = 3,
    seed: int = 0,  # weights are a pure function of the seed
    estimate_w_avg: bool = True,  # set w_avg from 4096 mapped samples (random nets have none)
    device: str | torch.device = "cpu",
) -> Generator:
    """A randomly initialised, frozen generator (``preset=tiny``, tests, benchmarks)."""
    arch = GeneratorArch(
        resolution,
        z_dim,
        w_dim,
        n_mlp,
        channels_for(resolution, channel_base, channel_max),
        img_channels=img_channels,
        conv_clamp=conv_clamp,
    )
    G = init_random_(Generator(arch), seed)
    if estimate_w_avg:
        G.estimate_w_avg()
    G.info["format"] = "random"
    return G.to(resolve_device(device)).eval().requires_grad_(False)
