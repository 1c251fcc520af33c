"""Fixture writers for the dataset tests: wav files (soundfile), mp4 clips with an audio
track and recognisable frames (PyAV), PNG images."""

from __future__ import annotations

import types
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest


def tone(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_wav(path: Path, data: np.ndarray, sr: int, fmt: str | None = None) -> Path:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sr, format=fmt)
    return path


def write_mp4(
    path: Path,
    colours: list[tuple[int, int, int]],
    fps: int = 5,
    size: tuple[int, int] = (64, 48),
    audio: np.ndarray | None = None,
    sr: int = 16000,
) -> Path:
    """An H.264 clip with one solid-colour frame per entry of ``colours`` and, when given,
    an AAC mono track."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"g": "2", "bf": "0"}  # frequent key frames, so seeking lands mid-clip
        as_ = None
        if audio is not None:
            as_ = out.add_stream("aac", rate=sr)
            as_.layout = "mono"
        for i, c in enumerate(colours):
            img = np.zeros((h, w, 3), np.uint8) + np.array(c, np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for p in vs.encode(frame):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        if as_ is not None:
            n = as_.codec_context.frame_size or 1024
            for start in range(0, audio.size, n):
                chunk = np.zeros((1, n), np.float32)
                seg = audio[start : start + n]
                chunk[0, : seg.size] = seg
                af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                af.sample_rate, af.pts, af.time_base = sr, start, Fraction(1, sr)
                for p in as_.encode(af):
                    out.mux(p)
            for p in as_.encode():
                out.mux(p)
    return path


@pytest.fixture
def fixtures():
    """The writers above, as one namespace."""
    return types.SimpleNamespace(tone=tone, write_wav=write_wav, write_mp4=write_mp4)
