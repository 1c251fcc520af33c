"""The bad-input corpus through the decoder and through ``scripts/manipulate.py``: valid
audio (silence, DC, every bit depth, 8 and 192 kHz, 6 channels, odd paths, one hour) gives
a result; invalid files give one line naming the file, exit 2, and no output directory."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from sound2img.audio.io import load_audio
from sound2img.cli import run_cli
from sound2img.errors import AudioLoadError
from sound2img.manipulation.command import main as manipulate_main
from sound2img.manipulation.outputs import EDIT_FILES

from .corpus import HOUR_SECONDS, INVALID, SR, VALID
from .helpers import (
    assert_success,
    assert_user_error,
    check_complete_outputs,
    run_script,
    script_cmd,
    script_env,
    temp_leftovers,
)

TINY = ["preset=tiny", "progress=false", "--steps", "2"]


def _peak_hz(wav: torch.Tensor, sr: int) -> float:
    return torch.fft.rfft(wav.double()).abs().argmax().item() * sr / wav.numel()


def test_decoder_on_every_corpus_file(corpus):
    """load_audio at 16 kHz: the exact waveform for valid files, one-line AudioLoadError
    naming the file for the rest."""
    import soundfile as sf

    for name in VALID:
        case = corpus[name]
        wav = load_audio(case.path, SR)
        assert wav.dtype == torch.float32 and wav.shape == (round(case.seconds * SR),), name
        assert torch.isfinite(wav).all(), name
        if name == "silence":
            assert torch.count_nonzero(wav) == 0
        elif name == "dc_only":
            assert torch.allclose(wav, torch.full_like(wav, 0.25))
        elif name == "six_channels":  # channel mean (librosa's to_mono), at the file's own rate
            data, _ = sf.read(str(case.path), dtype="float32")
            assert torch.allclose(wav, torch.from_numpy(data.mean(axis=1, dtype=np.float32)), atol=1e-6)
        else:  # a 440 Hz tone of amplitude 0.5, whatever the bit depth, rate or container
            assert _peak_hz(wav, SR) == pytest.approx(440, abs=1), name
            assert wav.abs().max().item() == pytest.approx(0.5, abs=0.02), name
    for name in INVALID:
        case = corpus[name]
        with pytest.raises(AudioLoadError) as info:
            load_audio(case.path, SR)
        msg = str(info.value)
        assert "\n" not in msg and str(case.path) in msg and case.error in msg, (name, msg)


def _manipulate_in_process(capsys, args):
    status = run_cli(manipulate_main, [*args, *TINY])
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, status, captured.out, captured.err)


@pytest.mark.parametrize("name", INVALID)
def test_manipulate_refuses_invalid_audio(name, corpus, tmp_path, capsys):
    """In-process (the script's own ``run_cli``): exit 2, one line naming the file, and
    the output directory never appears."""
    case, out = corpus[name], tmp_path / "out"
    proc = _manipulate_in_process(capsys, ["--audio", str(case.path), "--out", str(out)])
    assert_user_error(proc, str(case.path), case.error)
    assert not out.exists() and temp_leftovers(tmp_path) == []


@pytest.mark.parametrize("runner", ["in_process", pytest.param("subprocess", marks=pytest.mark.slow)])
def test_manipulate_edits_every_valid_file(runner, corpus, tmp_path, capsys):
    """One run of the script with every valid corpus file as a sound: one complete edit
    per sound (all files parse, finite cosines)."""
    out = tmp_path / "edits"
    args = [*(a for name in VALID for a in ("--audio", str(corpus[name].path))), "--out", str(out)]
    if runner == "subprocess":
        proc = run_script("manipulate.py", [*args, *TINY], cwd=tmp_path)
    else:
        proc = _manipulate_in_process(capsys, args)
    assert_success(proc)
    dirs = sorted(p for p in out.iterdir())
    assert len(dirs) == len(VALID) and proc.stdout.split() == [str(d) for d in dirs]
    for d in dirs:
        assert sorted(p.name for p in d.iterdir()) == sorted(EDIT_FILES)
        assert check_complete_outputs(d) == len(EDIT_FILES)
        metrics = json.loads((d / "metrics.json").read_text())
        assert math.isfinite(metrics["final_cosine"]) and metrics["edit"]["target"]["kind"] == "sound"
    # each sound is named in its own edit's record, the non-ASCII and spaced paths included
    specs = sorted(json.loads((d / "metrics.json").read_text())["edit"]["target"]["spec"] for d in dirs)
    assert specs == sorted(str(corpus[name].path) for name in VALID)
    assert temp_leftovers(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", INVALID)
def test_manipulate_subprocess_refuses_invalid_audio(name, corpus, tmp_path):
    """The same refusals as a user sees them: a child process, its stderr, its exit status."""
    case, out = corpus[name], tmp_path / "out"
    proc = run_script("manipulate.py", ["--audio", str(case.path), "--out", str(out), *TINY], cwd=tmp_path)
    assert_user_error(proc, str(case.path), case.error)
    assert not out.exists() and temp_leftovers(tmp_path) == []


def test_long_file_is_read_as_the_front_ends_window(hour_file, corpus):
    """The manipulation path decodes only the centre window of an hour-long file, a file up
    to ``full_seconds`` whole, and past that a file shorter than twice the window whole."""
    from sound2img.audio import build_frontend
    from sound2img.manipulation.guidance import load_sound, sound_window_seconds

    legacy = build_frontend("soundclip_legacy")
    window = sound_window_seconds(legacy)
    assert window == pytest.approx((863 * 512 + 2048) / 44100)  # the 864 frames of the centre crop
    assert sound_window_seconds(build_frontend("logmel")) == 10.0  # every frame: the training clip length
    wav = load_sound(str(hour_file), 16000, max_seconds=window)
    assert wav.shape == (math.ceil(int(window * 8000) * 2),)
    # the centre of the hour: the file's amplitude ramp puts its level at 0.2 + 0.3 / 2
    assert wav.abs().max().item() == pytest.approx(0.35, abs=0.01)
    two_seconds = str(corpus["wav_pcm_16"].path)
    # up to edit.full_file_seconds (60 s) a file is decoded whole, as the authors' pipeline reads it
    assert load_sound(two_seconds, SR, max_seconds=0.9).shape == (2 * SR,)
    # past it, a file longer than twice the window is read as its centre window only
    assert load_sound(two_seconds, SR, max_seconds=1.0, full_seconds=0.0).shape == (2 * SR,)  # not > twice
    assert load_sound(two_seconds, SR, max_seconds=0.9, full_seconds=0.0).shape == (int(0.9 * SR),)


_PEAK_RSS = """
import resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], capture_output=True)
sys.stderr.buffer.write(proc.stderr)
print(proc.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _peak_rss_mb(cmd, cwd, env) -> tuple[int, float, str]:
    """Run ``cmd`` under a fresh parent whose only child it is: (exit, peak RSS MB, stderr)."""
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, *cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    status, kb = proc.stdout.split()
    return int(status), int(kb) / 1024, proc.stderr


@pytest.mark.slow
def test_one_hour_file_memory_stays_bounded(hour_file, corpus, tmp_path):
    """Editing with a 1-hour file costs about what a 2-s file costs: the peak RSS of the
    two runs differs by far less than the hour as float64 (460 MB at 16 kHz)."""
    env = script_env(tmp_path)
    tiny = [*TINY, "--device", "cpu"]  # host memory only; a CUDA context would blur the comparison
    hour_status, hour_mb, err = _peak_rss_mb(
        script_cmd("manipulate.py", ["--audio", str(hour_file), "--out", str(tmp_path / "hour"), *tiny]), tmp_path, env
    )
    assert hour_status == 0, err
    assert check_complete_outputs(tmp_path / "hour") == len(EDIT_FILES)
    short_status, short_mb, err = _peak_rss_mb(
        script_cmd(
            "manipulate.py", ["--audio", str(corpus["wav_pcm_16"].path), "--out", str(tmp_path / "short"), *tiny]
        ),
        tmp_path,
        env,
    )
    assert short_status == 0, err
    float64_mb = HOUR_SECONDS * 16000 * 8 / 2**20
    assert hour_mb - short_mb < 0.1 * float64_mb, (hour_mb, short_mb)
