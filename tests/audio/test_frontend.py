"""Both mel front ends against librosa (+ OpenCV for the legacy resize), written out here
call by call, on generated speech, noise and tones read through load_audio; batching,
lengths, crops and the spec round trip."""

from __future__ import annotations

import json
import warnings

import cv2
import librosa
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import sound2img.audio.frontend as frontend_mod
from sound2img.audio.frontend import build_frontend, list_frontends
from sound2img.audio.io import load_audio
from sound2img.errors import UserInputError

from .signals import make_sound, write_sound
from helpers.reference import reference_frontend


def librosa_load(path, sr):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return librosa.load(str(path), sr=sr)[0]


def authors_input(y: np.ndarray, start: int | None = None) -> np.ndarray:
    """docs/method.md §5.2, literally: librosa 0.8.1's defaults at 44.1 kHz (reflection
    padding; today's default is zeros), power_to_db(ref=max)/80+1, crop/pad to 864 frames,
    cv2.resize(spec, (128, 512)), reshape to 1x128x512. The wave comes from today's
    librosa.load here; test_legacy_reference.py compares the whole path with librosa 0.8.1."""
    S = librosa.feature.melspectrogram(y=y, sr=44100, n_fft=2048, hop_length=512, n_mels=128, pad_mode="reflect")
    spec = librosa.power_to_db(S, ref=np.max) / 80 + 1
    if spec.shape[1] >= 864:
        s = (spec.shape[1] - 864) // 2 if start is None else start
        spec = spec[:, s : s + 864]
    else:
        spec = np.pad(spec, ((0, 0), (0, 864 - spec.shape[1])))
    return cv2.resize(spec, (128, 512)).reshape(1, 128, 512)


def librosa_logmel(y: np.ndarray, log_offset: float = 1e-4) -> np.ndarray:
    """logmel's "same settings": librosa.feature.melspectrogram at 16 kHz, n_fft 1024, hop 160,
    Hann, centred with zero padding, 128 Slaney mels to 8 kHz, then ln(S + offset)."""
    S = librosa.feature.melspectrogram(
        y=y,
        sr=16000,
        n_fft=1024,
        hop_length=160,
        win_length=1024,
        window="hann",
        center=True,
        pad_mode="constant",
        power=2.0,
        n_mels=128,
        fmin=0.0,
        fmax=8000.0,
        htk=False,
        norm="slaney",
    )
    return np.log(S + np.float32(log_offset))[None]


# file rate, subtype, channels, sound, seconds: shorter and longer than 864 legacy frames (~10 s)
FILES = [
    (44100, "PCM_16", 1, "speech", 4.0),
    (48000, "PCM_24", 2, "pink", 12.5),
    (22050, "PCM_U8", 1, "tones", 3.0),
    (16000, "FLOAT", 2, "mix", 10.5),
]


def _write(tmp_path, file_sr, subtype, channels, kind, seconds):
    y = make_sound(kind, file_sr, seconds, seed=int(seconds))
    if channels == 2:
        y = np.stack([y, 0.3 * np.roll(y, 333)], axis=1)
    return write_sound(tmp_path / f"{kind} {file_sr}.wav", y, file_sr, subtype)


@pytest.mark.parametrize("case", FILES, ids=lambda c: f"{c[3]}-{c[0]}-{c[1]}-{c[2]}ch-{c[4]}s")
def test_soundclip_legacy_matches_librosa_and_cv2(tmp_path, case):
    path = _write(tmp_path, *case)
    fe = build_frontend("soundclip_legacy")
    ours = fe(load_audio(path, 44100)[None])  # soxr, as today's librosa.load: the mel alone is compared
    ref = authors_input(librosa_load(path, 44100))
    assert ours.shape == (1, 1, 128, 512) and ours.dtype == torch.float32
    assert np.abs(ours[0].numpy() - ref).max() <= 1e-3
    assert 0.0 <= float(ours.min()) and float(ours.max()) <= 1.0


@pytest.mark.parametrize("case", FILES, ids=lambda c: f"{c[3]}-{c[0]}-{c[1]}-{c[2]}ch-{c[4]}s")
def test_logmel_matches_librosa(tmp_path, case):
    path = _write(tmp_path, *case)
    fe = build_frontend("logmel")
    ours = fe(load_audio(path, 16000)[None])
    ref = librosa_logmel(librosa_load(path, 16000))
    assert ours.shape == (1, 1, 128, ref.shape[-1])
    assert np.abs(ours[0].numpy() - ref).max() <= 1e-4


def test_logmel_full_scale_tones_stay_within_tolerance():
    """The worst case for float32 STFT round-off: full-scale pure tones and a chirp, whose
    empty bands sit far below the peak; the 1e-4 floor keeps them inside the bound (9.1e-5
    at most, in the zero-padded edge frames of the 7 kHz tone; librosa computes its FFT in
    float64). The round-off is torch's CPU FFT, which takes one code path on any x86 CPU:
    the same to the last bit under ATEN_CPU_CAPABILITY=default, avx2 and avx512."""
    t = np.arange(3 * 16000) / 16000
    fe = build_frontend("logmel")
    for y in (np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 7000 * t), np.sin(2 * np.pi * (20 * t + 1000 * t**2))):
        y = y.astype(np.float32)
        assert np.abs(fe(torch.from_numpy(y)[None])[0].numpy() - librosa_logmel(y)).max() <= 1e-4


def test_logmel_other_settings_match_librosa():
    """db flavour, HTK mels without norm, a shorter window, another rate, fixed frames."""
    y = make_sound("mix", 22050, 2.0).astype(np.float32)
    settings = dict(
        sample_rate=22050,
        n_fft=512,
        win_length=400,
        hop_length=256,
        n_mels=64,
        f_min=50.0,
        f_max=10000.0,
        mel_scale="htk",
        mel_norm=None,
        log="db",
        log_offset=1e-6,
    )
    fe = build_frontend("logmel", **settings)
    S = librosa.feature.melspectrogram(
        y=y,
        sr=22050,
        n_fft=512,
        win_length=400,
        hop_length=256,
        n_mels=64,
        fmin=50.0,
        fmax=10000.0,
        htk=True,
        norm=None,
    )
    ref = librosa.power_to_db(S, ref=1.0, amin=1e-6, top_db=None)
    assert np.abs(fe(torch.from_numpy(y)[None])[0, 0].numpy() - ref).max() <= 1e-3  # dB: 4.3x ln units
    assert np.abs(fe(torch.from_numpy(y)[None])[0].numpy() - reference_frontend(y, fe.spec())).max() <= 1e-3

    fixed = build_frontend("logmel", num_frames=150)
    long, short = make_sound("speech", 16000, 3.0).astype(np.float32), make_sound("pink", 16000, 0.5).astype(np.float32)
    full = librosa_logmel(long)
    s = (full.shape[-1] - 150) // 2
    assert np.abs(fixed(torch.from_numpy(long)[None])[0].numpy() - full[..., s : s + 150]).max() <= 1e-4
    padded = fixed(torch.from_numpy(short)[None])[0].numpy()
    n = librosa_logmel(short).shape[-1]
    assert np.abs(padded[..., :n] - librosa_logmel(short)).max() <= 1e-4
    assert np.all(padded[..., n:] == np.float32(np.log(np.float32(1e-4))))  # padding = silence


def test_reference_module_is_the_literal_pipelines():
    """benchmarks/frontend.py times helpers/reference.py: it must be these calls."""
    y_legacy = make_sound("speech", 44100, 11.0).astype(np.float32)
    assert (
        np.abs(reference_frontend(y_legacy, build_frontend("soundclip_legacy").spec()) - authors_input(y_legacy)).max()
        == 0
    )
    y = make_sound("mix", 16000, 2.0).astype(np.float32)
    assert np.abs(reference_frontend(y, build_frontend("logmel").spec()) - librosa_logmel(y)).max() == 0


@pytest.mark.parametrize("shape,size", [((128, 864), (512, 128)), ((37, 50), (100, 20)), ((10, 9), (7, 31))])
def test_interpolate_is_cv2_inter_linear(shape, size):
    """cv2.resize (INTER_LINEAR, float32) = F.interpolate(bilinear, align_corners=False,
    antialias=False), for stretching and squeezing alike; antialias=True is not."""
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    ref = cv2.resize(x, (size[1], size[0]))
    ours = F.interpolate(
        torch.from_numpy(x)[None, None], size=size, mode="bilinear", align_corners=False, antialias=False
    )[0, 0].numpy()
    assert np.abs(ours - ref).max() <= 1e-5
    if shape[1] > size[1]:
        aa = F.interpolate(
            torch.from_numpy(x)[None, None], size=size, mode="bilinear", align_corners=False, antialias=True
        )[0, 0].numpy()
        assert np.abs(aa - ref).max() > 1e-2


def test_legacy_reshape_is_not_a_transpose():
    """Row r of the encoder input is rows 4r..4r+3 of the 512x128 resized image, end to end."""
    fe = build_frontend("soundclip_legacy")
    spec = torch.rand(1, 1, 128, 864)
    resized = F.interpolate(spec, size=(512, 128), mode="bilinear", align_corners=False)[0, 0]
    out = fe.to_encoder_input(spec)[0, 0]
    assert torch.equal(out[5], resized[20:24].reshape(-1))
    assert not torch.allclose(out, resized.T.reshape(128, 512))


@pytest.mark.parametrize("name", ["logmel", "soundclip_legacy"])
def test_batch_with_lengths_equals_each_clip_alone(name):
    fe = build_frontend(name)
    sr = fe.sample_rate
    scale = 1.0 if name == "soundclip_legacy" else 0.3  # legacy: one clip past 864 frames (cropped)
    clips = [
        make_sound(k, sr, s * scale, seed=i).astype(np.float32)
        for i, (k, s) in enumerate([("speech", 11.0), ("pink", 3.0), ("tones", 0.05), ("mix", 9.0)])
    ]
    longest = max(len(c) for c in clips)
    wav = torch.zeros(len(clips), longest)
    for i, c in enumerate(clips):
        wav[i, : len(c)] = torch.from_numpy(c)
    wav[1, len(clips[1]) :] = 0.7  # junk after the end must be ignored, not only zeros
    lengths = torch.tensor([len(c) for c in clips])
    batched = fe(wav, lengths)
    for i, c in enumerate(clips):
        alone = fe(torch.from_numpy(c)[None])
        if name == "logmel":  # variable T: compare the clip's own frames, the rest is silence
            t = alone.shape[-1]
            assert torch.allclose(batched[i, ..., :t], alone[0], atol=1e-5, rtol=0)
            assert bool((batched[i, ..., t:] == np.float32(np.log(np.float32(1e-4)))).all())
        else:
            assert torch.allclose(batched[i], alone[0], atol=1e-5, rtol=0)
    with warnings.catch_warnings():  # librosa warns that a 50-ms clip is shorter than n_fft
        warnings.simplefilter("ignore")
        tiny = reference_frontend(clips[2], fe.spec())
    assert np.abs(batched[2].numpy()[..., : tiny.shape[-1]] - tiny).max() <= 1e-3
    if name == "soundclip_legacy":  # without lengths the padded clips are cropped differently
        assert not torch.allclose(fe(wav)[1], batched[1], atol=1e-3)


def test_equal_length_batch_equals_single_runs():
    fe = build_frontend("soundclip_legacy")
    wav = torch.from_numpy(
        np.stack([make_sound(k, 44100, 2.0, seed=3).astype(np.float32) for k in ("speech", "white", "tones")])
    )
    batched = fe(wav)
    for i in range(3):
        assert torch.allclose(batched[i], fe(wav[i : i + 1])[0], atol=1e-6, rtol=0)


def test_chunked_stft_equals_one_shot_and_keeps_autograd(monkeypatch):
    wav = torch.from_numpy(np.stack([make_sound("mix", 16000, 3.0, seed=s).astype(np.float32) for s in range(3)]))
    fe = build_frontend("logmel")
    monkeypatch.setattr(frontend_mod, "_CHUNK_SAMPLES", {"cpu": 1 << 40, "other": 1 << 40})
    one_shot = fe(wav)
    monkeypatch.setattr(
        frontend_mod, "_CHUNK_SAMPLES", {"cpu": 5 * 3 * 1024, "other": 5 * 3 * 1024}
    )  # 5 frames a chunk
    assert torch.allclose(fe(wav), one_shot, atol=1e-5, rtol=0)
    leaf = wav.clone().requires_grad_(True)  # the in-place square is skipped when autograd records
    out = fe(leaf)
    assert torch.allclose(out, one_shot, atol=1e-5, rtol=0)
    out.sum().backward()
    assert leaf.grad is not None and bool(torch.isfinite(leaf.grad).all()) and float(leaf.grad.abs().sum()) > 0


def test_random_and_explicit_crops():
    fe = build_frontend("soundclip_legacy")
    y = make_sound("mix", 44100, 10.6).astype(np.float32)  # 914 frames: room to crop
    wav = torch.from_numpy(y)[None].repeat(2, 1)
    total = 1 + len(y) // 512
    a = fe(wav, generator=torch.Generator().manual_seed(1))
    b = fe(wav, generator=torch.Generator().manual_seed(1))
    c = fe(wav, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # per-clip offsets
    centre = fe(wav)
    assert torch.equal(centre, fe(wav))  # inference: deterministic centre crop
    assert np.abs(centre[0].numpy() - authors_input(y)).max() <= 1e-3
    for start in (0, total - 864):
        out = fe(wav[:1], frame_offsets=torch.tensor([start]))
        assert np.abs(out[0].numpy() - authors_input(y, start)).max() <= 1e-3
    with pytest.raises(UserInputError, match="frame_offsets"):
        fe(wav[:1], frame_offsets=torch.tensor([total - 863]))


def test_silence_is_what_librosa_gives():
    """power_to_db(ref=max) of an all-zero clip is 0 dB everywhere, so the legacy input is 1."""
    legacy, logmel = build_frontend("soundclip_legacy"), build_frontend("logmel")
    assert torch.equal(legacy(torch.zeros(1, 11 * 44100)), torch.ones(1, 1, 128, 512))
    assert np.array_equal(legacy(torch.zeros(1, 44100))[0].numpy(), authors_input(np.zeros(44100, np.float32)))
    assert torch.allclose(logmel(torch.zeros(1, 16000)), torch.tensor(np.log(1e-4), dtype=torch.float32))


@pytest.mark.parametrize("name", ["logmel", "soundclip_legacy"])
def test_spec_round_trip(name):
    fe = build_frontend(name)
    spec = fe.spec()
    assert spec["name"] == name and json.loads(json.dumps(spec)) == spec
    again = build_frontend(**spec)
    assert again.spec() == spec and type(again) is type(fe)
    assert fe.state_dict() == {}  # everything is rebuilt from the spec, nothing stored twice
    wav = torch.from_numpy(make_sound("speech", fe.sample_rate, 1.0).astype(np.float32))[None]
    assert torch.equal(fe(wav), again(wav))
    changed = build_frontend(name, n_mels=64, hop_length=256)
    assert changed.spec() == {**spec, "n_mels": 64, "hop_length": 256}
    assert build_frontend(**changed.spec()).spec() == changed.spec()


def test_registry_and_bad_settings():
    assert {"logmel", "soundclip_legacy"} <= set(list_frontends())
    assert build_frontend().name == "logmel" and build_frontend().sample_rate == 16000
    assert build_frontend("soundclip_legacy").sample_rate == 44100
    bad = [
        (lambda: build_frontend("mfcc"), "unknown audio front end 'mfcc'"),
        (lambda: build_frontend("logmel", n_mel=64), "unexpected keyword argument 'n_mel'"),
        (lambda: build_frontend("logmel", f_max=9000.0), "f_max"),
        (lambda: build_frontend("logmel", win_length=2048), "win_length"),
        (lambda: build_frontend("logmel", log="log2"), "log must be"),
        (lambda: build_frontend("logmel", log_offset=0.0), "log_offset"),
        (lambda: build_frontend("logmel", mel_scale="bark"), "mel_scale"),
        (lambda: build_frontend("logmel")(torch.zeros(16000)), r"expected wav \[B,S\]"),
        (lambda: build_frontend("logmel")(torch.zeros(2, 100), torch.tensor([100, 101])), "lengths"),
    ]
    for call, message in bad:
        with pytest.raises(UserInputError, match=message):
            call()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["logmel", "soundclip_legacy"])
def test_cuda_matches_cpu(name):
    fe = build_frontend(name)
    wav = torch.from_numpy(
        np.stack([make_sound(k, fe.sample_rate, 11.0).astype(np.float32) for k in ("mix", "speech")])
    )
    lengths = torch.tensor([wav.shape[1], wav.shape[1] // 3])
    cpu = fe(wav, lengths)
    gpu = fe.to("cuda")(wav.to("cuda"), lengths.to("cuda"))
    assert gpu.device.type == "cuda" and torch.allclose(gpu.cpu(), cpu, atol=1e-4, rtol=0)
