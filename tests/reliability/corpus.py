"""The bad-input corpus: every file is written by the tests (soundfile, PyAV), none is
downloaded. Each case says whether it is valid audio (a result is expected) or not (a
one-line error naming the file, exit 2 from scripts), and what the error must say."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

SR = 16000
SECONDS = 2.0
HOUR_SR = 8000  # the 1-hour file: 8 kHz mono int16 = 57.6 MB on disk
HOUR_SECONDS = 3600.0


@dataclass(frozen=True)
class Case:
    """One corpus file. ``valid``: decodes to audio; else ``error`` is a fragment of the
    one-line message expected."""

    name: str
    path: Path
    valid: bool
    error: str = ""
    seconds: float = SECONDS


def tone(seconds: float = SECONDS, sr: int = SR, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _sf_write(path: Path, data: np.ndarray, sr: int = SR, **kwargs) -> Path:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sr, **kwargs)
    return path


def _truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def write_video_without_audio(path: Path, frames: int = 5, fps: int = 5) -> Path:
    """An H.264 mp4 with a video track only."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_hour(path: Path, seconds: float = HOUR_SECONDS, sr: int = HOUR_SR) -> Path:
    """A long int16 wav written block by block (never held in memory): a 440 Hz tone with
    a slow amplitude ramp, so no two minutes are alike."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    block = 60 * sr
    total = int(seconds * sr)
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=1, subtype="PCM_16") as fh:
        for start in range(0, total, block):
            n = min(block, total - start)
            t = (start + np.arange(n)) / sr
            fh.write((0.2 + 0.3 * t / seconds) * np.sin(2 * np.pi * 440.0 * t))
    return path


INVALID = (
    "empty",
    "header_only",
    "truncated_wav",
    "truncated_flac",
    "truncated_mp3",
    "text_as_wav",
    "nan_samples",
    "inf_samples",
    "video_no_audio",
)
VALID = (
    "silence",
    "dc_only",
    "wav_pcm_u8",
    "wav_pcm_16",
    "wav_pcm_24",
    "wav_pcm_32",
    "wav_float",
    "wav_double",
    "rate_8k",
    "rate_192k",
    "six_channels",
    "flac",
    "mp3",
    "non_ascii_path",
    "space_path",
)


def write_corpus(root: Path) -> dict[str, Case]:
    """Every short case of the corpus under ``root``, by name (the 1-hour file:
    ``write_hour``)."""
    root.mkdir(parents=True, exist_ok=True)
    x = tone()
    cases: list[Case] = []

    def bad(name: str, path: Path, error: str) -> None:
        cases.append(Case(name, path, False, error))

    def good(name: str, path: Path, seconds: float = SECONDS) -> None:
        cases.append(Case(name, path, True, seconds=seconds))

    (root / "empty.wav").write_bytes(b"")
    bad("empty", root / "empty.wav", "not a readable audio file")
    bad(
        "header_only",
        _sf_write(root / "header_only.wav", np.zeros(0, np.float32), subtype="PCM_16"),
        "contains no audio samples",
    )
    bad("truncated_wav", _truncate(_sf_write(root / "truncated.wav", x, subtype="PCM_16")), "truncated")
    bad("truncated_flac", _truncate(_sf_write(root / "truncated.flac", x, subtype="PCM_16")), "unreadable audio data")
    bad("truncated_mp3", _truncate(_sf_write(root / "truncated.mp3", x, format="MP3")), "truncated")
    text = root / "klänge 音" / "not audio.wav"  # also: a non-ASCII path inside the one-line error
    text.parent.mkdir(parents=True, exist_ok=True)
    text.write_text("this is a text file, not a RIFF/WAVE file\n" * 20)
    bad("text_as_wav", text, "not a readable audio file")
    y = x.copy()
    y[SR // 2] = np.nan
    bad("nan_samples", _sf_write(root / "nan.wav", y, subtype="FLOAT"), "NaN or infinite")
    y = x.copy()
    y[SR // 2] = np.inf
    bad("inf_samples", _sf_write(root / "inf.wav", y, subtype="FLOAT"), "NaN or infinite")
    bad("video_no_audio", write_video_without_audio(root / "video_only.mp4"), "has no audio track")

    good("silence", _sf_write(root / "silence.wav", np.zeros_like(x), subtype="PCM_16"))
    good("dc_only", _sf_write(root / "dc.wav", np.full_like(x, 0.25), subtype="PCM_16"))
    for subtype in ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"):
        good(f"wav_{subtype.lower()}", _sf_write(root / f"tone_{subtype.lower()}.wav", x, subtype=subtype))
    good("rate_8k", _sf_write(root / "tone_8k.wav", tone(sr=8000), 8000, subtype="PCM_16"))
    good("rate_192k", _sf_write(root / "tone_192k.wav", tone(sr=192000), 192000, subtype="PCM_24"))
    six = np.stack([tone(freq=220.0 * (k + 1)) for k in range(6)], axis=1)
    good("six_channels", _sf_write(root / "six_channels.wav", six, subtype="PCM_16"))
    good("flac", _sf_write(root / "tone.flac", x, subtype="PCM_16"))
    good("mp3", _sf_write(root / "tone.mp3", x, format="MP3"))
    good("non_ascii_path", _sf_write(root / "klänge 音" / "regen_tropfen_雨.wav", x, subtype="PCM_16"))
    good("space_path", _sf_write(root / "with space" / "a sound file.wav", x, subtype="PCM_16"))
    by_name = {c.name: c for c in cases}
    assert tuple(c.name for c in cases if not c.valid) == INVALID and tuple(c.name for c in cases if c.valid) == VALID
    return by_name
