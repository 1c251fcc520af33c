"""Iterating a DataLoader so that an error from a worker is the last thing it says."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any


def iterate_loader(loader: Iterable[Any]) -> Iterator[Any]:
    """Yield ``loader``'s batches. If fetching one raises (e.g. a ``DatasetError`` once
    ``max_skip_fraction`` is crossed in a worker) or the caller stops early, the worker
    processes are shut down and joined *before* the exception propagates: no worker can
    print a line after the one error line, whatever the number of workers."""
    it = iter(loader)
    try:
        yield from it
    finally:
        # Multi-process iterators own workers; the single-process one has nothing to stop.
        # DataLoader has no public way to stop its workers other than dropping the iterator,
        # and the exception's traceback keeps it alive until after the error is printed.
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
