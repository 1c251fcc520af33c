"""A synthetic sound-class dataset for learning tests and ``preset=tiny``: tones, noise
bands, sweeps and click trains that a log-mel separates, each drawn with random pitch,
phase, timing, gain and background noise so that held-out accuracy means something."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from sound2img.data.base import AudioClipDataset, DatasetError, Record

# Frequencies are fractions of the Nyquist frequency, so every class stays distinct (and
# below Nyquist) at any sample rate, 8 kHz included.


def _tone(t, ny, rng, frac, harmonics=1):
    f0 = frac * ny * rng.uniform(0.92, 1.08)
    return sum(
        np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k
        for k in range(1, harmonics + 1)
        if k * f0 < 0.95 * ny
    )


def _band(t, ny, rng, lo, hi):
    """White noise band-limited to [lo, hi]·Nyquist (jittered), by FFT masking."""
    spec = np.fft.rfft(rng.standard_normal(t.size))
    freqs = np.linspace(0.0, 1.0, spec.size)
    j = rng.uniform(0.9, 1.1)
    spec[(freqs < lo * j) | (freqs > min(hi * j, 1.0))] = 0
    return np.fft.irfft(spec, n=t.size)


def _sweep(t, ny, rng, f_start, f_end):
    dur = max(float(t[-1]), 1e-3)
    f0, f1 = f_start * ny * rng.uniform(0.9, 1.1), f_end * ny * rng.uniform(0.9, 1.1)
    return np.sin(2 * np.pi * (f0 * t + 0.5 * (f1 - f0) * t * t / dur) + rng.uniform(0, 2 * np.pi))


def _clicks(t, ny, rng, rate_hz):
    """Short decaying noise bursts at ``rate_hz`` (jittered) from a random onset."""
    sr = 2 * ny
    out = np.zeros(t.size)
    period = sr / (rate_hz * rng.uniform(0.85, 1.15))
    burst = rng.standard_normal(max(2, int(0.003 * sr))) * np.exp(-np.linspace(0, 6, max(2, int(0.003 * sr))))
    pos = rng.uniform(0, period)
    while pos < t.size:
        i = int(pos)
        n = min(burst.size, t.size - i)
        out[i : i + n] += burst[:n]
        pos += period * rng.uniform(0.95, 1.05)
    return out


def _gated(t, ny, rng, frac, rate_hz):
    gate = np.sin(2 * np.pi * rate_hz * rng.uniform(0.9, 1.1) * t + rng.uniform(0, 2 * np.pi)) > 0
    return _tone(t, ny, rng, frac) * gate


def _warble(t, ny, rng, frac, rate_hz, depth):
    fc, fm = frac * ny * rng.uniform(0.92, 1.08), rate_hz * rng.uniform(0.8, 1.2)
    return np.sin(2 * np.pi * fc * t + (depth * ny / fm) * np.sin(2 * np.pi * fm * t) + rng.uniform(0, 6.3))


# (class name, generator(t [S] seconds, nyquist Hz, numpy Generator) -> signal [S])
SYNTHETIC_CLASSES: tuple[tuple[str, Callable[..., np.ndarray]], ...] = (
    ("low hum", lambda t, ny, r: _tone(t, ny, r, 0.02, harmonics=4)),
    ("high whistle", lambda t, ny, r: _tone(t, ny, r, 0.5)),
    ("fast clicks", lambda t, ny, r: _clicks(t, ny, r, 14.0)),
    ("rising chirp", lambda t, ny, r: _sweep(t, ny, r, 0.05, 0.45)),
    ("low rumble", lambda t, ny, r: _band(t, ny, r, 0.005, 0.04)),
    ("hiss", lambda t, ny, r: _band(t, ny, r, 0.72, 0.95)),
    ("slow beeps", lambda t, ny, r: _gated(t, ny, r, 0.25, 2.5)),
    ("falling chirp", lambda t, ny, r: _sweep(t, ny, r, 0.45, 0.05)),
    ("buzz", lambda t, ny, r: _tone(t, ny, r, 0.035, harmonics=24)),
    ("slow clicks", lambda t, ny, r: _clicks(t, ny, r, 3.0)),
    ("rushing noise", lambda t, ny, r: _band(t, ny, r, 0.15, 0.3)),
    ("warbling tone", lambda t, ny, r: _warble(t, ny, r, 0.35, 6.0, 0.05)),
)
_SPLIT_IDS = {"train": 0, "test": 1, "val": 2}


def list_synthetic_classes() -> list[str]:
    """Names of the available synthetic classes, in label order."""
    return [name for name, _fn in SYNTHETIC_CLASSES]


def synthesize(label: int, sample_rate: int, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """One clip of class ``label`` → ``wav [num_samples]`` float32, peak in [0.25, 1] (gain
    jitter) with white background noise 10–30 dB below the signal."""
    t = np.arange(num_samples) / sample_rate
    x = np.asarray(SYNTHETIC_CLASSES[label][1](t, sample_rate / 2.0, rng), dtype=np.float64)
    x /= np.sqrt(np.mean(x * x)) + 1e-12
    snr_db = rng.uniform(10.0, 30.0)
    x = x + rng.standard_normal(num_samples) * 10 ** (-snr_db / 20)
    x *= rng.uniform(0.25, 1.0) / (np.abs(x).max() + 1e-12)
    return x.astype(np.float32)


class SyntheticDataset(AudioClipDataset):
    """``num_classes × num_per_class`` generated clips (label = index mod num_classes, so
    any prefix is balanced). ``split`` selects an independent stream of clips: train and
    test never share a clip. With ``image_size`` each item also has an image: the class's
    colour with per-item brightness jitter and noise (for a↔v tests)."""

    name = "synthetic"

    def __init__(
        self,
        *,
        num_classes: int = 8,
        num_per_class: int = 16,
        sample_rate: int = 16000,
        num_samples: int = 16000,
        seed: int = 0,
        split: str = "train",
        image_size: int | None = None,
        **kwargs: Any,
    ):
        if not 1 <= num_classes <= len(SYNTHETIC_CLASSES):
            raise DatasetError(f"synthetic: num_classes must be in 1..{len(SYNTHETIC_CLASSES)}, got {num_classes}")
        if num_per_class < 1:
            raise DatasetError(f"synthetic: num_per_class must be positive, got {num_per_class}")
        if split not in _SPLIT_IDS:
            raise DatasetError(f"synthetic: split must be one of {sorted(_SPLIT_IDS)}, got {split!r}")
        self.split = split
        names = list_synthetic_classes()[:num_classes]
        records = [
            Record(
                key=f"synthetic/{seed}/{split}/{i}",
                audio=None,
                label=i % num_classes,
                class_name=names[i % num_classes],
                image="synthetic" if image_size else None,
            )
            for i in range(num_classes * num_per_class)
        ]
        kwargs.setdefault("crop", "center")
        super().__init__(
            records, names, sample_rate=sample_rate, num_samples=num_samples, seed=seed, image_size=image_size, **kwargs
        )

    def _rng(self, index: int, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, _SPLIT_IDS[self.split], stream, index])

    def read_wav(self, index: int, generator: torch.Generator) -> torch.Tensor:
        label = self.records[index].label
        return torch.from_numpy(synthesize(label, self.sample_rate, self.num_samples, self._rng(index, 0)))

    def read_image(self, index: int) -> torch.Tensor:
        rng = self._rng(index, 1)
        label, size = self.records[index].label, int(self.image_size)
        hue = label / len(self.class_names)
        # Distinct hues on the colour wheel, jittered brightness, pixel noise.
        rgb = 0.5 + 0.5 * np.cos(2 * np.pi * (hue + np.array([0.0, 1 / 3, 2 / 3])))
        img = rgb[:, None, None] * rng.uniform(0.7, 1.0) + rng.normal(0, 0.05, (3, size, size))
        return torch.from_numpy(np.clip(img * 255, 0, 255).astype(np.uint8))
