"""The training loop's optimiser, learning-rate schedule and mixed-precision dtype, built
from the ``optim`` config's values (docs/method.md §1)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from sound2img.errors import UserInputError
from sound2img.training.step import ContrastiveModel
from sound2img.utils.precision import resolve_precision


def build_optimizer(
    student: ContrastiveModel, name: str, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    """SGD (paper) or AdamW over the encoder and the temperature; weight decay on the
    encoder only, because decaying log(1/τ) would pull the temperature towards 1."""
    scale_params = list(student.loss.parameters())
    scale_ids = {id(p) for p in scale_params}
    enc_params = [p for p in student.parameters() if p.requires_grad and id(p) not in scale_ids]
    groups = [{"params": enc_params, "weight_decay": weight_decay}]
    if scale_params:
        groups.append({"params": scale_params, "weight_decay": 0.0})
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(momentum, 0.999))
    raise UserInputError(f"unknown optimizer {name!r} (use sgd or adamw)")


def build_scheduler(
    opt,
    name: str,
    optimizer: str,
    lr: float,
    momentum: float,
    steps_per_epoch: int,
    cycle_epochs: float,
    lr_min: float,
    warmup_steps: int,
    cyclic_max_lr: float,
    cyclic_step_epochs: int,
    cyclic_base_momentum: float,
):
    """``(scheduler, steps_each_step)``: SGDR cosine restarts stepped every optimiser step,
    or the authors' ``CyclicLR`` (triangular, lr → max_lr over ``cyclic_step_epochs`` and
    back, momentum cycling inversely for SGD) stepped once per epoch."""
    if name == "cosine_restarts":
        return torch.optim.lr_scheduler.LambdaLR(
            opt,
            cosine_restarts(
                max(1, round(cycle_epochs * steps_per_epoch)), lr_min / lr if lr > 0 else 0.0, warmup_steps
            ),
        ), True
    if name == "cyclic":
        if not cyclic_max_lr >= lr or int(cyclic_step_epochs) < 1:
            raise UserInputError(
                f"cyclic schedule: need max_lr >= lr and step_epochs >= 1, got max_lr "
                f"{cyclic_max_lr}, lr {lr}, step_epochs {cyclic_step_epochs}"
            )
        return torch.optim.lr_scheduler.CyclicLR(
            opt,
            base_lr=lr,
            max_lr=cyclic_max_lr,
            step_size_up=int(cyclic_step_epochs),
            mode="triangular",
            cycle_momentum=optimizer == "sgd",
            base_momentum=cyclic_base_momentum,
            max_momentum=momentum,
        ), False
    raise UserInputError(f"unknown lr schedule {name!r} (use cosine_restarts or cyclic)")


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
