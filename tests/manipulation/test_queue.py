"""``manipulate.py --jobs`` (the edit queue) with ``preset=tiny`` on CPU: a job equals the
single edit it describes, malformed job files are refused before anything is written, a
failed job does not stop the others, resume redoes only what is missing, and under
``torchrun`` (2 gloo ranks) every job runs once with the outputs of one process, also
after a rank was SIGKILLed mid-queue."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from sound2img.cli import run_cli, to_object
from sound2img.manipulation import command, queue, run
from sound2img.manipulation.outputs import EDIT_FILES

from helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
TINY = ["preset=tiny", "--steps", "2", "progress=false", "--device", "cpu"]


def _cfg(out: Path, jobs: Path, *argv):
    cfg, _ = command.compose_from_args([*TINY, "--out", str(out), "--jobs", str(jobs), *argv])
    return to_object(cfg)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _ledger(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "ledger.jsonl").read_text().splitlines()]


def _edit_dirs(d: Path) -> list[Path]:
    return [d] if (d / "metrics.json").exists() else sorted(s for s in d.iterdir() if s.is_dir())


def _pixels(path: Path) -> torch.Tensor:
    import numpy as np

    return torch.from_numpy(np.asarray(Image.open(path), dtype=np.int16))


def assert_same_outputs(a: Path, b: Path, ids) -> None:
    """Latents within 1e-5; PNGs within one grey level (quantised images of latents that
    agree to 1e-5)."""
    for jid in ids:
        da, db = _edit_dirs(a / jid), _edit_dirs(b / jid)
        assert [d.name for d in da] == [d.name for d in db], jid
        for x, y in zip(da, db):
            assert sorted(p.name for p in x.iterdir()) == sorted(p.name for p in y.iterdir())
            for f in x.glob("*.pt"):
                torch.testing.assert_close(
                    torch.load(f, weights_only=True), torch.load(y / f.name, weights_only=True), atol=1e-5, rtol=0
                )
            for f in ("source.png", "result.png", "strip.png"):
                assert int((_pixels(x / f) - _pixels(y / f)).abs().max()) <= 1, (jid, f)


# ---- malformed job files: exit 2, nothing written ------------------------------------
MALFORMED = [
    ("jobs.csv", "id,audio,colour\na,tone:440,red\n", "unknown column(s) 'colour'"),
    ("jobs.csv", "id,audio\na,tone:440\na,tone:300\n", "id 'a' repeats line 2"),
    ("jobs.csv", "id,audio\n", "no jobs in it"),
    ("jobs.jsonl", "\n\n", "no jobs in it"),
    ("jobs.csv", "id,audio,steps\na,tone:440,0\n", "manipulate.steps must be >= 1"),
    ("jobs.csv", "id,audio,lr\na,tone:440,fast\n", "lr must be a number"),
    ("jobs.csv", "id,audio,mode\na,tone:440,sideways\n", "edit.mode must be one of"),
    ("jobs.csv", "id,audio,seed\na,tone:440,1.5\n", "seed must be an integer"),
    ("jobs.csv", "id,audio\n../x,tone:440\n", "id must be"),
    ("jobs.csv", "audio\ntone:440\n", "id must be"),
    ("jobs.jsonl", '{"id": "a", "audio": "tone:440"}\n{"id": "b", "audio": \n', "line 2: not JSON"),
    ("jobs.jsonl", '["a"]\n', "expected a JSON object"),
    ("jobs.jsonl", '{"id": "a", "text": ["x", "y"], "mode": "latent_mix"}\n', "needs exactly one --audio"),
    ("jobs.txt", "id\na\n", "expected a .csv or .jsonl file"),
]


@pytest.mark.parametrize("name,text,message", MALFORMED)
def test_malformed_job_file_exits_2_and_writes_nothing(tmp_path, capsys, name, text, message):
    jobs = _write(tmp_path / name, text)
    before = sorted(tmp_path.rglob("*"))
    assert run_cli(command.main, [*TINY, "--out", str(tmp_path / "out"), "--jobs", str(jobs)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert sorted(tmp_path.rglob("*")) == before


def test_foreign_out_dir_is_refused(tmp_path, capsys):
    jobs = _write(tmp_path / "jobs.csv", "id,audio\na,tone:440\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    assert run_cli(command.main, [*TINY, "--out", str(tmp_path / "out"), "--jobs", str(jobs)]) == 2
    assert "has no ledger.jsonl" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mine.txt"]


# ---- one process ---------------------------------------------------------------------------
def test_job_equals_the_single_edit_and_resume_redoes_only_what_is_missing(tmp_path):
    jobs = _write(
        tmp_path / "jobs.csv",
        'id,audio,text,seed,steps,lambda_sim\nsnd,tone:440,,3,,\ntxt,,"a red car",4,3,0.01\ntwo,tone:300,,5|6,,\n',
    )
    out = tmp_path / "out"
    summary = queue.run_queue(_cfg(out, jobs, "--batch-size", "2"), str(jobs))
    assert summary.ok and (summary.done, summary.failed, summary.skipped) == (3, 0, 0)
    assert sorted(r["id"] for r in _ledger(out)) == ["snd", "two", "txt"]
    assert all(r["status"] == "done" and r["rank"] == 0 and r["seconds"] >= 0 for r in _ledger(out))
    rec = {r["id"]: r for r in _ledger(out)}
    assert set(rec["snd"]["metrics"]) == {"initial_cosine", "final_cosine"} and rec["two"]["metrics"]["edits"] == 2
    # each job's directory is what manipulate.py with that row's options writes into --out
    for jid, argv in (
        ("snd", ["--audio", "tone:440", "--seed", "3"]),
        ("txt", ["--text", "a red car", "--seed", "4", "--steps", "3", "--lambda-sim", "0.01"]),
        ("two", ["--audio", "tone:300", "--seed", "5", "--seed", "6"]),
    ):
        cfg, _ = command.compose_from_args([*TINY, "--out", str(tmp_path / "single" / jid), *argv])
        run.run_edit(to_object(cfg))
        assert_same_outputs(out, tmp_path / "single", [jid])
        for d in _edit_dirs(out / jid):
            assert sorted(p.name for p in d.iterdir()) == sorted(EDIT_FILES)
    m = json.loads((out / "txt" / "metrics.json").read_text())
    assert m["config"]["manipulate"]["steps"] == 3 and m["config"]["edit"]["text"] == ["a red car"]
    assert m["config"]["out"] == str(out / "txt") and len(m["losses"]["total"]) == 3

    # resume: complete jobs are skipped; an incomplete one and a killed write's leftover are redone
    kept = (out / "snd" / "metrics.json").stat().st_mtime_ns
    (out / "txt" / "metrics.json").unlink()
    (out / ".two.abcd1234.partial").mkdir()
    (out / ".two.abcd1234.partial" / "source.png").write_bytes(b"half")
    (out / "two" / "00_seed5_sound-tone300" / "result.png").unlink()
    again = queue.run_queue(_cfg(out, jobs, "--batch-size", "2"), str(jobs))
    assert again.ok and (again.done, again.skipped) == (3, 1)
    assert sorted(r["id"] for r in _ledger(out)[3:]) == ["two", "txt"]
    assert (out / "snd" / "metrics.json").stat().st_mtime_ns == kept
    assert not (out / ".two.abcd1234.partial").exists()
    assert queue.job_complete(out / "txt") and queue.job_complete(out / "two")
    assert_same_outputs(out, tmp_path / "single", ["txt", "two"])


def test_bad_rows_fail_alone_with_their_reason(tmp_path, capsys):
    torch.save(torch.randn(3, 7), tmp_path / "wrong_shape.pt")
    jobs = _write(
        tmp_path / "jobs.jsonl",
        "\n".join(
            json.dumps(r)
            for r in [
                {"id": "good1", "audio": "tone:440", "seed": 1},
                {"id": "nosound", "audio": str(tmp_path / "missing.wav"), "seed": 1},
                {"id": "badlatent", "text": "a boat", "latent": str(tmp_path / "wrong_shape.pt")},
                {"id": "good2", "text": ["a boat"], "seed": [2]},
            ]
        )
        + "\n",
    )
    out = tmp_path / "out"
    assert run_cli(command.main, [*TINY, "--out", str(out), "--jobs", str(jobs)]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"2 done, 2 failed, see {out / 'ledger.jsonl'}"
    rec = {r["id"]: r for r in _ledger(out)}
    assert {k: r["status"] for k, r in rec.items()} == {
        "good1": "done",
        "nosound": "failed",
        "badlatent": "failed",
        "good2": "done",
    }
    assert "missing.wav" in rec["nosound"]["reason"] and "wrong_shape.pt" in rec["badlatent"]["reason"]
    assert all("\n" not in r["reason"] for r in rec.values())
    assert sorted(p.name for p in out.iterdir()) == ["good1", "good2", "ledger.jsonl"]
    # a rerun retries the failed ones only, and fails the same way
    assert run_cli(command.main, [*TINY, "--out", str(out), "--jobs", str(jobs)]) == 1
    assert sorted(r["id"] for r in _ledger(out)[4:]) == ["badlatent", "nosound"]


# ---- torchrun: 2 gloo ranks -----------------------------------------------------------
def _jobs_14(path: Path) -> Path:
    """14 jobs of every kind: sounds, prompts, a latent file, mixes, two seeds in one job
    and two optimiser settings (two batch groups)."""
    rows = []
    for i in range(6):
        rows.append({"id": f"snd{i}", "audio": f"tone:{300 + 50 * i}", "seed": i})
        rows.append({"id": f"txt{i}", "text": f"prompt number {i}", "seed": 10 + i, "steps": 3})
    rows.append({"id": "mix", "audio": "tone:440", "text": "a red car", "mode": "latent_mix", "seed": 7})
    rows.append({"id": "pair", "audio": "tone:500", "text": "a red car", "mode": "embedding_mix", "seed": [8, 9]})
    return _write(path, "\n".join(json.dumps(r) for r in rows) + "\n")


def _torchrun(jobs: Path, out: Path, **env) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        str(ROOT / "scripts" / "manipulate.py"),
        "--jobs",
        str(jobs),
        "--out",
        str(out),
        "--batch-size",
        "2",
        *TINY,
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "SOUND2IMG_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        **env,
    }
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The 14 jobs in one process."""
    tmp = tmp_path_factory.mktemp("reference")
    jobs = _jobs_14(tmp / "jobs.jsonl")
    summary = queue.run_queue(_cfg(tmp / "out", jobs, "--batch-size", "2"), str(jobs))
    assert summary.ok and summary.done == 14
    return tmp / "out", [r["id"] for r in map(json.loads, jobs.read_text().splitlines())]


@pytest.mark.slow  # ~1 min: two Python processes start, build the tiny networks and run 14 edits
def test_two_ranks_run_each_job_once_with_the_outputs_of_one_process(tmp_path, reference):
    ref, ids = reference
    jobs = _jobs_14(tmp_path / "jobs.jsonl")
    proc = _torchrun(jobs, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"14 done, 0 failed, see {tmp_path / 'out' / 'ledger.jsonl'}" in proc.stdout
    ledger = _ledger(tmp_path / "out")
    assert sorted(r["id"] for r in ledger) == sorted(ids)  # each job exactly once
    assert all(r["status"] == "done" for r in ledger)
    per_rank = {rank: sum(r["rank"] == rank for r in ledger) for rank in (0, 1)}
    assert per_rank == {0: 7, 1: 7}
    assert_same_outputs(ref, tmp_path / "out", ids)


@pytest.mark.slow  # ~2 min: two torchrun launches
def test_sigkilled_rank_then_rerun_finishes_only_the_missing_jobs(tmp_path, reference):
    ref, ids = reference
    jobs = _jobs_14(tmp_path / "jobs.jsonl")
    out = tmp_path / "out"
    # rank 1 SIGKILLs itself after its 3rd finished job (deterministic; torchrun then stops rank 0)
    first = _torchrun(jobs, out, **{queue.KILL_HOOK_ENV: "1:3"})
    assert first.returncode != 0
    complete = {j for j in ids if queue.job_complete(out / j)}
    assert 3 <= len(complete) < 14
    assert sum(r["rank"] == 1 for r in _ledger(out)) == 3
    stamps = {j: (_edit_dirs(out / j)[0] / "metrics.json").stat().st_mtime_ns for j in complete}
    n_before = len(_ledger(out))

    second = _torchrun(jobs, out)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "14 done, 0 failed" in second.stdout
    new = _ledger(out)[n_before:]
    # done lines for exactly the jobs not complete before (a job finished but not yet
    # recorded when the kill came is recorded as found complete)
    redone = sorted(r["id"] for r in new if r["reason"] != "found complete on disk")
    assert sorted(redone + [r["id"] for r in new if r["reason"] == "found complete on disk"]) == sorted(
        set(ids) - {r["id"] for r in _ledger(out)[:n_before]}
    )
    assert set(redone) == set(ids) - complete
    for j, stamp in stamps.items():  # complete jobs were not touched
        assert (_edit_dirs(out / j)[0] / "metrics.json").stat().st_mtime_ns == stamp
    assert all(queue.job_complete(out / j) for j in ids)
    assert not [p for p in out.iterdir() if p.name.endswith(".partial")]
    assert_same_outputs(ref, out, ids)


def test_batches_hold_compatible_jobs_up_to_the_batch_size(tmp_path):
    base = _cfg(tmp_path / "out", tmp_path / "jobs.csv")
    rows = [
        {"id": "a", "audio": "tone:300"},
        {"id": "b", "text": "x", "steps": 5},
        {"id": "c", "audio": "tone:400"},
        {"id": "d", "audio": "tone:400", "text": "y"},
        {"id": "e", "text": "z"},
        {"id": "f", "text": "w", "steps": 5},
        {"id": "g", "audio": "tone:500", "text": "v", "mode": "embedding_mix", "seed": [1, 2, 3]},
    ]
    jobs = queue.parse_jobs(list(enumerate(rows, start=1)), base)
    assert [queue.pairs_per_job(j.o) for j in jobs] == [1, 1, 1, 2, 1, 1, 3]
    plan = [[j.id for j in b] for b in queue.plan_batches(jobs, 3)]
    # steps=2 (a, c, d, e, g) and steps=5 (b, f) never share a batch; cut at >= 3 pairs
    assert sorted(plan) == sorted([["a", "c", "d"], ["e", "g"], ["b", "f"]])
    assert [[j.id for j in b] for b in queue.plan_batches(jobs, 1)] == [[x] for y in plan for x in y]


@pytest.mark.slow  # ~30 s: two Python processes start and build the tiny networks
def test_a_failed_job_under_torchrun_is_one_failure_with_the_summary(tmp_path):
    """Exit status 1 and the summary line once; torchrun's own report (its traceback cannot be
    kept quiet) names rank 0 as the root cause, with the summary in place of a pointer to its
    documentation (rank 1 exits 0: whether it is gone before torchrun sees rank 0's status is
    up to the scheduler, so the report's other failures are not checked)."""
    jobs = _write(tmp_path / "jobs.csv", "id,audio\nok,tone:440\nbad,missing.wav\n")
    proc = _torchrun(jobs, tmp_path / "out")
    summary = f"1 done, 1 failed, see {tmp_path / 'out' / 'ledger.jsonl'}"
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr.count(summary) == 2  # the rank's line, then torchrun's report quoting it
    report = proc.stderr.split("Root Cause (first observed failure):")[1]
    assert "rank      : 0 (local_rank: 0)" in report and f"traceback : {summary}" in report
    assert "exitcode  : 1 " in report
