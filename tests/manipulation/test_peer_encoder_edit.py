"""``manipulate.py --encoder`` with a peer encoder: its CLIP towers are chosen with it, and
an edit runs end to end with Wav2CLIP's checkpoint layout (rebuilt from the shared fixture)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.peer_audio import rebuild_checkpoint

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "manipulate.py"


@pytest.fixture(scope="module")
def wav2clip_file(tmp_path_factory):
    return rebuild_checkpoint("wav2clip", tmp_path_factory.mktemp("w2c"))


def test_encoder_flag_picks_the_encoders_towers():
    from sound2img.manipulation.command import compose_from_args

    cfg, _ = compose_from_args(["--encoder", "audioclip_partial", "--audio", "tone:440"])
    assert cfg.clip.model == "from_encoder" and cfg.encoder.path == "audioclip_partial"
    cfg, _ = compose_from_args(["--encoder", "audioclip_partial", "--audio", "tone:440", "clip=vit_b32"])
    assert cfg.clip.model == "ViT-B-32"  # the user's choice stands (and is checked at run time)
    cfg, _ = compose_from_args(["--encoder", "soundclip_resnet18", "--audio", "tone:440"])
    assert cfg.clip.model == "ViT-B-32"


def _run(argv, cwd):
    env = {**os.environ, "SOUND2IMG_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *argv, "--steps", "2", "progress=false", "--device", "cpu"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_edit_with_wav2clip(wav2clip_file, tmp_path):
    res = _run(
        [
            "--encoder",
            str(wav2clip_file),
            "--audio",
            "tone:440",
            "--out",
            "edit",
            "preset=tiny",
            "clip=tiny",
            "clip.tiny.embed_dim=512",
        ],
        tmp_path,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    m = json.loads((tmp_path / "edit" / "metrics.json").read_text())
    assert m["config"]["encoder"]["path"] == str(wav2clip_file) and len(m["losses"]["total"]) == 2
    # offline, Wav2CLIP's own towers (OpenAI ViT-B/32) are not there: one line, exit 2, nothing written
    res = _run(["--encoder", str(wav2clip_file), "--audio", "tone:440", "--out", "edit2", "preset=tiny"], tmp_path)
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert res.returncode == 2 and len(errors) == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert "vit_b32" in errors[0] and not (tmp_path / "edit2").exists()
