"""Atomic writes, staged output directories and overwrite protection: a crash or Ctrl-C
never leaves a half-written output, and nothing already on disk is replaced unless the
caller says so. Also file digests and the one name-or-path test."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from sound2img.errors import UserInputError

# What a file argument ends with (weights files and sounds): a name with one of these, a
# "/" or a leading "~"/"." is a path, never a registry or config name.
PATH_SUFFIXES = (
    ".pt",
    ".pth",
    ".pkl",
    ".ckpt",
    ".safetensors",
    ".bin",
    ".npy",
    ".npz",
    ".wav",
    ".flac",
    ".mp3",
    ".ogg",
)


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
        # The writer may have replaced the file (safetensors' save_file writes a new one
        # with mode 0600): give the output what open(path, "w") would, 0666 minus the umask.
        os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process's umask (read from /proc where there is one: setting it to read it back
    is not thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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


def check_out_dir(out_dir: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse, before any work, an output directory that exists with something in it
    (unless ``overwrite``), that is a file, or that cannot be created or written."""
    out = Path(out_dir)
    if out.exists():
        if not out.is_dir():
            raise UserInputError(f"{out} exists and is not a directory")
        if not overwrite and any(out.iterdir()):
            raise UserInputError(f"{out} already exists and is not empty (pass --overwrite to replace its edits)")
    parent = out
    while not parent.exists():  # the nearest existing ancestor must let us create the rest
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UserInputError(f"cannot write to {out}: {parent} is not a writable directory")
    return out


@contextlib.contextmanager
def staged_dir(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Where to write a run's files. A new (or empty) ``out_dir`` is built in a hidden
    sibling and renamed into place at the end, so an error or Ctrl-C leaves nothing; an
    existing one (``--overwrite``) is written in place, each file atomically."""
    out = Path(out_dir)
    if out.is_dir() and any(out.iterdir()):
        yield out
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        tmp.chmod(0o777 & ~current_umask())  # mkdtemp's 0700 would otherwise stick to the output
        yield tmp
        try:
            os.replace(tmp, out)  # also onto an existing empty directory (POSIX rename)
        except OSError as exc:
            if out.is_dir() and any(out.iterdir()):  # another run finished into it meanwhile
                raise UserInputError(
                    f"{out} was filled by another run while this one worked; its files are "
                    "kept and this run's are discarded (pass --overwrite to replace them)"
                ) from exc
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def looks_like_path(text: str) -> bool:
    """Whether a name-or-path argument is meant as a path (so a missing file is reported
    as "no such file", not as an unknown name)."""
    return "/" in text or os.sep in text or text.startswith(("~", ".")) or Path(text).suffix.lower() in PATH_SUFFIXES


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
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)  # also releases the lock
