"""Test sounds made on the spot (nothing is downloaded): speech-like (formant-filtered
glottal pulse train with a syllable envelope), pink and white noise bursts, tones, and
writers for wav/flac (soundfile) and mp3/m4a/mp4 (PyAV)."""

from __future__ import annotations

import fractions
from pathlib import Path

import numpy as np
from scipy.signal import lfilter


def speech_like(sr: int, seconds: float, seed: int = 0, level: float = 0.3) -> np.ndarray:
    """A vowel-ish voice: pulses at a gliding f0 through three formant resonators, with a
    4-Hz syllable envelope and a little breath noise. ``[S]`` float64."""
    rng = np.random.default_rng(seed)
    n = int(sr * seconds)
    t = np.arange(n) / sr
    f0 = 110 + 30 * np.sin(2 * np.pi * 0.7 * t) + rng.uniform(0, 40)
    phase = np.cumsum(f0 / sr)
    pulses = (np.diff(np.floor(phase), prepend=0.0) > 0).astype(np.float64) + 0.02 * rng.standard_normal(n)
    y = pulses
    for fc, bw in [(700 + rng.uniform(-100, 100), 110), (1200 + rng.uniform(-150, 150), 90), (2600, 170)]:
        r, theta = np.exp(-np.pi * bw / sr), 2 * np.pi * fc / sr
        y = lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], y)
    envelope = np.clip(np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6)), 0, None) ** 0.7
    y = y * envelope
    return level * y / (np.abs(y).max() + 1e-12)


def noise_bursts(sr: int, seconds: float, seed: int = 0, colour: str = "pink", level: float = 0.2) -> np.ndarray:
    """Bursts (0.1–0.6 s) of pink (1/f) or white noise over quiet background. ``[S]``."""
    rng = np.random.default_rng(seed)
    n = int(sr * seconds)
    spectrum = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    if colour == "pink":
        f = np.maximum(np.fft.rfftfreq(n, 1 / sr), 1.0)
        spectrum = spectrum / np.sqrt(f)
    noise = np.fft.irfft(spectrum, n)
    noise /= np.abs(noise).max()
    gate = np.full(n, 0.01)
    for _ in range(max(1, int(seconds * 1.5))):
        start, length = rng.integers(0, n), int(sr * rng.uniform(0.1, 0.6))
        gate[start : start + length] = 1.0
    return level * noise * gate


def tones(sr: int, seconds: float, freqs=(220.0, 440.0, 1250.0, 3000.0), level: float = 0.4) -> np.ndarray:
    """A sum of steady sines plus a gliding one. ``[S]``."""
    t = np.arange(int(sr * seconds)) / sr
    y = sum(np.sin(2 * np.pi * f * t) for f in freqs) + np.sin(2 * np.pi * (300 * t + 150 * t**2))
    return level * y / (len(freqs) + 1)


def make_sound(kind: str, sr: int, seconds: float, seed: int = 0) -> np.ndarray:
    """``kind`` in speech, pink, white, tones, mix."""
    if kind == "speech":
        return speech_like(sr, seconds, seed)
    if kind in ("pink", "white"):
        return noise_bursts(sr, seconds, seed, colour=kind)
    if kind == "tones":
        return tones(sr, seconds)
    if kind == "mix":
        return (
            0.6 * speech_like(sr, seconds, seed) + 0.5 * noise_bursts(sr, seconds, seed + 1) + 0.3 * tones(sr, seconds)
        )
    raise ValueError(kind)


def write_sound(path: Path, y: np.ndarray, sr: int, subtype: str = "PCM_16", clip: bool = True) -> Path:
    """``y [S]`` or ``[S,C]`` to wav/flac/ogg via soundfile (format from the suffix),
    clipped to [-1, 1] unless ``clip=False`` (float files may hold anything)."""
    import soundfile as sf

    sf.write(str(path), (np.clip(y, -1, 1) if clip else np.asarray(y)).astype(np.float32), sr, subtype=subtype)
    return path


def write_av(
    path: Path, y: np.ndarray | None, sr: int, codec: str, *, video: bool = False, bit_rate: int = 192_000
) -> Path:
    """Write ``y [S]`` or ``[C,S]`` (1 or 2 channels) with PyAV as ``codec`` in the container
    the suffix names; ``video=True`` adds a small MPEG-4 video track; ``y=None`` writes the
    video track alone."""
    import av

    with av.open(str(path), "w") as container:
        if video:
            vstream = container.add_stream("mpeg4", rate=10)
            vstream.width, vstream.height, vstream.pix_fmt = 64, 48, "yuv420p"
        if y is not None:
            data = np.atleast_2d(np.asarray(y, np.float32))
            layout = "mono" if data.shape[0] == 1 else "stereo"
            astream = container.add_stream(codec, rate=sr, layout=layout)
            astream.bit_rate = bit_rate
            convert = av.AudioResampler(format=astream.codec_context.format, layout=layout, rate=sr)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="fltp", layout=layout)
            frame.sample_rate, frame.pts, frame.time_base = sr, 0, fractions.Fraction(1, sr)
            for piece in convert.resample(frame) + convert.resample(None):
                for packet in astream.encode(piece):
                    container.mux(packet)
            for packet in astream.encode(None):
                container.mux(packet)
        if video:
            for k in range(20):
                image = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 10 * k, np.uint8), format="rgb24")
                for packet in vstream.encode(image):
                    container.mux(packet)
            for packet in vstream.encode(None):
                container.mux(packet)
    return path
