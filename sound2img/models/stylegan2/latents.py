"""W+ latents from and to files (``.pt``/``.pth`` tensors as e4e/PTI save them, ``.npy``,
``.npz`` as NVlabs' projector saves them), checked against a generator's ``num_ws`` and
``w_dim``; no pickles beyond ``torch.load(weights_only=True)``."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch

from sound2img.errors import CheckpointError
from sound2img.models.state_dict import read_torch_file
from sound2img.utils.files import atomic_path, atomic_write_bytes, check_can_write

LATENT_SUFFIXES = (".pt", ".pth", ".npy", ".npz")
_ARRAY_KEYS = ("w", "ws", "latent", "latents", "w_plus", "wplus")


def _pick(obj, path: Path):
    """The one array in a dict/npz: a conventional key, or the only entry."""
    keys = list(obj.keys())
    for key in _ARRAY_KEYS:
        if key in keys:
            return obj[key]
    if len(keys) == 1:
        return obj[keys[0]]
    raise CheckpointError(f"{path}: latent file holds {sorted(map(str, keys))[:6]}; expected one array "
                          f"or one of the keys {list(_ARRAY_KEYS)}")


def load_latents(path: str | os.PathLike, num_ws: int, w_dim: int) -> torch.Tensor:
    """Read latents as ``ws [B,num_ws,w_dim]`` float32 on CPU.

    Accepted shapes: ``[w_dim]``, ``[num_ws,w_dim]``, ``[B,num_ws,w_dim]``, and W-space
    ``[B,w_dim]`` / ``[B,1,w_dim]``, broadcast to every layer. A 2-D ``[num_ws,w_dim]``
    array is read as one W+ latent. Anything else raises ``CheckpointError`` naming the
    file and the expected shapes.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: latent file not found")
    suffix = path.suffix.lower()
    try:
        if suffix in (".pt", ".pth"):
            obj = read_torch_file(path)
            arr = _pick(obj, path) if isinstance(obj, dict) else obj
        elif suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                arr = _pick(npz, path)
        else:
            raise CheckpointError(f"{path}: unknown latent file type {suffix!r} (use {', '.join(LATENT_SUFFIXES)})")
    except (ValueError, OSError, EOFError) as exc:
        raise CheckpointError(f"{path}: unreadable latent file ({exc})") from exc
    if isinstance(arr, np.ndarray):
        if arr.dtype.kind not in "fiu":
            raise CheckpointError(f"{path}: latent array has non-numeric dtype {arr.dtype}")
        arr = torch.from_numpy(np.ascontiguousarray(arr))
    if not isinstance(arr, torch.Tensor):
        raise CheckpointError(f"{path}: latent file holds a {type(arr).__name__}, not an array")
    ws = arr.detach().float().cpu()
    shape = tuple(ws.shape)
    if shape == (w_dim,):
        ws = ws.expand(1, num_ws, w_dim)
    elif shape == (num_ws, w_dim):
        ws = ws[None]
    elif ws.ndim == 2 and shape[1] == w_dim:
        ws = ws[:, None].expand(-1, num_ws, -1)
    elif ws.ndim == 3 and shape[1:] in ((num_ws, w_dim), (1, w_dim)):
        ws = ws.expand(-1, num_ws, -1)
    else:
        raise CheckpointError(f"{path}: latent of shape {list(shape)} does not fit this generator; expected "
                              f"[{w_dim}], [{num_ws}, {w_dim}], [B, {num_ws}, {w_dim}] or [B, {w_dim}]")
    if ws.shape[0] == 0 or not torch.isfinite(ws).all():
        raise CheckpointError(f"{path}: latent is empty or holds NaN/inf values")
    return ws.contiguous()


def save_latents(path: str | os.PathLike, ws: torch.Tensor, overwrite: bool = False) -> Path:
    """Write ``ws [B,num_ws,w_dim]`` by suffix: ``.pt``/``.pth`` (a plain tensor), ``.npy``,
    or ``.npz`` (key ``w``, like NVlabs' projector). Atomic; no silent overwrite."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in LATENT_SUFFIXES:
        raise CheckpointError(f"{path}: unknown latent file type {suffix!r} (use {', '.join(LATENT_SUFFIXES)})")
    check_can_write([path], overwrite)
    ws = ws.detach().float().cpu().contiguous()
    if suffix in (".pt", ".pth"):
        with atomic_path(path) as tmp:
            torch.save(ws.clone(), tmp)
        return path
    buf = io.BytesIO()
    if suffix == ".npy":
        np.save(buf, ws.numpy(), allow_pickle=False)
    else:
        np.savez(buf, w=ws.numpy())
    atomic_write_bytes(path, buf.getvalue())
    return path
