"""Direct latent optimisation in W+ (docs/method.md §2): Adam on the latent alone, pulling
CLIP(G(w)) towards a fixed target embedding, held near the source by λ_sim and, for
faces, near its identity by λ_ID."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from sound2img.errors import Sound2ImgError
from sound2img.manipulation.masking import LATENT_TERMS, AdaptiveLayerMask, layer_penalties
from sound2img.utils.precision import compute_dtype, resolve_precision
from sound2img.utils.schedules import lr_ramp

# The paper's terms, as metrics.json records them per step: total = d_cos + λ_sim·sim + λ_ID·id,
# d_cos = 1 − cos_scale·cos(CLIP(G(w)), target), sim = the (masked) latent distance, id = L_ID.
LOSS_NAMES = ("total", "d_cos", "sim", "id")
# What ``time_phases`` splits a step into (CLIP's includes the identity network's, if run).
PHASES = ("synthesis_forward", "clip_forward", "clip_backward", "synthesis_backward", "optimizer")
AUTHORS_COS_SCALE = math.exp(0.07)  # the authors' d_cos = 1 − e^0.07·cos (their training scale)
# manipulate.* keys read by the callers (source sampling, strip.png), not optimize_latents arguments
CALLER_KEYS = ("truncation", "strip_every")


class EditStopped(Sound2ImgError):
    """An ``on_step`` callback asked the optimiser to stop; ``steps_done`` steps were run."""

    def __init__(self, steps_done: int):
        super().__init__(f"stopped after {steps_done} steps")
        self.steps_done = steps_done


@dataclass
class EditResult:
    """What one batch of edits produced (tensors on the CPU, detached)."""

    ws: torch.Tensor  # result latents [B,num_ws,w_dim]
    source_img: torch.Tensor  # G(w_s) [B,3,H,W] in [-1,1]
    result_img: torch.Tensor  # G(ws) [B,3,H,W] in [-1,1]
    losses: dict[str, torch.Tensor]  # LOSS_NAMES → [steps,B], per sample, before each update
    final_cosine: torch.Tensor  # cos(CLIP(G(ws)), target) [B] after the last update
    initial_cosine: torch.Tensor  # cos(CLIP(G(w_s)), target) [B]
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)  # step → G(w) [B,3,H,W] at that step
    layer_mask: torch.Tensor | None = None  # adaptive masking's final g [B,num_ws]
    step_seconds: list[float] = field(default_factory=list)  # wall time of each step
    phase_seconds: dict[str, list[float]] = field(default_factory=dict)  # PHASES → per step (time_phases)
    precision: str = "fp32"  # the steps' compute precision ("fp32" | "bf16"), resolved from "auto"


def check_frozen(**modules: object) -> None:
    """Refuse networks with trainable parameters: the latent must be the only leaf, and
    frozen weights let autograd skip the weight gradients."""
    for name, module in modules.items():
        if isinstance(module, nn.Module) and any(p.requires_grad for p in module.parameters()):
            raise ValueError(
                f"{name} has parameters that require grad; pass frozen networks "
                "(the load_*/build_* functions return them frozen)"
            )


def optimize_latents(
    generator: nn.Module,              # frozen G: .synthesis(ws, noise_mode=) → img [B,3,H,W] in [-1,1]
    encode_image: Callable,            # frozen CLIP image tower: img [B,3,H,W] in [-1,1] → [B,D] normalised
    source_ws: torch.Tensor,           # w_s [B,num_ws,w_dim], the starting latents
    target: torch.Tensor,              # target_emb [B,D] (or [1,D]/[D], shared), L2-normalised, computed once
    *,
    steps: int = 300,                  # Adam steps
    lr: float = 0.1,                   # peak learning rate of the StyleCLIP ramp
    lambda_sim: float = 0.002,         # weight of the latent-distance term
    lambda_id: float = 0.0,            # weight of the identity term (0: no identity network is run)
    cos_scale: float = 1.0,            # d_cos = 1 − cos_scale·cos (the authors: e^0.07, AUTHORS_COS_SCALE)
    identity: nn.Module | None = None,  # frozen arcface.IdentityLoss; needed iff lambda_id > 0
    latent_term: str = "adaptive",     # "adaptive" layer masking or plain "l2"
    mask_step: float = 0.1,            # adaptive masking's update rate
    snapshot_steps: Sequence[int] = (),  # steps whose G(w) is kept (for the strip)
    noise_mode: str = "const",         # generator noise; "const" makes the edit deterministic
    progress: bool = False,            # tqdm bar
    frozen: Sequence[object] = (),     # further networks to check for frozen parameters (CLIP, ArcFace)
    on_step: Callable[[int, torch.Tensor, torch.Tensor], bool | None] | None = None,  # see below
    time_phases: bool = False,         # record PHASES' wall times per step (synchronises CUDA)
    init_ws: torch.Tensor | None = None,  # where Adam starts [B,num_ws,w_dim]; None: source_ws (a warm start otherwise)
    anchor_ws: torch.Tensor | None = None,  # a second latent to stay near [B,num_ws,w_dim] (video: the previous keyframe)
    lambda_anchor: float = 0.0,        # weight of ‖w − anchor‖² (summed over rows and w_dim, never masked)
    precision: str = "fp32",           # generator and CLIP compute: "fp32", "bf16" or "auto" (bf16 where native)
) -> EditResult:  # fmt: skip
    """Optimise a batch of (source latent, target) pairs together.

    The batch loss is the SUM of per-sample losses d_cos + λ_sim·latent term + λ_ID·L_ID
    with d_cos = 1 − cos_scale·cos, and Adam is element-wise, so each result equals running
    its pair alone. Adam ignores a constant factor on the loss, so cos_scale = s at λ is the
    same objective as cos_scale = 1 at λ/s: the authors' e^0.07 makes their λ terms weigh
    ~7 % less than the same λ at scale 1. The identity
    term's gradient flows through the edited image, the source features are fixed (as in
    StyleCLIP; the authors' code swaps the arguments and gets no gradient).

    ``on_step(steps_done, img [B,3,H,W], cosine [B])`` (both detached, on the device; the
    image and cosine of the step just taken, before its update) is called after every
    step, e.g. to show progress; a true return stops the edit with ``EditStopped``.

    ``init_ws`` and ``anchor_ws`` serve sequences of edits (docs/method.md §10): Adam starts
    from ``init_ws`` while λ_sim and λ_ID still refer to the source, and λ_anchor·‖w − anchor‖²
    is added to the total (so ``losses['total']`` includes it; ``sim`` stays the source term).

    ``precision="bf16"`` runs the generator's convolutions and CLIP's image tower in bf16
    (``G.synthesis(ws, dtype=)``, ``encode_image(img, dtype=)``); the latent, Adam's state,
    the masking, the λ terms and every loss stay fp32, and the source and result images
    and their cosines are computed in fp32, so only the path between them is bf16
    (docs/method.md §2). ``"auto"`` is bf16 where the device does bf16 natively
    (``sound2img.utils.precision``)."""
    _check_options(latent_term, steps, cos_scale, lambda_id, identity, lambda_anchor, anchor_ws)
    check_frozen(
        generator=generator,
        clip=getattr(encode_image, "__self__", encode_image),
        identity=identity,
        **{f"network_{i}": m for i, m in enumerate(frozen)},
    )
    source_ws = source_ws.detach()
    target = _batch_target(target, source_ws)
    batch, num_ws, _ = source_ws.shape
    precision = resolve_precision(precision, source_ws.device)
    synthesis, encode = _compute_calls(generator, encode_image, precision)
    with torch.no_grad():
        source_img = generator.synthesis(source_ws, noise_mode=noise_mode)
        # in fp32, so that the recorded start does not depend on the precision of the steps
        initial_cosine = None if precision == "fp32" else (encode_image(source_img) * target).sum(dim=-1).cpu()
    # Run only when used (the authors ran the identity network at λ_ID = 0 too), and the
    # source's identity features are computed once, not every step.
    source_id = identity.source_embedding(source_img) if lambda_id > 0 else None
    start, anchor = _start_and_anchor(source_ws, init_ws, anchor_ws if lambda_anchor > 0 else None)
    ws = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([ws], lr=lr)
    mask = (
        AdaptiveLayerMask(batch, num_ws, step=mask_step, device=ws.device, dtype=ws.dtype)
        if latent_term == "adaptive"
        else None
    )
    keep = set(int(s) for s in snapshot_steps)
    history = {name: torch.zeros(steps, batch) for name in LOSS_NAMES}
    snapshots: dict[int, torch.Tensor] = {}
    step_seconds: list[float] = []
    phase_seconds: dict[str, list[float]] = {name: [] for name in PHASES} if time_phases else {}
    sync = torch.cuda.synchronize if time_phases and ws.is_cuda else (lambda: None)
    zero = torch.zeros(batch, device=ws.device)

    bar = range(steps)
    if progress:
        from tqdm import tqdm

        bar = tqdm(bar, desc="edit", unit="step", leave=False)
    for step in bar:
        t0 = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = lr * lr_ramp(step / steps)
        img = synthesis(ws, noise_mode=noise_mode)
        marks = [t0, _now(sync)]
        # The backward is split at the image (same gradient): the guidance networks' part
        # first, then the generator's, so that each can be timed.
        img_in = img.detach().requires_grad_(True)
        cosine = (encode(img_in) * target).sum(dim=-1)
        d_cos = 1.0 - cos_scale * cosine
        layer_terms = layer_penalties(ws, source_ws, mask) if lambda_sim > 0 else None  # [B,num_ws]
        sim_loss = layer_terms.sum(dim=1) if layer_terms is not None else zero
        id_loss = identity(img_in, source_emb=source_id, reduction="none") if source_id is not None else zero
        total = d_cos + lambda_sim * sim_loss + lambda_id * id_loss
        if anchor is not None:
            total = total + lambda_anchor * (ws - anchor).pow(2).sum(dim=(1, 2))
        marks.append(_now(sync))
        optimizer.zero_grad(set_to_none=True)
        total.sum().backward()  # into img_in.grad, and the latent term's part into ws.grad
        marks.append(_now(sync))
        img.backward(img_in.grad)
        marks.append(_now(sync))
        optimizer.step()
        if mask is not None and layer_terms is not None:
            mask.update(layer_terms)  # g for the next step (docs/method.md §3)
        if time_phases:
            marks.append(_now(sync))
            for name, start, end in zip(PHASES, marks[:-1], marks[1:]):
                phase_seconds[name].append(end - start)

        if initial_cosine is None:
            initial_cosine = cosine.detach().cpu()
        if step in keep:
            snapshots[step] = img.detach().cpu()
        for name, value in zip(LOSS_NAMES, (total, d_cos, sim_loss, id_loss)):
            history[name][step] = value.detach().cpu()
        step_seconds.append(time.perf_counter() - t0)
        if progress:
            bar.set_postfix(loss=f"{float(total.detach().mean()):.4f}", cos=f"{float(cosine.detach().mean()):.4f}")
        if on_step is not None and on_step(step + 1, img.detach(), cosine.detach()):
            raise EditStopped(step + 1)

    with torch.no_grad():
        result_img = generator.synthesis(ws, noise_mode=noise_mode)
        final_cosine = (encode_image(result_img) * target).sum(dim=-1)
    return EditResult(
        ws=ws.detach().cpu(),
        source_img=source_img.cpu(),
        result_img=result_img.cpu(),
        losses=history,
        final_cosine=final_cosine.cpu(),
        initial_cosine=initial_cosine,
        snapshots=snapshots,
        layer_mask=None if mask is None else mask.g.cpu(),
        step_seconds=step_seconds,
        phase_seconds=phase_seconds,
        precision=precision,
    )


def _check_options(latent_term, steps, cos_scale, lambda_id, identity, lambda_anchor, anchor_ws) -> None:
    """``optimize_latents``' option checks (ValueError: a caller's bug, not a user's input)."""
    if latent_term not in LATENT_TERMS:
        raise ValueError(f"latent_term must be one of {LATENT_TERMS}, got {latent_term!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not cos_scale > 0:
        raise ValueError(f"cos_scale must be > 0, got {cos_scale}")
    if lambda_id > 0 and identity is None:
        raise ValueError("lambda_id > 0 needs an identity loss")
    if lambda_anchor > 0 and anchor_ws is None:
        raise ValueError("lambda_anchor > 0 needs anchor_ws")


def _batch_target(target: torch.Tensor, source_ws: torch.Tensor) -> torch.Tensor:
    """``target`` [D], [1,D] or [B,D] → [B,D] on the latents' device (B = ``source_ws [B,num_ws,w_dim]``)."""
    if source_ws.ndim != 3:
        raise ValueError(f"source_ws must be [B,num_ws,w_dim], got {tuple(source_ws.shape)}")
    batch = source_ws.shape[0]
    target = target.detach().to(source_ws.device)
    target = target.reshape(1, -1) if target.ndim == 1 else target
    target = target.expand(batch, -1) if target.shape[0] == 1 else target
    if target.shape[0] != batch:
        raise ValueError(f"target has {target.shape[0]} rows for {batch} source latents")
    return target


def _compute_calls(generator: nn.Module, encode_image: Callable, precision: str) -> tuple[Callable, Callable]:
    """The steps' synthesis and image-tower calls at the resolved ``precision``; fp32 calls
    pass no dtype, so any generator/encoder works there."""
    if precision == "fp32":
        return generator.synthesis, encode_image
    dtype = compute_dtype(precision)
    return functools.partial(generator.synthesis, dtype=dtype), functools.partial(encode_image, dtype=dtype)


def _start_and_anchor(source_ws, init_ws, anchor_ws) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Adam's start (``init_ws``, else ``source_ws``) and the anchor (None: no anchor term),
    detached on the latents' device, each shaped as ``source_ws [B,num_ws,w_dim]``."""
    start = source_ws if init_ws is None else init_ws.detach().to(source_ws.device)
    anchor = None if anchor_ws is None else anchor_ws.detach().to(source_ws.device)
    for name, other in (("init_ws", start), ("anchor_ws", anchor)):
        if other is not None and other.shape != source_ws.shape:
            raise ValueError(f"{name} has shape {tuple(other.shape)}, source_ws {tuple(source_ws.shape)}")
    return start, anchor


def _now(sync: Callable[[], None]) -> float:
    sync()
    return time.perf_counter()


def optimizer_kwargs(manipulate: dict) -> dict:
    """The ``manipulate`` config section (plain data, checked at composition) → keyword
    arguments of ``optimize_latents``: every key but ``CALLER_KEYS``, so a new optimiser
    setting is a new ``optimize_latents`` argument plus its schema line."""
    return {k: v for k, v in manipulate.items() if k not in CALLER_KEYS}
