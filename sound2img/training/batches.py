"""Batches for the loop: a deterministic per-epoch permutation split across ranks
(DistributedSampler) that can skip what an interrupted epoch already consumed, the
DataLoader around it, and the seeds of per-step randomness."""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, DistributedSampler

from sound2img.data.base import collate


def step_seed(seed: int, step: int, rank: int, stream: int = 0) -> int:
    """A 63-bit seed for the randomness of one optimiser step on one rank (augmentation
    views), so that it depends on (seed, step, rank) only and a resumed run redraws it."""
    return int(np.random.SeedSequence([seed, stream, step, rank]).generate_state(2, dtype=np.uint64)[0] >> 1)


class ConcatClips(ConcatDataset):
    """Several training sets as one (e.g. VGGSound + AudioSet): ``set_epoch`` and
    ``load_images`` reach every part."""

    def set_epoch(self, epoch: int) -> None:
        for d in self.datasets:
            if hasattr(d, "set_epoch"):
                d.set_epoch(epoch)

    @property
    def num_skipped(self) -> int:
        """Bad rows and unreadable samples of every part (see ``AudioClipDataset``)."""
        return sum(int(getattr(d, "num_skipped", 0)) for d in self.datasets)

    @property
    def load_images(self) -> bool:
        return any(getattr(d, "load_images", False) for d in self.datasets)

    @load_images.setter
    def load_images(self, value: bool) -> None:
        for d in self.datasets:
            if hasattr(d, "load_images"):
                d.load_images = value


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


def batches_per_epoch(sampler: ResumableSampler, local_batch: int) -> int:
    """Full batches per rank per epoch (the last partial batch is dropped: every rank
    must contribute the same number of rows to the gathered negatives)."""
    return sampler.num_samples // local_batch


def epoch_loader(dataset: Dataset, sampler: ResumableSampler, epoch: int, start_batch: int, local_batch: int,
                 num_workers: int, pin_memory: bool, generator: torch.Generator) -> DataLoader:
    """The DataLoader for ``epoch`` from batch ``start_batch`` on. Datasets with
    ``set_epoch`` draw their crops and prompts from (seed, epoch, index) (see
    ``sound2img.data.base.item_seed``), so a resumed epoch reads the same items whichever
    worker reads them. ``generator`` seeds the workers; giving one keeps the loader from
    drawing on the global RNG, which a resumed run must find as it was saved."""
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    sampler.start(epoch, start_batch * local_batch)
    return DataLoader(dataset, batch_size=local_batch, sampler=sampler, num_workers=num_workers,
                      collate_fn=collate, drop_last=True, pin_memory=pin_memory,
                      persistent_workers=False, generator=generator)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors of ``batch`` moved to ``device`` (lists of strings stay)."""
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}
