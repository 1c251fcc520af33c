"""Device selection: ``auto`` means CUDA when present, else CPU. Nothing calls ``.cuda()``."""

from __future__ import annotations

import os
import platform
import time

import torch

from sound2img.errors import UserInputError


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → ``cuda`` if available else ``cpu``; otherwise the named device,
    refused with a one-line error when it does not exist on this machine."""
    if isinstance(name, torch.device):
        return name
    name = str(name).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UserInputError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError(f"device {name!r} requested but CUDA is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserInputError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return device


def machine_info(device: torch.device) -> dict:
    """What a benchmark figure was measured on: platform, versions, cores, torch threads,
    the device (GPU name on CUDA) and the 1-minute load average at the start."""
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    if hasattr(os, "getloadavg"):
        info["loadavg_1min_at_start"] = round(os.getloadavg()[0], 2)
    return info


def timed_call(fn, device: torch.device) -> float:
    """Wall seconds of ``fn()`` on ``device``; CUDA is synchronised before and after, so
    the time covers the kernels ``fn`` queued, not only their launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start
