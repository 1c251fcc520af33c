"""Optimisation-based projection of an image into W or W+ (the method of NVlabs'
StyleGAN2-ADA projector): start at w_avg, Adam on the latent (and the noise maps) with a
ramped learning rate and a decaying latent noise, an LPIPS distance on ≤256-px images
plus an optional pixel MSE, and a regulariser that keeps the noise maps uncorrelated.
Deterministic for a given seed on one device."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from sound2img.errors import UserInputError
from sound2img.metrics import downsample
from sound2img.utils.schedules import lr_ramp

SPACES = ("w", "wplus")
NOISE_MODES = ("optimize", "fixed")


@dataclass
class ProjectorSettings:
    """Hyper-parameters; the defaults are NVlabs' projector's (``pixel_weight`` is ours:
    the weight of a pixel MSE added to LPIPS, and the whole loss when LPIPS is off;
    ``noise``: NVlabs optimises the noise maps and then discards them, which leaves the
    latent fitted to maps the edit never sees, so keeping the generator's is our default)."""

    steps: int = 1000
    space: str = "w"  # "w": one w for every layer; "wplus": one per layer
    lr: float = 0.1
    lr_rampdown: float = 0.25
    lr_rampup: float = 0.05
    initial_noise_factor: float = 0.05  # latent noise σ = w_std · factor · (1 − t/ramp)², t ≤ ramp
    noise_ramp_length: float = 0.75
    regularize_noise_weight: float = 1e5
    pixel_weight: float = 0.0
    noise: str = "fixed"  # keep the generator's maps, or "optimize" them (NVlabs; then discarded)
    w_avg_samples: int = 10000  # mapped samples for w_std
    seed: int = 0

    def check(self) -> ProjectorSettings:
        if self.space not in SPACES:
            raise UserInputError(f"projector space must be one of {SPACES}, got {self.space!r}")
        if self.noise not in NOISE_MODES:
            raise UserInputError(f"projector noise must be one of {NOISE_MODES}, got {self.noise!r}")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise UserInputError(f"projector steps must be a positive integer, got {self.steps!r}")
        if self.pixel_weight < 0 or self.lr <= 0:
            raise UserInputError("projector lr must be > 0 and pixel_weight >= 0")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Projection:
    """``ws [1,num_ws,w_dim]`` (CPU) and the loss per step."""

    ws: torch.Tensor
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def noise_regularizer(maps: list[torch.Tensor]) -> torch.Tensor:
    """Σ over noise maps [1,1,r,r] and their 2×-downsampled pyramids (down to 8 px) of
    the squared mean products with the map shifted by one pixel along x and along y:
    zero for white noise, large for spatially correlated maps."""
    total = maps[0].new_zeros(())
    for n in maps:
        n = n[None, None] if n.ndim == 2 else n
        while True:
            total = total + (n * torch.roll(n, 1, dims=3)).mean() ** 2 + (n * torch.roll(n, 1, dims=2)).mean() ** 2
            if n.shape[-1] <= 8:
                break
            n = F.avg_pool2d(n, 2)
    return total


def _noise_layers(G) -> list:
    return [m for m in G.synthesis.modules() if getattr(m, "use_noise", False) and hasattr(m, "noise_const")]


@torch.no_grad()
def w_stats(G, n: int, seed: int) -> tuple[torch.Tensor, float]:
    """``(w_avg [w_dim], w_std)``: the generator's w_avg and the RMS distance of ``n``
    mapped samples (fixed seed) from it, which scales the latent noise."""
    dev = G.w_avg.device
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed)).to(dev)
    w = G.mapping(z)[:, 0]
    w_avg = G.w_avg.detach().float()
    return w_avg, float(((w - w_avg).square().sum() / n).sqrt())


def project(
    G,
    target: torch.Tensor,
    *,
    settings: ProjectorSettings | None = None,
    lpips: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    progress: bool = False,
    dtype: torch.dtype = torch.float32,
) -> Projection:
    """Find ``ws [1,num_ws,w_dim]`` with ``G.synthesis(ws)`` ≈ ``target [1,3,R,R] in [-1,1]``
    (R = the generator's resolution). ``lpips``: a distance ``(a, b) -> [B]`` (None: pixel
    loss only, then ``pixel_weight`` defaults to 1). ``G`` itself is never modified: the
    noise maps are optimised on a copy and discarded, as NVlabs' projector does, so the
    result is meant for ``noise_mode='const'`` with the generator's own maps. ``dtype``: the
    generator's compute precision in the steps (bf16: ``G.synthesis(ws, dtype=)``; the latent,
    Adam, LPIPS and the losses stay fp32)."""
    s = (settings or ProjectorSettings()).check()
    pixel_weight = s.pixel_weight if (lpips is not None or s.pixel_weight > 0) else 1.0
    dev = G.w_avg.device
    R = G.img_resolution
    if target.ndim != 4 or target.shape[0] != 1 or tuple(target.shape[1:]) != (G.img_channels, R, R):
        raise UserInputError(f"projection target must be [1,{G.img_channels},{R},{R}], got {list(target.shape)}")
    t0 = time.perf_counter()
    target = target.to(dev, torch.float32)
    target_small = downsample(target)
    gen = torch.Generator().manual_seed(s.seed)
    w_avg, w_std = w_stats(G, s.w_avg_samples, s.seed)
    rows = G.num_ws if s.space == "wplus" else 1
    w_opt = w_avg.reshape(1, 1, -1).repeat(1, rows, 1).clone().requires_grad_(True)
    params = [w_opt]
    Gp, maps = G, []
    if s.noise == "optimize":
        Gp = copy.deepcopy(G)  # the maps are parameters here; the caller's G keeps its own
        for layer in _noise_layers(Gp):
            noise = torch.randn(layer.noise_const.shape, generator=gen).to(dev).requires_grad_(True)
            layer.noise_const = noise
            maps.append(noise)
        params += maps
    opt = torch.optim.Adam(params, lr=s.lr, betas=(0.9, 0.999))
    losses = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=s.steps, desc="project", leave=False)
    for step in range(s.steps):
        t = step / s.steps
        sigma = w_std * s.initial_noise_factor * max(0.0, 1.0 - t / s.noise_ramp_length) ** 2
        for group in opt.param_groups:
            group["lr"] = s.lr * lr_ramp(t, s.lr_rampdown, s.lr_rampup)
        w_noise = torch.randn(w_opt.shape, generator=gen).to(dev) * sigma
        ws = (w_opt + w_noise).expand(1, G.num_ws, -1)
        img = Gp.synthesis(ws, noise_mode="const", dtype=dtype)
        loss = img.new_zeros(())
        if lpips is not None:
            loss = loss + lpips(downsample(img), target_small).sum()
        if pixel_weight > 0:
            loss = loss + pixel_weight * F.mse_loss(img, target)
        if maps:
            loss = loss + s.regularize_noise_weight * noise_regularizer(maps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if maps:  # keep the maps at zero mean, unit variance
            with torch.no_grad():
                for n in maps:
                    n -= n.mean()
                    n *= n.square().mean().rsqrt()
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    ws = w_opt.detach().expand(1, G.num_ws, -1).cpu().contiguous()
    return Projection(ws, losses, time.perf_counter() - t0)
