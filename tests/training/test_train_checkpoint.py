"""Training-state files: atomic write + sha256, newest-readable fallback, pruning, RNG
states that round-trip through ``torch.load(weights_only=True)``; the resumable sampler."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from sound2img.errors import CheckpointError
from sound2img.training.batches import ResumableSampler
from sound2img.training.checkpoint import (
    capture_rng_state,
    list_checkpoints,
    load_latest_training_state,
    load_training_state,
    restore_rng_state,
    save_training_state,
)


def _state(step: int) -> dict:
    return {"step": step, "weights": torch.full((4,), float(step)), "note": f"s{step}"}


def test_keeps_last_k_and_reads_newest(tmp_path):
    for step in (10, 20, 30, 40):
        save_training_state(tmp_path, step, _state(step), keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["state-000000030.pt", "state-000000040.pt"]
    assert not (tmp_path / "state-000000010.pt.sha256").exists()
    state, path = load_latest_training_state(tmp_path)
    assert state["step"] == 40 and path.name == "state-000000040.pt"
    assert torch.equal(state["weights"], torch.full((4,), 40.0))


@pytest.mark.parametrize("damage", ["truncate", "flip", "no_digest"])
def test_corrupt_latest_falls_back_to_previous(tmp_path, damage):
    save_training_state(tmp_path, 1, _state(1))
    latest = save_training_state(tmp_path, 2, _state(2))
    data = latest.read_bytes()
    if damage == "truncate":  # a torn write
        latest.write_bytes(data[: len(data) // 2])
    elif damage == "flip":  # silent corruption inside the tensor data
        i = data.index(np.float32(2.0).tobytes())
        latest.write_bytes(data[:i] + b"\x00\x00\x80\x3f" + data[i + 4 :])
    else:  # crashed between writing the state and its digest
        latest.with_name(latest.name + ".sha256").unlink()
    with pytest.warns(UserWarning, match="skipping checkpoint"):
        state, path = load_latest_training_state(tmp_path)
    assert state["step"] == 1 and path.name == "state-000000001.pt"
    with pytest.raises(CheckpointError):
        load_training_state(latest)


def test_no_checkpoint_and_all_corrupt(tmp_path):
    assert load_latest_training_state(tmp_path / "missing") is None
    p = save_training_state(tmp_path, 5, _state(5))
    p.write_bytes(b"garbage")
    with pytest.warns(UserWarning), pytest.raises(CheckpointError, match="none of the 1"):
        load_latest_training_state(tmp_path)


def test_rng_state_round_trip_with_weights_only(tmp_path):
    torch.manual_seed(3), np.random.seed(4), random.seed(5)
    np.random.standard_normal()  # leave a cached gaussian in numpy's state
    saved = capture_rng_state()
    path = save_training_state(tmp_path, 1, {"step": 1, "rng": saved})
    expected = (torch.rand(5), np.random.standard_normal(3), [random.random() for _ in range(3)])
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    restore_rng_state(load_training_state(path)["rng"])  # torch.load(weights_only=True) inside
    again = (torch.rand(5), np.random.standard_normal(3), [random.random() for _ in range(3)])
    assert torch.equal(expected[0], again[0])
    assert np.array_equal(expected[1], again[1])
    assert expected[2] == again[2]


def test_resumable_sampler_skips_consumed_items_and_splits_ranks():
    data = list(range(10))
    full = ResumableSampler(data, num_replicas=1, rank=0, seed=7)
    full.start(epoch=3)
    order = list(full)
    assert sorted(order) == data
    full.start(epoch=4)
    assert list(full) != order  # a new permutation each epoch
    resumed = ResumableSampler(data, num_replicas=1, rank=0, seed=7)
    resumed.start(epoch=3, skip=4)
    assert list(resumed) == order[4:] and len(resumed) == 6
    # two ranks: disjoint strided shares of the same permutation (padded to equal length)
    shares = []
    for rank in (0, 1):
        s = ResumableSampler(data, num_replicas=2, rank=rank, seed=7)
        s.start(epoch=3)
        shares.append(list(s))
    assert shares[0] == order[0::2] and shares[1] == order[1::2]


def test_rewriting_a_step_never_leaves_a_corrupt_pair(tmp_path, monkeypatch):
    """A step written again (a resumed run replaying it) and interrupted between the new
    file's rename and its digest: the file reads as incomplete (its old digest is gone
    first), so the loader names it so and falls back; it never looks corrupt."""
    import sound2img.training.checkpoint as ckpt

    save_training_state(tmp_path, 2, _state(2))
    save_training_state(tmp_path, 4, _state(4))

    def interrupted(path, text):
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt, "atomic_write_text", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_training_state(tmp_path, 4, {**_state(4), "epoch": 1})
    with pytest.warns(UserWarning) as caught:
        state, path = load_latest_training_state(tmp_path)
    assert state["step"] == 2 and path.name == "state-000000002.pt"
    assert [str(w.message).rsplit("/", 1)[1] for w in caught] == [
        "state-000000004.pt: incomplete checkpoint (its .sha256 was never written)"
    ]


def test_each_step_is_checkpointed_once_when_epochs_end_on_a_checkpoint(tmp_path, monkeypatch, capsys):
    """2 steps per epoch and a checkpoint every 2 steps: the epoch's end writes the state
    (epoch advanced) and the periodic checkpoint of the same step is not written first
    (two writes of one file could be torn apart from their digest by a Ctrl-C)."""
    import sound2img.training.loop as loop
    from sound2img.cli import run_cli
    from sound2img.training.run import train_encoder_cli

    written = []
    real = loop.save_training_state

    def recording(directory, step, state, keep=3):
        written.append((step, state["epoch"], state["batch_in_epoch"]))
        return real(directory, step, state, keep=keep)

    monkeypatch.setattr(loop, "save_training_state", recording)
    argv = ["--out", str(tmp_path / "run"), "--device", "cpu", "preset=tiny", "tiny_run.data.num_per_class=2"]
    argv += ["tiny_run.data.num_samples=4000", "tiny_run.train.batch_size=8", "tiny_run.train.epochs=2"]
    argv += ["tiny_run.train.max_steps=4", "tiny_run.train.checkpoint_every=2"]
    argv += ["validation.data=null", "train.progress=false"]
    assert run_cli(train_encoder_cli, argv) == 0, capsys.readouterr().err[-2000:]
    assert written == [(2, 1, 0), (4, 2, 0)]
