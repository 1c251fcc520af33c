"""Keyframes of a semantic video (docs/method.md §10.1–10.2): their times, the sound's window
around each embedded in batches, each keyframe an edit towards its window warm-started
from the previous one, saved after every batch so that a killed run resumes, and the W+
trajectory between them."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from sound2img.errors import UserInputError
from sound2img.manipulation.optimizer import optimize_latents
from sound2img.models.embedding import embed_audio
from sound2img.utils.files import atomic_path

INTERPOLATIONS = ("cubic", "linear")
KEYFRAMES_FORMAT = "sound2img.video.keyframes"  # keyframes.pt's "format" (docs/formats.md §9)
KEYFRAMES_VERSION = 1


def keyframe_times(duration: float, spacing: float) -> torch.Tensor:
    """Keyframe times [K] (seconds, float64): 0 … ``duration`` in round(duration/spacing)
    equal intervals (at least one), so the last keyframe falls on the sound's end and no
    frame is extrapolated."""
    intervals = max(1, round(duration / spacing))
    return torch.linspace(0.0, duration, intervals + 1, dtype=torch.float64)


def window_bounds(times: torch.Tensor, duration: float, window: float) -> torch.Tensor:
    """The sound window [K,2] (start, end seconds) of each keyframe: ``window`` seconds
    centred on it, shifted to lie inside the sound (the whole sound when it is shorter)."""
    length = min(window, duration)
    start = (times - length / 2).clamp(min=0.0, max=duration - length)
    return torch.stack([start, start + length], dim=1)


@torch.no_grad()
def encode_windows(
    wav: torch.Tensor,          # wav [S] mono at frontend.sample_rate
    bounds: torch.Tensor,       # [K,2] seconds (window_bounds)
    encoder: torch.nn.Module,   # frozen audio encoder
    frontend,                   # its front end
    *,
    gain_db: float = 0.0,       # volume change before the front end (edit.gain_db)
    device: torch.device | str = "cpu",
    chunk: int = 32,            # windows per encoder call (bounds the memory of a long sound)
) -> torch.Tensor:  # fmt: skip
    """Each window's audio_emb → [K,D], L2-normalised: the windows are equally long, so
    they go through the front end and encoder as batches (``embed_audio``, the one path
    from a wave to an embedding) rather than one by one."""
    sr = int(frontend.sample_rate)
    length = min(int(round(float(bounds[0, 1] - bounds[0, 0]) * sr)), wav.shape[0])
    starts = (bounds[:, 0] * sr).round().long().clamp(0, wav.shape[0] - length).tolist()
    scale = 10.0 ** (gain_db / 20.0)
    out = []
    for i in range(0, len(starts), chunk):
        batch = torch.stack([wav[s : s + length] for s in starts[i : i + chunk]]).to(device) * scale
        out.append(embed_audio(batch, frontend, encoder).cpu())
    return torch.cat(out)


@dataclass
class Keyframes:
    """Finished keyframes (the first ``len(ws)`` of ``total``), as keyframes.pt holds them."""

    fingerprint: str  # what they were computed from (run settings, sound, source): resume only on a match
    times: torch.Tensor  # [K] seconds
    ws: torch.Tensor  # [k,num_ws,w_dim] finished keyframes
    cosine_start: torch.Tensor  # [k] cos(CLIP(G(start)), window emb): the warm start, before optimising
    cosine_after: torch.Tensor  # [k] after optimising

    @property
    def done(self) -> int:
        return int(self.ws.shape[0])

    def to_dict(self) -> dict:
        return {
            "format": KEYFRAMES_FORMAT,
            "version": KEYFRAMES_VERSION,
            "fingerprint": self.fingerprint,
            "times": self.times,
            "ws": self.ws,
            "cosine_start": self.cosine_start,
            "cosine_after": self.cosine_after,
        }


def save_keyframes(path: str | os.PathLike, state: Keyframes) -> None:
    """Write keyframes.pt atomically (a kill leaves the previous complete file)."""
    with atomic_path(path) as tmp:
        torch.save(state.to_dict(), tmp)


def load_keyframes(path: str | os.PathLike) -> Keyframes:
    """Read keyframes.pt (``torch.load(weights_only=True)``); ``CheckpointError`` /
    ``UserInputError`` with one line for anything else."""
    from sound2img.models.state_dict import read_torch_file

    d = read_torch_file(path)
    if not isinstance(d, dict) or d.get("format") != KEYFRAMES_FORMAT or d.get("version") != KEYFRAMES_VERSION:
        raise UserInputError(f"{path}: not a keyframes file of this version of sound2img")
    return Keyframes(d["fingerprint"], d["times"], d["ws"], d["cosine_start"], d["cosine_after"])


def optimize_keyframes(
    generator,                  # frozen G
    clip,                       # frozen CLIP towers (.encode_image)
    source_ws: torch.Tensor,    # w_s [1,num_ws,w_dim] on the device
    targets: torch.Tensor,      # [K,D] window embeddings
    state: Keyframes,           # finished keyframes so far (none: a fresh run), extended in place
    *,
    optim: dict,                # optimize_latents keywords (manipulate.*: steps is the first keyframe's)
    keyframe_steps: int,        # steps of every later keyframe
    lambda_prev: float,         # weight of ‖w − previous keyframe‖²
    batch_size: int,            # keyframes optimised together
    identity=None,              # identity loss when λ_ID > 0
    noise_mode: str = "const",
    save: Callable[[Keyframes], None] | None = None,  # called after every batch (resume point)
    on_step: Callable | None = None,  # optimize_latents' per-step callback
    progress: bool = False,
) -> Keyframes:  # fmt: skip
    """Optimise the keyframes not yet in ``state`` (docs/method.md §10.1).

    Keyframe 0 is an ordinary edit of the source towards window 0 (``optim['steps']``).
    Each later batch of ``batch_size`` keyframes starts from the last finished keyframe
    w_prev and minimises the edit objective (towards its own window, λ_sim to the source,
    masking, λ_ID) + λ_prev·‖w − w_prev‖² for ``keyframe_steps`` steps. With batch 1 every
    keyframe is warm-started from the one before it; a batch is the same as its members
    run alone (``optimize_latents``), so the result depends on the batch size, never on
    where a run was interrupted."""
    total = targets.shape[0]
    bar = None
    if progress and state.done < total:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=state.done, desc="keyframes", unit="keyframe")
    while state.done < total:
        k = state.done
        if k == 0:
            idx, kwargs = [0], dict(optim)
            init = anchor = None
        else:
            idx = list(range(k, min(total, k + batch_size)))
            kwargs = {**optim, "steps": keyframe_steps}
            init = state.ws[-1:].to(source_ws.device).expand(len(idx), -1, -1)
            anchor = init
        res = optimize_latents(
            generator,
            clip.encode_image,
            source_ws.expand(len(idx), -1, -1),
            targets[idx].to(source_ws.device),
            **kwargs,
            identity=identity,
            noise_mode=noise_mode,
            progress=progress,
            on_step=on_step,
            init_ws=init,
            anchor_ws=anchor,
            lambda_anchor=lambda_prev if anchor is not None else 0.0,
        )
        state.ws = torch.cat([state.ws, res.ws])
        state.cosine_start = torch.cat([state.cosine_start, res.initial_cosine])
        state.cosine_after = torch.cat([state.cosine_after, res.final_cosine])
        if save is not None:
            save(state)
        if bar is not None:
            bar.update(len(idx))
    if bar is not None:
        bar.close()
    return state


def interpolate(ws: torch.Tensor, times: torch.Tensor, t: torch.Tensor, mode: str = "cubic") -> torch.Tensor:
    """The W+ trajectory through keyframes ws [K,num_ws,w_dim] at times [K] (increasing),
    sampled at t [F] → [F,num_ws,w_dim], each W+ row interpolated on its own.

    ``cubic``: cubic Hermite with Catmull-Rom tangents m_k = (w_{k+1} − w_{k−1})/(t_{k+1} −
    t_{k−1}) (one-sided at the ends): passes through every keyframe with a continuous
    velocity, so the motion does not jerk at each keyframe as ``linear`` does. Not slerp:
    W is not a sphere — mapping outputs cluster around w_avg, far from the origin, and
    their norms carry no meaning — so great circles through the origin are no paths of
    the distribution; straight lines and smooth curves in W are what StyleGAN's own
    interpolations (and its path-length metric) use (docs/method.md §10.2)."""
    if mode not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {mode!r}")
    n = ws.shape[0]
    t = t.to(torch.float64).clamp(float(times[0]), float(times[-1]))
    if n == 1:
        return ws.expand(t.shape[0], -1, -1).clone()
    times = times.to(torch.float64)
    k = (torch.searchsorted(times, t, right=True) - 1).clamp(0, n - 2)
    h = times[k + 1] - times[k]
    s = ((t - times[k]) / h).to(ws.dtype)[:, None, None]
    p0, p1 = ws[k], ws[k + 1]
    if mode == "linear":
        return p0 + s * (p1 - p0)
    dt = torch.empty(n, dtype=torch.float64)
    dt[1:-1] = times[2:] - times[:-2]
    dt[0], dt[-1] = times[1] - times[0], times[-1] - times[-2]
    lo, hi = torch.arange(n).sub(1).clamp(min=0), torch.arange(n).add(1).clamp(max=n - 1)
    tangents = (ws[hi] - ws[lo]) / dt.to(ws.dtype)[:, None, None]  # [K,num_ws,w_dim] per second
    m0, m1 = tangents[k] * h.to(ws.dtype)[:, None, None], tangents[k + 1] * h.to(ws.dtype)[:, None, None]
    s2, s3 = s * s, s * s * s
    return (2 * s3 - 3 * s2 + 1) * p0 + (s3 - 2 * s2 + s) * m0 + (-2 * s3 + 3 * s2) * p1 + (s3 - s2) * m1


def sheet_indices(count: int, most: int) -> list[int]:
    """At most ``most`` of ``count`` items, evenly spread, first and last included."""
    if count <= most:
        return list(range(count))
    return sorted({round(i * (count - 1) / (most - 1)) for i in range(most)}) if most > 1 else [0]


def frame_of(time_s: float, fps: float, frames: int) -> int:
    """The frame showing time ``time_s``."""
    return min(frames - 1, max(0, math.floor(time_s * fps + 1e-9)))


def keyframes_path(out: str | os.PathLike) -> Path:
    return Path(out) / "keyframes.pt"
