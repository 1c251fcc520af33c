"""Atomic writes and overwrite protection: a crash or Ctrl-C never leaves a half-written
output, and nothing already on disk is replaced unless the caller says so."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from sound2img.errors import UserInputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is fsynced and renamed onto
    ``path`` (atomic on POSIX), on any exception (KeyboardInterrupt included) removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def check_can_write(paths: Iterable[str | os.PathLike], overwrite: bool) -> None:
    """Raise ``UserInputError`` naming the first existing path unless ``overwrite``."""
    if overwrite:
        return
    for p in paths:
        if Path(p).exists():
            raise UserInputError(f"{p} already exists (pass --overwrite to replace it)")
