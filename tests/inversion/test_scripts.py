"""``scripts/invert.py`` and ``manipulate.py --image`` as a user runs them (subprocesses,
``preset=tiny``, pixel loss, offline): the outputs, the cache hit on a second edit, and
every bad input → one line, exit 2, nothing written."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.inversion.test_images import png_header_only

from helpers import load_file_module

ROOT = Path(__file__).resolve().parents[2]
INVERT = ROOT / "scripts" / "invert.py"
MANIPULATE = ROOT / "scripts" / "manipulate.py"


def env(tmp: Path) -> dict:
    return {**os.environ, "SOUND2IMG_OFFLINE": "1", "SOUND2IMG_CACHE": str(tmp / "cache"), "PYTHONPATH": str(ROOT)}


def start(script: Path, *argv, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(script), *argv, "preset=tiny", "progress=false", "--device", "cpu"],
        cwd=cwd,
        env=env(cwd),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(script: Path, *argv, cwd: Path) -> subprocess.CompletedProcess:
    proc = start(script, *argv, cwd=cwd)
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def photo(path: Path) -> Path:
    yy, xx = np.mgrid[:50, :70]
    Image.fromarray(np.stack([xx * 3, yy * 5, (xx + yy) * 2], -1).astype(np.uint8)).save(path)
    return path


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if "cache" not in p.parts}


def test_invert_writes_latent_images_and_metrics(tmp_path):
    photo(tmp_path / "me.png")
    res = run(INVERT, "--image", "me.png", "--out", "out", "--perceptual", "none", "--steps", "30", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["aligned.png", "latent.pt", "metrics.json", "reconstruction.png"]
    ws = torch.load(out / "latent.pt", weights_only=True)
    assert isinstance(ws, torch.Tensor) and ws.shape == (8, 64)  # tiny: num_ws 8, w_dim 64
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "projector" and m["settings"]["perceptual"] == "none" and m["align"] == "center"
    assert m["quality"]["psnr"]["value"] > 0
    assert m["quality"]["lpips"]["value"] is None and "torchvision_vgg16" in m["quality"]["lpips"]["unavailable"]
    assert Image.open(out / "aligned.png").size == (32, 32)
    # the latent is a source for an edit
    res = run(
        MANIPULATE, "--latent", str(out / "latent.pt"), "--text", "fire", "--steps", "2", "--out", "edit", cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr[-2000:]


@pytest.mark.slow
def test_pti_writes_a_tuned_generator_that_manipulate_reads(tmp_path):
    photo(tmp_path / "me.png")
    res = run(
        INVERT,
        "--image",
        "me.png",
        "--out",
        "out",
        "--method",
        "pti",
        "--perceptual",
        "none",
        "--steps",
        "20",
        "--pti-steps",
        "20",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["projector"]["space"] == "w" and m["projector"]["recipe"] == "pti" and m["pti"]["steps_run"] == 20
    tuned = tmp_path / "out" / "tuned_generator.safetensors"
    res = run(
        MANIPULATE,
        "--generator",
        str(tuned),
        "--latent",
        str(tmp_path / "out" / "latent.pt"),
        "--text",
        "fire",
        "--steps",
        "2",
        "--out",
        "edit",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    source = np.asarray(Image.open(tmp_path / "edit" / "source.png"))
    recon = np.asarray(Image.open(tmp_path / "out" / "reconstruction.png"))
    assert np.array_equal(source, recon)  # the edit starts from the PTI reconstruction


@pytest.mark.slow
def test_manipulate_image_inverts_once_then_hits_the_cache(tmp_path):
    photo(tmp_path / "me.png")
    args = ["--image", "me.png", "--text", "fire", "--steps", "2", "edit.image_perceptual=none", "edit.image_steps=10"]
    first = run(MANIPULATE, *args, "--out", "e1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    second = run(MANIPULATE, *args, "--out", "e2", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    m1 = json.loads((tmp_path / "e1" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "e2" / "metrics.json").read_text())
    assert m1["edit"]["source"]["cache_hit"] is False and m2["edit"]["source"]["cache_hit"] is True
    assert m1["edit"]["source"]["cache_key"] == m2["edit"]["source"]["cache_key"]
    a = torch.load(tmp_path / "e1" / "result_latent.pt", weights_only=True)
    b = torch.load(tmp_path / "e2" / "result_latent.pt", weights_only=True)
    assert torch.equal(a, b)
    q = m2["quality"]
    assert set(q) >= {"psnr", "lpips", "clip_cosine_source", "clip_cosine_result", "layer_distance"}
    assert len(q["layer_distance"]) == 8 and q["clip_cosine_result"]["value"] == m2["final_cosine"]
    # other settings → another inversion
    third = run(MANIPULATE, *args[:-1], "edit.image_steps=11", "--out", "e3", cwd=tmp_path)
    assert third.returncode == 0, third.stderr[-2000:]
    assert json.loads((tmp_path / "e3" / "metrics.json").read_text())["edit"]["source"]["cache_hit"] is False


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def bad_inputs(tmp: Path) -> dict:
    (tmp / "note.jpg").write_text("not a picture")
    photo(tmp / "full.jpg")
    data = (tmp / "full.jpg").read_bytes()
    (tmp / "cut.jpg").write_bytes(data[: len(data) // 3])
    Image.new("RGB", (1, 1)).save(tmp / "dot.png")
    png_header_only(tmp / "bomb.png", 20000, 20000)
    photo(tmp / "ok.png")
    (tmp / "evil.pt").write_bytes(pickle.dumps(_Boom()))
    torch.save(
        {
            "state_dict": {"encoder.styles.0.linear.weight": torch.zeros(3, 3)},
            "opts": {"encoder_type": "Encoder4Editing", "stylegan_size": 64},
            "latent_avg": torch.zeros(10, 512),
        },
        tmp / "e4e_wrong.pt",
    )
    (tmp / "taken").mkdir()
    (tmp / "taken" / "keep.txt").write_text("mine")
    return {
        "not an image": ["--image", "note.jpg"],
        "truncated jpeg": ["--image", "cut.jpg"],
        "1x1": ["--image", "dot.png"],
        "bomb": ["--image", "bomb.png"],
        "missing": ["--image", "nope.png"],
        "code-running encoder": ["--image", "ok.png", "--method", "e4e", "--encoder", "evil.pt"],
        "e4e shapes vs opts": ["--image", "ok.png", "--method", "e4e", "--encoder", "e4e_wrong.pt"],
        "unknown method": ["--image", "ok.png", "--method", "magic"],
        "existing out": ["--image", "ok.png", "--out", "taken"],
        "lpips offline": ["--image", "ok.png", "--perceptual", "lpips", "--steps", "2"],
    }


@pytest.mark.slow
def test_every_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, monkeypatch, capsys):
    """Each case through ``invert.py``'s ``main`` in this process (what the interpreter
    would run; ``test_invert_writes_latent_images_and_metrics`` starts the real one), then
    ``manipulate.py --image`` as a subprocess."""
    cases = bad_inputs(tmp_path)
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    for key in ("SOUND2IMG_OFFLINE", "SOUND2IMG_CACHE"):
        monkeypatch.setenv(key, env(tmp_path)[key])
    invert = load_file_module(INVERT)
    for i, (name, argv) in enumerate(cases.items()):
        extra = [] if "--out" in argv else ["--out", f"out_{i}"]
        extra += [] if name == "lpips offline" else ["--perceptual", "none"]
        status = invert.main([*argv, *extra, "preset=tiny", "progress=false", "--device", "cpu"])
        err = capsys.readouterr().err
        lines = [line for line in err.strip().splitlines() if not line.startswith("metric ")]
        assert status == 2, (name, err[-1500:])
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, err[-1500:])
    assert snapshot(tmp_path) == before
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
    assert not (tmp_path / "PWNED").exists()
    # manipulate --image refuses the same way
    res = run(MANIPULATE, "--image", "bomb.png", "--text", "fire", "--out", "edit", cwd=tmp_path)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr[-1500:]
    assert not (tmp_path / "edit").exists()
