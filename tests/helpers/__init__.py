"""Helpers shared by several test packages (imported as ``helpers.<module>``)."""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path
from types import ModuleType


def load_file_module(path: str | Path, name: str | None = None) -> ModuleType:
    """Import a script or benchmark from its file (``scripts/`` and ``benchmarks/`` are not
    packages) so tests can call its ``main(argv)`` in this process."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(name or f"_file_{path.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a process group's ``MASTER_PORT``)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
