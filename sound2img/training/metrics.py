"""Run metrics: one JSON object per line in ``metrics.jsonl`` (rank 0 only) and,
optionally, Weights & Biases, imported lazily (``WANDB_MODE=offline`` works)."""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from sound2img.errors import UserInputError
from sound2img.utils.files import atomic_write_text


def _plain(value: Any) -> Any:
    """JSON-safe scalar (tensors → float, NaN/inf → None)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLogger:
    """Append records to ``<run_dir>/metrics.jsonl``; mirror them to wandb if asked.

    On resume from ``resume_step``, records written after that step by the interrupted
    run are dropped first, so the file reads as one uninterrupted run.
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        enabled: bool = True,
        resume_step: int | None = None,
        wandb_project: str | None = None,
        wandb_run_name: str | None = None,
        config: dict | None = None,
    ):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.enabled = enabled
        self._wandb_run = None
        if not enabled:
            return
        if resume_step is not None and self.path.exists():
            kept = [
                line
                for line in self.path.read_text(encoding="utf-8").splitlines()
                if line.strip() and _step_of(line) <= resume_step
            ]
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))
        elif resume_step is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("", encoding="utf-8")
        if wandb_project:
            self._wandb_run = _start_wandb(
                wandb_project, wandb_run_name, config, resume=resume_step is not None, run_dir=self.path.parent
            )

    def log(self, record: dict[str, Any]) -> None:
        """Write one record (must contain ``step``)."""
        if not self.enabled:
            return
        record = {k: _plain(v) for k, v in record.items()}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
        if self._wandb_run is not None:
            self._wandb_run.log({k: v for k, v in record.items() if k != "step"}, step=int(record["step"]))

    def close(self) -> None:
        if self._wandb_run is not None:
            self._wandb_run.finish()
            self._wandb_run = None


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """All records of ``<run_dir>/metrics.jsonl``."""
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line).get("step", -1))
    except (ValueError, AttributeError):
        return 1 << 62  # a torn last line: dropped


def _start_wandb(project: str, name: str | None, config: dict | None, resume: bool, run_dir: Path):
    try:
        import wandb
    except ImportError as exc:
        raise UserInputError(
            "wandb logging is enabled but the wandb package is not installed: "
            "pip install 'sound2img[wandb]' (or set logging.wandb=false)"
        ) from exc
    # wandb itself honours WANDB_MODE=offline / disabled; the run id is fixed per run dir
    # so that a resumed run continues the same wandb run.
    run_id = "s2i-" + hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:12]
    return wandb.init(
        project=project,
        name=name,
        config=config,
        dir=str(run_dir),
        id=run_id,
        resume="allow" if resume else None,
        mode=os.environ.get("WANDB_MODE") or None,
    )
