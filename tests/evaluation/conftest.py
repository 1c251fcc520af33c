"""Fixtures for the evaluation tests: tiny ESC-50 and UrbanSound8K trees in the datasets'
exact layouts (directory tree + CSV, one tone per class), and stand-in encoders whose
zero-shot answer is known by construction."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

SR = 16000
CLIP_SECONDS = 1.0
# ESC-50 target → (category, tone Hz); the categories are ESC-50's own names for these ids.
ESC50_CLASSES = {0: ("dog", 300.0), 10: ("rain", 700.0), 20: ("crying_baby", 1500.0), 30: ("door_wood_knock", 3200.0)}
# UrbanSound8K classID → tone Hz (class names come from the dataset's fixed table).
US8K_CLASSES = {1: 400.0, 3: 900.0, 6: 2000.0}
US8K_NAMES = (
    "air_conditioner",
    "car_horn",
    "children_playing",
    "dog_bark",
    "drilling",
    "engine_idling",
    "gun_shot",
    "jackhammer",
    "siren",
    "street_music",
)


def tone(freq: float, seconds: float = CLIP_SECONDS, sr: int = SR, phase: float = 0.0) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def _write_wav(path: Path, data: np.ndarray) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, SR, subtype="PCM_16")


def write_esc50(root: Path, clips_per_class_per_fold: int = 2) -> Path:
    """``root/meta/esc50.csv`` + ``root/audio/{fold}-{src}-{take}-{target}.wav`` (ESC-50's names)."""
    rows = []
    for fold in range(1, 6):
        for target, (category, freq) in ESC50_CLASSES.items():
            for k in range(clips_per_class_per_fold):
                src = 100000 + 1000 * fold + 10 * target + k
                name = f"{fold}-{src}-A-{target}.wav"
                _write_wav(root / "audio" / name, tone(freq, phase=0.3 * k))
                rows.append([name, fold, target, category, str(target in (0, 10)), src, "A"])
    (root / "meta").mkdir(parents=True, exist_ok=True)
    with open(root / "meta" / "esc50.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        w.writerows(rows)
    return root


def write_us8k(root: Path, clips_per_class_per_fold: int = 1) -> Path:
    """``root/metadata/UrbanSound8K.csv`` + ``root/audio/fold{N}/{fsID}-{classID}-0-{k}.wav``."""
    rows = []
    for fold in range(1, 11):
        for class_id, freq in US8K_CLASSES.items():
            for k in range(clips_per_class_per_fold):
                fs_id = 5000 + 100 * fold + class_id
                name = f"{fs_id}-{class_id}-0-{k}.wav"
                _write_wav(root / "audio" / f"fold{fold}" / name, tone(freq, seconds=0.5 + 0.1 * k))
                rows.append([name, fs_id, 0.0, 0.5, 1, fold, class_id, US8K_NAMES[class_id]])
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    with open(root / "metadata" / "UrbanSound8K.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"])
        w.writerows(rows)
    return root


@pytest.fixture(scope="session")
def esc50_root(tmp_path_factory) -> Path:
    return write_esc50(tmp_path_factory.mktemp("ESC-50-master"))


@pytest.fixture(scope="session")
def us8k_root(tmp_path_factory) -> Path:
    return write_us8k(tmp_path_factory.mktemp("UrbanSound8K"))


class ToneEncoder(nn.Module):
    """Recognises which of the reference tones a clip is (nearest time-averaged mel
    profile) and returns ``table[class]``: a perfect encoder when ``table`` holds each
    class's own text embedding, a shuffled one when its rows are permuted.

    ``references``: ``{label: wav [S]}`` at the front end's rate; ``table [C,D]``. With
    ``random_class`` (a generator) each clip instead gets the row of a class drawn
    uniformly at random: an encoder that knows nothing, whose accuracy is binomial."""

    def __init__(
        self,
        frontend: nn.Module,
        references: dict[int, torch.Tensor],
        table: torch.Tensor,
        random_class: torch.Generator | None = None,
    ):
        super().__init__()
        self.random_class = random_class
        self.labels = sorted(references)
        with torch.no_grad():
            profiles = torch.cat([self._profile(frontend(references[k][None])) for k in self.labels])
        self.register_buffer("profiles", profiles)
        self.register_buffer("table", table.clone())
        self.calls = 0

    @staticmethod
    def _profile(mel: torch.Tensor) -> torch.Tensor:
        return F.normalize(mel.flatten(1, 2).mean(dim=-1) - mel.min(), dim=-1)

    def encode_audio(self, mel: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        nearest = (self._profile(mel) @ self.profiles.T).argmax(dim=-1)
        labels = torch.tensor(self.labels, device=mel.device)[nearest]
        if self.random_class is not None:
            labels = torch.randint(0, self.table.shape[0], labels.shape, generator=self.random_class)
        return self.table[labels]

    forward = encode_audio


class NoiseEncoder(nn.Module):
    """Returns a fresh random unit vector per clip, whatever the input: no information."""

    def __init__(self, dim: int, seed: int = 0):
        super().__init__()
        self.dim = dim
        self.gen = torch.Generator().manual_seed(seed)

    def encode_audio(self, mel: torch.Tensor) -> torch.Tensor:
        return F.normalize(torch.randn(mel.shape[0], self.dim, generator=self.gen), dim=-1)

    forward = encode_audio
