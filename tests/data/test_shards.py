"""WebDataset shards: prepare_data.py on a generated VGGSound tree round-trips audio
(bit-exact 16-bit PCM), frames (JPEG tolerance), texts and skip reasons; shards are
complete or absent when the script is killed mid-shard and a rerun completes them;
reading splits shards over ranks and workers exactly once per epoch; broken shards are
skipped and counted, or stop the run in one line."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from sound2img.audio.io import load_audio
from sound2img.data import build_dataset
from sound2img.data.base import DatasetError
from sound2img.data.prepare import KILL_AFTER_ENV
from sound2img.data.shards import PCM_SCALE, ShardDataset, decode_audio, to_pcm16
from sound2img.data.streams import MixedStream, as_stream, round_robin_taken, split_for
from sound2img.data.video import read_middle_frame
from sound2img.utils.files import sha256_file

from helpers import load_file_module

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "prepare_data.py"
SR = 16000
COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40), (40, 220, 220), (160, 60, 200)]
LABELS = ["dog barking", "car_horn", "rain"]


def make_vggsound(root: Path, fx, n: int = 6) -> list[str]:
    """``n`` 1.5-s clips (5 fps frames, a 16-kHz tone per label) listed in vggsound.csv,
    plus one clip whose file is garbage and one never downloaded. Returns the good keys."""
    rows, keys = [], []
    for i in range(n):
        ytid, label = f"vid{i:03d}", LABELS[i % len(LABELS)]
        audio = fx.tone(300 + 150 * i, 1.5, SR) + 0.05 * np.random.default_rng(i).standard_normal(int(1.5 * SR))
        fx.write_mp4(
            root / "video" / f"{ytid}_000010.mp4",
            [COLOURS[(i + k) % 6] for k in range(8)],
            audio=audio.astype(np.float32) * 0.5,
            sr=SR,
        )
        rows.append([ytid, 10, label, "train"])
        keys.append(f"vggsound/{ytid}_000010")
    (root / "video" / "broken_000010.mp4").write_bytes(b"not an mp4 at all" * 50)
    rows += [["broken", 10, "rain", "train"], ["gone", 10, "rain", "train"]]
    with open(root / "vggsound.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return keys


def prepare_argv(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--out",
        str(out),
        "data=vggsound",
        f"data.root={root}",
        "clip_seconds=1.0",
        "--shard-size",
        "2",
        "progress=false",
        *extra,
    ]


@pytest.fixture
def prepared(tmp_path, fixtures):
    root, out = tmp_path / "vgg", tmp_path / "shards"
    keys = make_vggsound(root, fixtures)
    status = load_file_module(SCRIPT).main(prepare_argv(root, out))
    assert status == 0
    return root, out, keys


def read_all(ds: ShardDataset, epoch: int = 0) -> list[dict]:
    ds.start(epoch)
    return list(ds)


def test_round_trip_audio_frames_texts_and_skips(prepared):
    root, out, keys = prepared
    index = json.loads((out / "index.json").read_text())
    assert index["complete"] and index["num_shards"] == 4 and index["num_written"] == len(keys)
    assert index["num_missing"] == 1  # "gone": listed, never downloaded
    skipped = [s for shard in index["shards"] for s in shard["skipped"]]
    assert [s["key"] for s in skipped] == ["vggsound/broken_000010"] and index["num_skipped"] == 1
    assert "broken_000010.mp4" in skipped[0]["reason"]

    ds = ShardDataset(
        str(out / "{000000..000003}.tar"),
        sample_rate=SR,
        num_samples=SR,
        crop="center",
        templates=["{}"],
        shuffle_buffer=0,
        image_size=None,
    )
    items = read_all(ds)
    assert sorted(it["key"] for it in items) == sorted(keys)
    ref = build_dataset("vggsound", root=str(root), sample_rate=SR, num_samples=SR)
    by_key = {r.key: r for r in ref.records}
    offsets = {}
    for it in items:
        rec = by_key[it["key"]]
        full = load_audio(rec.audio, SR)
        offset = (full.shape[0] - SR) // 2
        assert offset > 0  # 1.5-s clips, 1-s crops: the stored crop is the centre one
        offsets[it["key"]] = offset / SR
        expected = torch.from_numpy(to_pcm16(full[offset : offset + SR].numpy()).astype(np.float32) / PCM_SCALE)
        assert torch.equal(it["wav"], expected)  # bit-exact after FLAC
        frame = read_middle_frame(rec.image).float()
        assert it["image"].shape == frame.shape
        assert (it["image"].float() - frame).abs().mean() < 3.0  # JPEG of solid colours
        assert it["text"] == rec.class_name == ref.class_names[it["label"]]
    with tarfile.open(out / "000000.tar") as tar:  # the text and json members as written
        names = tar.getnames()
        first = names[0].split(".")[0]
        assert {f"{first}.{ext}" for ext in ("flac", "jpg", "json", "txt")} <= set(names)
        meta = json.loads(tar.extractfile(f"{first}.json").read())
        assert tar.extractfile(f"{first}.txt").read().decode() == meta["class_name"]
        pcm, sr = decode_audio(tar.extractfile(f"{first}.flac").read())
        assert sr == SR and pcm.dtype == np.int16 and pcm.shape == (SR,)
        assert meta["offset_seconds"] == offsets[meta["key"]]

    # the same shards through WebDataset's pipe: opener, with the index named explicitly
    piped = ShardDataset(
        f"pipe:cat {out}/{{000000..000003}}.tar",
        index=str(out / "index.json"),
        sample_rate=SR,
        num_samples=SR,
        crop="center",
        shuffle_buffer=0,
    )
    assert sorted(it["key"] for it in read_all(piped)) == sorted(keys)


def test_prepare_refuses_other_settings_and_rerun_is_a_no_op(prepared, capsys):
    root, out, _keys = prepared
    digests = {p.name: sha256_file(p) for p in out.glob("*.tar")}
    script = load_file_module(SCRIPT)
    assert script.main(prepare_argv(root, out)) == 0  # resumes: nothing left to write
    assert {p.name: sha256_file(p) for p in out.glob("*.tar")} == digests
    capsys.readouterr()
    assert script.main(prepare_argv(root, out, "jpeg_quality=50")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "other settings" in err
    (out / "index.json").unlink()  # shard-named files that no index of ours describes
    assert script.main(prepare_argv(root, out)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--overwrite" in err
    assert {p.name: sha256_file(p) for p in out.glob("*.tar")} == digests


def test_split_null_prepares_both_splits(tmp_path, fixtures):
    """``data.split=null`` is documented as both splits: the test clip must be prepared
    too (the reader's default, train, applied when the null was dropped on the way)."""
    root = tmp_path / "vgg"
    make_vggsound(root, fixtures, n=3)
    rows = (root / "vggsound.csv").read_text().splitlines()
    rows[2] = rows[2].replace(",train", ",test")  # vid002: the test split
    (root / "vggsound.csv").write_text("\n".join(rows) + "\n")
    module = load_file_module(SCRIPT)
    counts = {}
    for split in ("null", "train", "test"):
        out = tmp_path / f"shards_{split}"
        assert module.main(prepare_argv(root, out, f"data.split={split}")) == 0
        index = json.loads((out / "index.json").read_text())
        counts[split] = index["num_written"]
    assert counts == {"null": 3, "train": 2, "test": 1}


@pytest.mark.slow  # CLIP towers + clips (~20-60 s on a loaded 2-core machine)
def test_prepare_can_fill_the_clip_embedding_cache(tmp_path, fixtures):
    from sound2img.data.embedding_cache import EmbeddingCache
    from sound2img.models.clip import build_clip

    root, out, cache = tmp_path / "vgg", tmp_path / "shards", tmp_path / "cache"
    keys = make_vggsound(root, fixtures, n=3)
    argv = prepare_argv(root, out, "clip=tiny", f"embedding_cache_dir={cache}", "--device", "cpu")
    assert load_file_module(SCRIPT).main(argv) == 0
    spec = build_clip("tiny").spec()
    stored = EmbeddingCache(cache, spec, spec.get("preprocess", "clip"))

    def must_not_encode(items):
        raise AssertionError(f"not cached: {items}")

    assert stored.get_images(keys, must_not_encode).shape == (3, 32)
    stream = ShardDataset(str(out / "{000000..000001}.tar"), sample_rate=SR)
    assert stored.get_text(stream.fixed_prompts(), must_not_encode).shape[0] == len(stream.fixed_prompts()) > 3


def test_split_is_disjoint_and_covers_every_epoch():
    for n in (1, 5, 12):
        for world in (1, 2, 3):
            for workers in (1, 2, 4):
                for epoch in (0, 1):
                    parts = [split_for(n, 7, epoch, r, world, w, workers) for r in range(world) for w in range(workers)]
                    flat = [i for p in parts for i in p]
                    assert sorted(flat) == list(range(n))
    assert split_for(12, 7, 0, 0, 1, 0, 1) != split_for(12, 7, 1, 0, 1, 0, 1)  # reshuffled per epoch
    assert split_for(12, 7, 1, 0, 1, 0, 1) == split_for(12, 7, 1, 0, 1, 0, 1)  # from the seed only


def test_epochs_reshuffle_and_resume_loses_nothing(tmp_path):
    out = tmp_path / "s"
    ds_src = build_dataset("synthetic", num_classes=4, num_per_class=6, sample_rate=8000, num_samples=800)
    from sound2img.data.prepare import prepare_shards

    prepare_shards(ds_src, out, settings={}, shard_size=3)
    ds = ShardDataset(str(out / "{000000..000007}.tar"), sample_rate=8000, shuffle_buffer=4)
    ds.plan(0, 1, seed=3)
    e0, e0_again, e1 = ([it["index"] for it in read_all(ds, e)] for e in (0, 0, 1))
    assert sorted(e0) == sorted(e1) == list(range(24)) and e0 == e0_again and e0 != e1
    # resume after 10 items of epoch 1: whole shards already delivered are skipped; what
    # the shuffle buffer never delivered is still read
    ds.shuffle_buffer = 0
    full = [it["index"] for it in read_all(ds, 1)]
    ds.start(1, skip=10)
    resumed = [it["index"] for it in ds]
    assert set(full[10:]) <= set(resumed) and len(resumed) < len(full)
    assert round_robin_taken(10, [6, 3, 9]) == [4, 3, 3] and round_robin_taken(0, [2]) == [0]


def test_parallel_prepare_writes_the_same_shards(tmp_path):
    from sound2img.data.prepare import prepare_shards

    src = build_dataset("synthetic", num_classes=4, num_per_class=4, sample_rate=8000, num_samples=800)
    one = prepare_shards(src, tmp_path / "one", settings={}, shard_size=3)
    two = prepare_shards(src, tmp_path / "two", settings={}, shard_size=3, workers=2)
    assert [(s["name"], s["sha256"], s["count"]) for s in one["shards"]] == [
        (s["name"], s["sha256"], s["count"]) for s in two["shards"]
    ]
    assert two["complete"] and two["num_written"] == 16 and len(two["shards"]) == 6


def test_mixed_with_a_file_reader_reads_each_item_once(tmp_path):
    from sound2img.data.prepare import prepare_shards

    a = build_dataset("synthetic", num_classes=4, num_per_class=3, sample_rate=8000, num_samples=800)
    b = build_dataset("synthetic", num_classes=4, num_per_class=2, sample_rate=8000, num_samples=800, split="test")
    prepare_shards(a, tmp_path, settings={}, shard_size=4)
    shards = ShardDataset(str(tmp_path / "{000000..000002}.tar"), sample_rate=8000, shuffle_buffer=0)
    mixed = MixedStream([shards, as_stream(b)])
    for rank in range(2):
        mixed.plan(rank, 2, seed=1)
    seen = []
    for rank in range(2):
        mixed.plan(rank, 2, seed=1)
        mixed.start(0)
        seen += [it["key"] for it in mixed]
    assert sorted(seen) == sorted([r.key for r in a.records] + [r.key for r in b.records])
    assert mixed.rank_quota(2) == shards.rank_quota(2) + len(b) // 2

    # two prepared sets in one reader: each directory's own index, labels over the union of classes
    prepare_shards(b, tmp_path / "b", settings={}, shard_size=4)
    both = ShardDataset(
        f"{tmp_path}/{{000000..000002}}.tar::{tmp_path}/b/{{000000..000001}}.tar", sample_rate=8000, shuffle_buffer=0
    )
    items = read_all(both)
    assert sorted(it["key"] for it in items) == sorted([r.key for r in a.records] + [r.key for r in b.records])
    assert all(both.class_names[it["label"]] == it["class_name"] for it in items)


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:  # garbage over the middle, headers included
        mid = len(data) // 3
        path.write_bytes(data[:mid] + os.urandom(len(data) // 3) + data[2 * mid :])


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_broken_shard_is_skipped_and_counted(tmp_path, how, caplog):
    from sound2img.data.prepare import prepare_shards

    src = build_dataset("synthetic", num_classes=4, num_per_class=5, sample_rate=8000, num_samples=4000)
    prepare_shards(src, tmp_path, settings={}, shard_size=5)
    damage(tmp_path / "000001.tar", how)
    ds = ShardDataset(str(tmp_path / "{000000..000003}.tar"), sample_rate=8000, shuffle_buffer=0, max_skip_fraction=0.5)
    items = read_all(ds)
    assert 15 <= len(items) < 20 and ds.num_skipped == 20 - len(items)
    warnings = [r.getMessage() for r in caplog.records if "000001.tar" in r.getMessage()]
    assert warnings and all("\n" not in w for w in warnings)
    again = read_all(ds, 1)  # the same shard in the next epoch is not counted twice
    assert len(again) == len(items) and ds.num_skipped == 20 - len(items)
    strict = ShardDataset(
        str(tmp_path / "{000000..000003}.tar"), sample_rate=8000, shuffle_buffer=0, max_skip_fraction=0.0
    )
    with pytest.raises(DatasetError, match=r"000001\.tar.*max_skip_fraction|max_skip_fraction.*000001\.tar"):
        read_all(strict)


@pytest.mark.slow  # two Python processes (~15 s)
def test_killed_mid_shard_leaves_no_partial_shard_and_rerun_completes(tmp_path, fixtures):
    root, out = tmp_path / "vgg", tmp_path / "shards"
    make_vggsound(root, fixtures, n=5)
    cmd = [sys.executable, str(SCRIPT), *prepare_argv(root, out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), KILL_AFTER_ENV: "3"}
    killed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    index = json.loads((out / "index.json").read_text())
    assert not index["complete"] and [s["name"] for s in index["shards"]] == ["000000.tar"]
    assert sorted(p.name for p in out.glob("*.tar")) == ["000000.tar"]  # shard 1 was mid-write: absent
    assert list(out.glob(".000001.tar.*.tmp"))  # its temporary, never renamed
    first = (out / "000000.tar").stat().st_mtime_ns

    env.pop(KILL_AFTER_ENV)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    index = json.loads((out / "index.json").read_text())
    assert index["complete"] and not list(out.glob(".*.tmp"))
    assert (out / "000000.tar").stat().st_mtime_ns == first  # kept, not rewritten
    assert sorted(s["name"] for s in index["shards"]) == sorted(p.name for p in out.glob("*.tar"))
    for s in index["shards"]:
        path = out / s["name"]
        assert sha256_file(path) == s["sha256"] and path.stat().st_size == s["bytes"]
        with tarfile.open(path) as tar:
            assert len({n.split(".")[0] for n in tar.getnames()}) == s["count"]
    assert index["num_written"] == 5 and index["num_skipped"] == 1
    # deterministic: a fresh uninterrupted run writes the same bytes
    fresh = tmp_path / "fresh"
    assert load_file_module(SCRIPT).main(prepare_argv(root, fresh)) == 0
    assert {p.name: sha256_file(p) for p in fresh.glob("*.tar")} == {s["name"]: s["sha256"] for s in index["shards"]}
