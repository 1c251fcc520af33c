"""Training on WebDataset shards: the loop takes the same number of steps on every rank
from a stream, two real gloo ranks with two workers each read every sample exactly once
per epoch, and a broken shard stops train_encoder.py in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from sound2img.data import build_dataset
from sound2img.data.prepare import prepare_shards
from sound2img.data.shards import ShardDataset
from sound2img.training.loop import training_loop
from sound2img.training.metrics import read_metrics

from helpers.training import OPTIM, TRAIN, loss_options

ROOT = Path(__file__).resolve().parents[2]


def make_shards(out: Path, num_per_class: int = 8, shard_size: int = 5) -> tuple[str, int]:
    src = build_dataset("synthetic", num_classes=8, num_per_class=num_per_class, sample_rate=8000, num_samples=8000)
    index = prepare_shards(src, out, settings={}, shard_size=shard_size)
    return str(out / f"{{000000..{index['num_shards'] - 1:06d}}}.tar"), len(src)


def test_loop_trains_on_shards(tiny_task, tmp_path):
    urls, n = make_shards(tmp_path / "shards")  # 64 samples in 13 shards (the last of 4)
    train = ShardDataset(urls, sample_rate=8000, shuffle_buffer=8)
    out = training_loop(
        tmp_path / "run",
        tiny_task.encoder(),
        tiny_task.frontend(),
        train,
        clip=tiny_task.clip(),
        loss=loss_options(at=1.0, aa=1.0),
        optim=OPTIM,
        train=replace(TRAIN, batch_size=16, epochs=2, num_workers=0, log_every=1),
        seed=1,
        device="cpu",
    )
    assert out["step"] == 2 * (n // 16)
    records = [r for r in read_metrics(tmp_path / "run") if "loss" in r]
    assert len(records) == out["step"] and all(r["data_skipped"] == 0 for r in records)


@pytest.mark.slow  # two torchrun processes, each with two DataLoader workers
def test_two_ranks_two_workers_read_each_sample_once_per_epoch(tmp_path):
    urls, n = make_shards(tmp_path / "shards", num_per_class=6, shard_size=5)  # 48 samples, 10 shards
    out = tmp_path / "seen.json"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(ROOT / "tests" / "training" / "shard_ranks.py"),
        urls,
        str(tmp_path / "run"),
        str(out),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = json.loads(out.read_text())
    assert [r["rank"] for r in ranks] == [0, 1]
    for epoch in ("0", "1"):
        parts = [r["seen"][epoch] for r in ranks]
        assert all(parts) and sorted(parts[0] + parts[1]) == list(range(n))  # disjoint, complete
    assert ranks[0]["seen"]["0"] != ranks[0]["seen"]["1"]  # reshuffled per epoch
    assert ranks[0]["steps"] == ranks[1]["steps"] == ranks[0]["quota"] // 2 >= 1


@pytest.mark.slow  # starts train_encoder.py
def test_broken_shard_stops_training_in_one_line(tmp_path):
    urls, _n = make_shards(tmp_path / "shards", num_per_class=2, shard_size=4)
    shard = tmp_path / "shards" / "000001.tar"
    shard.write_bytes(shard.read_bytes()[:700])
    cmd = [
        sys.executable,
        str(ROOT / "scripts" / "train_encoder.py"),
        "--out",
        str(tmp_path / "run"),
        "--device",
        "cpu",
        "audio.sample_rate=8000",
        "audio.f_max=4000",
        "clip=tiny",
        "encoder=tiny",
        "data=shards",
        f"data.urls='{urls}'",
        "data.max_skip_fraction=0",
        "validation.data=null",
        "loss.terms.av=0",
        "train.batch_size=4",
        "train.num_workers=0",
        "train.progress=false",
        "train.clip_seconds=1",
    ]
    done = subprocess.run(
        cmd, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 2, done.stderr[-2000:]
    err = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "000001.tar" in err[0] and "max_skip_fraction" in err[0]
    assert "Traceback" not in done.stderr
