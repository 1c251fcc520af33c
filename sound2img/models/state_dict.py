"""Reading plain tensor checkpoints safely (``torch.load(weights_only=True)`` only) and
loading them strictly, with errors that name the file and the offending key."""

from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from sound2img.errors import CheckpointError

# Containers that training scripts commonly wrap a state dict in, in the order tried.
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net", "network", "encoder", "weights")


def is_safetensors(path: str | os.PathLike) -> bool:
    """Whether ``path`` starts like a safetensors file: an 8-byte little-endian header
    length that fits in the file, then a JSON object (torch files start with a zip or
    pickle header). The one sniffing test for every reader."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return int.from_bytes(head[:8], "little") + 8 <= path.stat().st_size


def read_torch_file(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> object:
    """``torch.load`` with ``weights_only=True`` (zip or legacy serialisation), tensors
    on ``map_location``. Anything that would need arbitrary unpickling is refused with a
    one-line ``CheckpointError``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        with warnings.catch_warnings():
            # torch announces TorchScript archives before refusing them; we say it in the error
            warnings.filterwarnings("ignore", message=".*looks like a TorchScript archive")
            # raw pickles of protocol > 2 (never what torch.save writes): torch's restricted
            # unpickler reads or refuses them all the same, its warning is noise for the user
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        IndexError,
        KeyError,
        TypeError,
    ) as exc:  # a non-torch file (e.g. a WAV) trips the unpickler in many ways
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        if "TorchScript" in text:
            raise CheckpointError(
                f"{path}: is a TorchScript archive (code), which is never loaded; "
                f"use a plain state dict or safetensors file"
            ) from exc
        if "Weights only load failed" in text or "weights_only" in text:
            # torch's message spans many lines; keep ours to one.
            raise CheckpointError(
                f"{path}: refused, the file holds more than tensors (objects that "
                f"would need unpickling arbitrary code; weights_only=True load failed)"
            ) from exc
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({first})") from exc


def _is_tensor_dict(obj: object) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def unwrap_state_dict(obj: object, source: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The name → tensor dict inside ``obj``: ``obj`` itself, or the first of
    ``WRAPPER_KEYS`` holding one; a ``module.`` prefix (DataParallel/DDP) is removed
    when every key has it."""
    state = obj if _is_tensor_dict(obj) else None
    if state is None and isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            if _is_tensor_dict(obj.get(key)):
                state = obj[key]
                break
    if state is None:
        if isinstance(obj, Mapping):
            found = f"a dict with keys {sorted(map(str, obj))[:8]}"
        else:
            found = f"a {type(obj).__name__}"
        raise CheckpointError(f"{source}: expected a state dict (name -> tensor), found {found}")
    state = dict(state)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_state_dict_strict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str | os.PathLike) -> None:
    """Copy ``state`` into ``module``: every key must exist with the same shape (a
    missing BatchNorm ``num_batches_tracked`` is allowed: old files lack it), or
    ``CheckpointError`` names the first offending key."""
    own = module.state_dict()
    for key, value in state.items():
        if key not in own:
            raise CheckpointError(f"{source}: unexpected key {key!r} (not in {type(module).__name__})")
        if tuple(value.shape) != tuple(own[key].shape):
            raise CheckpointError(
                f"{source}: key {key!r} has shape {list(value.shape)}, expected {list(own[key].shape)}"
            )
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise CheckpointError(f"{source}: missing key {missing[0]!r}{more}")
    full = {k: state.get(k, own[k]) for k in own}
    module.load_state_dict(full, strict=True)


def freeze(module: nn.Module) -> nn.Module:
    """``eval()`` and ``requires_grad_(False)``: what every pretrained tower returns as."""
    module.eval()
    module.requires_grad_(False)
    return module
