"""scripts/embed.py (round trip against load_audio_encoder, bad input) and the zero-shot
table run with the peer encoders on generated ESC-50 / UrbanSound8K trees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from sound2img.models.audio_encoder import load_audio_encoder

from helpers import load_file_module
from helpers.fixtures import fixture_path
from helpers.peer_audio import rebuild_checkpoint

ROOT = Path(__file__).resolve().parents[2]
EMBED = load_file_module(ROOT / "scripts" / "embed.py")


@pytest.fixture(scope="module")
def wav2clip_file(tmp_path_factory):
    return rebuild_checkpoint("wav2clip", tmp_path_factory.mktemp("w2c"))


@pytest.fixture(scope="module")
def tiny_encoder_files(tmp_path_factory):
    """Our own encoder files: one recording its (tiny, random) CLIP towers, one recording none."""
    from sound2img.audio.frontend import build_frontend
    from sound2img.models.audio_encoder import build_audio_encoder, save_audio_encoder
    from sound2img.models.clip import build_clip

    d = tmp_path_factory.mktemp("ours")
    torch.manual_seed(0)
    enc = build_audio_encoder("tiny_cnn", embed_dim=32)
    fe = build_frontend("logmel", n_mels=32)
    with_towers = save_audio_encoder(d / "with.safetensors", enc, fe, build_clip("tiny", seed=3).spec())
    without = save_audio_encoder(d / "without.safetensors", enc, fe, None)
    return with_towers, without


def _wav(path: Path, seconds: float = 1.0, sr: int = 22050, freq: float = 440.0) -> Path:
    import soundfile as sf

    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr)
    return path


def test_embed_audio_rows_equal_load_audio_encoder(wav2clip_file, tmp_path):
    from sound2img.audio.io import load_audio

    inputs = fixture_path("peer_audio", "inputs")
    clips = [inputs / "burst.wav", inputs / "chirp.wav", _wav(tmp_path / "tone.wav")]
    out = tmp_path / "e.npz"
    assert (
        EMBED.main(["--encoder", str(wav2clip_file), "--audio", *map(str, clips), "--out", str(out), "--device", "cpu"])
        == 0
    )
    z = np.load(out)
    assert z["audio"].dtype == np.float32 and z["audio"].shape == (3, 512)
    assert list(z["audio_names"]) == [str(c) for c in clips] and z["text"].shape == (0, 512)
    assert str(z["clip_space"]) == "openai/ViT-B-32"
    encoder, frontend = load_audio_encoder(wav2clip_file)
    with torch.no_grad():
        want = torch.cat([F.normalize(encoder(frontend(load_audio(c, 16000)[None])), dim=-1) for c in clips])
    np.testing.assert_allclose(z["audio"], want.numpy(), atol=1e-5, rtol=0)


def test_embed_text_and_image_in_the_encoders_space(tiny_encoder_files, tmp_path):
    from sound2img.models.clip import build_clip

    with_towers, _ = tiny_encoder_files
    img = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(img)
    out = tmp_path / "e.npz"
    assert (
        EMBED.main(
            [
                "--encoder",
                str(with_towers),
                "--text",
                "rain",
                "a dog barking",
                "--image",
                str(img),
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    z = np.load(out)
    towers = build_clip("tiny", seed=3)  # what the encoder file records
    with torch.no_grad():
        np.testing.assert_allclose(z["text"], towers.encode_text(["rain", "a dog barking"]).numpy(), atol=1e-5)
    assert z["image"].shape == (1, 32) and z["audio"].shape == (0, 32)
    np.testing.assert_allclose(np.linalg.norm(z["image"], axis=1), 1.0, atol=1e-5)
    assert list(z["text_names"]) == ["rain", "a dog barking"]


@pytest.mark.parametrize("case", ["missing_audio", "bad_image", "exists", "no_towers", "nothing", "bad_encoder"])
def test_embed_bad_input_one_line_exit_2_nothing_written(case, tiny_encoder_files, tmp_path, capsys):
    with_towers, without = tiny_encoder_files
    out = tmp_path / "e.npz"
    tone = str(_wav(tmp_path / "t.wav"))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    argv = {
        "missing_audio": ["--encoder", str(with_towers), "--audio", tone, str(tmp_path / "nope.wav")],
        "bad_image": ["--encoder", str(with_towers), "--image", str(tmp_path / "bad.png")],
        "exists": ["--encoder", str(with_towers), "--audio", tone],
        "no_towers": ["--encoder", str(without), "--text", "rain"],
        "nothing": ["--encoder", str(with_towers)],
        "bad_encoder": ["--encoder", tone, "--audio", tone],
    }[case]
    if case == "exists":
        out.write_bytes(b"keep me")
    assert EMBED.main([*argv, "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and "Traceback" not in err
    assert (out.read_bytes() == b"keep me") if case == "exists" else not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["t.wav", "bad.png"] + (["e.npz"] if case == "exists" else [])
    )


def test_embed_reads_sounds_as_an_edit_does_offline_with_preset_tiny(tmp_path, monkeypatch):
    """preset=tiny, empty network: tone:HZ, a cached sample:NAME and a 70-s file (over
    full_file_seconds: its centre window only, as manipulate.py reads it) → rows equal to the
    tiny encoder on those waves cut by hand."""
    import soundfile as sf

    from sound2img import factory
    from sound2img.cli import compose

    sr = 16000  # logmel's rate: no resampling between the file and the front end
    rng = np.random.default_rng(0)
    long = (0.1 * rng.standard_normal(70 * sr)).astype(np.float32)
    long[35 * sr : 36 * sr] *= 5  # the centre differs from the whole
    sf.write(tmp_path / "long.wav", long, sr, subtype="FLOAT")
    cache = tmp_path / "cache"
    cache.mkdir()
    rain = (0.3 * np.sin(2 * np.pi * 300 * np.arange(3 * sr) / sr)).astype(np.float32)
    sf.write(cache / "raining.wav", rain, sr, subtype="FLOAT")  # sample:rain, already fetched
    monkeypatch.setenv("SOUND2IMG_CACHE", str(cache))
    monkeypatch.setenv("SOUND2IMG_OFFLINE", "1")
    out = tmp_path / "e.npz"
    argv = ["--audio", "tone:440", "sample:rain", str(tmp_path / "long.wav"), "--text", "a beep", "--out", str(out)]
    assert EMBED.main([*argv, "--device", "cpu", "preset=tiny"]) == 0
    z = np.load(out)
    tiny = compose("embed", ["preset=tiny"])
    encoder, frontend = factory.build_encoder_from_cfg(tiny.encoder, tiny.audio)
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(10 * sr, dtype=np.float64) / sr)
    waves = [tone.astype(np.float32), rain, long[30 * sr : 40 * sr]]  # the window: 10 s (logmel takes every frame)
    with torch.no_grad():
        want = [F.normalize(encoder(frontend(torch.from_numpy(w)[None])), dim=-1)[0].numpy() for w in waves]
        whole = F.normalize(encoder(frontend(torch.from_numpy(long)[None])), dim=-1)[0].numpy()
    np.testing.assert_allclose(z["audio"], np.stack(want), atol=1e-5, rtol=0)
    assert np.abs(z["audio"][2] - whole).max() > 1e-3  # the window mattered
    assert z["text"].shape == (1, 32) and list(z["audio_names"])[:2] == ["tone:440", "sample:rain"]


def test_peer_encoder_picks_its_towers(wav2clip_file):
    from sound2img.factory import towers_override

    assert towers_override("audioclip_partial", []) == ["clip=from_encoder"]
    assert towers_override(str(wav2clip_file), ["preset=tiny"]) == ["clip=from_encoder"]
    assert towers_override(str(wav2clip_file), ["clip=tiny"]) == []
    assert towers_override("soundclip_resnet18", []) == []


def _zero_shot(encoder_file, overrides, esc50_root, us8k_root):
    from sound2img.evaluation.tables import compose_table, run_table

    cfgs = compose_table(
        "zeroshot",
        [
            "preset=tiny",
            "progress=false",
            "eval.num_workers=0",
            f"encoder.path={encoder_file}",
            f"datasets.esc50.root={esc50_root}",
            f"datasets.us8k.root={us8k_root}",
            "+datasets.esc50.num_samples=16000",
            "+datasets.us8k.num_samples=16000",
            *overrides,
        ],
    )
    return run_table("zeroshot", cfgs)


def test_zero_shot_runs_with_wav2clip(wav2clip_file, esc50_root, us8k_root):
    # random 512-d towers (Wav2CLIP's own, OpenAI ViT-B/32, are not downloaded in tests)
    report = _zero_shot(wav2clip_file, ["clip.tiny.embed_dim=512"], esc50_root, us8k_root)
    assert "| Wav2CLIP zero-shot (paper) | 41.4 | 40.4 |" in report.markdown
    assert "| AudioCLIP zero-shot (paper) | 69.4 | 68.8 |" in report.markdown
    assert set(report.data["ours"]) == {"esc50", "us8k"} and report.data["ours"]["esc50"]["n"] == 40
    assert "name=wav2clip" in report.markdown


@pytest.mark.slow
def test_zero_shot_runs_with_audioclip_and_its_towers(tmp_path_factory, esc50_root, us8k_root):
    audioclip = rebuild_checkpoint("audioclip", tmp_path_factory.mktemp("ac"))
    # one fold each and one template: AudioCLIP's ResNeXt-50 and RN50 text tower are full size
    report = _zero_shot(
        audioclip,
        [
            "clip=from_encoder",
            "datasets.esc50.folds=[1]",
            "datasets.us8k.folds=[1]",
            "eval.templates=['a sound of {}']",
        ],
        esc50_root,
        us8k_root,
    )
    assert "RN50" in report.markdown and "name=audioclip" in report.markdown
    assert 0.0 <= report.data["ours"]["us8k"]["mean"] <= 1.0
    # UrbanSound8K read as AudioCLIP's own reader did (ESC-50's reader is the front end's default)
    assert "read by AudioCLIP's UrbanSound8K reader" in report.data["ours"]["us8k"]["data"]
    assert "read by" not in report.data["ours"]["esc50"]["data"]


def test_zero_shot_refuses_towers_of_another_space(wav2clip_file, esc50_root, us8k_root, monkeypatch):
    from sound2img.errors import UserInputError
    from sound2img.models import clip as clip_mod

    real = clip_mod.ClipTowers.spec
    monkeypatch.setattr(clip_mod.ClipTowers, "spec", lambda self: {**real(self), "space": "openai/RN50"})
    with pytest.raises(UserInputError, match="embeds into CLIP space openai/ViT-B-32"):
        _zero_shot(wav2clip_file, ["clip.tiny.embed_dim=512"], esc50_root, us8k_root)


def test_fig_audioclip_comparison_runs_side_by_side(wav2clip_file):
    """The figure under preset=tiny, with Wav2CLIP's layout standing in for the other encoder
    (AudioCLIP's file is 0.5 GB) and random 512-d towers for its space."""
    import io

    from sound2img.evaluation.tables import compose_table, run_table

    cfgs = compose_table(
        "fig_audioclip_comparison",
        [
            "preset=tiny",
            "progress=false",
            "manipulate.steps=2",
            "eval.sounds=[tone:440,tone:880]",
            "eval.n_sources=2",
            f"eval.peer.encoder={wav2clip_file}",
            "eval.peer.label=Wav2CLIP",
            "eval.peer.clip={model:tiny,tiny:{embed_dim:512}}",
        ],
    )
    report = run_table("fig_audioclip_comparison", cfgs)
    cells = report.data["cells"]
    assert [c["guide"] for c in cells] == ["ours"] * 4 + ["Wav2CLIP"] * 4
    assert [(c["source"], c["sound"]) for c in cells[:4]] == [
        (0, "tone:440"),
        (0, "tone:880"),
        (1, "tone:440"),
        (1, "tone:880"),
    ]
    # two steps may not move w under the default learning-rate ramp: only well-formed numbers here
    assert all(c["latent_distance"] >= 0 and np.isfinite(c["psnr_db"]) and -1 <= c["final_cosine"] <= 1 for c in cells)
    img = Image.open(io.BytesIO(report.pngs["fig_audioclip_comparison.png"]))
    assert img.size[0] == 3 * img.size[1] // 4  # 4 rows (2 sources x 2 sounds), 3 columns (source, ours, peer)
    assert "| guide | source | sound |" in report.markdown
