"""Guidance: what the latent is pulled towards. Sounds and text prompts → target
embeddings (computed once per edit), their weighted mixtures and interpolations, and the
text↔audio latent mixing of the paper's supplement §C."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from sound2img.errors import UserInputError
from sound2img.models.embedding import embed_audio

TONE_SECONDS = 10.0  # the legacy front end's 864 frames at 44.1 kHz ≈ 10 s: a tone fills it
# Files up to this long are decoded whole, so the front end sees what the authors' pipeline
# sees: soundclip_legacy's power_to_db reference is the maximum over the WHOLE file, then the
# centre 864 frames are kept. Longer files are read as their centre window only (the
# reference is then that window's maximum; README, "Differences from the authors' code").
FULL_FILE_SECONDS = 60.0


def describe_sound(spec: str) -> str:
    """A short filesystem-safe label for a sound spec (``tone:440`` → ``tone440``,
    ``sample:rain`` → ``rain``, ``dir/rain.wav`` → ``rain``)."""
    if spec.startswith("sample:"):
        spec = spec[len("sample:") :]
    stem = spec.rsplit("/", 1)[-1]
    stem = re.sub(r"\.[A-Za-z0-9]{1,5}$", "", stem)
    return re.sub(r"[^A-Za-z0-9]+", "", stem)[:40] or "sound"


def make_tone(freq_hz: float, sample_rate: int, seconds: float = TONE_SECONDS) -> torch.Tensor:
    """A sine of ``freq_hz`` at amplitude 0.5: wav [S] float32."""
    t = torch.arange(int(round(seconds * sample_rate)), dtype=torch.float64) / sample_rate
    return (0.5 * torch.sin(2 * math.pi * freq_hz * t)).float()


def sound_window_seconds(frontend) -> float:
    """Seconds of audio a front end's centre crop of ``num_frames`` frames covers; a front
    end that takes every frame (``num_frames`` null) gets ``TONE_SECONDS``, the length of
    the clips encoders are trained on."""
    num_frames = getattr(frontend, "num_frames", None)
    if not num_frames:
        return TONE_SECONDS
    return ((int(num_frames) - 1) * frontend.hop_length + frontend.n_fft) / frontend.sample_rate


def _read_sound_file(
    path, sample_rate: int, max_seconds: float | None, full_seconds: float, resampler: str
) -> torch.Tensor:
    from sound2img.audio.io import audio_info, load_audio

    if max_seconds is not None:
        info = audio_info(path)
        # Only files longer than ``full_seconds`` (and than twice the window) are cut before
        # decoding; up to that the whole file reaches the front end, whose per-clip
        # normalisation then equals the authors' whole-file one.
        if info.duration > max(full_seconds, 2 * max_seconds):
            return load_audio(
                path,
                sample_rate,
                offset=(info.duration - max_seconds) / 2,
                duration=max_seconds,
                resampler=resampler,
            )
    return load_audio(path, sample_rate, resampler=resampler)


def load_sound(
    spec: str,
    sample_rate: int,
    *,
    max_seconds: float | None = None,
    full_seconds: float = FULL_FILE_SECONDS,
    resampler: str = "soxr_hq",
) -> torch.Tensor:
    """Read one sound as wav [S] mono at ``sample_rate``.

    ``spec`` is an audio/video file path, ``sample:NAME`` (a sample sound of the weights
    registry, e.g. ``sample:rain``, fetched on first use) or ``tone:HZ`` (a 10-s sine made
    on the spot: an offline install check, not a real sound). With ``max_seconds`` (see
    ``sound_window_seconds``), a file longer than ``full_seconds`` (default 60 s) and than
    twice ``max_seconds`` is read as its centre ``max_seconds`` only: an hour-long recording
    costs what the front end looks at. Up to ``full_seconds`` the whole file is decoded.
    ``resampler`` is the front end's (``frontend.resampler``: how its encoder's inputs were
    resampled)."""
    if spec.startswith("tone:"):
        try:
            freq = float(spec[len("tone:") :])
        except ValueError:
            raise UserInputError(f"{spec!r}: tone:HZ needs a number of hertz, e.g. tone:440") from None
        if not 0 < freq < sample_rate / 2:
            raise UserInputError(f"{spec!r}: the frequency must be in (0, {sample_rate / 2:g}) Hz at {sample_rate} Hz")
        return make_tone(freq, sample_rate)
    if spec.startswith("sample:"):
        from sound2img.weights import resolve_weights

        return _read_sound_file(
            resolve_weights("sample_" + spec[len("sample:") :]), sample_rate, max_seconds, full_seconds, resampler
        )
    return _read_sound_file(spec, sample_rate, max_seconds, full_seconds, resampler)


def load_sound_for_frontend(spec: str, frontend, *, full_seconds: float = FULL_FILE_SECONDS) -> torch.Tensor:
    """``load_sound`` as ``frontend`` takes the sound: at its rate, through its resampler,
    only the window it looks at of a long file (``sound_window_seconds``). wav [S]."""
    return load_sound(
        spec,
        int(frontend.sample_rate),
        max_seconds=sound_window_seconds(frontend),
        full_seconds=full_seconds,
        resampler=getattr(frontend, "resampler", "soxr_hq"),
    )


@torch.no_grad()
def encode_sounds(
    wavs: Sequence[torch.Tensor],  # each wav [S] mono at frontend.sample_rate
    encoder: torch.nn.Module,  # frozen audio encoder: mel → audio_emb_raw [B,D]
    frontend: torch.nn.Module,  # wav [B,S] → mel [B,1,n_mels,T] (deterministic at inference)
    *,
    gain_db: float = 0.0,  # volume change before the front end (paper supp. Fig. 8)
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Sounds → audio_emb [N,D], L2-normalised. Run once per edit, never per step.

    Sounds of different lengths are encoded one at a time (the front end crops or pads).
    Note: ``soundclip_legacy`` normalises each clip by its maximum (``power_to_db(ref=max)``),
    so a gain changes its input only through the 80-dB floor — next to nothing; with
    ``logmel`` the level is kept."""
    scale = 10.0 ** (gain_db / 20.0)
    return torch.cat([embed_audio(wav.reshape(1, -1).to(device) * scale, frontend, encoder) for wav in wavs])


@torch.no_grad()
def encode_texts(prompts: Sequence[str], clip) -> torch.Tensor:
    """Text prompts → CLIP text embeddings [N,D], L2-normalised (StyleCLIP's text target)."""
    return F.normalize(clip.encode_text(list(prompts)).float(), dim=-1)


def mix_embeddings(embs: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    """Weighted mixture of embeddings embs [K,D] → [D], renormalised to unit length."""
    w = torch.as_tensor(list(weights), dtype=embs.dtype, device=embs.device)
    if w.shape != (embs.shape[0],):
        raise UserInputError(f"{len(w)} mixture weights for {embs.shape[0]} embeddings")
    if (w < 0).any() or float(w.sum()) <= 0:
        raise UserInputError(f"mixture weights must be >= 0 with a positive sum, got {list(weights)}")
    mixed = (w[:, None] * embs).sum(dim=0)
    if float(mixed.norm()) < 1e-8:
        raise UserInputError("the weighted embeddings cancel out; choose other weights")
    return F.normalize(mixed, dim=-1)


INTERP_MODES = ("slerp", "lerp")  # interpolate_embeddings' paths (edit.interp_mode)


def interpolate_embeddings(a: torch.Tensor, b: torch.Tensor, steps: int, mode: str = "slerp") -> torch.Tensor:
    """Embeddings from a [D] to b [D] in ``steps`` (≥ 2) points, ends included → [steps,D],
    each renormalised. ``slerp`` follows the great circle, ``lerp`` the chord."""
    if steps < 2:
        raise UserInputError(f"interpolation needs at least 2 steps, got {steps}")
    if mode not in INTERP_MODES:
        raise UserInputError(f"interpolation mode must be slerp or lerp, got {mode!r}")
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    t = torch.linspace(0, 1, steps, dtype=a.dtype, device=a.device)[:, None]
    theta = torch.arccos((a * b).sum().clamp(-1.0, 1.0))
    if mode == "lerp" or float(theta) < 1e-4:  # (nearly) parallel: slerp's weights are 0/0
        out = (1 - t) * a + t * b
    else:
        out = (torch.sin((1 - t) * theta) * a + torch.sin(t * theta) * b) / torch.sin(theta)
    return F.normalize(out, dim=-1)


def mix_latents(ws_audio: torch.Tensor, ws_text: torch.Tensor, alpha: float) -> torch.Tensor:
    """Supplement §C: w = (1 − α)·w_a + α·w_t; ws [..,num_ws,w_dim]."""
    if ws_audio.shape != ws_text.shape:
        raise ValueError(f"latent shapes differ: {tuple(ws_audio.shape)} vs {tuple(ws_text.shape)}")
    return (1.0 - alpha) * ws_audio + alpha * ws_text


def mix_layers(ws_coarse: torch.Tensor, ws_fine: torch.Tensor, split: int) -> torch.Tensor:
    """Layer-wise mixing: W+ rows [0, split) from ``ws_coarse``, [split, num_ws) from
    ``ws_fine``; ws [..,num_ws,w_dim]."""
    if ws_coarse.shape != ws_fine.shape:
        raise ValueError(f"latent shapes differ: {tuple(ws_coarse.shape)} vs {tuple(ws_fine.shape)}")
    num_ws = ws_coarse.shape[-2]
    if not 0 <= split <= num_ws:
        raise UserInputError(f"layer split {split} is outside 0..{num_ws} for a {num_ws}-layer W+")
    return torch.cat([ws_coarse[..., :split, :], ws_fine[..., split:, :]], dim=-2)
