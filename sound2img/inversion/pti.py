"""Pivotal tuning (PTI, Roich et al.): with the latent fixed at a pivot found by
projection in W, fine-tune a copy of the generator's synthesis network so that
G'(pivot) reproduces the photo (L2 + LPIPS-AlexNet at full resolution), stopping once
LPIPS is low enough; an optional locality regulariser (off in PTI's settings) keeps G'
equal to G on latents a fixed distance from the pivot towards random samples. This is the
only place in the project where a generator's weights change, and only on a copy."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from sound2img.errors import UserInputError
from sound2img.inversion.projector import InversionStopped, target_distance


@dataclass
class PTISettings:
    """PTI's own settings (PTI da94d59, ``configs/hyperparameters.py``): 350 steps at lr
    3e-4, L2 + LPIPS weights 1, early stop once LPIPS(G'(pivot), photo) ≤ 0.06, checked
    before each step, locality regulariser off (its weights below apply when on)."""

    steps: int = 350
    lr: float = 3e-4
    l2_weight: float = 1.0
    lpips_weight: float = 1.0
    lpips_threshold: float = 0.06  # stop before a step once LPIPS is this low (needs LPIPS)
    locality: bool = False
    locality_l2_weight: float = 0.1
    locality_lpips_weight: float = 0.1
    locality_alpha: float = 30.0  # distance of the regularised latents from the pivot, in W
    locality_samples: int = 1
    locality_truncation: float = 0.5
    seed: int = 0

    def check(self) -> PTISettings:
        if not isinstance(self.steps, int) or self.steps < 1 or self.lr <= 0:
            raise UserInputError("pti steps must be a positive integer and lr > 0")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Tuning:
    generator: torch.nn.Module  # the tuned copy, frozen
    losses: list[float] = field(default_factory=list)
    steps_run: int = 0  # optimiser steps taken (fewer than settings.steps after an early stop)
    seconds: float = 0.0


def locality_latents(G, pivot: torch.Tensor, s: PTISettings, gen: torch.Generator) -> torch.Tensor:
    """``pivot [1,num_ws,w_dim]`` → ``[n,num_ws,w_dim]``: pivot + alpha · unit direction
    towards truncated mapped samples (the "latent ball" PTI regularises on)."""
    dev = pivot.device
    z = torch.randn(s.locality_samples, G.z_dim, generator=gen).to(dev)
    with torch.no_grad():
        w = G.mapping(z, truncation_psi=s.locality_truncation)
    direction = w - pivot
    norm = direction.flatten(1).norm(dim=1).clamp_min(1e-8).reshape(-1, 1, 1)
    return pivot + s.locality_alpha * direction / norm


def tune_generator(
    G,
    pivot: torch.Tensor,
    target: torch.Tensor,
    *,
    settings: PTISettings | None = None,
    lpips: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    progress: bool = False,
    on_step: Callable[[int, int], bool | None] | None = None,
) -> Tuning:
    """``G`` (left untouched), ``pivot [1,num_ws,w_dim]``, ``target [1,3,R,R] in [-1,1]``
    → a tuned, frozen copy of ``G``. Without ``lpips`` only the L2 terms are used and
    there is no early stop. ``on_step(done, total)``: called after each step; a true
    return stops with ``InversionStopped``."""
    s = (settings or PTISettings()).check()
    dev = G.w_avg.device
    pivot, target = pivot.to(dev).detach(), target.to(dev, torch.float32)
    t0 = time.perf_counter()
    tuned = copy.deepcopy(G)
    tuned.info = {**G.info, "pti": True}
    params = list(tuned.synthesis.parameters())
    tuned.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=s.lr)
    to_target = None if lpips is None else target_distance(lpips, target)
    gen = torch.Generator().manual_seed(s.seed)
    losses, steps_run = [], 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=s.steps, desc="pti", leave=False)
    for _ in range(s.steps):
        img = tuned.synthesis(pivot, noise_mode="const")
        loss = s.l2_weight * F.mse_loss(img, target)
        if lpips is not None and s.lpips_weight > 0:
            dist = to_target(img).mean()
            if float(dist.detach()) <= s.lpips_threshold:  # PTI checks before the step
                break
            loss = loss + s.lpips_weight * dist
        if s.locality:
            ball = locality_latents(G, pivot, s, gen)
            new = tuned.synthesis(ball, noise_mode="none")
            with torch.no_grad():
                old = G.synthesis(ball, noise_mode="none")
            reg = s.locality_l2_weight * F.mse_loss(new, old)
            if lpips is not None and s.locality_lpips_weight > 0:
                reg = reg + s.locality_lpips_weight * lpips(new, old).mean()
            loss = loss + reg
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps_run += 1
        losses.append(float(loss.detach()))
        if bar is not None:
            bar.update(1)
        if on_step is not None and on_step(steps_run, s.steps):
            if bar is not None:
                bar.close()
            raise InversionStopped("tuning", steps_run)
    if bar is not None:
        bar.close()
    tuned.eval().requires_grad_(False)
    return Tuning(tuned, losses, steps_run, time.perf_counter() - t0)
