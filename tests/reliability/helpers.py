"""Running the real scripts as child processes and judging what they leave behind: exit
status, a one-line error without a traceback, no half-written or temporary files."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from helpers import load_file_module

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
# What an interrupted atomic write or staged directory would leave behind.
TEMP_MARKERS = (".tmp", ".partial", ".part")


def script_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a child script: offline, its own weights cache, no debug
    tracebacks (we judge what a user sees)."""
    env = dict(os.environ)
    env.pop("SOUND2IMG_DEBUG", None)
    env.update(
        SOUND2IMG_CACHE=str(tmp_path / "weights-cache"),
        SOUND2IMG_OFFLINE="1",
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
        PYTHONIOENCODING="utf-8",
    )
    env.update(extra)
    return env


def script_cmd(script: str, args: Sequence[str]) -> list[str]:
    return [sys.executable, str(SCRIPTS / script), *map(str, args)]


def script_main(script: str):
    """The ``main(argv)`` of ``scripts/<script>``, loaded from its file (scripts are not a
    package), to run a script in this process with its own ``run_cli`` handling."""
    return load_file_module(SCRIPTS / script).main


def run_script(
    script: str, args: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess:
    """Run ``scripts/<script>`` to completion; a run past ``timeout`` is a hang and fails."""
    try:
        return subprocess.run(
            script_cmd(script, args),
            cwd=cwd,
            env=env or script_env(cwd),
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{script} {' '.join(map(str, args))} hung (no exit within {timeout} s)")


def error_lines(stderr: str) -> list[str]:
    """stderr without progress bars (tqdm redraws with carriage returns) and blank lines."""
    lines = []
    for line in stderr.splitlines():
        line = line.rsplit("\r", 1)[-1].strip()
        if line:
            lines.append(line)
    return lines


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit 2 with exactly one stderr line, ``error: ...``, holding every fragment; no
    traceback, no internal error. Returns the line."""
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2, f"exit {proc.returncode}, stderr:\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), f"not one error line:\n{proc.stderr[-3000:]}"
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def assert_success(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}, stderr:\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


def snapshot(root: Path) -> dict[str, str]:
    """Relative path → sha256 of every file under ``root`` (empty when absent)."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def temp_leftovers(root: Path) -> list[str]:
    """Files or directories under ``root`` that an interrupted write would leave."""
    if not root.exists():
        return []
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if any(p.name.endswith(m) or f"{m}." in p.name for m in TEMP_MARKERS)
    )


def check_complete_outputs(root: Path) -> int:
    """Every PNG, JSON, latent and safetensors file under ``root`` parses; returns how
    many were checked."""
    import json

    import torch
    from PIL import Image

    n = 0
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        if p.suffix == ".png":
            with Image.open(p) as im:
                im.load()
        elif p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".jsonl":
            for line in p.read_text().splitlines():
                json.loads(line)
        elif p.suffix in (".pt", ".pth"):
            torch.load(p, map_location="cpu", weights_only=True)
        elif p.suffix == ".safetensors":
            from safetensors.torch import load_file

            load_file(str(p))
        elif p.suffix in (".npy", ".npz"):
            import numpy as np

            np.load(p, allow_pickle=False)
        else:
            continue
        n += 1
    return n
