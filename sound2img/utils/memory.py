"""Host memory policy for CPU work: keep freed blocks for reuse.

Every optimisation step allocates and frees activation-sized tensors (tens of MB at
256 px, hundreds at 1024 px). With glibc's defaults each block above the mmap threshold
is a fresh ``mmap`` whose pages are faulted in and zeroed by the kernel on first touch:
on the 2-core x86-64 machine of the README's Benchmarks, writing a fresh 32 MiB tensor
took 29 ms against 7 ms for a reused one, so most of an elementwise pass was page faults.
Turning mmap off for large blocks and trimming off keeps freed memory in the heap, where
the next step reuses it (what jemalloc or tcmalloc, PyTorch's recommended CPU allocators,
do by other means). The price: memory freed by a long-lived process (the web app) goes
back to the system only when the process ends; peak use is unchanged (README, Benchmarks).
"""

from __future__ import annotations

import ctypes
import os
import sys

ENV = "SOUND2IMG_MALLOC"  # "system" leaves the C library's policy alone
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameter numbers (<malloc.h>)


def keep_freed_memory() -> bool:
    """Ask glibc's malloc never to ``mmap`` large blocks and never to trim the heap, for
    the rest of this process. Returns whether it applied (False where the C library has
    no ``mallopt``, e.g. macOS or musl, or when ``SOUND2IMG_MALLOC=system``)."""
    if os.environ.get(ENV, "keep").strip().lower() == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
