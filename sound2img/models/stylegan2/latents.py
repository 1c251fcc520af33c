"""W+ latents from and to files (``.pt``/``.pth`` tensors as e4e/PTI save them, ``.npy``,
``.npz`` as NVlabs' projector saves them), checked against a generator's ``num_ws`` and
``w_dim``; no pickles beyond ``torch.load(weights_only=True)``. Also the source latents
w_s of generation and editing: a seed (z → mapping → truncation), saved files, or the
generator's mean latent (free generation)."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sound2img.errors import CheckpointError, UserInputError
from sound2img.models.state_dict import read_torch_file
from sound2img.registry import Registry
from sound2img.utils.files import atomic_path, atomic_write_bytes, check_can_write


@dataclass(frozen=True)
class LatentFormat:
    """How latents are read (``read(path)`` → an array, a tensor or a dict of them) and
    written (``write(path, ws)``, atomically) in one file type."""

    read: Callable[[Path], Any]
    write: Callable[[Path, torch.Tensor], None]


# latent file suffix → its format (registered below the readers and writers)
LATENT_FORMATS: Registry[LatentFormat] = Registry("latent file type")
_ARRAY_KEYS = ("w", "ws", "latent", "latents", "w_plus", "wplus")


def _pick(obj, path: Path):
    """The one array in a dict/npz: a conventional key, or the only entry."""
    keys = list(obj.keys())
    for key in _ARRAY_KEYS:
        if key in keys:
            return obj[key]
    if len(keys) == 1:
        return obj[keys[0]]
    raise CheckpointError(
        f"{path}: latent file holds {sorted(map(str, keys))[:6]}; expected one array "
        f"or one of the keys {list(_ARRAY_KEYS)}"
    )


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
    fmt = _latent_format(path)
    try:
        arr = fmt.read(path)
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
        raise CheckpointError(
            f"{path}: latent of shape {list(shape)} does not fit this generator; expected "
            f"[{w_dim}], [{num_ws}, {w_dim}], [B, {num_ws}, {w_dim}] or [B, {w_dim}]"
        )
    if ws.shape[0] == 0 or not torch.isfinite(ws).all():
        raise CheckpointError(f"{path}: latent is empty or holds NaN/inf values")
    return ws.contiguous()


def save_latents(path: str | os.PathLike, ws: torch.Tensor, overwrite: bool = False) -> Path:
    """Write ``ws [B,num_ws,w_dim]`` by suffix: ``.pt``/``.pth`` (a plain tensor), ``.npy``,
    or ``.npz`` (key ``w``, like NVlabs' projector). Atomic; no silent overwrite."""
    path = Path(path)
    fmt = _latent_format(path)
    check_can_write([path], overwrite)
    fmt.write(path, ws.detach().float().cpu().contiguous())
    return path


def _latent_format(path: Path) -> LatentFormat:
    suffix = path.suffix.lower()
    if suffix not in LATENT_FORMATS:
        raise CheckpointError(f"{path}: unknown latent file type {suffix!r} (use {', '.join(LATENT_SUFFIXES)})")
    return LATENT_FORMATS.get(suffix)


def _read_torch(path: Path) -> Any:
    obj = read_torch_file(path)
    return _pick(obj, path) if isinstance(obj, dict) else obj


def _read_npz(path: Path) -> Any:
    with np.load(path, allow_pickle=False) as npz:
        return _pick(npz, path)


def _write_torch(path: Path, ws: torch.Tensor) -> None:
    with atomic_path(path) as tmp:
        torch.save(ws.clone(), tmp)


def _write_numpy(save: Callable[[io.BytesIO, np.ndarray], None]) -> Callable[[Path, torch.Tensor], None]:
    def write(path: Path, ws: torch.Tensor) -> None:
        buf = io.BytesIO()
        save(buf, ws.numpy())
        atomic_write_bytes(path, buf.getvalue())

    return write


LATENT_FORMATS.register(".pt", LatentFormat(_read_torch, _write_torch))
LATENT_FORMATS.register(".pth", LatentFormat(_read_torch, _write_torch))
LATENT_FORMATS.register(
    ".npy",
    LatentFormat(
        lambda p: np.load(p, allow_pickle=False), _write_numpy(lambda buf, a: np.save(buf, a, allow_pickle=False))
    ),
)
LATENT_FORMATS.register(
    ".npz", LatentFormat(_read_npz, _write_numpy(lambda buf, a: np.savez(buf, w=a)))
)  # key w: NVlabs'
LATENT_SUFFIXES = tuple(name for name, _ in LATENT_FORMATS.items())  # .pt, .pth, .npy, .npz


def seed_to_z(seed: int, z_dim: int) -> torch.Tensor:
    """z [1,z_dim] from a CPU ``torch.Generator`` seeded with ``seed``: the same z on any
    device and whatever else is in the batch."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randn(1, z_dim, generator=gen)


@torch.no_grad()
def sample_source_latents(
    generator, seeds: Sequence[int], truncation: float, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """One source per seed: ws [len(seeds),num_ws,w_dim], truncated towards ``G.w_avg``."""
    if not seeds:
        raise UserInputError("no seeds given")
    if not 0.0 <= truncation <= 1.0:
        raise UserInputError(f"truncation must be in [0, 1], got {truncation}")
    z = torch.cat([seed_to_z(s, generator.z_dim) for s in seeds]).to(device)
    return generator.mapping(z, truncation_psi=truncation)


def load_source_latents(paths: Sequence[str | Path], generator) -> torch.Tensor:
    """Latents saved by ``generate.py``/projectors, concatenated: ws [B,num_ws,w_dim]
    (a file's shape must fit the generator; ``load_latents`` says which file does not)."""
    if not paths:
        raise UserInputError("no latent files given")
    return torch.cat([load_latents(p, generator.num_ws, generator.w_dim).float() for p in paths])


def mean_source_latents(generator, count: int = 1) -> torch.Tensor:
    """The mean latent broadcast to W+: ws [count,num_ws,w_dim] (free generation)."""
    w_avg = torch.as_tensor(generator.w_avg).float().reshape(1, 1, -1)
    return w_avg.expand(count, generator.num_ws, -1).clone()
