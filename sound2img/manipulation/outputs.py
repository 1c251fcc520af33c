"""What one edit writes: ``source.png``, ``result.png``, ``strip.png``, ``result_latent.pt``
and ``metrics.json`` in its own directory, each file atomically, nothing replaced
without ``overwrite``."""
from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from sound2img.errors import UserInputError
from sound2img.models.stylegan2 import save_latents
from sound2img.utils.files import atomic_write_bytes, atomic_write_text, check_can_write

EDIT_FILES = ("source.png", "result.png", "strip.png", "result_latent.pt", "metrics.json")


def check_out_dir(out_dir: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse, before any work, an output directory that exists with something in it
    (unless ``overwrite``), that is a file, or that cannot be created or written."""
    out = Path(out_dir)
    if out.exists():
        if not out.is_dir():
            raise UserInputError(f"{out} exists and is not a directory")
        if not overwrite and any(out.iterdir()):
            raise UserInputError(f"{out} already exists and is not empty (pass --overwrite to replace its edits)")
    parent = out
    while not parent.exists():  # the nearest existing ancestor must let us create the rest
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UserInputError(f"cannot write to {out}: {parent} is not a writable directory")
    return out


@contextlib.contextmanager
def staged_dir(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Where to write a run's files. A new (or empty) ``out_dir`` is built in a hidden
    sibling and renamed into place at the end, so an error or Ctrl-C leaves nothing; an
    existing one (``--overwrite``) is written in place, each file atomically."""
    out = Path(out_dir)
    if out.is_dir() and any(out.iterdir()):
        yield out
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 would otherwise stick to the output
        yield tmp
        try:
            os.replace(tmp, out)  # also onto an existing empty directory (POSIX rename)
        except OSError as exc:
            if out.is_dir() and any(out.iterdir()):  # another run finished into it meanwhile
                raise UserInputError(f"{out} was filled by another run while this one worked; its files are "
                                     "kept and this run's are discarded (pass --overwrite to replace them)") from exc
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def to_uint8(img: torch.Tensor) -> torch.Tensor:
    """img [3,H,W] in [-1,1] → uint8 [3,H,W] (values outside [-1,1] clipped)."""
    return ((img.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def png_bytes(img: torch.Tensor) -> bytes:
    """img [3,H,W] in [-1,1] → PNG file contents."""
    import io

    from PIL import Image  # Pillow comes with torchvision, whose own PNG encoder is deprecated

    buf = io.BytesIO()
    Image.fromarray(to_uint8(img).permute(1, 2, 0).numpy()).save(buf, format="PNG")
    return buf.getvalue()


def make_strip(imgs: Sequence[torch.Tensor], gap: int = 2) -> torch.Tensor:
    """Images [3,H,W] side by side with ``gap`` white columns between → [3,H,W'].
    Frames of another size are resized to the first one's height."""
    frames = []
    height = imgs[0].shape[-2]
    for img in imgs:
        if img.shape[-2] != height:
            img = torch.nn.functional.interpolate(img[None].float(), size=(height, round(img.shape[-1] * height / img.shape[-2])),
                                                  mode="area")[0]
        if frames and gap:
            frames.append(torch.ones(3, height, gap))
        frames.append(img.float().cpu())
    return torch.cat(frames, dim=-1)


def package_versions() -> dict[str, str]:
    """Versions that decide an edit's numbers: python, torch, numpy, open_clip, sound2img."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist, key in (("torch", "torch"), ("numpy", "numpy"), ("open_clip_torch", "open_clip"),
                      ("sound2img", "sound2img")):
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = "not installed"
    return out


def save_edit(
    edit_dir: str | os.PathLike,
    *,
    source_img: torch.Tensor,          # [3,H,W] in [-1,1]
    result_img: torch.Tensor,          # [3,H,W] in [-1,1]
    strip: Sequence[torch.Tensor],     # frames [3,H,W] in [-1,1], left to right
    ws: torch.Tensor,                  # the result latent [1,num_ws,w_dim]
    metrics: dict[str, Any],           # JSON-serialisable record of the edit
    extra_latents: dict[str, torch.Tensor] | None = None,  # file name → ws, e.g. the two halves of a mix
    overwrite: bool = False,           # replace files that exist (the caller checked the directory)
) -> list[Path]:
    """Write one edit's files (each atomically; ``metrics.json`` last, so its presence
    means the edit is complete). Returns the paths written. ``result_latent.pt`` holds a
    plain tensor that ``load_latents`` reads."""
    d = Path(edit_dir)
    check_can_write([d / name for name in EDIT_FILES], overwrite)
    d.mkdir(parents=True, exist_ok=True)
    # Replacing an edit: its old metrics.json goes first, so that a write interrupted half
    # way never leaves new images beside a record that claims the old edit is complete.
    (d / "metrics.json").unlink(missing_ok=True)
    written = []
    for name, img in (("source.png", source_img), ("result.png", result_img), ("strip.png", make_strip(strip))):
        atomic_write_bytes(d / name, png_bytes(img))
        written.append(d / name)
    for name, latent in {"result_latent.pt": ws, **(extra_latents or {})}.items():
        written.append(save_latents(d / name, latent, overwrite=overwrite))
    atomic_write_text(d / "metrics.json", json.dumps(metrics, indent=1, allow_nan=False) + "\n")
    written.append(d / "metrics.json")
    return written
