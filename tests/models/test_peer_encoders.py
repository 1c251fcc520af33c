"""AudioCLIP and Wav2CLIP from their public checkpoint layouts, against the reference
fixtures (the shared reference fixtures, ``fixtures/peer_audio`` beside the repository: checkpoints rebuilt by its ``make_checkpoint.py``
from seeded random weights, and what the reference code computed from them)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sound2img.errors import CheckpointError, UserInputError
from sound2img.models.audio_encoder import checkpoint_kind, load_audio_encoder

from helpers.fixtures import fixture_path
from helpers.peer_audio import peer_dir, rebuild_checkpoint


@pytest.fixture(scope="session")
def wav2clip_file(tmp_path_factory):
    return rebuild_checkpoint("wav2clip", tmp_path_factory.mktemp("wav2clip"))


@pytest.fixture(scope="session")
def audioclip_file(tmp_path_factory):
    return rebuild_checkpoint("audioclip", tmp_path_factory.mktemp("audioclip"))


def ref(name: str) -> dict[str, torch.Tensor]:
    with np.load(peer_dir(name) / "ref.npz") as z:
        return {k: torch.from_numpy(z[k].copy()) for k in z.files}


# ---------------------------------------------------------------------------------------- Wav2CLIP

# The log of a near-silent bin is decided by float32 rounding: in float64 (the same STFT,
# log and standardisation) the fixture's ``logspec_norm_chirp_frames`` moves by up to 1.4e-3
# in bins ~120 dB below their frame's peak, and by at most 4.9e-6 within 60 dB of it. Only
# the latter is a property of the front end; compare there, at 4x the reference's own error.
LOGSPEC_FP32_ERROR_60DB = 4.9e-6


def near_peak_bins(wave: torch.Tensor, frames: list[int], db: float) -> torch.Tensor:
    """``[257, len(frames)]`` bool: the bins of Wav2CLIP's STFT of ``wave [S]`` (in float64)
    whose power is within ``db`` of their frame's peak (a mask, not an expected value)."""
    x = torch.stft(wave.double(), 512, 353, window=torch.hann_window(512, dtype=torch.float64), return_complex=True)
    power = x.abs().square()[:, frames]
    return power >= power.amax(dim=0, keepdim=True) * 10 ** (-db / 10)


def test_wav2clip_matches_reference_per_clip_and_batch(wav2clip_file, single_thread):
    r = ref("wav2clip")
    encoder, frontend = load_audio_encoder(wav2clip_file)
    assert frontend.spec() == {
        "name": "wav2clip",
        "sample_rate": 16000,
        "n_fft": 512,
        "hop_length": 353,
        "log_offset": 1e-7,
        "normalize": "clip",
    }
    assert checkpoint_kind(wav2clip_file) == "wav2clip"
    assert encoder.clip_spec["model_name"] == "ViT-B-32" and encoder.clip_spec["pretrained"] == "openai"
    wave = r["wave_16k"]
    with torch.no_grad():
        spec = frontend(wave[:1])
        frames = list(range(8)) + list(range(219, 227))
        near = near_peak_bins(wave[0], frames, db=60.0)
        got, want = spec[0, 0][:, frames], r["logspec_norm_chirp_frames"]
        assert (got - want)[near].abs().max() <= 4 * LOGSPEC_FP32_ERROR_60DB
        # the default front end standardises each clip alone: batching changes nothing
        batched = F.normalize(encoder(frontend(wave)), dim=-1)
        torch.testing.assert_close(batched, F.normalize(r["embed_single"], dim=-1), atol=1e-4, rtol=0)
        torch.testing.assert_close(encoder.features(frontend(wave)), r["encoder_single"], atol=1e-4, rtol=0)
        # Wav2CLIP's own batch statistics, on request
        batch_fe = type(frontend)(normalize="batch")
        torch.testing.assert_close(
            F.normalize(encoder(batch_fe(wave)), dim=-1), F.normalize(r["embed_batch"], dim=-1), atol=1e-4, rtol=0
        )
        assert (r["embed_batch"] - r["embed_single"]).abs().max() > 0.05  # the fixture tells the two apart


def test_wav2clip_input_is_load_audio_at_16k(wav2clip_file):
    from sound2img.audio.io import load_audio

    r = ref("wav2clip")
    got = torch.as_tensor(load_audio(fixture_path("peer_audio", "inputs", "chirp.wav"), 16000))
    torch.testing.assert_close(got.reshape(-1), r["wave_16k"][0], atol=1e-6, rtol=0)


def test_wav2clip_wrong_shape_and_window_refused(wav2clip_file, tmp_path):
    state = torch.load(wav2clip_file, weights_only=True)
    bad = dict(state)
    bad["audio_transform.sequential.3.bias"] = torch.zeros(7)
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"transform\.sequential\.3\.bias.*shape \[7\]"):
        load_audio_encoder(tmp_path / "bad.pt")
    bad = dict(state)
    bad["audio_encoder.spectrogram.window"] = torch.hann_window(512, periodic=False)
    torch.save(bad, tmp_path / "window.pt")
    with pytest.raises(CheckpointError, match="spectrogram.window"):
        load_audio_encoder(tmp_path / "window.pt")
    # only the two prefixes Wav2CLIP's loader reads are needed; the rest is ignored
    lean = {k: v for k, v in state.items() if k.startswith(("audio_encoder.", "audio_transform."))}
    torch.save(lean, tmp_path / "lean.pt")
    load_audio_encoder(tmp_path / "lean.pt")


def test_wav2clip_too_short_clip_is_one_line(wav2clip_file):
    _, frontend = load_audio_encoder(wav2clip_file)
    with pytest.raises(UserInputError, match="too short"):
        frontend(torch.zeros(1, 200))


# ---------------------------------------------------------------------------------------- AudioCLIP


@pytest.mark.slow
@pytest.mark.xdist_group("audioclip_checkpoint")  # one rebuild of the 537-MB file
def test_audioclip_matches_reference(audioclip_file, single_thread):
    r = ref("audioclip")
    encoder, frontend = load_audio_encoder(audioclip_file)
    assert frontend.spec() == {
        "name": "audioclip",
        "sample_rate": 44100,
        "input_scale": 32768.0,
        "num_samples": None,
        "scale": "fixed",
        "resampler": "kaiser_best",
    }
    assert not encoder.training and encoder.clip_spec["space"] == "openai/RN50"
    wave = r["wave_44k"]
    with torch.no_grad():
        x = frontend(wave)
        torch.testing.assert_close(x[:, 0, 0], wave * 32768)
        x_db = encoder.spectrogram(x)
        assert x_db.shape == (2, 3, 341, 392)
        frames = list(range(8)) + list(range(192, 200)) + list(range(384, 392))
        got, want = x_db[0][:, :, frames], r["x_db_chirp_x32768_frames"]
        near_peak = want > want.amax(dim=(0, 1), keepdim=True) - 60
        assert (got - want)[near_peak].abs().max() <= 0.5
        raw = encoder(x)
        torch.testing.assert_close(raw, r["audio_raw_x32768"], atol=1e-4, rtol=0)
        torch.testing.assert_close(encoder.encode_audio(x), r["audio_emb_x32768"], atol=2e-5, rtol=0)
        # the demo's [-1, 1] input, as a front-end setting
        unit = type(frontend)(input_scale=1.0)
        torch.testing.assert_close(encoder.encode_audio(unit(wave)), r["audio_emb_unit"], atol=2e-5, rtol=0)


@pytest.mark.slow
@pytest.mark.xdist_group("audioclip_checkpoint")  # one rebuild of the 537-MB file
def test_audioclip_towers_match_reference(audioclip_file, single_thread):
    from sound2img.models.audioclip import load_audioclip_towers

    r = ref("audioclip")
    towers = load_audioclip_towers(audioclip_file)
    with torch.no_grad():
        torch.testing.assert_close(towers.model.encode_image(r["image_x"]), r["image_raw"], atol=1e-4, rtol=0)
        tokens = towers.tokenize(["a bird chirping", "thunder, rain"])
        assert torch.equal(tokens.cpu(), r["text_tokens"])
        torch.testing.assert_close(towers.model.encode_text(tokens), r["text_raw"], atol=1e-4, rtol=0)
    assert towers.spec()["space"] == "openai/RN50" and towers.embed_dim == 1024


@pytest.mark.slow
@pytest.mark.xdist_group("audioclip_checkpoint")  # one rebuild of the 537-MB file
def test_audioclip_prefixed_or_reshaped_file_refused(audioclip_file, tmp_path):
    state = torch.load(audioclip_file, weights_only=True, mmap=True)
    bad = {("audio_head." + k[6:] if k.startswith("audio.") else k): v for k, v in state.items()}
    torch.save(bad, tmp_path / "prefixed.pt")  # AudioCLIP's strict=False would load nothing, silently
    with pytest.raises(CheckpointError, match="unknown audio-encoder layout"):
        load_audio_encoder(tmp_path / "prefixed.pt")
    bad = dict(state)
    bad["audio.fc.weight"] = torch.zeros(1024, 1024)
    torch.save(bad, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match=r"'fc.weight' has shape \[1024, 1024\]"):
        load_audio_encoder(tmp_path / "shape.pt")


def test_audioclip_random_head_pads_short_clips():
    """A clip shorter than one 1654-sample frame is zero-padded (as AudioCLIP does), not refused."""
    from sound2img.audio.frontend import build_frontend
    from sound2img.models.audio_encoder import build_audio_encoder

    torch.manual_seed(0)
    enc = build_audio_encoder("audioclip", embed_dim=16).eval()
    fe = build_frontend("audioclip", num_samples=None)
    with torch.no_grad():
        x_db = enc.spectrogram(fe(torch.randn(1, 1000) * 0.1))
        assert x_db.shape == (1, 3, 341, 1)
        assert enc.encode_audio(fe(torch.randn(1, 1000) * 0.1)).shape == (1, 16)
    with pytest.raises(UserInputError):
        fe(torch.zeros(1, 0))


# ---------------------------------------------------------------------------------------- spaces


def test_space_mismatch_refused_and_from_encoder_picks_towers(wav2clip_file):
    from sound2img import factory
    from sound2img.models.clip import build_clip, check_same_space, clip_space

    encoder, _ = load_audio_encoder(wav2clip_file)
    assert clip_space(encoder.clip_spec) == "openai/ViT-B-32"
    rn50 = {"model_name": "RN50", "pretrained": "openai"}
    assert clip_space(rn50) == "openai/RN50"
    towers = build_clip("tiny")
    towers._spec.update(rn50)  # towers that claim OpenAI RN50
    with pytest.raises(UserInputError, match="embeds into CLIP space openai/ViT-B-32.*openai/RN50"):
        check_same_space(encoder.clip_spec, towers)
    check_same_space(encoder.clip_spec, build_clip("tiny"))  # random towers: unknown space, not refused
    with pytest.raises(UserInputError, match="does not record"):
        factory.build_clip_for_encoder({"model": "from_encoder"}, object())
