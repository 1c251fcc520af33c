"""Shared fixtures for the training tests: one intra-op thread (on a small shared CPU,
two threads spin against each other and run these tiny models ~10x slower), and the
tiny synthetic task the learning, resume and script tests train on."""

from __future__ import annotations

import pytest
import torch

SAMPLE_RATE = 8000


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_task():
    """Builders for the synthetic sound-class task: 8 classes of 1-s clips at 8 kHz, a
    small log-mel, a tiny CNN encoder and tiny random CLIP towers (32-d)."""
    from sound2img.audio.frontend import build_frontend
    from sound2img.data import build_dataset
    from sound2img.models.audio_encoder import build_audio_encoder
    from sound2img.models.clip import build_clip

    class Task:
        @staticmethod
        def dataset(split: str = "train", num_per_class: int = 16, **kw):
            return build_dataset(
                "synthetic",
                num_classes=8,
                num_per_class=num_per_class,
                sample_rate=SAMPLE_RATE,
                num_samples=SAMPLE_RATE,
                split=split,
                **kw,
            )

        @staticmethod
        def frontend():
            return build_frontend("logmel", sample_rate=SAMPLE_RATE, n_fft=256, hop_length=128, n_mels=32)

        @staticmethod
        def encoder(seed: int = 0):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return build_audio_encoder("tiny_cnn", embed_dim=32)

        @staticmethod
        def clip():
            return build_clip("tiny")

    return Task
