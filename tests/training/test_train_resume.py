"""Interrupt and resume equals an uninterrupted run, bitwise on CPU: model, optimiser,
schedule, temperature, RNG states and the position inside the epoch all come back; a
corrupt latest checkpoint falls back to the previous one."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import Dataset

from sound2img.training.checkpoint import list_checkpoints
from sound2img.training.loop import training_loop
from sound2img.training.metrics import read_metrics

from helpers.training import OPTIM, TRAIN, loss_options


class Interrupting(Dataset):
    """The dataset, until its ``after``-th read raises KeyboardInterrupt (Ctrl-C)."""

    def __init__(self, dataset, after: int):
        self.dataset, self.left = dataset, after

    def __len__(self):
        return len(self.dataset)

    def __getattr__(self, name):
        return getattr(self.__dict__["dataset"], name)

    def __getitem__(self, index):
        if self.left == 0:
            raise KeyboardInterrupt
        self.left -= 1
        return self.dataset[index]


class NoiseViews:
    """A stand-in for AudioAugment: a gain drawn from the global RNG (standing for dropout
    and anything else that draws from it) and noise from the step's generator (as
    SpecAugment draws), so that resume must restore both."""

    def wave(self, wav, generator):
        return wav * (1.0 + 0.1 * torch.rand(()))

    def mel(self, spec, generator):
        return spec + 0.2 * torch.randn(spec.shape, generator=generator).to(spec.device)


def _run(task, run_dir, train_set, resume=False, encoder_seed=0):
    # 64 clips, batch 16: 4 steps per epoch, 3 epochs; checkpoints every 5 steps and at
    # each epoch end, so interrupts land mid-epoch
    return training_loop(
        run_dir,
        task.encoder(encoder_seed),
        task.frontend(),
        train_set,
        task.dataset("test", num_per_class=4),
        clip=task.clip(),
        augment=NoiseViews(),
        loss=loss_options(at=1.0, aa=0.5),
        optim=replace(OPTIM, name="sgd", lr=0.05, momentum=0.9, weight_decay=1e-4, lr_cycle_epochs=1, warmup_steps=2),
        train=replace(TRAIN, batch_size=16, epochs=3, log_every=1, checkpoint_every=5, keep_checkpoints=2),
        resume=resume,
        seed=3,
    )


def _weights(run_dir):
    return load_file(str(run_dir / "encoder_final.safetensors"))


def _losses(run_dir):
    return [(r["step"], r["loss"], r["lr"], r["logit_scale"]) for r in read_metrics(run_dir) if "loss" in r]


@pytest.fixture
def reference(tiny_task, tmp_path):
    run = tmp_path / "uninterrupted"
    out = _run(tiny_task, run, tiny_task.dataset("train", num_per_class=8))
    assert out["step"] == 12
    return run


def test_resume_mid_epoch_equals_uninterrupted(tiny_task, tmp_path, reference):
    run = tmp_path / "interrupted"
    # 16 items per step: the 7th step's batch is read after 6 steps, so the last
    # checkpoint is step 5 (epoch 1, batch 1 of 4) and steps 6-7 are redone
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_task, run, Interrupting(tiny_task.dataset("train", num_per_class=8), after=6 * 16 + 3))
    assert list_checkpoints(run / "checkpoints")[-1].name == "state-000000005.pt"
    out = _run(tiny_task, run, tiny_task.dataset("train", num_per_class=8), resume=True, encoder_seed=99)
    assert out["step"] == 12
    ref, got = _weights(reference), _weights(run)
    assert ref.keys() == got.keys()
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    assert _losses(run) == _losses(reference)  # metrics read as one run: same losses, lr, scale


def test_corrupt_latest_checkpoint_falls_back(tiny_task, tmp_path, reference):
    run = tmp_path / "torn"
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_task, run, Interrupting(tiny_task.dataset("train", num_per_class=8), after=10 * 16 + 1))
    names = [p.name for p in list_checkpoints(run / "checkpoints")]
    assert names == ["state-000000008.pt", "state-000000010.pt"]  # keep_checkpoints=2
    latest = run / "checkpoints" / names[-1]
    latest.write_bytes(latest.read_bytes()[:1000])  # torn
    with pytest.warns(UserWarning, match="skipping checkpoint"):
        out = _run(tiny_task, run, tiny_task.dataset("train", num_per_class=8), resume=True, encoder_seed=99)
    assert out["step"] == 12
    ref, got = _weights(reference), _weights(run)
    assert all(torch.equal(ref[k], got[k]) for k in ref)


def test_resume_of_a_finished_run_changes_nothing(tiny_task, tmp_path, reference):
    before = _weights(reference)
    out = _run(tiny_task, reference, tiny_task.dataset("train", num_per_class=8), resume=True, encoder_seed=99)
    assert out["step"] == 12
    after = _weights(reference)
    assert all(torch.equal(before[k], after[k]) for k in before)
