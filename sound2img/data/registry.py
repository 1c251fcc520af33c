"""Dataset readers by name: ``build_dataset(name, **kwargs)`` from plain arguments (a
config is translated to keyword arguments at the edge) and ``list_datasets()``."""

from __future__ import annotations

import inspect
from typing import Any

from sound2img.data.audioset import AudioSetDataset
from sound2img.data.base import AudioClipDataset, DatasetError
from sound2img.data.folds import ESC50Dataset, UrbanSound8KDataset
from sound2img.data.manifest import ManifestDataset
from sound2img.data.shards import ShardDataset
from sound2img.data.synthetic import SyntheticDataset
from sound2img.data.vggsound import VGGSoundDataset
from sound2img.registry import Registry

DATASETS: Registry[type[AudioClipDataset] | type[ShardDataset]] = Registry("dataset", error=DatasetError)
for _name, _cls in (
    ("vggsound", VGGSoundDataset),
    ("audioset", AudioSetDataset),
    ("esc50", ESC50Dataset),
    ("us8k", UrbanSound8KDataset),
    ("manifest", ManifestDataset),
    ("synthetic", SyntheticDataset),
    ("shards", ShardDataset),
):  # shards: WebDataset shards from scripts/prepare_data.py (a stream)
    DATASETS.register(_name, _cls)


def list_datasets() -> list[str]:
    """Names accepted by ``build_dataset``."""
    return DATASETS.names()


def build_dataset(name: str, **kwargs: Any) -> AudioClipDataset | ShardDataset:
    """The reader registered as ``name``, built from keyword arguments; an unknown name or
    argument is a ``DatasetError`` (a ``UserInputError``) naming it."""
    cls = DATASETS.get(name)
    allowed = _accepted_arguments(cls)
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise DatasetError(f"dataset {name!r}: unknown argument(s) {unknown}; accepted: {sorted(allowed)}")
    required = {
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"
    }
    if required - set(kwargs):
        raise DatasetError(f"dataset {name!r}: missing required argument(s) {sorted(required - set(kwargs))}")
    return cls(**kwargs)


def _accepted_arguments(cls: type) -> set[str]:
    """Keyword names of the reader's constructor plus the shared ones it forwards (file
    readers; a stream's constructor names all of its own)."""

    def named(fn) -> set[str]:
        return {
            p.name
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"
        }

    internal = {"records", "class_names", "bad_rows"}  # set by each reader, not by users
    if not issubclass(cls, AudioClipDataset):
        return named(cls.__init__)
    return (named(cls.__init__) | named(AudioClipDataset.__init__)) - internal
