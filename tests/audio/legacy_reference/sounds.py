"""The generated sounds of the legacy-input references, bit-identical under any numpy (they
are built by integer hashing and float64 arithmetic, then rounded to 16-bit PCM; a sha256
of the PCM is stored with the references to prove it). Imported by the reference script,
which runs in the authors' pinned environment (Python 3.9, numpy 1.20), and by the tests."""

from __future__ import annotations

import hashlib

import numpy as np

# name: (file rate, channels, seconds, kind). Rates 16/22.05/32/44.1/48 kHz, mono and
# stereo, shorter and longer than the 864 frames (~10 s) the encoder sees, a 30-s file,
# clips shorter than half an FFT frame, and a file over manipulate's 60-s whole-file limit.
CASES = {
    "chirp_44k1_mono_4s": (44100, 1, 4.0, "chirp"),
    "noise_48k_stereo_3s": (48000, 2, 3.0, "noise"),
    "click_48k_mono_6s": (48000, 1, 6.0, "click"),
    "chirp_48k_mono_12s": (48000, 1, 12.0, "chirp"),
    "noise_16k_mono_5s": (16000, 1, 5.0, "noise"),
    "chirp_22k05_stereo_8s": (22050, 2, 8.0, "chirp"),
    "click_32k_stereo_11s": (32000, 2, 11.0, "click"),
    "mix_48k_stereo_30s": (48000, 2, 30.0, "mix"),
    "noise_44k1_mono_15ms": (44100, 1, 0.015, "noise"),
    "chirp_16k_stereo_50ms": (16000, 2, 0.05, "chirp"),
    "mix_48k_mono_70s": (48000, 1, 70.0, "mix"),
    "noise_8k_mono_1370ms": (8000, 1, 1.37, "noise"),
    "chirp_96k_mono_4500ms": (96000, 1, 4.5, "chirp"),
}
# Read also as AudioCLIP's UrbanSound8K reader reads them: shorter than 4 s in stereo, and
# mono (doubled) with an odd padding (its left share rounds half to even) and over 4 s (cut).
AUDIOCLIP_US8K_CASES = ("noise_48k_stereo_3s", "noise_8k_mono_1370ms", "chirp_96k_mono_4500ms")
# Cases over 60 s are read by manipulate.py as their centre window only (README,
# "Differences from the authors' code"); their reference is librosa 0.8.1 on that window.
FULL_FILE_SECONDS = 60.0

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def uniform(n: int, seed: int) -> np.ndarray:
    """``n`` values in [0, 1) from SplitMix64 on a counter (integer arithmetic only)."""
    with np.errstate(over="ignore"):
        z = (np.arange(n, dtype=np.uint64) + np.uint64(seed) * np.uint64(1 << 32)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = (z ^ (z >> np.uint64(31))) & _MASK
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def chirp(sr: int, n: int, seed: int) -> np.ndarray:
    """A linear sweep from 60 Hz to 0.47·sr (up to the file's top band, where resamplers
    differ most), plus a steady 440-Hz tone, at 0.4 of full scale."""
    t = np.arange(n) / sr
    seconds = max(n / sr, 1e-3)
    f0, f1 = 60.0, 0.47 * sr
    sweep = np.sin(2 * np.pi * (f0 * t + 0.5 * (f1 - f0) / seconds * t * t))
    return 0.3 * sweep + 0.1 * np.sin(2 * np.pi * 440.0 * t + seed)


def noise(sr: int, n: int, seed: int) -> np.ndarray:
    """Bursts of white noise (sum of four uniforms) 0.1–0.5 s long over a -40 dB floor."""
    white = uniform(n, seed) + uniform(n, seed + 1) + uniform(n, seed + 2) + uniform(n, seed + 3) - 2.0
    gate = np.full(n, 0.01)
    draws = uniform(16, seed + 4)
    for k in range(8):
        start = int(draws[2 * k] * n)
        gate[start : start + int(sr * (0.1 + 0.4 * draws[2 * k + 1]))] = 1.0
    return 0.35 * white * gate


def click(sr: int, n: int, seed: int) -> np.ndarray:
    """Silence with one full-scale click (a 3-sample impulse) at 40 % of the file, and a
    second, small one 2 ms after the start (the padding of the first frame sees it)."""
    y = np.zeros(n)
    at = int(0.4 * n)
    y[at : at + 3] = [0.9, -0.6, 0.3]
    y[min(n - 1, int(0.002 * sr))] = 0.05 * (1 + seed % 2)
    return y


def make_pcm(name: str) -> tuple[np.ndarray, int]:
    """Case ``name`` → (``pcm [S, C]`` int16, file rate)."""
    sr, channels, seconds, kind = CASES[name]
    n = int(round(seconds * sr))
    make = {"chirp": chirp, "noise": noise, "click": click}
    chans = []
    for c in range(channels):
        if kind == "mix":
            y = 0.6 * chirp(sr, n, 7 + c) + 0.8 * noise(sr, n, 11 + 5 * c)
        else:
            y = make[kind](sr, n, 3 + c)
        chans.append(y if c == 0 else 0.7 * y[::-1].copy())  # a different second channel
    y = np.stack(chans, axis=1)
    return np.clip(np.round(y * 32767.0), -32768, 32767).astype(np.int16), sr


def pcm_digest(pcm: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(pcm, dtype="<i2").tobytes()).hexdigest()


def write_case(name: str, directory) -> str:
    """Write case ``name`` as ``directory/name.wav`` (16-bit PCM); returns the path."""
    import soundfile as sf

    pcm, sr = make_pcm(name)
    path = f"{directory}/{name}.wav"
    sf.write(path, pcm, sr, subtype="PCM_16")
    return path
