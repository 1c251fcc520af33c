"""load_audio / audio_info against librosa.load, compressed and video files written with
PyAV, every bad-input case, and crops of a long file that read only the crop."""

from __future__ import annotations

import os
import struct
import warnings

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from sound2img.audio import io as audio_io
from sound2img.audio.io import AudioInfo, audio_info, load_audio
from sound2img.errors import AudioLoadError, UserInputError

from .signals import make_sound, write_av, write_sound


def librosa_load(path, sr, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return librosa.load(str(path), sr=sr, **kw)[0]


# (file rate, subtype, channels, sound): 8/16/24-bit int and float, mono and stereo, 16-48 kHz
CASES = [
    (16000, "PCM_16", 1, "speech"),
    (22050, "PCM_U8", 2, "pink"),
    (44100, "PCM_24", 2, "tones"),
    (48000, "FLOAT", 1, "mix"),
    (44100, "PCM_16", 2, "white"),
]


@pytest.mark.parametrize("file_sr,subtype,channels,kind", CASES)
def test_matches_librosa_load(tmp_path, file_sr, subtype, channels, kind):
    y = make_sound(kind, file_sr, 1.5, seed=channels)
    if channels == 2:  # different channels, so the mean matters
        y = np.stack([y, 0.5 * np.roll(y, 100)], axis=1)
    path = write_sound(tmp_path / f"sound {kind} é.wav", y, file_sr, subtype)
    for target in (16000, 44100):
        ours = load_audio(path, target)
        ref = librosa_load(path, target)
        assert ours.dtype == torch.float32 and ours.dim() == 1
        assert ours.shape[0] == ref.shape[0]
        assert np.abs(ours.numpy() - ref).max() <= 1e-4
    info = audio_info(path)
    assert info == AudioInfo(sample_rate=file_sr, num_frames=int(1.5 * file_sr), channels=channels, duration=1.5)


def test_flac_and_ogg_match_librosa(tmp_path):
    y = make_sound("mix", 32000, 1.0)
    for name, subtype in (("a.flac", "PCM_16"), ("a.ogg", "VORBIS")):
        path = write_sound(tmp_path / name, y, 32000, subtype)
        assert np.abs(load_audio(path, 16000).numpy() - librosa_load(path, 16000)).max() <= 1e-4


def test_offset_and_duration_match_librosa(tmp_path):
    path = write_sound(tmp_path / "long.wav", make_sound("speech", 22050, 3.0), 22050)
    for offset, duration in ((0.0, 1.0), (0.73, 1.31), (1.5, None), (2.5, 5.0)):
        ours = load_audio(path, 16000, offset=offset, duration=duration).numpy()
        ref = librosa_load(path, 16000, offset=offset, duration=duration)
        assert ours.shape == ref.shape and np.abs(ours - ref).max() <= 1e-4


def test_silence_and_dc_are_valid(tmp_path):
    silent = write_sound(tmp_path / "silence.wav", np.zeros(8000), 16000)
    dc = write_sound(tmp_path / "dc.wav", np.full(8000, 0.25), 16000, "FLOAT")
    assert load_audio(silent, 16000).abs().max() == 0
    assert torch.allclose(load_audio(dc, 16000), torch.full((8000,), 0.25))


def test_mp3_m4a_and_video_tracks(tmp_path):
    """Lossy files come back aligned (encoder delay removed), at the right rate and level,
    with the two channels averaged."""
    sr = 44100
    t = np.arange(2 * sr) / sr
    y = 0.4 * np.sin(2 * np.pi * (200 * t + 300 * t**2)) * (0.6 + 0.4 * np.sin(2 * np.pi * 1.3 * t))
    stereo = np.stack([y, 0.5 * y])  # mean = 0.75 y
    files = {
        "a.mp3": write_av(tmp_path / "a.mp3", stereo, sr, "libmp3lame"),
        "a.m4a": write_av(tmp_path / "a.m4a", stereo, sr, "aac"),
        "clip with video.mp4": write_av(tmp_path / "clip with video.mp4", y, sr, "aac", video=True),
    }
    for name, path in files.items():
        expected = 0.75 * y if name != "clip with video.mp4" else y
        info = audio_info(path)
        assert info.sample_rate == sr and abs(info.duration - 2.0) < 0.05, (name, info)
        wav = load_audio(path, sr).numpy()
        assert abs(wav.shape[0] - 2 * sr) <= 1024, name  # at most one AAC frame of padding
        n = 2 * sr - 4096
        err = wav[2048:n] - expected[2048:n]
        snr = 10 * np.log10((expected[2048:n] ** 2).mean() / (err**2).mean())
        assert snr > 25, (name, snr)  # aligned to the sample: a one-sample shift gives ~18 dB
        crop = load_audio(path, sr, offset=0.5, duration=0.25).numpy()
        assert np.array_equal(crop, wav[int(0.5 * sr) : int(0.5 * sr) + int(0.25 * sr)])
        assert load_audio(path, 16000).shape[0] == int(np.ceil(wav.shape[0] * 16000 / sr))


def test_video_without_audio_track(tmp_path):
    path = write_av(tmp_path / "silent film.mp4", None, 44100, "aac", video=True)
    with pytest.raises(AudioLoadError, match=r"silent film\.mp4: has no audio track"):
        load_audio(path, 16000)
    with pytest.raises(AudioLoadError, match="has no audio track"):
        audio_info(path)


def _wav_bytes(tmp_path, **kw) -> bytes:
    return write_sound(tmp_path / "ok.wav", make_sound("tones", 16000, 0.5), 16000, **kw).read_bytes()


def _header_rate(data: bytes, rate: int) -> bytes:
    return data[:24] + struct.pack("<I", rate) + data[28:]


BAD = {
    "text file named .wav": ("notes.wav", lambda tp: b"this is not audio\n" * 20, "not a readable audio file"),
    "text file named .mp3": ("song.mp3", lambda tp: b"this is not audio\n" * 20, "not a readable audio or video file"),
    "header cut short": ("cut.wav", lambda tp: _wav_bytes(tp)[:30], "not a readable audio file"),
    "data cut short": ("half.wav", lambda tp: _wav_bytes(tp)[:2000], "truncated"),
    "flac cut short": (
        "half.flac",
        lambda tp: write_sound(tp / "x.flac", make_sound("white", 16000, 2.0), 16000).read_bytes()[:9000],
        "unreadable audio data",
    ),
    "empty file": ("empty.wav", lambda tp: b"", "not a readable audio file"),
    "no samples": (
        "zero.wav",
        lambda tp: write_sound(tp / "z.wav", np.zeros(0), 16000).read_bytes(),
        "contains no audio samples",
    ),
    "NaN samples": (
        "nan.wav",
        lambda tp: write_sound(tp / "n.wav", np.r_[np.zeros(100), np.nan, np.zeros(100)], 16000, "FLOAT").read_bytes(),
        "NaN or infinite",
    ),
    "inf samples": (
        "inf.wav",
        lambda tp: write_sound(tp / "i.wav", np.r_[np.zeros(100), np.inf], 16000, "FLOAT", clip=False).read_bytes(),
        "NaN or infinite",
    ),
    "absurd low rate": ("slow.wav", lambda tp: _header_rate(_wav_bytes(tp), 100), "sample rate 100 Hz is outside"),
    "absurd high rate": (
        "fast.wav",
        lambda tp: _header_rate(_wav_bytes(tp), 5_000_000),
        "sample rate 5000000 Hz is outside",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_files_raise_one_line_naming_the_file(tmp_path, case):
    name, make, message = BAD[case]
    data = make(tmp_path)
    path = tmp_path / "bad inputs" / name
    path.parent.mkdir()
    path.write_bytes(data)
    with pytest.raises(AudioLoadError) as err:
        load_audio(path, 16000)
    text = str(err.value)
    assert text.startswith(str(path)) and message in text and "\n" not in text, text
    assert isinstance(err.value, UserInputError)


def test_bad_paths_and_arguments(tmp_path):
    good = write_sound(tmp_path / "good.wav", make_sound("speech", 16000, 1.0), 16000)
    cases = [
        (lambda: load_audio(tmp_path / "missing.wav", 16000), "missing.wav: no such file"),
        (lambda: audio_info(tmp_path / "missing.flac"), "missing.flac: no such file"),
        (lambda: load_audio(tmp_path, 16000), "not a regular file"),
        (lambda: load_audio(good, 16000, offset=-1.0), "offset must be"),
        (lambda: load_audio(good, 16000, offset=float("nan")), "offset must be"),
        (lambda: load_audio(good, 16000, offset=1.0), "offset 1.0 s is at or past the end"),
        (lambda: load_audio(good, 16000, duration=0.0), "duration must be"),
        (lambda: load_audio(good, 16000, duration=float("inf")), "duration must be"),
        (lambda: load_audio(good, 500), "requested sample rate 500 Hz"),
        (lambda: load_audio(good, 16000.5), "requested sample rate 16000.5"),
    ]
    for call, message in cases:
        with pytest.raises(AudioLoadError, match=message):
            call()
    if os.geteuid() != 0:  # root reads anything
        locked = write_sound(tmp_path / "locked.wav", np.zeros(100), 16000)
        locked.chmod(0)
        with pytest.raises(AudioLoadError, match="permission denied"):
            load_audio(locked, 16000)


def test_missing_pyav_names_the_extra(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_av(name, *args, **kwargs):
        if name == "av":
            raise ImportError("No module named 'av'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_av)
    path = tmp_path / "x.mp3"
    path.write_bytes(b"\xff\xfb" + b"\0" * 100)
    with pytest.raises(AudioLoadError, match=r"x\.mp3: decoding .* needs PyAV: pip install av"):
        load_audio(path, 16000)


def test_crop_of_a_one_hour_file_reads_only_the_crop(tmp_path, monkeypatch):
    """A sparse 1-hour 44.1 kHz wav (317 MB declared, nearly nothing on disk) with a known
    second at 30:00; the crop decodes exactly that second and asks libsndfile for no more."""
    sr, hours = 44100, 1
    frames = 3600 * hours * sr
    path = tmp_path / "one hour.wav"
    header = (
        b"RIFF"
        + struct.pack("<I", 36 + 2 * frames)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sr, 2 * sr, 2, 16)
        + b"data"
        + struct.pack("<I", 2 * frames)
    )
    marker = (np.sin(np.arange(sr) * 0.01) * 20000).astype("<i2")
    with open(path, "wb") as fh:
        fh.write(header)
        fh.truncate(len(header) + 2 * frames)  # sparse: zeros are not stored
        fh.seek(len(header) + 2 * 1800 * sr)
        fh.write(marker.tobytes())

    requested = []
    real_read = sf.SoundFile.read

    def spy(self, frames=-1, *args, **kwargs):
        requested.append(frames)
        return real_read(self, frames, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", spy)
    assert audio_info(path).duration == 3600.0
    wav = load_audio(path, sr, offset=1800.0, duration=1.0)
    assert requested == [sr]
    assert np.array_equal(wav.numpy(), marker.astype(np.float32) / 32768)
    # and a crop that straddles the marker's start lines up to the sample
    wav = load_audio(path, sr, offset=1799.5, duration=1.0)
    assert np.array_equal(wav.numpy()[sr // 2 :], marker[: sr - sr // 2].astype(np.float32) / 32768)
    assert wav[: sr // 2].abs().max() == 0


def test_resample_rule_is_librosas(tmp_path):
    """Length ceil(n * out / in) even for odd lengths and rates that do not divide."""
    for n in (1, 7, 44101):
        path = write_sound(tmp_path / f"n{n}.wav", np.linspace(-0.5, 0.5, n), 44100, "FLOAT")
        for target in (16000, 22050, 48000):
            ours = load_audio(path, target).numpy()
            assert ours.shape[0] == int(np.ceil(n * target / 44100))
            assert np.abs(ours - librosa_load(path, target)).max() <= 1e-4
    assert audio_io.MIN_SAMPLE_RATE == 1000 and audio_io.MAX_SAMPLE_RATE == 768_000
