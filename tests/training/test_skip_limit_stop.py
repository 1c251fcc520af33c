"""Past ``max_skip_fraction`` the training run stops with one ``error:`` line that is the
LAST line of stderr, whatever the number of DataLoader workers: every worker is stopped
and silenced before the error is printed (sound2img.data.loading).

Runs in a child process: DataLoader workers log through the root logger's last-resort
handler there, as in the real scripts (pytest's own log handlers would hide them)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent('''
    import sys, time
    from dataclasses import replace
    import torch
    from sound2img.audio.frontend import build_frontend
    from sound2img.cli import run_cli
    from sound2img.data.base import AudioClipDataset, Record, SampleReadError
    from sound2img.models.audio_encoder import build_audio_encoder
    from sound2img.training import batches
    from sound2img.training.loop import training_loop
    from helpers.training import OPTIM, TRAIN, loss_options  # tests/ is on PYTHONPATH

    WORKERS, RUN = int(sys.argv[1]), sys.argv[2]
    torch.set_num_threads(1)


    class LateFailures(AudioClipDataset):
        """``bad*`` items fail at once; ``late*`` ones only after another worker has
        crossed the skip limit (waiting on the shared failure count, then a little more):
        exactly when a worker that is not stopped would log one more line after the error."""

        def read_wav(self, index, generator):
            key = self.records[index].key
            if key.startswith("bad"):
                raise SampleReadError(f"{key}: unreadable")
            if key.startswith("late"):
                for _ in range(1000):  # at most 10 s; the first batch crosses the limit
                    if self.num_skipped > self.max_skip_fraction * self.num_total:
                        break
                    time.sleep(0.01)
                time.sleep(0.3)  # gives a run that does not stop its workers time to print first
                raise SampleReadError(f"{key}: unreadable, read late")
            return torch.zeros(self.num_samples)


    # batch 0 (worker 0): two bad items cross the limit; every other batch holds a late one
    keys = ["bad0", "bad1"] + [k for i in range(2 * WORKERS) for k in (f"late{i}", f"good{i}")]
    records = [Record(key=k, audio=f"{k}.wav", label=0, class_name="hum") for k in keys]
    dataset = LateFailures(records, ["hum"], sample_rate=8000, num_samples=2000, crop="center",
                           max_skip_fraction=1.5 / len(keys))
    # the epoch in index order, so that batch k is read by worker k % WORKERS
    batches.ResumableSampler.__iter__ = lambda self: iter(range(self.skip, len(self.dataset)))
    torch.manual_seed(0)
    encoder = build_audio_encoder("tiny_cnn", embed_dim=32)
    frontend = build_frontend("logmel", sample_rate=8000, n_fft=256, hop_length=128, n_mels=32)
    train = replace(TRAIN, batch_size=2, epochs=1, num_workers=WORKERS)
    status = run_cli(lambda argv: training_loop(
        RUN, encoder, frontend, dataset, loss=loss_options(aa=1.0), optim=OPTIM, train=train, device="cpu"), [])
    # A process that goes on after the error (pytest, a notebook, a caller) drops the
    # loader here at the latest: a worker still running would print now, after the error.
    import gc
    gc.collect()
    sys.exit(status)
''')


@pytest.mark.slow
@pytest.mark.parametrize("workers", [2, 4])
def test_error_is_the_last_line_for_any_worker_count(workers, tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]), OMP_NUM_THREADS="1")
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("SOUND2IMG_DEBUG", None)
    for repeat in range(3):
        proc = subprocess.run(
            [sys.executable, str(script), str(workers), str(tmp_path / f"run{repeat}")],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert any("skipped an unreadable sample" in line for line in lines), proc.stderr[-3000:]
        assert lines[-1].startswith("error: ") and "samples unreadable" in lines[-1], (repeat, proc.stderr[-3000:])
        assert [line for line in lines if line.startswith("error:")] == lines[-1:], proc.stderr[-3000:]
