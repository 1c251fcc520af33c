"""Outputs: no script replaces an existing file without ``--overwrite`` (the bytes on disk
stay as they were), and a run stopped with Ctrl-C leaves no half-written or temporary
file: what exists afterwards parses."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from sound2img.models.stylegan2 import build_generator, save_generator

from .corpus import SR, tone
from .helpers import (
    assert_success,
    assert_user_error,
    check_complete_outputs,
    run_script,
    script_cmd,
    script_env,
    script_main,
    snapshot,
    temp_leftovers,
)

PRECIOUS = b"results of last week's run\n"


def _plant(*paths: Path) -> None:
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(PRECIOUS)


def _wav(path: Path) -> Path:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), tone(), SR)
    return path


def _case_manipulate(d: Path):
    _plant(d / "out" / "result.png", d / "out" / "metrics.json")
    return (
        "manipulate.py",
        ["--audio", "tone:440", "--out", str(d / "out"), "--steps", "1", "preset=tiny", "progress=false"],
        d / "out",
        "already exists",
    )


def _case_generate(d: Path):
    _plant(d / "gen" / "contact_sheet.png")
    return "generate.py", ["--seeds", "0-1", "--out", str(d / "gen"), "generator=tiny"], d / "gen", "already exists"


def _case_convert_generator(d: Path):
    src = save_generator(
        build_generator(resolution=32, z_dim=16, w_dim=16, n_mlp=2, channel_base=64, channel_max=16),
        d / "src.safetensors",
    )
    _plant(d / "converted" / "g.pt")
    return ("convert_generator.py", [str(src), str(d / "converted" / "g.pt")], d / "converted", "already exists")


def _case_show_mel(d: Path):
    _plant(d / "mel" / "mel.npy")  # the PNG is new, the array exists: neither is written
    return (
        "show_mel.py",
        [
            "--audio",
            str(_wav(d / "in" / "x.wav")),
            "--out",
            str(d / "mel" / "mel.png"),
            "--npy",
            str(d / "mel" / "mel.npy"),
        ],
        d / "mel",
        "already exists",
    )


def _case_reproduce(d: Path):
    _plant(d / "rep" / "fig_volume.json")
    return (
        "reproduce.py",
        ["fig_volume", "preset=tiny", "eval.sound=tone:440", "manipulate.steps=1", "--out", str(d / "rep")],
        d / "rep",
        "already exists",
    )


def _case_train_encoder(d: Path):
    _plant(d / "run" / "config.yaml", d / "run" / "metrics.jsonl")
    return (
        "train_encoder.py",
        ["--out", str(d / "run"), "preset=tiny", "train.progress=false"],
        d / "run",
        "already holds a run",
    )


CASES = {
    "manipulate": _case_manipulate,
    "generate": _case_generate,
    "convert_generator": _case_convert_generator,
    "show_mel": _case_show_mel,
    "reproduce": _case_reproduce,
    "train_encoder": _case_train_encoder,
}


def _run(script, args, cwd, runner, capsys):
    if runner == "subprocess":
        return run_script(script, args, cwd=cwd)
    status = script_main(script)(args)
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, status, captured.out, captured.err)


@pytest.mark.parametrize("runner", ["in_process", pytest.param("subprocess", marks=pytest.mark.slow)])
@pytest.mark.parametrize("case", list(CASES))
def test_nothing_is_overwritten_without_the_flag(case, runner, tmp_path, capsys):
    script, args, out, message = CASES[case](tmp_path)
    before = snapshot(out)
    proc = _run(script, args, tmp_path, runner, capsys)
    assert_user_error(proc, message, "--overwrite")
    assert snapshot(out) == before and temp_leftovers(tmp_path) == []


@pytest.mark.parametrize("case", ["manipulate", "show_mel", "convert_generator"])
def test_the_flag_does_replace(case, tmp_path, capsys):
    """The positive side: with ``--overwrite`` the same command runs and replaces them."""
    script, args, out, _ = CASES[case](tmp_path)
    proc = _run(script, [*args, "--overwrite"], tmp_path, "in_process", capsys)
    assert_success(proc)
    assert all(p.read_bytes() != PRECIOUS for p in out.rglob("*") if p.is_file())
    assert check_complete_outputs(out) >= 1 and temp_leftovers(tmp_path) == []


def test_fetch_weights_never_replaces_a_cached_file(tmp_path, capsys):
    """A file already at its cache path is returned as is, even one that differs from the
    published bytes (nothing is downloaded over it)."""
    from sound2img.weights import get_entry

    entry = get_entry("sample:rain")
    cache = tmp_path / "cache"
    _plant(cache / entry.filename)
    env = {"SOUND2IMG_CACHE": str(cache), "SOUND2IMG_OFFLINE": ""}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        status = script_main("fetch_weights.py")(["sample:rain", "--no-progress"])
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    out = capsys.readouterr().out
    assert status == 0 and str(cache / entry.filename) in out
    assert (cache / entry.filename).read_bytes() == PRECIOUS


# ---- Ctrl-C ----------------------------------------------------------------------------


@contextlib.contextmanager
def _sigint_not_ignored():
    """Children started inside get SIGINT's default disposition, as a terminal's foreground
    job has. An ignored SIGINT is inherited (a test run started in the background by a
    non-interactive shell has it ignored), and Python then never raises KeyboardInterrupt:
    the Ctrl-C tests would time out for a reason that is not the product's."""
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def _interrupt_after(cmd, cwd, env, ready, timeout=400) -> subprocess.CompletedProcess:
    """Start ``cmd`` in its own process group, wait until ``ready(stderr so far)``, then
    send SIGINT to the group, as a terminal's Ctrl-C does."""
    err_path = cwd / f"stderr-{time.time_ns()}.txt"
    with open(err_path, "w+", encoding="utf-8", errors="replace") as err, _sigint_not_ignored():
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while True:
            err.seek(0)
            text = err.read()
            if ready(text):
                break
            if proc.poll() is not None:
                pytest.fail(f"finished (exit {proc.returncode}) before it could be interrupted:\n{text[-2000:]}")
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                pytest.fail("never became ready to interrupt")
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # never left running behind the test
            proc.communicate()
            pytest.fail("still running 120 s after Ctrl-C")
        err.seek(0)
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err.read())


def _progress_at_least(n: int):
    import re

    def ready(text: str) -> bool:
        done = [int(m) for m in re.findall(r"\| *(\d+)/\d+ \[", text)]
        return bool(done) and max(done) >= n

    return ready


def _interrupted(proc) -> None:
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and proc.stderr.rstrip().endswith("interrupted")


@pytest.mark.slow
def test_ctrl_c_during_an_edit_leaves_nothing(tmp_path):
    """A new --out is staged: after Ctrl-C mid-optimisation neither it nor a staging
    directory exists."""
    out = tmp_path / "edit"
    proc = _interrupt_after(
        script_cmd("manipulate.py", ["--audio", "tone:440", "--out", str(out), "--steps", "100000", "preset=tiny"]),
        tmp_path,
        script_env(tmp_path),
        _progress_at_least(3),
    )
    _interrupted(proc)
    assert not out.exists() and temp_leftovers(tmp_path) == []


@pytest.mark.slow
def test_ctrl_c_during_an_overwrite_keeps_the_old_edit_whole(tmp_path):
    """Into an existing edit with --overwrite: Ctrl-C mid-optimisation leaves the old
    files byte for byte, all parsing."""
    out = tmp_path / "edit"
    first = run_script(
        "manipulate.py",
        ["--audio", "tone:440", "--out", str(out), "--steps", "1", "preset=tiny", "progress=false"],
        cwd=tmp_path,
    )
    assert_success(first)
    before = snapshot(out)
    proc = _interrupt_after(
        script_cmd(
            "manipulate.py",
            ["--audio", "tone:880", "--out", str(out), "--overwrite", "--steps", "100000", "preset=tiny"],
        ),
        tmp_path,
        script_env(tmp_path),
        _progress_at_least(3),
    )
    _interrupted(proc)
    assert snapshot(out) == before and check_complete_outputs(out) == 5 and temp_leftovers(tmp_path) == []


@pytest.mark.slow
def test_ctrl_c_during_training_leaves_complete_files(tmp_path):
    """Interrupted after its first checkpoint: everything left parses (checkpoints with
    their digests, metrics.jsonl line by line), no temporaries; the run resumes."""
    run = tmp_path / "run"
    args = [
        "--out",
        str(run),
        "preset=tiny",
        "tiny_run.train.max_steps=1000",
        "tiny_run.train.epochs=1000",
        "tiny_run.train.checkpoint_every=2",
        "validation.data=null",
    ]
    ckpt = run / "checkpoints"
    proc = _interrupt_after(
        script_cmd("train_encoder.py", args),
        tmp_path,
        script_env(tmp_path),
        lambda _: ckpt.is_dir() and len(list(ckpt.glob("state-*.pt.sha256"))) >= 2,
    )
    _interrupted(proc)
    assert check_complete_outputs(run) >= 3 and temp_leftovers(run) == []
    from sound2img.training.checkpoint import load_latest_training_state

    state, _ = load_latest_training_state(ckpt)
    assert state["step"] >= 4


def _interrupt_the_nth_write(monkeypatch, n: int) -> None:
    """Ctrl-C arriving while an edit's files are written: the n-th PNG write raises."""
    from sound2img.manipulation import outputs

    real, calls = outputs.atomic_write_bytes, []

    def write(path, data):
        calls.append(path)
        if len(calls) == n:
            raise KeyboardInterrupt
        real(path, data)

    monkeypatch.setattr(outputs, "atomic_write_bytes", write)


@pytest.mark.parametrize("existing", [False, True], ids=["new_out", "overwrite"])
def test_ctrl_c_while_an_edit_is_written(existing, tmp_path, capsys, monkeypatch):
    """New --out: nothing appears. --overwrite of an old edit: its metrics.json (the mark of
    a complete edit) is gone, every file left parses, no temporaries."""
    out = tmp_path / "edit"
    args = ["--audio", "tone:440", "--out", str(out), "--steps", "1", "preset=tiny", "progress=false"]
    if existing:
        assert script_main("manipulate.py")(args) == 0
        assert (out / "metrics.json").exists()
        args.append("--overwrite")
    capsys.readouterr()
    _interrupt_the_nth_write(monkeypatch, 2)
    assert script_main("manipulate.py")([*args[:1], "tone:880", *args[2:]]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"
    if existing:
        assert not (out / "metrics.json").exists() and check_complete_outputs(out) == 4
    else:
        assert not out.exists()
    assert temp_leftovers(tmp_path) == []
