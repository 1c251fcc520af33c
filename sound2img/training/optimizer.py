"""The training loop's optimiser, learning-rate schedule and mixed-precision dtype, built
from the ``optim`` and ``train`` config groups (docs/method.md §1). The optimisers and
schedules are registries: the schema's allowed names (``sound2img/config.py``) are theirs."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from sound2img.errors import UserInputError
from sound2img.registry import Registry
from sound2img.training.step import ContrastiveModel
from sound2img.utils.precision import resolve_precision

if TYPE_CHECKING:
    from sound2img.config import OptimOptions

# name → (parameter groups, optim options) → optimiser
OPTIMIZERS: Registry[Callable[[list[dict], OptimOptions], torch.optim.Optimizer]] = Registry("optimizer")
# name → (optimiser, optim options, steps per epoch) → (scheduler, stepped every optimiser step?)
SCHEDULES: Registry[Callable[..., tuple[torch.optim.lr_scheduler.LRScheduler, bool]]] = Registry("lr schedule")
AMP_MODES = ("auto", "bf16", "fp16", "off")  # autocast_dtype


@OPTIMIZERS.register("sgd")
def _sgd(groups: list[dict], o: OptimOptions) -> torch.optim.Optimizer:
    """The paper's: SGD with momentum (weight decay per group)."""
    return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum)


@OPTIMIZERS.register("adamw")
def _adamw(groups: list[dict], o: OptimOptions) -> torch.optim.Optimizer:
    """AdamW with ``momentum`` as beta1."""
    return torch.optim.AdamW(groups, lr=o.lr, betas=(o.momentum, 0.999))


def build_optimizer(student: ContrastiveModel, o: OptimOptions) -> torch.optim.Optimizer:
    """``optim.name`` (SGD, the paper's, or AdamW) over the encoder and the temperature;
    weight decay on the encoder only, because decaying log(1/τ) would pull the temperature
    towards 1."""
    build = OPTIMIZERS.get(o.name)
    scale_params = list(student.loss.parameters())
    scale_ids = {id(p) for p in scale_params}
    enc_params = [p for p in student.parameters() if p.requires_grad and id(p) not in scale_ids]
    groups = [{"params": enc_params, "weight_decay": o.weight_decay}]
    if scale_params:
        groups.append({"params": scale_params, "weight_decay": 0.0})
    return build(groups, o)


@SCHEDULES.register("cosine_restarts")
def _cosine_restarts(opt: torch.optim.Optimizer, o: OptimOptions, steps_per_epoch: int):
    """SGDR: cosine annealing restarting every ``lr_cycle_epochs``, stepped every step."""
    cycle_steps = max(1, round(o.lr_cycle_epochs * steps_per_epoch))
    factor = cosine_restarts(cycle_steps, o.lr_min / o.lr if o.lr > 0 else 0.0, o.warmup_steps)
    return torch.optim.lr_scheduler.LambdaLR(opt, factor), True


@SCHEDULES.register("cyclic")
def _cyclic(opt: torch.optim.Optimizer, o: OptimOptions, steps_per_epoch: int):
    """The authors' ``CyclicLR`` (triangular, lr → max_lr over ``step_epochs`` and back,
    momentum cycling inversely for SGD), stepped once per epoch."""
    if not o.max_lr >= o.lr or int(o.step_epochs) < 1:
        raise UserInputError(
            f"cyclic schedule: need max_lr >= lr and step_epochs >= 1, got max_lr "
            f"{o.max_lr}, lr {o.lr}, step_epochs {o.step_epochs}"
        )
    return torch.optim.lr_scheduler.CyclicLR(
        opt,
        base_lr=o.lr,
        max_lr=o.max_lr,
        step_size_up=int(o.step_epochs),
        mode="triangular",
        cycle_momentum=o.name == "sgd",
        base_momentum=o.base_momentum,
        max_momentum=o.momentum,
    ), False


def build_scheduler(opt: torch.optim.Optimizer, o: OptimOptions, steps_per_epoch: int):
    """``(scheduler, steps_each_step)`` for ``optim.schedule``: ``cosine_restarts`` moves
    every optimiser step, ``cyclic`` (the authors') once per epoch."""
    return SCHEDULES.get(o.schedule)(opt, o, steps_per_epoch)


def cosine_restarts(cycle_steps: int, floor: float, warmup_steps: int) -> Callable[[int], float]:
    """Learning-rate factor at step t: linear warm-up, then cosine annealing from 1 to
    ``floor`` over each cycle of ``cycle_steps``, restarting at 1 (SGDR, the paper's
    cyclic cosine schedule)."""

    def factor(t: int) -> float:
        if t < warmup_steps:
            return (t + 1) / warmup_steps
        phase = ((t - warmup_steps) % cycle_steps) / cycle_steps
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * phase))

    return factor


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device`` (None: full precision). ``auto``: bf16
    (fp16 before Ampere) on CUDA; on a CPU bf16 where it does bf16 natively (AMX or
    AVX512-BF16, ``utils.precision``; on the synthetic task of tests/training it reached
    fp32's held-out accuracy, README "Train an audio encoder"), else fp32."""
    if amp == "off":
        return None
    if amp == "auto":
        if device.type != "cuda":
            return torch.bfloat16 if resolve_precision("auto", device) == "bf16" else None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        if device.type != "cuda":
            raise UserInputError("amp=fp16 needs CUDA; on a CPU use amp=bf16 or amp=off")
        return torch.float16
    raise UserInputError(f"unknown amp mode {amp!r} (use auto, bf16, fp16 or off)")
