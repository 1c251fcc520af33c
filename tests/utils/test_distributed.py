"""Leaving the process group: a barrier at the normal end, none on the way out of an error."""

from __future__ import annotations

import os

import torch.multiprocessing as mp

from helpers import free_port


def _rank(rank: int, port: int, wait_for_peers: bool, leaving, left, release) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    from sound2img.utils.distributed import init_distributed, shutdown_distributed

    init_distributed("cpu")
    if rank == 0:  # leaves while its peer is held back
        leaving.set()
        shutdown_distributed(wait_for_peers=wait_for_peers)
        left.set()
    else:  # stands for a peer still busy elsewhere (another collective, a long step)
        release.wait(timeout=600)
        shutdown_distributed(wait_for_peers=False)


def _rank0_left_alone(wait_for_peers: bool) -> bool:
    """Whether rank 0 got out of ``shutdown_distributed`` while rank 1 was held back."""
    ctx = mp.get_context("spawn")
    leaving, left, release = ctx.Event(), ctx.Event(), ctx.Event()
    port = free_port()
    procs = [ctx.Process(target=_rank, args=(r, port, wait_for_peers, leaving, left, release)) for r in range(2)]
    for p in procs:
        p.start()
    try:
        assert leaving.wait(timeout=300), "rank 0 never joined the group"
        # Without a barrier leaving takes milliseconds; with one it lasts until rank 1 comes.
        return left.wait(timeout=300 if not wait_for_peers else 5)
    finally:
        release.set()
        for p in procs:
            p.join(timeout=120)
            if p.is_alive():
                p.kill()


def test_leaving_on_an_error_does_not_wait_for_busy_peers():
    assert _rank0_left_alone(wait_for_peers=False)


def test_leaving_normally_waits_for_the_peers():
    assert not _rank0_left_alone(wait_for_peers=True)
