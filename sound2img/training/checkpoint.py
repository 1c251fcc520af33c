"""Training-state checkpoints: atomic writes, a sha256 beside each file so a torn or
corrupt one is detected (and the previous one used), the last K kept, RNG states
stored as tensors and plain types so ``torch.load(weights_only=True)`` reads them."""

from __future__ import annotations

import os
import random
import re
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sound2img.errors import CheckpointError
from sound2img.models.state_dict import read_torch_file
from sound2img.utils.files import atomic_path, atomic_write_text, remove_stale_temps, sha256_file

_NAME = re.compile(r"^state-(\d{9})\.pt$")
TEST_DELAY_ENV = "SOUND2IMG_TEST_CHECKPOINT_DELAY"


def _test_delay() -> None:
    """Test hook: ``SOUND2IMG_TEST_CHECKPOINT_DELAY`` seconds of sleep inside each write
    (temporary written but not renamed; renamed but its digest not written), so that the
    crash tests can SIGKILL a run exactly there."""
    delay = os.environ.get(TEST_DELAY_ENV)
    if delay:
        time.sleep(float(delay))


def checkpoint_path(directory: str | Path, step: int) -> Path:
    """``<directory>/state-<step, 9 digits>.pt``."""
    return Path(directory) / f"state-{int(step):09d}.pt"


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Training-state files in ``directory``, oldest step first (complete or not)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def save_training_state(directory: str | Path, step: int, state: dict[str, Any], keep: int = 3) -> Path:
    """Write ``state`` as ``state-<step>.pt`` atomically, then its sha256 (the file counts
    as complete only once both exist), then delete all but the newest ``keep``."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    path = checkpoint_path(directory, step)
    remove_stale_temps(path)  # a run killed while writing this step's file, now replaying it
    # Rewriting a step (a resumed run replaying it): the old digest goes first, so that a kill
    # between the rename and the new digest leaves an incomplete file, never a "corrupt" one.
    _digest_path(path).unlink(missing_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
        _test_delay()
    _test_delay()
    atomic_write_text(_digest_path(path), sha256_file(path) + "\n")
    for old in list_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)
        _digest_path(old).unlink(missing_ok=True)
    return path


def load_training_state(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read one training-state file, verifying its sha256; ``CheckpointError`` if it is
    missing, incomplete, corrupt or not a training state."""
    path = Path(path)
    digest = _digest_path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such training-state file")
    if not digest.is_file():
        raise CheckpointError(f"{path}: incomplete checkpoint (its .sha256 was never written)")
    if digest.read_text().strip() != sha256_file(path):
        raise CheckpointError(f"{path}: corrupt checkpoint (sha256 does not match)")
    state = read_torch_file(path, map_location)
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{path}: not a sound2img training state")
    return state


def load_latest_training_state(
    directory: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[dict[str, Any], Path] | None:
    """The newest readable training state in ``directory`` and its path; a torn or corrupt
    newer file is warned about and skipped. ``None`` when there is none at all."""
    candidates = list_checkpoints(directory)
    for path in reversed(candidates):
        try:
            return load_training_state(path, map_location), path
        except CheckpointError as exc:
            warnings.warn(f"skipping checkpoint: {exc}", stacklevel=2)
    if candidates:
        raise CheckpointError(f"{directory}: none of the {len(candidates)} checkpoint(s) is readable")
    return None


def capture_rng_state() -> dict[str, Any]:
    """torch, CUDA, NumPy and Python RNG states as tensors and plain types."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {
            "version": int(py_version),
            "internal": torch.tensor(py_internal, dtype=torch.int64),
            "gauss": py_gauss,
        },
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of ``capture_rng_state``."""
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        if len(state["cuda"]) != torch.cuda.device_count():
            warnings.warn(
                f"checkpoint holds {len(state['cuda'])} CUDA RNG states but this machine has "
                f"{torch.cuda.device_count()} GPUs; resume is not bitwise exact",
                stacklevel=2,
            )
        for index, s in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s.cpu(), index)
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss"]))
