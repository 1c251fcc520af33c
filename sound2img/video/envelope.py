"""Per-video-frame envelopes of a sound (docs/method.md §10.3), from the mel power of the
encoder's own front end: loudness (what drives Lucid Sonic Dreams' "motion") and onset
strength (what drives its "pulse"), each in [0, 1] and smoothed."""

from __future__ import annotations

import math

import torch

# A sound whose peak sample is below this (-80 dBFS: under a 16-bit file's last bit) is
# treated as silence: its envelopes are zero and the video stays still.
SILENCE_PEAK = 1e-4
_POWER_FLOOR = 1e-10  # librosa's amin: the dB floor of the onset envelope


def mel_power_of(wav: torch.Tensor, frontend) -> tuple[torch.Tensor, int, int]:
    """wav [S] at ``frontend.sample_rate`` → (mel power [n_mels,T], hop, sample rate).

    The front end's own STFT and filter bank (``MelFrontend.mel_power``); front ends without
    one (the peer encoders' wave front ends) get the default ``logmel`` at their rate."""
    if not hasattr(frontend, "mel_power"):
        from sound2img.audio.frontend import build_frontend

        frontend = build_frontend("logmel", sample_rate=int(frontend.sample_rate), f_max=None)
    device = frontend.window.device
    with torch.no_grad():
        power, _ = frontend.mel_power(wav.reshape(1, -1).to(device))
    return power[0].float().cpu(), int(frontend.hop_length), int(frontend.sample_rate)


def frame_index(num_mel_frames: int, hop: int, sample_rate: int, fps: float, num_frames: int) -> torch.Tensor:
    """The video frame [T] each mel frame belongs to: mel frame j is centred on sample
    j·hop (``center=True``), video frame f shows [f/fps, (f+1)/fps)."""
    t = torch.arange(num_mel_frames, dtype=torch.float64) * hop / sample_rate
    return (t * fps).floor().long().clamp(0, num_frames - 1)


def smooth(x: torch.Tensor, fps: float, seconds: float) -> torch.Tensor:
    """One-pole smoothing y_i = a·y_{i-1} + (1 − a)·x_i with a = exp(−1/(fps·seconds)):
    Lucid Sonic Dreams' 0.75 per frame at its 43 fps is a time constant of 0.08 s; stated
    in seconds it means the same at any frame rate. x [N] → [N]."""
    if seconds <= 0 or x.numel() == 0:
        return x.clone()
    a = math.exp(-1.0 / (fps * seconds))
    out = torch.empty_like(x)
    y = 0.0
    for i, v in enumerate(x.tolist()):  # a few thousand frames per minute: a Python loop is fine
        y = a * y + (1.0 - a) * v
        out[i] = y
    return out


def envelopes(
    wav: torch.Tensor,          # wav [S] mono at frontend.sample_rate
    frontend,                   # the encoder's front end (its mel_power is used)
    *,
    fps: float,                 # video frame rate
    num_frames: int,            # frames of the video
    smooth_seconds: float,      # time constant of the smoothing (0: none)
) -> dict[str, torch.Tensor]:  # fmt: skip
    """→ ``{"loudness": [N], "onset": [N]}``, each in [0, 1], zero for a silent sound.

    loudness: per mel frame the largest band power (Lucid Sonic Dreams' spectrogram
    maximum), averaged over each video frame, divided by its maximum over the sound (Lucid
    Sonic Dreams also subtracts the minimum, which stretches a steady sound's flutter to the
    full range; without it a steady sound moves at a steady speed).
    onset: per mel frame the mean positive rise of the log-mel (dB) over the previous frame
    (spectral flux, librosa's ``onset_strength``), the largest over each video frame (a hit
    is not averaged away), divided by its maximum. Both then smoothed (``smooth``)."""
    zeros = torch.zeros(num_frames)
    if wav.numel() == 0 or float(wav.abs().max()) < SILENCE_PEAK:
        return {"loudness": zeros, "onset": zeros.clone()}
    power, hop, sr = mel_power_of(wav, frontend)
    idx = frame_index(power.shape[1], hop, sr, fps, num_frames)
    peak = power.amax(dim=0).double()
    db = 10.0 * torch.log10(power.clamp(min=_POWER_FLOOR))  # [n_mels,T] float32: a long sound's largest arrays
    flux = torch.zeros_like(peak)
    flux[1:] = (db[:, 1:] - db[:, :-1]).clamp_(min=0).mean(dim=0).double()
    del db
    # A video frame shorter than a hop holds no mel frame: it takes the one nearest its centre.
    empty = torch.bincount(idx, minlength=num_frames) == 0
    nearest = ((torch.arange(num_frames, dtype=torch.float64) + 0.5) / fps * sr / hop).round().long()
    nearest = nearest.clamp(0, power.shape[1] - 1)
    out = {}
    for name, src, how in (("loudness", peak, "mean"), ("onset", flux, "amax")):
        x = torch.zeros(num_frames, dtype=torch.float64).scatter_reduce(0, idx, src, how, include_self=False)
        x = torch.where(empty, src[nearest], x)
        top = float(x.max())
        x = x / top if top > 0 else torch.zeros_like(x)
        out[name] = smooth(x.float(), fps, smooth_seconds)
    return out
