"""scripts/show_mel.py and the library function behind it: the PNG/.npy hold the encoder's
input, bad input is one line on stderr with exit status 2 and nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sound2img.audio.frontend import build_frontend
from sound2img.audio.io import load_audio
from sound2img.audio.show import save_mel_image
from sound2img.errors import AudioLoadError, UserInputError

from .signals import make_sound, write_av, write_sound
from helpers import load_file_module

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "show_mel.py"


@pytest.fixture(scope="module")
def show_mel():
    return load_file_module(SCRIPT)


def run_script(*args, cwd):
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_library_writes_png_and_npy_of_the_encoder_input(tmp_path):
    audio = write_sound(tmp_path / "voice é.wav", make_sound("speech", 22050, 2.0), 22050)
    fe = build_frontend("soundclip_legacy")
    mel = save_mel_image(audio, fe, tmp_path / "out" / "mel.png", npy=tmp_path / "out" / "mel.npy")
    expected = fe(load_audio(audio, 44100, resampler="kaiser_best")[None])[0]
    assert torch.equal(mel, expected) and mel.shape == (1, 128, 512)
    assert np.array_equal(np.load(tmp_path / "out" / "mel.npy"), expected.numpy())
    assert (tmp_path / "out" / "mel.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mel.npy", "mel.png"]  # no temp files left
    with pytest.raises(UserInputError, match="already exists"):
        save_mel_image(audio, fe, tmp_path / "out" / "mel.png")
    before = (tmp_path / "out" / "mel.npy").read_bytes()
    save_mel_image(
        audio, build_frontend("logmel"), tmp_path / "out" / "mel.png", npy=tmp_path / "out" / "mel.npy", overwrite=True
    )
    assert (
        np.load(tmp_path / "out" / "mel.npy").shape[:2] == (1, 128)
        and (tmp_path / "out" / "mel.npy").read_bytes() != before
    )


def test_library_bad_audio_writes_nothing(tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    with pytest.raises(AudioLoadError, match="notes.wav"):
        save_mel_image(bad, build_frontend("logmel"), tmp_path / "o" / "mel.png", npy=tmp_path / "o" / "mel.npy")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_script_subprocess_success_and_bad_audio(tmp_path):
    """The real entry point, through the venv's python: one good run, one bad file."""
    write_sound(tmp_path / "tone.wav", make_sound("tones", 16000, 1.0), 16000)
    ok = run_script("--audio", "tone.wav", "--out", "mel.png", "--npy", "mel.npy", "--device", "cpu", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert np.load(tmp_path / "mel.npy").shape == (1, 128, 101)
    (tmp_path / "fake.wav").write_text("hello")
    bad = run_script("--audio", "fake.wav", "--out", "bad.png", cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "fake.wav" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "bad.png").exists()


def test_script_bad_inputs_exit_2_with_one_line(tmp_path, show_mel, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_sound(tmp_path / "ok.wav", make_sound("speech", 16000, 0.5), 16000)
    write_av(tmp_path / "silent film.mp4", None, 44100, "aac", video=True)
    (tmp_path / "taken.png").write_bytes(b"keep me")
    (tmp_path / "cut.wav").write_bytes((tmp_path / "ok.wav").read_bytes()[:3000])
    cases = {
        "missing.wav": (["--audio", "missing.wav", "--out", "a.png"], "no such file"),
        "no audio track": (["--audio", "silent film.mp4", "--out", "b.png"], "has no audio track"),
        "truncated": (["--audio", "cut.wav", "--out", "c.png"], "truncated"),
        "existing output": (["--audio", "ok.wav", "--out", "taken.png"], "already exists"),
        "unknown front end": (["--audio", "ok.wav", "--out", "d.png", "--frontend", "mfcc"], "invalid choice"),
        "bad override": (["--audio", "ok.wav", "--out", "e.png", "audio.n_mel=3"], "n_mel"),
        "bad setting value": (["--audio", "ok.wav", "--out", "f.png", "audio.log=log2"], "log must be"),
        "missing --out": (["--audio", "ok.wav"], "--audio and --out are required"),
    }
    for name, (argv, message) in cases.items():
        assert show_mel.main(argv) == 2, name
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, (name, err)
    assert (tmp_path / "taken.png").read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.wav", "ok.wav", "silent film.mp4", "taken.png"]


def test_script_cfg_job_and_overrides(tmp_path, show_mel, capsys):
    assert show_mel.main(["--cfg", "job", "--frontend", "soundclip_legacy", "audio.top_db=60"]) == 0
    out = capsys.readouterr().out
    assert "name: soundclip_legacy" in out and "top_db: 60" in out
    audio = write_sound(tmp_path / "x.flac", make_sound("pink", 16000, 0.5), 16000)
    assert (
        show_mel.main(
            [
                "--audio",
                str(audio),
                "--out",
                str(tmp_path / "m.png"),
                "--npy",
                str(tmp_path / "m.npy"),
                "audio.n_mels=40",
            ]
        )
        == 0
    )
    assert np.load(tmp_path / "m.npy").shape == (1, 40, 51)
    assert show_mel.main(["--help"]) == 0
