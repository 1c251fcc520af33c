"""The AudioCLIP / Wav2CLIP reference fixtures (the shared reference fixtures, ``fixtures/peer_audio`` beside the repository): their
checkpoints rebuilt under the public file names by the fixtures' own ``make_checkpoint.py``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures"
PEER = FIXTURES / "peer_audio"


def peer_dir(name: str) -> Path:
    """``peer_audio/<name>``, or skip the test with the reason."""
    path = PEER / name
    if not (path / "ref.npz").is_file() or not (FIXTURES / "make_checkpoint.py").is_file():
        pytest.skip(f"reference fixtures not found at {path} (the reference fixtures beside the repository)")
    return path


def rebuild_checkpoint(name: str, out: Path) -> Path:
    """Write ``AudioCLIP-Partial-Training.pt`` (``audioclip``) or ``Wav2CLIP.pt`` (``wav2clip``)
    into the folder ``out`` and return its path."""
    subprocess.run(
        [sys.executable, str(FIXTURES / "make_checkpoint.py"), str(peer_dir(name)), str(out)],
        check=True,
        capture_output=True,
    )
    return next(p for p in Path(out).iterdir() if p.suffix == ".pt")
