"""What an audio encoder sees: one sound file through a front end, written as a PNG
(and optionally the array as .npy), atomically and never over an existing file."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch

from sound2img.audio.io import load_audio
from sound2img.errors import UserInputError
from sound2img.utils.files import atomic_path, atomic_write_bytes, check_can_write


@torch.no_grad()
def compute_file_mel(
    path: str | os.PathLike, frontend: torch.nn.Module, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Decode ``path`` at ``frontend.sample_rate`` and return the encoder's input
    ``mel [1,n_mels,T]`` (float32, CPU). Bad audio raises ``AudioLoadError``."""
    wav = load_audio(path, int(frontend.sample_rate), resampler=getattr(frontend, "resampler", "soxr_hq"))
    return frontend.to(device)(wav[None].to(device))[0].float().cpu()


def render_mel_png(mel: torch.Tensor, title: str = "") -> bytes:
    """``mel [1,n_mels,T]`` or ``[n_mels,T]`` → PNG bytes (row 0 at the bottom)."""
    # The Agg canvas directly, not pyplot: headless, and no global backend switch.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    image = mel.reshape(-1, mel.shape[-1]).numpy()
    rows, cols = image.shape
    fig = Figure(figsize=(min(16.0, 2.0 + cols / 60), 2.0 + rows / 40), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    shown = ax.imshow(image, origin="lower", aspect="auto", interpolation="nearest", cmap="magma")
    fig.colorbar(shown, ax=ax)
    ax.set_xlabel(f"column (of {cols})")
    ax.set_ylabel(f"row (of {rows})")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def save_mel_image(
    audio: str | os.PathLike,
    frontend: torch.nn.Module,
    out: str | os.PathLike,
    *,
    npy: str | os.PathLike | None = None,
    overwrite: bool = False,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Write ``out`` (PNG) and optionally ``npy`` (``[1,n_mels,T]`` float32) for ``audio``.

    Both outputs are checked before any work and written atomically, so a bad input or a
    crash leaves nothing behind; existing files are refused unless ``overwrite``.
    Returns the mel.
    """
    outs = [Path(out)] + ([Path(npy)] if npy is not None else [])
    if len({p.resolve() for p in outs}) != len(outs):
        raise UserInputError(f"--out and --npy are the same file: {out}")
    check_can_write(outs, overwrite)
    mel = compute_file_mel(audio, frontend, device)
    name = getattr(frontend, "name", type(frontend).__name__)
    png = render_mel_png(mel, f"{Path(audio).name} — {name}, encoder input {list(mel.shape)}")
    if npy is not None:
        with atomic_path(npy) as tmp, open(tmp, "wb") as fh:
            np.save(fh, mel.numpy())
    atomic_write_bytes(out, png)
    return mel
