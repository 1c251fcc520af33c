"""Training sets as streams (``IterableDataset``): how an epoch's items are split over
ranks and DataLoader workers so that each is read once per epoch, how many items every
rank is guaranteed (so all ranks take the same number of steps), and mixtures of a
streamed set (WebDataset shards) with file readers (``extra_data``).

A stream is planned once (``plan(rank, world, seed)``) and positioned before each epoch
(``start(epoch, skip)``); every DataLoader worker then reads its own part. Items are the
dicts of ``AudioClipDataset`` (``wav [S]``, ``text``, ``label``, ``image`` ...).
``combine_training_sets`` joins ``data`` and ``extra_data``: one ``ConcatClips`` of file
readers, or a ``MixedStream`` when one of them streams."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import ConcatDataset, Dataset, IterableDataset, get_worker_info

from sound2img.data.base import AudioClipDataset, item_seed


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """A permutation of ``range(n)`` drawn from (seed, epoch) only."""
    return np.random.default_rng([seed, epoch, 0x5EED]).permutation(n).tolist()


def split_for(n: int, seed: int, epoch: int, rank: int, world: int, worker: int, num_workers: int) -> list[int]:
    """The units (shards, or items) of ``range(n)`` that ``worker`` of ``num_workers`` on
    ``rank`` of ``world`` reads in ``epoch``, in reading order: the epoch's permutation,
    every ``world``-th unit from ``rank``, then every ``num_workers``-th from ``worker``.
    Over all ranks and workers the parts are disjoint and cover ``range(n)``."""
    if not (0 <= rank < world and 0 <= worker < num_workers):
        raise ValueError(f"bad split: rank {rank} of {world}, worker {worker} of {num_workers}")
    return epoch_order(n, seed, epoch)[rank::world][worker::num_workers]


def worker_position() -> tuple[int, int]:
    """``(worker, num_workers)`` of the calling DataLoader worker; ``(0, 1)`` in the main process."""
    info = get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


def round_robin_taken(skip: int, totals: Sequence[int]) -> list[int]:
    """How many of the first ``skip`` items a DataLoader delivered came from each worker,
    when worker ``w`` yields ``totals[w]`` items and the loader takes one from each live
    worker in turn (its in-order behaviour for streams)."""
    taken = [0] * len(totals)
    remaining = int(skip)
    alive = [w for w, t in enumerate(totals) if t > 0]
    while remaining > 0 and alive:
        rounds = min(min(totals[w] - taken[w] for w in alive), remaining // len(alive))
        if rounds == 0:
            for w in alive[:remaining]:
                taken[w] += 1
            break
        for w in alive:
            taken[w] += rounds
        remaining -= rounds * len(alive)
        alive = [w for w in alive if taken[w] < totals[w]]
    return taken


class _Parts:
    """What a set made of several training sets reports about all of them: the bad rows
    and unreadable samples skipped, and whether video frames are decoded."""

    def _parts(self) -> Sequence[Any]:
        raise NotImplementedError

    @property
    def num_skipped(self) -> int:
        """Bad rows and unreadable samples of every part (see ``AudioClipDataset``)."""
        return sum(int(getattr(p, "num_skipped", 0)) for p in self._parts())

    @property
    def load_images(self) -> bool:
        return any(getattr(p, "load_images", False) for p in self._parts())

    @load_images.setter
    def load_images(self, value: bool) -> None:
        for p in self._parts():
            if hasattr(p, "load_images"):
                p.load_images = value


class ClipStream(IterableDataset):
    """Base of the streamed training sets: rank placement, epoch and resume position."""

    name = "stream"

    def __init__(self) -> None:
        super().__init__()
        self.rank, self.world, self.order_seed = 0, 1, 0
        self.epoch, self.skip = 0, 0

    def plan(self, rank: int, world: int, seed: int) -> None:
        """Read as ``rank`` of ``world``; the order of every epoch is drawn from ``seed``."""
        self.rank, self.world, self.order_seed = int(rank), int(world), int(seed)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def start(self, epoch: int, skip: int = 0) -> None:
        """Position at ``epoch``, this rank having already consumed ``skip`` items of it."""
        self.set_epoch(epoch)
        self.skip = int(skip)

    def rank_quota(self, world: int) -> int:
        """Items every rank of ``world`` is guaranteed in every epoch (the loop's epoch length)."""
        raise NotImplementedError

    @property
    def num_skipped(self) -> int:
        raise NotImplementedError


class MapStream(ClipStream):
    """A file reader (``AudioClipDataset``) read as a stream: each epoch a permutation of
    its items split over ranks and workers; decoding, crops, prompts and skip-and-count
    stay the reader's own."""

    def __init__(self, dataset: AudioClipDataset):
        super().__init__()
        self.dataset = dataset
        self.name = dataset.name

    def __len__(self) -> int:
        return len(self.dataset)

    def rank_quota(self, world: int) -> int:
        return len(self.dataset) // world

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.dataset.set_epoch(epoch)

    @property
    def num_skipped(self) -> int:
        return self.dataset.num_skipped

    @property
    def load_images(self) -> bool:
        return self.dataset.load_images

    @load_images.setter
    def load_images(self, value: bool) -> None:
        self.dataset.load_images = value

    def __iter__(self) -> Iterator[dict[str, Any]]:
        w, nw = worker_position()
        n = len(self.dataset)
        parts = [split_for(n, self.order_seed, self.epoch, self.rank, self.world, k, nw) for k in range(nw)]
        done = round_robin_taken(self.skip, [len(p) for p in parts])[w]
        for index in parts[w][done:]:
            yield self.dataset[index]


class MixedStream(_Parts, ClipStream):
    """Several streams as one (``data`` + ``extra_data``): each worker interleaves its
    part of every stream at random (seeded), in proportion to what is left of each, so
    every item of every part is still read once per epoch."""

    def __init__(self, parts: Sequence[ClipStream]):
        super().__init__()
        self.parts = list(parts)
        self.name = "+".join(p.name for p in self.parts)

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    @property
    def datasets(self) -> list:
        """The underlying sets (file readers unwrapped), as ``ConcatDataset`` names them:
        what ``training.clip_embeddings`` looks into for prompts and frames."""
        return [p.dataset if isinstance(p, MapStream) else p for p in self.parts]

    def plan(self, rank: int, world: int, seed: int) -> None:
        super().plan(rank, world, seed)
        for i, p in enumerate(self.parts):
            p.plan(rank, world, seed + 7919 * i)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        for p in self.parts:
            p.set_epoch(epoch)

    def start(self, epoch: int, skip: int = 0) -> None:
        """Resume approximately: each part skips its share of ``skip``."""
        super().start(epoch, skip)
        quotas = [p.rank_quota(self.world) for p in self.parts]
        total = max(1, sum(quotas))
        for p, q in zip(self.parts, quotas):
            p.start(epoch, skip * q // total)

    def rank_quota(self, world: int) -> int:
        return sum(p.rank_quota(world) for p in self.parts)

    def _parts(self) -> Sequence[ClipStream]:
        return self.parts

    def __iter__(self) -> Iterator[dict[str, Any]]:
        w, _nw = worker_position()
        rng = random.Random(item_seed(self.order_seed, self.epoch, 1_000_003 * (self.rank + 1) + w))
        iters = [iter(p) for p in self.parts]
        left = [max(1, p.rank_quota(self.world)) for p in self.parts]  # proportions, not counts
        while iters:
            k = rng.choices(range(len(iters)), weights=left)[0]
            try:
                yield next(iters[k])
                left[k] = max(1, left[k] - 1)
            except StopIteration:
                del iters[k], left[k]


def as_stream(dataset) -> ClipStream:
    """``dataset`` itself when it streams, else a ``MapStream`` over it."""
    return dataset if isinstance(dataset, ClipStream) else MapStream(dataset)


class ConcatClips(_Parts, ConcatDataset):
    """Several file readers as one map-style training set (e.g. VGGSound + AudioSet):
    ``set_epoch`` and ``load_images`` reach every part."""

    def _parts(self) -> Sequence[Dataset]:
        return self.datasets

    def set_epoch(self, epoch: int) -> None:
        for d in self.datasets:
            if hasattr(d, "set_epoch"):
                d.set_epoch(epoch)


def combine_training_sets(parts: Sequence[Dataset]) -> Dataset:
    """``data`` + ``extra_data`` as one set: ``ConcatClips`` of file readers, or a
    ``MixedStream`` when one of them streams (the file readers then stream too)."""
    if len(parts) == 1:
        return parts[0]
    if any(isinstance(p, ClipStream) for p in parts):
        return MixedStream([as_stream(p) for p in parts])
    return ConcatClips(parts)
