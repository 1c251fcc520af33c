"""Audio decoding: any file (wav/flac/ogg through soundfile, mp3/m4a/aac and the audio
track of video files through PyAV) to a float32 waveform at a requested rate (mono by
default), numerically ``librosa.load``: today's (channel mean, soxr ``HQ`` resampling) or,
with ``resampler="kaiser_best"``, librosa 0.8.1's with resampy 0.2.2 (what the authors'
encoder saw; ``audio.resample``)."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sound2img.errors import AudioLoadError

# libsndfile reads these natively; everything else (and any of these it refuses) goes to PyAV.
SOUNDFILE_SUFFIXES = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".aifc", ".au", ".snd", ".w64", ".rf64", ".caf"}
)
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 768_000
# soxr_hq: librosa >= 0.10's default; kaiser_best: librosa 0.8.1's (resampy 0.2.2's filter).
RESAMPLERS = ("soxr_hq", "kaiser_best")
# What libsndfile writes into its log when a WAV header promises more data than the file holds.
_WAV_SHORT_DATA = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_UNKNOWN_WAV_SIZES = (0, 0xFFFFFFFF)  # placeholders written by streaming encoders, not truncation


@dataclass(frozen=True)
class AudioInfo:
    """What the file header says. For compressed formats decoded by PyAV, ``num_frames``
    is estimated from the container duration (exact for wav/flac/ogg)."""

    sample_rate: int
    num_frames: int
    channels: int
    duration: float  # seconds


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Header information of an audio (or video) file; ``AudioLoadError`` if unusable."""
    path = _check_exists(path)
    info = _dispatch(path, _soundfile_info, _av_info)
    _check_rate(path, info.sample_rate, "file")
    return info


def load_audio(
    path: str | os.PathLike,
    sample_rate: int,
    *,
    offset: float = 0.0,
    duration: float | None = None,
    resampler: str = "soxr_hq",
    mono: bool = True,
) -> torch.Tensor:
    """Decode ``path`` to ``wav [S]`` float32 mono at ``sample_rate`` (``[C,S]``, the
    file's channels, with ``mono=False``).

    ``offset`` and ``duration`` are in seconds of the file, as in ``librosa.load``: the
    crop starts at frame ``int(offset * sr_file)`` and holds ``int(duration * sr_file)``
    frames (fewer when the file ends first); only those frames are decoded from
    wav/flac/ogg. Channels are averaged (unless ``mono=False``), then the crop is resampled
    (``resampler``: ``soxr_hq``, today's librosa, or ``kaiser_best``, librosa 0.8.1 with
    resampy 0.2.2) and cut or zero-padded to ``ceil(n * sample_rate / sr_file)`` samples
    (librosa's rule).

    Raises ``AudioLoadError`` (one line, naming the file) for a missing, unreadable,
    truncated or non-audio file, a video without an audio track, no samples, NaN/inf
    samples, a rate outside [1 kHz, 768 kHz], a bad offset/duration, or a crop too short
    to resample.
    """
    path = _check_exists(path)
    _check_rate(path, sample_rate, "requested")
    if resampler not in RESAMPLERS:
        raise AudioLoadError(f"{path}: resampler must be one of {', '.join(RESAMPLERS)}, got {resampler!r}")
    if not (isinstance(offset, (int, float)) and math.isfinite(offset) and offset >= 0):
        raise AudioLoadError(f"{path}: offset must be a finite number of seconds >= 0, got {offset!r}")
    if duration is not None and not (isinstance(duration, (int, float)) and math.isfinite(duration) and duration > 0):
        raise AudioLoadError(f"{path}: duration must be a finite number of seconds > 0, got {duration!r}")

    y, sr_file = _dispatch(
        path, lambda p: _soundfile_read(p, offset, duration), lambda p: _av_read(p, offset, duration)
    )
    if y.size == 0:
        if offset > 0:
            raise AudioLoadError(f"{path}: offset {offset} s is at or past the end of the audio")
        raise AudioLoadError(f"{path}: contains no audio samples")
    if not np.isfinite(y).all():
        raise AudioLoadError(f"{path}: contains NaN or infinite samples")
    # y is [frames, channels]; averaging along channels is librosa.to_mono's float32 mean.
    y = (y[:, 0] if y.shape[1] == 1 else y.mean(axis=1, dtype=np.float32)) if mono else y.T
    return _resample(path, np.ascontiguousarray(y), sr_file, int(sample_rate), resampler)


def _check_exists(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise AudioLoadError(f"{path}: no such file")
    if not path.is_file():
        raise AudioLoadError(f"{path}: not a regular file")
    if not os.access(path, os.R_OK):
        raise AudioLoadError(f"{path}: not readable (permission denied)")
    return path


def _check_rate(path: Path, rate, what: str) -> None:
    ok = isinstance(rate, (int, np.integer)) or (isinstance(rate, float) and rate.is_integer())
    if not ok or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioLoadError(
            f"{path}: {what} sample rate {rate!r} Hz is outside "
            f"[{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}] (or not an integer)"
        )


def _dispatch(path: Path, with_soundfile, with_av):
    """soundfile for its own suffixes, PyAV for the rest and for anything libsndfile does
    not recognise; when both refuse, libsndfile's reason is the one reported."""
    if path.suffix.lower() not in SOUNDFILE_SUFFIXES:
        return with_av(path)
    result = with_soundfile(path)
    if not isinstance(result, _Refused):
        return result
    try:
        return with_av(path)
    except AudioLoadError as exc:
        raise AudioLoadError(f"{path}: not a readable audio file ({result.reason})") from exc


@dataclass(frozen=True)
class _Refused:
    reason: str


def _resample(path: Path, y: np.ndarray, sr_in: int, sr_out: int, resampler: str) -> torch.Tensor:
    """``y [S]`` or ``[C,S]`` → float32 tensor at ``sr_out``: ``librosa.resample`` with
    ``res_type="soxr_hq"`` (same soxr call, same length fix) or librosa 0.8.1's
    ``kaiser_best`` (``audio.resample``), each channel on its own."""
    if sr_in == sr_out:
        return torch.from_numpy(y)
    if resampler == "kaiser_best":
        from sound2img.audio.resample import resample_kaiser_best

        try:
            return resample_kaiser_best(torch.from_numpy(y), sr_in, sr_out)
        except ValueError as exc:
            raise AudioLoadError(f"{path}: {exc}") from exc
    import soxr

    n_out = int(np.ceil(y.shape[-1] * float(sr_out) / sr_in))
    y_hat = soxr.resample(y.T, sr_in, sr_out, quality="soxr_hq").T  # soxr takes [frames, channels]
    if y_hat.shape[-1] > n_out:
        y_hat = y_hat[..., :n_out]
    elif y_hat.shape[-1] < n_out:
        y_hat = np.pad(y_hat, [(0, 0)] * (y_hat.ndim - 1) + [(0, n_out - y_hat.shape[-1])])
    return torch.from_numpy(np.ascontiguousarray(y_hat, dtype=np.float32))


# --- soundfile (wav/flac/ogg/...) ------------------------------------------------------------


def _soundfile_open(path: Path):
    """An open ``SoundFile``, or ``_Refused`` when libsndfile does not recognise the file
    (PyAV then gets a try)."""
    import soundfile as sf

    try:
        handle = sf.SoundFile(str(path))
    except sf.SoundFileError as exc:
        return _Refused(_first_line(exc).replace(f"Error opening {str(path)!r}: ", ""))
    except OSError as exc:
        raise AudioLoadError(f"{path}: cannot be opened ({exc.strerror or exc})") from exc
    return handle


def _check_soundfile_complete(path: Path, handle) -> None:
    log = handle.extra_info
    short = _WAV_SHORT_DATA.search(log)
    if short and int(short.group(1)) not in _UNKNOWN_WAV_SIZES and int(short.group(2)) < int(short.group(1)):
        raise AudioLoadError(
            f"{path}: truncated (header promises {short.group(1)} bytes of audio, file holds {short.group(2)})"
        )
    if "lacks an end-of-stream bit" in log:
        raise AudioLoadError(f"{path}: truncated (the Ogg stream has no end)")


def _soundfile_info(path: Path) -> AudioInfo | _Refused:
    handle = _soundfile_open(path)
    if isinstance(handle, _Refused):
        return handle
    with handle:
        _check_soundfile_complete(path, handle)
        sr, n, ch = int(handle.samplerate), int(handle.frames), int(handle.channels)
    return AudioInfo(sample_rate=sr, num_frames=n, channels=ch, duration=n / sr if sr else 0.0)


def _soundfile_read(path: Path, offset: float, duration: float | None) -> tuple[np.ndarray, int] | _Refused:
    """``([frames, channels] float32, file rate)``, or ``_Refused``."""
    import soundfile as sf

    handle = _soundfile_open(path)
    if isinstance(handle, _Refused):
        return handle
    with handle:
        _check_soundfile_complete(path, handle)
        sr = int(handle.samplerate)
        _check_rate(path, sr, "file")
        start = int(offset * sr)  # librosa's rounding, so crops line up with librosa.load
        if start >= handle.frames:
            return np.zeros((0, handle.channels), np.float32), sr
        wanted = -1 if duration is None else int(duration * sr)
        try:
            if start:
                handle.seek(start)
            y = handle.read(frames=wanted, dtype="float32", always_2d=True)
        except (sf.SoundFileError, RuntimeError) as exc:
            raise AudioLoadError(f"{path}: unreadable audio data ({_first_line(exc)})") from exc
    return y, sr  # [frames, channels]


# --- PyAV (mp3/m4a/aac, video containers) --------------------------------------------------


def _import_av(path: Path):
    try:
        import av
    except ImportError as exc:  # av is a dependency, but slim installs may leave it out
        raise AudioLoadError(
            f"{path}: decoding mp3/m4a/aac and video files needs PyAV: pip install av "
            "(the 'av' dependency of sound2img)"
        ) from exc
    return av


def _av_open(path: Path):
    av = _import_av(path)
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise AudioLoadError(f"{path}: not a readable audio or video file ({_first_line(exc)})") from exc
    if not container.streams.audio:
        container.close()
        raise AudioLoadError(f"{path}: has no audio track")
    return container


def _av_info(path: Path) -> AudioInfo:
    with _av_open(path) as container:
        stream = container.streams.audio[0]
        sr, ch = int(stream.codec_context.sample_rate or 0), int(stream.codec_context.channels or 0)
        if stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            seconds = container.duration / 1_000_000  # AV_TIME_BASE
        else:
            seconds = 0.0
    if seconds <= 0 and sr:  # no duration in the header: count by decoding
        y, sr = _av_read(path, 0.0, None)
        seconds = y.shape[0] / sr
    return AudioInfo(sample_rate=sr, num_frames=int(round(seconds * sr)), channels=ch, duration=seconds)


def _av_read(path: Path, offset: float, duration: float | None) -> tuple[np.ndarray, int]:
    """``([frames, channels] float32, file rate)``. Decodes sequentially, keeping only the
    samples of the crop (memory stays bounded by the crop; time grows with ``offset``,
    which is fine for clip-length media)."""
    av = _import_av(path)
    with _av_open(path) as container:
        stream = container.streams.audio[0]
        sr = int(stream.codec_context.sample_rate or 0)
        _check_rate(path, sr, "file")
        start = int(offset * sr)
        stop = None if duration is None else start + int(duration * sr)
        resampler = av.AudioResampler(format="fltp")  # planar float32, same layout and rate
        pieces, pos, to_the_end = [], 0, True
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray()  # [channels, n]
                    lo, hi = max(start - pos, 0), chunk.shape[1] if stop is None else min(stop - pos, chunk.shape[1])
                    if hi > lo:
                        pieces.append(chunk[:, lo:hi].T)
                    pos += chunk.shape[1]
                if stop is not None and pos >= stop:
                    to_the_end = False
                    break
        except (av.FFmpegError, ValueError) as exc:
            raise AudioLoadError(f"{path}: unreadable audio data ({_first_line(exc)})") from exc
        if to_the_end:
            _check_av_complete(path, stream, sr, pos)
    y = np.concatenate(pieces) if pieces else np.zeros((0, max(1, int(stream.codec_context.channels or 1))), np.float32)
    return y.astype(np.float32, copy=False), sr


def _check_av_complete(path: Path, stream, sr: int, decoded: int) -> None:
    """A stream that ends well before the duration its header declares (an mp3 whose Xing
    header counts more frames than the file holds, an interrupted download) is truncated,
    as a short WAV data chunk is. Durations that ffmpeg estimates from the bitrate follow
    the file size, so they never trip this; the slack absorbs encoder delay and padding."""
    if stream.duration is None or stream.time_base is None or not sr:
        return
    declared = float(stream.duration * stream.time_base) * sr
    if decoded < declared - max(0.1 * sr, 0.05 * declared):
        raise AudioLoadError(
            f"{path}: truncated (the header promises {declared / sr:.2f} s of audio, "
            f"the file holds {decoded / sr:.2f} s)"
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
