"""Optimisation-based projection of an image into W or W+: Adam on the latent (and, in
NVlabs' and PTI's recipes, on the noise maps) from the mean w, with a ramped learning
rate, an optional decaying latent noise, LPIPS and/or a pixel loss, and a regulariser that
keeps optimised noise maps uncorrelated. Three named recipes (``PRESETS``): ours (the
default), NVlabs' StyleGAN2-ADA projector and PTI's pivot projection; the README's
"Edit your own photo" says how they differ. Deterministic for a given seed on one device."""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from sound2img.errors import Sound2ImgError, UserInputError
from sound2img.utils.schedules import lr_ramp

SPACES = ("w", "wplus")
NOISE_MODES = ("optimize", "fixed")
W_STATS_SEED = 123  # NVlabs' and PTI's projectors draw their z samples from np.random.RandomState(123)


def target_distance(lpips: Callable, target: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``img -> [B]``, the LPIPS distance to the fixed ``target``: its features computed once
    where the distance can (``LPIPSDistance.against``), else ``lpips(img, target)``."""
    against = getattr(lpips, "against", None)
    return against(target) if against is not None else (lambda img: lpips(img, target))


@dataclass
class ProjectorSettings:
    """Hyper-parameters; the defaults are our recipe (``PRESETS['ours']``).

    ``pixel_weight``: weight of the pixel loss added to LPIPS (the whole loss when LPIPS is
    off). ``noise``: ``fixed`` keeps the generator's noise maps, ``optimize`` fits them on a
    copy and then discards them (NVlabs, PTI), which leaves the latent fitted to maps the
    edit never sees."""

    steps: int = 500
    space: str = "wplus"  # "w": one w for every layer; "wplus": one per layer
    lr: float | None = None  # None: NVlabs' 0.1 in W, 0.03 in W+ (0.1 stalls there on larger generators)
    lr_rampdown: float = 0.25
    lr_rampup: float = 0.05
    initial_noise_factor: float = 0.0  # latent noise σ = w_std · factor · (1 − t/ramp)², t ≤ ramp
    noise_ramp_length: float = 0.75
    regularize_noise_weight: float = 1e5
    pixel_weight: float = 0.0
    noise: str = "fixed"
    w_avg_samples: int = 10000  # mapped samples for the start (their mean) and w_std
    seed: int = 0

    def check(self) -> ProjectorSettings:
        if self.space not in SPACES:
            raise UserInputError(f"projector space must be one of {SPACES}, got {self.space!r}")
        if self.noise not in NOISE_MODES:
            raise UserInputError(f"projector noise must be one of {NOISE_MODES}, got {self.noise!r}")
        for name in ("steps", "w_avg_samples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise UserInputError(f"projector {name} must be a positive integer, got {v!r}")
        if self.lr is None:
            self.lr = 0.1 if self.space == "w" else 0.03
        if self.pixel_weight < 0 or self.lr <= 0:
            raise UserInputError("projector lr must be > 0 and pixel_weight >= 0")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


# NVlabs' projector.py (stylegan2-ada-pytorch d72cc7d) as its command line runs it; PTI's
# pivot projection (PTI da94d59, training/projectors/w_projector.py as its coach calls it:
# 450 steps, 600 samples, and an lr of 0.01 · ramp, which overrides the 5e-3 its
# optimiser is built with at every step).
PRESETS = {
    "ours": ProjectorSettings(),
    "nvlabs": ProjectorSettings(steps=1000, space="w", lr=0.1, initial_noise_factor=0.05, noise="optimize"),
    "pti": ProjectorSettings(
        steps=450, space="w", lr=0.01, initial_noise_factor=0.05, noise="optimize", w_avg_samples=600
    ),
}


def projector_settings(preset: str = "ours", **overrides) -> ProjectorSettings:
    """A named recipe (``PRESETS``) with ``overrides`` (None values are ignored), checked."""
    if preset not in PRESETS:
        raise UserInputError(f"projector recipe must be one of {', '.join(PRESETS)}, got {preset!r}")
    return dataclasses.replace(PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}).check()


class InversionStopped(Sound2ImgError):
    """A progress callback asked an inversion to stop after ``steps_done`` steps of ``stage``."""

    def __init__(self, stage: str, steps_done: int):
        super().__init__(f"inversion stopped during {stage} after {steps_done} steps")
        self.stage, self.steps_done = stage, steps_done


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


def pixel_loss(img: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between ``img`` clamped to [-1, 1] and ``target`` (both
    [B,3,H,W] in [-1,1]): the error of the picture as an 8-bit file shows it, i.e. PSNR's
    own. A plain MSE also pulls values beyond ±1 back to ±1 where the photo is at 0 or 255,
    which the generator may not manage without spoiling the rest: on generator-made
    targets with clipped regions it stalls near 19 dB (README, "Edit your own photo")."""
    return (img.clamp(-1, 1) - target).square().mean()


def _noise_layers(G) -> list:
    return [m for m in G.synthesis.modules() if getattr(m, "use_noise", False) and hasattr(m, "noise_const")]


@torch.no_grad()
def w_stats(G, n: int) -> tuple[torch.Tensor, float]:
    """``(w_avg [w_dim], w_std)`` as NVlabs' projector computes them: ``n`` z samples from
    ``np.random.RandomState(123)`` mapped to w; their mean (the start) and the RMS
    distance from it (which scales the latent noise)."""
    dev = G.w_avg.device
    z = torch.from_numpy(np.random.RandomState(W_STATS_SEED).randn(n, G.z_dim)).to(dev, torch.float32)
    w = torch.cat([G.mapping(chunk)[:, 0] for chunk in z.split(4096)])
    w_avg = w.mean(0)
    return w_avg, float(((w - w_avg).square().sum() / n).sqrt())


def project(
    G,
    target: torch.Tensor,
    *,
    settings: ProjectorSettings | None = None,
    lpips: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    progress: bool = False,
    on_step: Callable[[int, int], bool | None] | None = None,
    dtype: torch.dtype = torch.float32,
) -> Projection:
    """Find ``ws [1,num_ws,w_dim]`` with ``G.synthesis(ws)`` ≈ ``target [1,3,R,R] in [-1,1]``
    (R = the generator's resolution). ``lpips``: a distance ``(a, b) -> [B]`` (None: pixel
    loss only, then ``pixel_weight`` defaults to 1). ``on_step(done, total)``: called after
    each step; a true return stops with ``InversionStopped``. ``G`` itself is never
    modified: optimised noise maps live on a copy and are discarded, as NVlabs' projector
    does, so the result is meant for ``noise_mode='const'`` with the generator's own maps.
    ``dtype``: the generator's compute precision in the steps (bf16: ``G.synthesis(ws,
    dtype=)``; the latent, Adam, LPIPS and the losses stay fp32)."""
    s = (settings or ProjectorSettings()).check()
    pixel_weight = s.pixel_weight if (lpips is not None or s.pixel_weight > 0) else 1.0
    dev = G.w_avg.device
    R = G.img_resolution
    if target.ndim != 4 or target.shape[0] != 1 or tuple(target.shape[1:]) != (G.img_channels, R, R):
        raise UserInputError(f"projection target must be [1,{G.img_channels},{R},{R}], got {list(target.shape)}")
    t0 = time.perf_counter()
    target = target.to(dev, torch.float32)
    gen = torch.Generator().manual_seed(s.seed)
    w_avg, w_std = w_stats(G, s.w_avg_samples)
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
    to_target = None if lpips is None else target_distance(lpips, target)
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
        w = w_opt if sigma == 0 else w_opt + torch.randn(w_opt.shape, generator=gen).to(dev) * sigma
        img = Gp.synthesis(w.expand(1, G.num_ws, -1), noise_mode="const", dtype=dtype)
        loss = img.new_zeros(())
        if lpips is not None:
            loss = loss + to_target(img).sum()
        if pixel_weight > 0:
            loss = loss + pixel_weight * pixel_loss(img, target)
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
        if on_step is not None and on_step(step + 1, s.steps):
            if bar is not None:
                bar.close()
            raise InversionStopped("projection", step + 1)
    if bar is not None:
        bar.close()
    ws = w_opt.detach().expand(1, G.num_ws, -1).cpu().contiguous()
    return Projection(ws, losses, time.perf_counter() - t0)
