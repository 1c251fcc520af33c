"""Batches for the loop: a deterministic per-epoch permutation split across ranks
(DistributedSampler) that can skip what an interrupted epoch already consumed, the
DataLoader around it, and the seeds of per-step randomness. Streamed training sets
(WebDataset shards, ``sound2img.data.streams``) split themselves over ranks and workers;
``StreamSampler`` and ``stream_batches`` give them the same interface."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from sound2img.data.base import DatasetError, collate
from sound2img.data.streams import ClipStream

log = logging.getLogger(__name__)


def step_seed(seed: int, step: int, rank: int, stream: int = 0) -> int:
    """A 63-bit seed for the randomness of one optimiser step on one rank (augmentation
    views), so that it depends on (seed, step, rank) only and a resumed run redraws it."""
    return int(np.random.SeedSequence([seed, stream, step, rank]).generate_state(2, dtype=np.uint64)[0] >> 1)


class ResumableSampler(DistributedSampler):
    """DistributedSampler (shuffled with ``seed + epoch``, padded so every rank gets the
    same count) that starts ``skip`` items into this rank's share of the epoch."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.skip = 0

    def start(self, epoch: int, skip: int = 0) -> None:
        """Position the sampler at item ``skip`` of this rank's share of ``epoch``."""
        self.set_epoch(epoch)
        self.skip = int(skip)

    def __iter__(self) -> Iterator[int]:
        for i, index in enumerate(super().__iter__()):
            if i >= self.skip:
                yield index

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip)


class StreamSampler:
    """``ResumableSampler``'s counterpart for a stream: places it on this rank, and
    ``num_samples`` is the per-rank epoch length every rank is sure to reach (so all ranks
    take the same number of steps). Resume is at shard granularity (``ShardDataset``)."""

    def __init__(self, stream: ClipStream, num_replicas: int, rank: int, seed: int):
        stream.plan(rank, num_replicas, seed)
        self.stream = stream
        self.num_samples = stream.rank_quota(num_replicas)
        self.skip = 0

    def start(self, epoch: int, skip: int = 0) -> None:
        self.stream.start(epoch, skip)
        self.skip = int(skip)


def make_sampler(dataset: Dataset, num_replicas: int, rank: int, seed: int) -> ResumableSampler | StreamSampler:
    """The sampler for ``dataset``: a ``StreamSampler`` for streams, else a ``ResumableSampler``."""
    if isinstance(dataset, ClipStream):
        return StreamSampler(dataset, num_replicas, rank, seed)
    return ResumableSampler(dataset, num_replicas, rank, seed)


def batches_per_epoch(sampler: ResumableSampler | StreamSampler, local_batch: int) -> int:
    """Full batches per rank per epoch (the last partial batch is dropped: every rank
    must contribute the same number of rows to the gathered negatives)."""
    return sampler.num_samples // local_batch


def epoch_loader(
    dataset: Dataset,
    sampler: ResumableSampler,
    epoch: int,
    start_batch: int,
    local_batch: int,
    num_workers: int,
    pin_memory: bool,
    generator: torch.Generator,
) -> DataLoader:
    """The DataLoader for ``epoch`` from batch ``start_batch`` on. Datasets with
    ``set_epoch`` draw their crops and prompts from (seed, epoch, index) (see
    ``sound2img.data.base.item_seed``), so a resumed epoch reads the same items whichever
    worker reads them. ``generator`` seeds the workers; giving one keeps the loader from
    drawing on the global RNG, which a resumed run must find as it was saved."""
    if isinstance(sampler, StreamSampler):
        # one pass over the rank's stream: the workers collate full batches of their own items
        def one_pass() -> DataLoader:
            return DataLoader(
                sampler.stream,
                batch_size=local_batch,
                collate_fn=collate,
                drop_last=False,
                num_workers=num_workers,
                persistent_workers=False,
                generator=generator,
            )

        return stream_batches(sampler, epoch, start_batch, local_batch, one_pass, pin_memory)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    sampler.start(epoch, start_batch * local_batch)
    return DataLoader(
        dataset,
        batch_size=local_batch,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        drop_last=True,
        pin_memory=pin_memory,
        persistent_workers=False,
        generator=generator,
    )


def stream_batches(
    sampler: StreamSampler,
    epoch: int,
    start_batch: int,
    local_batch: int,
    one_pass: Callable[[], DataLoader],
    pin_memory: bool,
) -> Iterator[dict[str, Any]]:
    """Batches ``start_batch ..`` of ``epoch`` from a stream, up to the rank's
    ``num_samples // local_batch``; ``one_pass()`` gives the DataLoader of one pass over
    it, whose workers collate full batches of their own items: the short last batch of
    each worker is not dropped but joined with the others' here. When unreadable shards
    leave the rank short, the epoch's stream is read again from its start to fill the rest."""
    stream = sampler.stream
    sampler.start(epoch, start_batch * local_batch)
    needed = sampler.num_samples // local_batch - start_batch
    made, rows = 0, []
    while made < needed:
        delivered = 0
        loader = one_pass()
        for part in loader:
            delivered += len(part["key"])
            if not rows and len(part["key"]) == local_batch:
                ready = [part]
            else:  # a worker's short last batch: pool its rows until a full batch
                rows += split_batch(part)
                ready = []
                while len(rows) >= local_batch:
                    ready.append(collate(rows[:local_batch]))
                    rows = rows[local_batch:]
            for batch in ready:
                made += 1
                yield {k: v.pin_memory() if pin_memory and isinstance(v, torch.Tensor) else v for k, v in batch.items()}
                if made == needed:
                    return
        if delivered == 0:
            raise DatasetError(f"{stream.name}: no readable sample left for this rank in epoch {epoch}")
        log.warning(
            "%s: this rank's part of epoch %d ran out after %d of %d batches (unreadable data); "
            "reading it again from its start",
            stream.name,
            epoch,
            start_batch + made,
            needed + start_batch,
        )
        sampler.start(epoch, 0)


def split_batch(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """The inverse of ``collate``: one item dict per row (``image`` None where the row had none)."""
    out = []
    for i in range(len(batch["key"])):
        item = {k: v[i] for k, v in batch.items() if k not in ("image", "has_image")}
        item["image"] = batch["image"][i] if batch["image"] is not None and batch["has_image"][i] else None
        out.append(item)
    return out


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors of ``batch`` moved to ``device`` (lists of strings stay)."""
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
