"""``train.amp=auto`` is bf16 autocast on a CPU that does bf16 natively (README, "Train an
audio encoder"), so bf16 must learn what fp32 learns: on the synthetic task of
test_train_learning.py, the bf16 run's final held-out zero-shot accuracy is at least the
lowest that the fp32 run itself showed over its last three epochs (its own wobble as the
bound). Here both precisions are asked for explicitly, so the test means the same on any
CPU (bf16 is emulated, more slowly, where it is not native)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sound2img.training.loop import training_loop
from sound2img.training.metrics import read_metrics

from helpers.training import OPTIM, TRAIN, loss_options

CHANCE = 1 / 8


def _train(tiny_task, run_dir, amp: str) -> list[float]:
    training_loop(
        run_dir,
        tiny_task.encoder(),
        tiny_task.frontend(),
        tiny_task.dataset("train"),
        tiny_task.dataset("test", num_per_class=8),
        clip=tiny_task.clip(),
        loss=loss_options(at=1.0),
        optim=replace(OPTIM, name="adamw", lr=3e-3, weight_decay=0.0, lr_cycle_epochs=100),
        train=replace(TRAIN, batch_size=32, epochs=10, log_every=4, checkpoint_every=1000, amp=amp),
    )
    return [r["val_zero_shot_acc"] for r in read_metrics(run_dir) if "val_zero_shot_acc" in r]


@pytest.mark.slow
def test_bf16_autocast_reaches_the_fp32_held_out_accuracy(tiny_task, tmp_path):
    fp32 = _train(tiny_task, tmp_path / "fp32", "off")
    bf16 = _train(tiny_task, tmp_path / "bf16", "bf16")
    assert fp32[-1] >= 4 * CHANCE, fp32
    assert bf16[-1] >= min(fp32[-3:]), (bf16, fp32)
