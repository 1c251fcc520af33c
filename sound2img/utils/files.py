"""Atomic writes and overwrite protection: a crash or Ctrl-C never leaves a half-written
output, and nothing already on disk is replaced unless the caller says so."""
from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import secrets
from pathlib import Path
from typing import Iterable, Iterator

from sound2img.errors import UserInputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is fsynced and renamed onto
    ``path`` (atomic on POSIX), on any exception (KeyboardInterrupt included) removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _create_temp(path)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _create_temp(path: Path) -> Path:
    """A new empty hidden file beside ``path``, created with mode 0666 minus the umask
    (what ``open(path, "w")`` would give; ``mkstemp``'s 0600 would stick to the output)."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary name beside {path}")


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete the temporaries that killed atomic writes of ``path`` left beside it (a
    SIGKILL skips the cleanup of ``atomic_path``). Only for files a single process
    writes: another writer's temporary in flight would be deleted too."""
    path = Path(path)
    stale = list(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


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


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (weights checks, cache keys)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line to a log that several processes write (the edit queue's ledger):
    one ``O_APPEND`` write under an exclusive ``flock`` (``O_APPEND`` alone is not atomic
    on network filesystems), fsynced, so lines never interleave or tear."""
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        except ImportError:  # not POSIX: O_APPEND is what there is
            pass
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)  # also releases the lock
