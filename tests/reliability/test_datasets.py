"""Corrupt datasets: the bad-input corpus, missing files and bad rows as rows of a
training manifest (``train_encoder.py preset=tiny``) and of tiny ESC-50 / UrbanSound8K
trees (``reproduce.py zeroshot preset=tiny``). Within ``max_skip_fraction`` every bad
sample is skipped and counted (log lines, metrics, report); past it the run stops with one
line, exit 2, and leaves no output behind."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from evaluation.conftest import write_esc50, write_us8k

from sound2img.cli import run_cli
from sound2img.evaluation.command import main as reproduce_main
from sound2img.training.run import train_encoder_cli

from .corpus import INVALID, VALID
from .helpers import assert_success, check_complete_outputs, error_lines, run_script, temp_leftovers

MISSING = ("gone/missing one.wav", "missing_two.flac")


def _assert_exit_2(proc, *fragments):
    """Exit 2; the last stderr line is the one error line (log lines about skipped
    samples may precede it); no traceback."""
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr[-3000:]
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[-1], (fragment, lines[-1])


def _in_process(fn, argv, capfd):
    status = run_cli(fn, argv)
    captured = capfd.readouterr()  # fd-level: DataLoader workers write to the same stderr
    return subprocess.CompletedProcess(argv, status, captured.out, captured.err)


# ---- training: a manifest ---------------------------------------------------------------


def write_manifest(path: Path, corpus, hour_file) -> dict[str, int]:
    """Rows: every corpus file, the 1-hour file, two missing files (relative paths), a
    row without audio and one without text. Returns the expected counts."""
    rows = [[str(corpus[name].path), f"sound {i % 3}"] for i, name in enumerate(VALID + INVALID)]
    rows += [
        [str(hour_file), "a long hum"],
        *([m, "gone"] for m in MISSING),
        ["", "no audio"],
        [str(corpus["silence"].path), ""],
    ]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["audio", "text"])
        w.writerows(rows)
    return {"rows": len(rows), "bad_rows": 2, "unreadable": len(INVALID) + len(MISSING), "records": len(rows) - 2}


def _train_args(run: Path, manifest: Path, records: int, max_skip: float, workers: int = 2) -> list[str]:
    # one epoch whose batches cover every record, so each bad one is met exactly once
    return [
        "--out",
        str(run),
        "preset=tiny",
        "data=manifest",
        f"data.manifest={manifest}",
        "tiny_run.data=${data}",
        f"data.max_skip_fraction={max_skip}",
        "train.clip_seconds=1.0",
        "loss.terms.av=0",
        "validation.data=null",
        "train.progress=false",
        f"tiny_run.train.batch_size={records // 3}",
        "tiny_run.train.epochs=1",
        "tiny_run.train.max_steps=3",
        "tiny_run.train.checkpoint_every=3",
        f"tiny_run.train.num_workers={workers}",
    ]


@pytest.fixture(scope="module")
def manifest(corpus, hour_file, tmp_path_factory):
    path = tmp_path_factory.mktemp("manifest") / "train.csv"
    counts = write_manifest(path, corpus, hour_file)
    assert counts["records"] % 3 == 0
    return path, counts


@pytest.mark.parametrize("runner", ["in_process", pytest.param("subprocess", marks=pytest.mark.slow)])
def test_training_skips_and_counts_bad_rows_and_files(runner, manifest, corpus, tmp_path, capfd, caplog):
    """Every bad row and file is logged once as it is skipped, and metrics.jsonl counts
    them. The child process reads with 2 DataLoader workers (the count is shared); in
    process, pytest's log capture cannot see forked workers, so it reads in the process."""
    path, counts = manifest
    run = tmp_path / "run"
    if runner == "subprocess":
        proc = run_script("train_encoder.py", _train_args(run, path, counts["records"], 0.5), cwd=tmp_path)
        log = error_lines(proc.stderr)
    else:
        proc = _in_process(train_encoder_cli, _train_args(run, path, counts["records"], 0.5, workers=0), capfd)
        log = [r.getMessage() for r in caplog.records if r.name == "sound2img.data.base"]
    assert_success(proc)
    assert "trained 3 steps" in proc.stdout
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 3
    assert records[-1]["data_skipped"] == counts["bad_rows"] + counts["unreadable"]  # 2 rows + 11 files
    assert sum(f"{counts['bad_rows']} bad metadata row(s) skipped" in line for line in log) >= 1
    skipped = [line for line in log if "skipped an unreadable sample" in line]
    # every bad file is logged; two workers that meet the same file at once may both log it
    named = {
        name
        for name in INVALID
        if any(str(corpus[name].path) in line and corpus[name].error in line for line in skipped)
    }
    named |= {m for m in MISSING if any(str(path.parent / m) in line and "no such file" in line for line in skipped)}
    assert named == {*INVALID, *MISSING}
    assert counts["unreadable"] <= len(skipped) <= 2 * counts["unreadable"]  # at most once per worker
    assert check_complete_outputs(run) >= 3 and temp_leftovers(run) == []


@pytest.mark.parametrize("runner", ["in_process", pytest.param("subprocess", marks=pytest.mark.slow)])
@pytest.mark.parametrize("max_skip,when", [(0.2, "while reading"), (0.05, "at the manifest")])
def test_training_stops_past_the_skip_fraction(max_skip, when, runner, manifest, tmp_path, capfd):
    """0.2: the two bad rows pass, the unreadable files cross it during the epoch (in a
    DataLoader worker); 0.05: the bad rows alone cross it. One line, exit 2, and the run
    directory does not exist afterwards (nothing to resume: it is removed)."""
    path, counts = manifest
    run = tmp_path / "run"
    argv = _train_args(run, path, counts["records"], max_skip=max_skip)
    proc = (
        run_script("train_encoder.py", argv, cwd=tmp_path)
        if runner == "subprocess"
        else _in_process(train_encoder_cli, argv, capfd)
    )
    _assert_exit_2(proc, "manifest:", "samples unreadable", f"max_skip_fraction {max_skip:.1%}")
    if when == "at the manifest":
        assert f"{counts['bad_rows']} of {counts['rows']} samples unreadable" in proc.stderr
    assert not run.exists() and temp_leftovers(tmp_path) == []


# ---- evaluation: ESC-50 and UrbanSound8K trees -----------------------------------------


def _corpus_into(audio_dir: Path, corpus, hour_file) -> list[str]:
    names = []
    for name in VALID + INVALID:
        src = corpus[name].path
        shutil.copyfile(src, audio_dir / src.name)
        names.append(src.name)
    os.symlink(hour_file, audio_dir / hour_file.name)
    return names + [hour_file.name]


@pytest.fixture(scope="module")
def eval_roots(corpus, hour_file, tmp_path_factory):
    """ESC-50 and US8K trees (the evaluation tests' writers), plus in fold 1 every corpus
    file, the hour, two missing files, and two rows the readers reject."""
    esc = write_esc50(tmp_path_factory.mktemp("ESC-50-master"))
    names = _corpus_into(esc / "audio", corpus, hour_file) + ["missing-1.wav", "missing-2.wav"]
    with open(esc / "meta" / "esc50.csv", "a", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerows([n, 1, 0, "dog", "False", 1, "A"] for n in names)
        w.writerows(
            [["bad-fold.wav", "x", 0, "dog", "False", 1, "A"], ["bad-target.wav", 1, 77, "cat", "False", 1, "A"]]
        )
    us8k = write_us8k(tmp_path_factory.mktemp("UrbanSound8K"))
    names = _corpus_into(us8k / "audio" / "fold1", corpus, hour_file) + ["missing-1.wav", "missing-2.wav"]
    with open(us8k / "metadata" / "UrbanSound8K.csv", "a", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerows([n, 1, 0.0, 1.0, 1, 1, 1, "car_horn"] for n in names)
        w.writerows(
            [["bad-fold.wav", 1, 0.0, 1.0, 1, "x", 1, "car_horn"], ["bad-class.wav", 1, 0.0, 1.0, 1, 1, 3, "siren"]]
        )
    return esc, us8k


def _reproduce_args(roots, out: Path, max_skip: float | None) -> list[str]:
    esc, us8k = roots
    args = [
        "zeroshot",
        "preset=tiny",
        "progress=false",
        f"datasets.esc50.root={esc}",
        f"datasets.us8k.root={us8k}",
        "--out",
        str(out),
    ]
    if max_skip is not None:
        args += [f"datasets.esc50.max_skip_fraction={max_skip}", f"datasets.us8k.max_skip_fraction={max_skip}"]
    return args


@pytest.mark.parametrize("runner", ["in_process", pytest.param("subprocess", marks=pytest.mark.slow)])
def test_zero_shot_readers_skip_and_count(runner, eval_roots, tmp_path, capfd):
    out = tmp_path / "out"
    argv = _reproduce_args(eval_roots, out, max_skip=0.5)
    proc = (
        run_script("reproduce.py", argv, cwd=tmp_path)
        if runner == "subprocess"
        else _in_process(reproduce_main, argv, capfd)
    )
    assert_success(proc)
    data = json.loads((out / "zeroshot.json").read_text())
    unreadable = len(INVALID) + 2
    readable_extra = len(VALID) + 1  # the corpus' valid files and the hour
    assert data["ours"]["esc50"]["n"] == 40 + readable_extra  # the 40 tone clips of the tree
    assert data["ours"]["us8k"]["n"] == 30 + readable_extra
    for name in ("esc50", "us8k"):
        assert f"{unreadable} unreadable clips left out" in data["ours"][name]["data"]
    md = (out / "zeroshot.md").read_text()
    assert md.count(f"{unreadable} unreadable clips left out") == 2
    assert check_complete_outputs(out) == 1 and temp_leftovers(tmp_path) == []


@pytest.mark.parametrize("runner", ["in_process", pytest.param("subprocess", marks=pytest.mark.slow)])
@pytest.mark.parametrize("max_skip", [0.2, None])
def test_zero_shot_readers_stop_past_the_skip_fraction(max_skip, runner, eval_roots, tmp_path, capfd):
    """0.2: crossed while fold 1 is read (in DataLoader workers); the default 5 %: by
    the two rejected rows already."""
    out = tmp_path / "out"
    argv = _reproduce_args(eval_roots, out, max_skip=max_skip)
    proc = (
        run_script("reproduce.py", argv, cwd=tmp_path)
        if runner == "subprocess"
        else _in_process(reproduce_main, argv, capfd)
    )
    _assert_exit_2(proc, "esc50:", "samples unreadable", f"max_skip_fraction {max_skip or 0.05:.1%}")
    if max_skip is None:
        assert "esc50: 2 of 37 samples unreadable" in proc.stderr  # fold 1: 35 records and the 2 rejected rows
    assert not out.exists() and temp_leftovers(tmp_path) == []
