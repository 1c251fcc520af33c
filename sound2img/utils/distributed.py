"""Ranks: join the process group ``torchrun`` describes (NCCL on CUDA, gloo on CPU),
or run as a single process; small collectives the training loop and the edit queue need."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from sound2img.errors import UserInputError
from sound2img.utils.device import resolve_device


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``; ``device`` it computes on."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str | torch.device = "auto") -> DistInfo:
    """Join the default process group when ``WORLD_SIZE`` > 1 (torchrun sets it, with
    ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``) or when one already exists; each
    CUDA rank takes ``cuda:LOCAL_RANK``. Otherwise a single process on ``device``."""
    device = resolve_device(device)
    if dist.is_available() and dist.is_initialized():
        return _info(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(0, 1, device)
    if device.type == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank >= torch.cuda.device_count():
            raise UserInputError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA device(s) exist")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return _info(device)


def _info(device: torch.device) -> DistInfo:
    return DistInfo(dist.get_rank(), dist.get_world_size(), device)


def all_reduce_mean(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Mean over ranks of each scalar (identity in a single process)."""
    if not info.distributed or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    t /= info.world_size
    return dict(zip(keys, t.tolist()))


def broadcast_object(obj, info: DistInfo):
    """Rank 0's ``obj`` on every rank."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj, info: DistInfo) -> list:
    """Every rank's ``obj``, in rank order."""
    if not info.distributed:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def shutdown_distributed(wait_for_peers: bool = True) -> None:
    """Leave the default process group if one exists.

    ``wait_for_peers`` (the normal end of a run): a barrier first, because a rank that tears
    its connections down while a peer is still finishing the last collective can make the
    peer's gloo threads abort it ("terminate called without an active exception", seen once
    in CI on a rerun of the edit queue). Pass False when leaving on an error: the peers may
    be inside another collective, so a barrier could wait for them until the group's timeout
    (and its own failure would replace the error being raised); leaving at once lets the
    launcher stop them."""
    if dist.is_available() and dist.is_initialized():
        if wait_for_peers and dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def failed_run_status(message: str) -> int:
    """The exit status of this rank when a run ended with failed work that ``message``
    sums up (every rank knows it): 1 on rank 0, 0 on the others, so that ``torchrun``
    reports one failure, not one per rank, and does not stop ranks that are still leaving.
    torchrun still prints its own ``ChildFailedError`` traceback for any non-zero exit (it
    cannot be kept quiet); rank 0 writes ``message`` to the error file torchrun gives it
    (``TORCHELASTIC_ERROR_FILE``), so that report shows the summary in place of a link to
    torchrun's documentation."""
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if path and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import json
        import time

        record = {"message": message, "extraInfo": {"py_callstack": message, "timestamp": str(int(time.time()))}}
        try:
            with open(path, "w", encoding="utf-8") as fh:
                json.dump({"message": record}, fh)
        except OSError:  # the report then points to torchrun's docs; the summary is printed anyway
            pass
    return 1
