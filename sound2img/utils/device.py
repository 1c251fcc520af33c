"""Device selection: ``auto`` means CUDA when present, else CPU. Nothing calls ``.cuda()``."""
from __future__ import annotations

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
