"""Compute precision of the frozen networks in an edit or an inversion: ``fp32``, ``bf16``
or ``auto`` (bf16 only where the hardware does bf16 arithmetic natively). README,
"Precision"; the numerics: docs/method.md §2.

Native means the kernels the work lands in compute in bf16 rather than emulating it:
on a CPU the ``amx_bf16`` or ``avx512_bf16`` instructions (oneDNN's ``avx512_core_amx``
and ``avx512_core_bf16`` kernels; elsewhere oneDNN converts to fp32 and back, slower
than fp32 itself), unless oneDNN was capped below them (``ONEDNN_MAX_CPU_ISA``); on CUDA
a GPU with bf16 tensor cores (sm80 and later)."""

from __future__ import annotations

import os

import torch

from sound2img.errors import UserInputError
from sound2img.registry import Registry

# resolved precision name → compute dtype; ``auto`` picks one of them per device
DTYPES: Registry[torch.dtype] = Registry("precision")
DTYPES.register("fp32", torch.float32)
DTYPES.register("bf16", torch.bfloat16)
PRECISIONS = ("auto", *(name for name, _ in DTYPES.items()))  # auto, fp32, bf16
# What ``auto`` resolves to, whatever the hardware: the test suite sets it to fp32 so that
# no test's numerics depend on the machine it runs on (tests/conftest.py).
AUTO_ENV = "SOUND2IMG_AUTO_PRECISION"
# ONEDNN_MAX_CPU_ISA values that still include native bf16 dot products (oneDNN's names).
_BF16_ISAS = ("avx512_core_bf16", "avx512_core_amx", "avx512_core_amx_fp16", "avx10_1_512_amx", "all", "default")


def cpu_bf16_flags() -> set[str]:
    """The CPU's native-bf16 features among ``{"amx_bf16", "avx512_bf16"}``, from
    PyTorch's own CPU probe (cpuinfo; the same on every OS)."""
    flags = set()
    cpu = getattr(torch, "cpu", None)
    if getattr(cpu, "_is_avx512_bf16_supported", lambda: False)():
        flags.add("avx512_bf16")
    # every CPU with AMX tiles (Sapphire Rapids and later) has the AMX-BF16 instructions
    if getattr(cpu, "_is_amx_tile_supported", lambda: False)():
        flags.add("amx_bf16")
    return flags


def onednn_allows_bf16() -> bool:
    """False when ``ONEDNN_MAX_CPU_ISA`` caps oneDNN below its native-bf16 kernels."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().lower()
    return not cap or cap in _BF16_ISAS


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bf16 natively (see the module docstring)."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    if device.type == "cpu":
        return bool(cpu_bf16_flags()) and onednn_allows_bf16()
    return False


def resolve_precision(name: str, device: torch.device | str) -> str:
    """``"auto"`` → ``"bf16"`` where ``device`` does bf16 natively, else ``"fp32"`` (or
    the value of ``SOUND2IMG_AUTO_PRECISION``); ``"fp32"``/``"bf16"`` as given (bf16 runs
    anywhere, emulated and slow where not native). A one-line error for anything else."""
    name = str(name).strip().lower()
    if name not in PRECISIONS:
        raise UserInputError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if name != "auto":
        return name
    forced = os.environ.get(AUTO_ENV, "").strip().lower()
    if forced:
        if forced not in DTYPES:
            raise UserInputError(f"{AUTO_ENV} must be fp32 or bf16, got {forced!r}")
        return forced
    return "bf16" if native_bf16(device) else "fp32"


def compute_dtype(precision: str) -> torch.dtype:
    """A resolved precision (``fp32``/``bf16``) → its torch dtype."""
    return DTYPES[precision]
