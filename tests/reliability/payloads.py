"""Checkpoint files whose unpickling would run code: each payload writes its own marker
file (through ``os.system``, ``builtins.exec`` or ``subprocess.call``), placed inside an
otherwise plausible state dict, in every pickle container a loader may meet."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import torch

# container name → file suffix
CONTAINERS = {"torch_zip": ".pt", "torch_legacy": ".pth", "raw_pickle": ".pkl"}
PAYLOADS = ("os_system", "exec", "subprocess")


class _RunsShell:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class _RunsExec:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


class _RunsSubprocess:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (subprocess.call, (["touch", self.marker],))


_KINDS = {"os_system": _RunsShell, "exec": _RunsExec, "subprocess": _RunsSubprocess}


@dataclass(frozen=True)
class Malicious:
    path: Path
    marker: Path  # appears only if the payload ran
    payload: str
    container: str


def write_malicious(
    directory: Path, stem: str, payload: str, container: str, state: dict[str, torch.Tensor] | None = None
) -> Malicious:
    """``directory/<stem>-<payload>-<container><suffix>``: ``state`` (a few tensors by
    default) with one more entry whose unpickling runs the payload."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{stem}-{payload}-{container}"
    path, marker = directory / f"{name}{CONTAINERS[container]}", directory / f"{name}.marker"
    obj = {
        **(state or {"conv.weight": torch.zeros(3, 1, 3, 3), "conv.bias": torch.zeros(3)}),
        "extra": _KINDS[payload](marker),
    }
    if container == "torch_zip":
        torch.save(obj, path)
    elif container == "torch_legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(obj, protocol=4))
    return Malicious(path, marker, payload, container)


def write_all(directory: Path, stem: str) -> list[Malicious]:
    """One file per (payload, container)."""
    return [write_malicious(directory, stem, p, c) for p in PAYLOADS for c in CONTAINERS]


_CONTROL = textwrap.dedent("""
    import pickle, sys, torch
    for path in sys.argv[1:]:
        try:
            if path.endswith(".pkl"):
                with open(path, "rb") as fh:
                    pickle.load(fh)
            else:
                torch.load(path, weights_only=False)
        except Exception as exc:  # the payload already ran; what it returned may not fit
            print(path, type(exc).__name__)
""")


def unpickle_unsafely(paths: list[Path]) -> None:
    """The positive control: plain ``pickle.load`` / ``torch.load(weights_only=False)``
    in a child process, which runs the payloads."""
    proc = subprocess.run(
        [sys.executable, "-c", _CONTROL, *map(str, paths)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
