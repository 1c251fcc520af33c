"""The AudioCLIP / Wav2CLIP reference fixtures (``peer_audio/`` in the shared reference
fixtures, ``helpers.fixtures``): their checkpoints rebuilt under the public file names by
the fixtures' own ``make_checkpoint.py``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers.fixtures import fixture_path


def peer_dir(name: str) -> Path:
    """``peer_audio/<name>`` (skips or fails as ``fixture_path`` does)."""
    fixture_path("peer_audio", name, "ref.npz")
    return fixture_path("peer_audio", name)


def rebuild_checkpoint(name: str, out: Path) -> Path:
    """Write ``AudioCLIP-Partial-Training.pt`` (``audioclip``) or ``Wav2CLIP.pt`` (``wav2clip``)
    into the folder ``out`` and return its path."""
    subprocess.run(
        [sys.executable, str(fixture_path("make_checkpoint.py")), str(peer_dir(name)), str(out)],
        check=True,
        capture_output=True,
    )
    return next(p for p in Path(out).iterdir() if p.suffix == ".pt")
