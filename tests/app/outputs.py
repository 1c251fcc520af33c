"""Outputs directories the report tests read: real ``manipulate.py`` edits (preset=tiny)
and a training run's ``metrics.jsonl`` with the records ``training/loop.py`` logs."""

from __future__ import annotations

import json
from pathlib import Path

from sound2img.cli import to_object
from sound2img.manipulation import command, run


def make_edits(out: Path, *argv: str) -> list[Path]:
    cfg, _ = command.compose_from_args(
        [
            "preset=tiny",
            "--steps",
            "3",
            "manipulate.strip_every=1",
            "progress=false",
            "--device",
            "cpu",
            "--out",
            str(out),
            *argv,
        ]
    )
    return run.run_edit(to_object(cfg))


def make_run(run_dir: Path, steps: int = 6) -> Path:
    """metrics.jsonl as the training loop writes it: a record every step (loss terms,
    lr, logit scale, throughput, skipped rows) and one per epoch (zero-shot accuracy)."""
    run_dir.mkdir(parents=True)
    lines = []
    for step in range(1, steps + 1):
        lines.append(
            {
                "step": step,
                "epoch": (step - 1) // 3,
                "loss": 2.0 / step,
                "loss_at": 1.2 / step,
                "loss_av": 0.8 / step,
                "lr": 1e-4 * step / steps,
                "logit_scale": 14.0 + 0.1 * step,
                "samples_per_s": 100.0,
                "data_skipped": step // 4,
            }
        )
        if step % 3 == 0:
            lines.append({"step": step, "epoch": (step - 1) // 3, "val_zero_shot_acc": 0.1 * step})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return run_dir


def make_video(out: Path, *overrides: str) -> Path:
    """A ``video.py`` video (preset=tiny, a 2-s tone at 4 fps, both modes)."""
    from sound2img.cli import compose, to_object
    from sound2img.video.run import run_video

    cfg = compose(
        "video",
        [
            "preset=tiny",
            "edit.audio=[tone:440]",
            "video.fps=4",
            "manipulate.steps=2",
            "video.keyframe_steps=2",
            "video.keyframe_seconds=2.5",
            "progress=false",
            "device=cpu",
            f"out={out}",
            *overrides,
        ],
    )
    return run_video(to_object(cfg))
