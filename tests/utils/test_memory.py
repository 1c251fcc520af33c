"""utils.memory: with the policy applied, a large tensor comes from the heap (reusable)
instead of a fresh mmap; SOUND2IMG_MALLOC=system leaves glibc's policy alone."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

import pytest

PROBE = r"""
import ctypes, json, sys
import torch
from sound2img.utils.memory import keep_freed_memory

class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Mallinfo2
applied = keep_freed_memory()
before = libc.mallinfo2().hblkhd
t = torch.empty(64 * 2**20 // 4)  # 64 MiB
during = libc.mallinfo2().hblkhd
del t
print(json.dumps({"applied": applied, "mmapped_growth": during - before}))
"""


def _probe(env_value: str | None) -> dict:
    env = {**os.environ}
    env.pop("SOUND2IMG_MALLOC", None)
    if env_value is not None:
        env["SOUND2IMG_MALLOC"] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _has_mallinfo2() -> bool:
    try:
        ctypes.CDLL(None).mallinfo2  # noqa: B018 - glibc >= 2.33
        return sys.platform.startswith("linux")
    except (OSError, AttributeError):
        return False


@pytest.mark.skipif(not _has_mallinfo2(), reason="needs glibc (mallinfo2)")
def test_large_blocks_come_from_the_heap_once_applied():
    kept = _probe(None)
    assert kept["applied"] is True
    assert kept["mmapped_growth"] == 0
    system = _probe("system")
    assert system["applied"] is False
    assert system["mmapped_growth"] >= 64 * 2**20  # glibc's default: a fresh mmap
