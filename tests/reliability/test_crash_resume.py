"""Crash and resume: ``scripts/train_encoder.py preset=tiny`` SIGKILLed at seeded random
points (between steps, inside a checkpoint's temporary write, after its rename but before
its digest), with the newest checkpoint then torn, resumes to exactly the weights and
metrics of an uninterrupted run."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
import warnings
from pathlib import Path

import pytest
import torch

from sound2img.errors import CheckpointError
from sound2img.training.checkpoint import (
    TEST_DELAY_ENV,
    checkpoint_path,
    list_checkpoints,
    load_latest_training_state,
    save_training_state,
)

from .helpers import script_cmd, script_env, temp_leftovers
from .payloads import write_malicious

# 32 synthetic clips, batch 16: 2 steps per epoch, 6 epochs, a checkpoint every 2 steps
# (and at each epoch end), zero-shot validation each epoch (so encoder_best is written too),
# on the CPU (bitwise-exact replay is promised there; CUDA kernels may not be deterministic).
TRAIN = [
    "--device",
    "cpu",
    "preset=tiny",
    "tiny_run.data.num_per_class=4",
    "tiny_run.train.epochs=6",
    "tiny_run.train.max_steps=12",
    "tiny_run.train.checkpoint_every=2",
    "train.keep_checkpoints=3",
    "train.progress=false",
]
TOTAL_STEPS = 12
POLL_S = 0.02
CHECKPOINT_DELAY_S = "1.5"


# ---- fast: the library pieces -------------------------------------------------------------


def test_torn_newest_checkpoint_falls_back_to_the_previous(tmp_path):
    for step in (2, 4, 6):
        save_training_state(tmp_path, step, {"step": step, "w": torch.full((64,), float(step))})
    newest = checkpoint_path(tmp_path, 6)
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # torn; its digest stays
    with pytest.warns(UserWarning, match="corrupt checkpoint"):
        state, path = load_latest_training_state(tmp_path)
    assert (
        path == checkpoint_path(tmp_path, 4) and state["step"] == 4 and torch.equal(state["w"], torch.full((64,), 4.0))
    )
    # renamed but never digested (killed between the two): incomplete, skipped as well
    checkpoint_path(tmp_path, 4).with_name("state-000000004.pt.sha256").unlink()
    with pytest.warns(UserWarning) as caught:
        assert load_latest_training_state(tmp_path)[0]["step"] == 2
    messages = [str(w.message) for w in caught]
    assert any("state-000000006.pt: corrupt" in m for m in messages)
    assert any("state-000000004.pt: incomplete" in m for m in messages)


def test_resume_never_unpickles_a_planted_checkpoint(tmp_path):
    """A code-running file with a matching digest in checkpoints/: refused, marker absent."""
    m = write_malicious(tmp_path / "files", "state", "exec", "torch_zip")
    path = checkpoint_path(tmp_path / "checkpoints", 8)
    path.parent.mkdir()
    path.write_bytes(m.path.read_bytes())
    save_training_state(tmp_path / "checkpoints", 2, {"step": 2})
    (tmp_path / "checkpoints" / "state-000000008.pt.sha256").write_text(
        __import__("hashlib").sha256(path.read_bytes()).hexdigest() + "\n"
    )
    with pytest.warns(UserWarning, match="refused"):
        state, used = load_latest_training_state(tmp_path / "checkpoints")
    assert state["step"] == 2 and used.name == "state-000000002.pt" and not m.marker.exists()
    checkpoint_path(tmp_path / "checkpoints", 2).unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CheckpointError, match="none of the 1 checkpoint"):
            load_latest_training_state(tmp_path / "checkpoints")
    assert not m.marker.exists()


def test_stale_temporaries_of_a_killed_write_are_removed(tmp_path):
    stale = tmp_path / ".state-000000004.pt.deadbeef.tmp"
    stale.write_bytes(b"half a checkpoint")
    digest_stale = tmp_path / ".state-000000004.pt.sha256.0badcafe.tmp"
    digest_stale.write_text("half a digest")
    save_training_state(tmp_path, 4, {"step": 4})
    assert not stale.exists() and not digest_stale.exists()
    assert [p.name for p in tmp_path.iterdir()] and temp_leftovers(tmp_path) == []


# ---- slow: the script, killed ------------------------------------------------------------


def _records(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass  # a record being appended right now
    return out


def _wait_then_kill(proc: subprocess.Popen, condition, what: str, timeout: float = 400) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            proc.err_file.seek(0)
            pytest.fail(f"the run ended (exit {proc.returncode}) before {what}:\n{proc.err_file.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(POLL_S)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.err_file.close()
    assert proc.returncode == -signal.SIGKILL


def _start(run: Path, cwd: Path, resume: bool, delay: bool) -> tuple[subprocess.Popen, int]:
    env = script_env(cwd, **({TEST_DELAY_ENV: CHECKPOINT_DELAY_S} if delay else {}))
    args = ["--out", str(run), *(["--resume"] if resume else []), *TRAIN]
    since = time.time_ns() - 10**8  # file systems round mtimes; nothing older than the start counts
    # stderr to a file: a pipe nobody reads could fill and stall the child
    err = open(cwd / f"stderr-{since}.txt", "w+")
    proc = subprocess.Popen(
        script_cmd("train_encoder.py", args), cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True
    )
    proc.err_file = err
    return proc, since


def _complete(run: Path) -> list[int]:
    return [
        int(p.name[6:15]) for p in list_checkpoints(run / "checkpoints") if p.with_name(p.name + ".sha256").exists()
    ]


def _new(path: Path, since_ns: int) -> bool:
    """``path`` exists and was written by this process (not left by an earlier kill)."""
    try:
        return path.stat().st_mtime_ns >= since_ns
    except FileNotFoundError:
        return False


def _kill_between_steps(run, proc, since_ns, at_step):
    def reached():  # after a resume, the log is first trimmed (rewritten): older records do not count
        return _new(run / "metrics.jsonl", since_ns) and any(
            r.get("step", 0) >= at_step and "loss" in r for r in _records(run)
        )

    _wait_then_kill(proc, reached, f"step {at_step}")
    return f"SIGKILL after step {at_step}"


def _kill_in_temp_write(run, proc, since_ns, at_step):
    ckpt = run / "checkpoints"

    def writing():
        return ckpt.is_dir() and any(
            p.name.startswith(".state-")
            and p.name.endswith(".tmp")
            and int(p.name[7:16]) >= at_step
            and _new(p, since_ns)
            for p in ckpt.iterdir()
        )

    _wait_then_kill(proc, writing, f"the checkpoint write of step >= {at_step}")
    assert temp_leftovers(ckpt), "the kill must land inside the write"
    return f"SIGKILL inside the temporary write of a checkpoint (step >= {at_step})"


def _kill_before_digest(run, proc, since_ns, at_step):
    ckpt = run / "checkpoints"

    def undigested():
        return any(
            int(p.name[6:15]) >= at_step and _new(p, since_ns) and not p.with_name(p.name + ".sha256").exists()
            for p in list_checkpoints(ckpt)
        )

    _wait_then_kill(proc, undigested, f"a renamed, undigested checkpoint of step >= {at_step}")
    return f"SIGKILL between a checkpoint's rename and its digest (step >= {at_step})"


KILLS = {
    "between_steps": (_kill_between_steps, False),
    "temp_write": (_kill_in_temp_write, True),
    "before_digest": (_kill_before_digest, True),
}


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """The uninterrupted run (a child process, as the interrupted ones)."""
    cwd = tmp_path_factory.mktemp("reference")
    proc = subprocess.run(
        script_cmd("train_encoder.py", ["--out", str(cwd / "run"), *TRAIN]),
        cwd=cwd,
        env=script_env(cwd),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd / "run"


def _same_run(run: Path, ref: Path) -> None:
    from safetensors.torch import load_file

    for name in ("encoder_final.safetensors", "encoder_best.safetensors"):
        got, want = load_file(str(run / name)), load_file(str(ref / name))
        assert got.keys() == want.keys()
        bad = [k for k in want if not torch.equal(got[k], want[k])]
        assert bad == [], f"{name}: {len(bad)} tensors differ, e.g. {bad[:3]}"
    timing = {"samples_per_s"}
    got = [{k: v for k, v in r.items() if k not in timing} for r in _records(run)]
    want = [{k: v for k, v in r.items() if k not in timing} for r in _records(ref)]
    assert got == want  # every step's losses, lr, temperature and validation: one uninterrupted run


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_killed_runs_resume_to_the_uninterrupted_weights(seed, reference_run, tmp_path):
    """Seeded random kill points: two kills of different kinds, then the newest complete
    checkpoint torn; the final resume must equal the uninterrupted run exactly."""
    rng = random.Random(seed)
    run = tmp_path / "run"
    kinds = rng.sample(sorted(KILLS), 2)
    # the first kill early (steps 1-4), the second at steps 6-9: by then at least two
    # complete checkpoints exist, so the torn newest one has a previous one to fall back to
    steps = [rng.randint(1, 4), rng.randint(6, 9)]
    faults = []
    for i, (kind, at_step) in enumerate(zip(kinds, steps)):
        kill, delay = KILLS[kind]
        proc, since = _start(run, tmp_path, resume=i > 0, delay=delay)
        faults.append(kill(run, proc, since, at_step))
    assert len(_complete(run)) >= 2, faults
    # tear the newest complete checkpoint (e.g. a disk that lost the end of it)
    newest = checkpoint_path(run / "checkpoints", _complete(run)[-1])
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 3])
    faults.append(f"torn {newest.name}")

    proc = subprocess.run(
        script_cmd("train_encoder.py", ["--out", str(run), "--resume", *TRAIN]),
        cwd=tmp_path,
        env=script_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"trained {TOTAL_STEPS} steps" in proc.stdout
    assert "skipping checkpoint" in proc.stderr and newest.name in proc.stderr and "sha256" in proc.stderr
    _same_run(run, reference_run)
    assert temp_leftovers(run) == [], faults
    print(f"seed {seed}: " + "; ".join(faults))
