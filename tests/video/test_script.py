"""``scripts/video.py`` as a user runs it (subprocesses, ``preset=tiny``): a run killed after
its first keyframes were saved resumes from them when run again, and gives exactly the
video of an uninterrupted run (the same command gives the same frames); a file that is
not a sound is one line on stderr, exit 2, nothing written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sound2img.cli import to_object
from sound2img.video.command import compose_from_args
from sound2img.video.run import TEST_DELAY_ENV, run_video

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "video.py"
ARGS = [
    "--audio", "tone:440", "--fps", "3", "--steps", "3", "--keyframe-steps", "2", "--keyframe-seconds", "2.5",
    "preset=tiny", "--device", "cpu", "progress=false",
]  # fmt: skip


def start(*argv: str, cwd: Path, delay: float | None = None) -> subprocess.Popen:
    env = {
        **os.environ,
        "SOUND2IMG_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    if delay is not None:
        env[TEST_DELAY_ENV] = str(delay)
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_killed_run_resumes_from_its_keyframes_to_the_same_video(tmp_path):
    out = tmp_path / "song"
    # held for a minute after each keyframes.pt update: killed while certainly between keyframes
    killed = start(*ARGS, "--out", str(out), cwd=tmp_path, delay=60)
    (tmp_path / "notes.wav").write_text("this is not a sound\n" * 20)
    bad = start("--audio", "notes.wav", "--out", "bad", "preset=tiny", "--device", "cpu", cwd=tmp_path)
    try:
        deadline = time.monotonic() + 600
        while not (out / "keyframes.pt").exists():
            assert killed.poll() is None, killed.communicate()[1]
            assert time.monotonic() < deadline, "no keyframes.pt within 10 minutes"
            time.sleep(0.05)  # polling for the file, not a timed assertion
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.communicate()
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith(".tmp")) == ["keyframes.pt"]

    err = bad.communicate(timeout=600)[1]
    assert bad.returncode == 2 and err.count("\n") == 1, err
    assert err.startswith("error: notes.wav: not a readable audio file") and not (tmp_path / "bad").exists()

    resumed = start(*ARGS, "--out", str(out), cwd=tmp_path)
    stdout, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr
    assert stdout.strip().endswith("song/video.mp4")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_keyframes"] >= 1 and len(metrics["keyframes"]) == 5  # 0, 2.5, 5, 7.5, 10 s

    cfg, _ = compose_from_args([*ARGS, "--out", str(tmp_path / "whole")])
    whole = run_video(to_object(cfg))
    assert (whole / "video.mp4").read_bytes() == (out / "video.mp4").read_bytes()
    assert metrics["keyframes"] == json.loads((whole / "metrics.json").read_text())["keyframes"]
