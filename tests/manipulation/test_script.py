"""``scripts/manipulate.py`` as a user runs it (a subprocess, ``preset=tiny``): every bad
input is one line on stderr, exit status 2, and nothing written; a good run writes the
edit and prints where."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "manipulate.py"


def start(*argv, cwd) -> subprocess.Popen:
    env = {**os.environ, "SOUND2IMG_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *argv, "preset=tiny", "--steps", "2", "progress=false", "--device", "cpu"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def manipulate(*argv, cwd) -> subprocess.CompletedProcess:
    proc = start(*argv, cwd=cwd)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def bad_inputs(tmp: Path):
    (tmp / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt junk that is not audio")
    torch.save(torch.randn(3, 7), tmp / "wrong_shape.pt")
    (tmp / "taken").mkdir()
    (tmp / "taken" / "keep.txt").write_text("mine")
    return {
        "missing audio": (["--audio", "no_such.wav"], "no_such.wav"),
        "broken audio": (["--audio", "broken.wav"], "broken.wav"),
        "unknown generator": (["--audio", "tone:440", "--generator", "no_such_gan"], "no_such_gan"),
        "wrong latent shape": (["--text", "fire", "--latent", "wrong_shape.pt"], "wrong_shape.pt"),
        "existing out dir": (["--text", "fire", "--out", "taken"], "taken"),
        "bad tone": (["--audio", "tone:loud"], "tone:loud"),
    }


def test_every_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path):
    cases = bad_inputs(tmp_path)
    before = snapshot(tmp_path)
    # all at once (each is mostly interpreter start-up); each would write to its own --out
    procs = {
        name: start(*argv, *([] if "--out" in argv else ["--out", f"out_{i}"]), cwd=tmp_path)
        for i, (name, (argv, _)) in enumerate(cases.items())
    }
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        lines = err.strip().splitlines()
        assert proc.returncode == 2, (name, err[-800:])
        assert len(lines) == 1 and lines[0].startswith("error: ") and cases[name][1] in lines[0], (name, err)
    assert snapshot(tmp_path) == before
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"


@pytest.mark.slow
def test_script_end_to_end(tmp_path):
    res = manipulate("--audio", "tone:440", "--out", "edit", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == "edit"
    m = json.loads((tmp_path / "edit" / "metrics.json").read_text())
    assert m["config"]["tiny"] is True and len(m["losses"]["total"]) == 2
    assert sorted(p.name for p in (tmp_path / "edit").iterdir()) == sorted(
        ["source.png", "result.png", "strip.png", "result_latent.pt", "metrics.json"]
    )
    help_ = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert help_.returncode == 0 and "--audio" in help_.stdout and "tone:HZ" in help_.stdout
