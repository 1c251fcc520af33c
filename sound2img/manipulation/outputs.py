"""What one edit writes: ``source.png``, ``result.png``, ``strip.png``, ``result_latent.pt``
and ``metrics.json`` in its own directory, each file atomically, nothing replaced
without ``overwrite``."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from sound2img.models.stylegan2 import save_latents
from sound2img.utils.files import atomic_write_bytes, atomic_write_text, check_can_write
from sound2img.utils.images import make_strip, png_bytes
from sound2img.utils.versions import package_versions  # noqa: F401 - moved to utils (inversion records it too); kept here for callers

EDIT_FILES = ("source.png", "result.png", "strip.png", "result_latent.pt", "metrics.json")


def save_edit(
    edit_dir: str | os.PathLike,
    *,
    source_img: torch.Tensor,  # [3,H,W] in [-1,1]
    result_img: torch.Tensor,  # [3,H,W] in [-1,1]
    strip: Sequence[torch.Tensor],  # frames [3,H,W] in [-1,1], left to right
    ws: torch.Tensor,  # the result latent [1,num_ws,w_dim]
    metrics: dict[str, Any],  # JSON-serialisable record of the edit
    extra_latents: dict[str, torch.Tensor] | None = None,  # file name → ws, e.g. the two halves of a mix
    overwrite: bool = False,  # replace files that exist (the caller checked the directory)
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
