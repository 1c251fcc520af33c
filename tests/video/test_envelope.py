"""The loudness and onset envelopes (docs/method.md §10.3) on sounds whose answer is known
by construction: silence, then white noise from 3 s."""

from __future__ import annotations

import math

import pytest
import torch

from sound2img.audio.frontend import build_frontend
from sound2img.video.envelope import envelopes, smooth

SR = 16000


def silence_then_noise(sr: int = SR, silent_s: float = 3.0, loud_s: float = 2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.cat([torch.zeros(int(silent_s * sr)), 0.5 * torch.randn(int(loud_s * sr), generator=g)])


@pytest.mark.parametrize("name", ["logmel", "soundclip_legacy"])
def test_silence_is_zero_and_the_loud_part_is_not(name):
    frontend = build_frontend(name)
    sr, half_window = frontend.sample_rate, frontend.n_fft / 2 / frontend.sample_rate
    env = envelopes(silence_then_noise(sr), frontend, fps=10, num_frames=50, smooth_seconds=0.0)
    # frames that end before any STFT window reaches the noise (3 s − half a window) are exact zeros
    quiet = [f for f in range(50) if (f + 1) / 10 <= 3.0 - half_window]
    assert quiet == list(range(29))
    for e in env.values():
        assert float(e.max()) == 1.0 and torch.all(e[quiet] == 0)
    assert float(env["loudness"][31:].min()) > 0.3  # white noise: every frame's peak band within ~5 dB of the loudest
    assert int(env["onset"].argmax()) in (29, 30)  # the one hit: the frame holding 3 s (or its window's edge)
    assert float(env["onset"][32:].max()) < 0.3  # steady noise after it: small rises only


def test_a_silent_sound_has_zero_envelopes():
    """Digital silence, and a hiss 100 dB below full scale (which each envelope's division by
    its own maximum would otherwise blow up to the full range)."""
    hiss = 1e-5 * torch.randn(2 * SR, generator=torch.Generator().manual_seed(0))
    for wav in (torch.zeros(2 * SR), hiss):
        env = envelopes(wav, build_frontend("logmel"), fps=24, num_frames=48, smooth_seconds=0.08)
        assert all(torch.all(e == 0) and e.shape == (48,) for e in env.values())


def test_frames_shorter_than_a_hop_are_filled():
    """240 fps against logmel's 100 frames/s: most frames hold no mel frame of their own."""
    env = envelopes(silence_then_noise(), build_frontend("logmel"), fps=240, num_frames=1200, smooth_seconds=0.0)
    assert float(env["loudness"][int(3.1 * 240) :].min()) > 0.1


def test_smoothing_has_the_stated_time_constant():
    """A unit step after fps·τ frames has reached 1 − 1/e (one-pole filter)."""
    y = smooth(torch.ones(50), fps=100, seconds=0.1)
    assert math.isclose(float(y[9]), 1 - math.exp(-1), rel_tol=1e-6)
    assert torch.equal(smooth(torch.ones(5), fps=24, seconds=0), torch.ones(5))
