"""Batch audio embedding of an evaluation dataset, fold by fold, through the encoder's own
front end with deterministic centre crops (the input of the zero-shot and probe tables)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from sound2img.evaluation.report import DISPLAY_NAMES
from sound2img.models.embedding import embed_audio

# The official folds of the fold-organised evaluation sets (what ``folds: null`` means).
ALL_FOLDS = {"esc50": tuple(range(1, 6)), "us8k": tuple(range(1, 11))}
# A peer encoder's own reader where it differs from ours: (front end, dataset) → (reader
# arguments, front-end settings, what the provenance line says). AudioCLIP's UrbanSound8K
# reader (utils/datasets/us8k.py and protocols/audioclip-us8k.json of its repository) keeps
# two channels (a mono file doubled), cuts at 4 s, maps each clip's min–max onto the int16
# range and pads to 176400 samples, centred, with the edge values; its ESC-50 reader
# (mono, times 32768, 5-s clips) is the audioclip front end's default.
PEER_READERS = {
    ("audioclip", "us8k"): (
        {"channels": 2, "crop": "start", "pad": "edge"},
        {"scale": "minmax"},
        "AudioCLIP's UrbanSound8K reader (two channels, min-max to int16, edge padding to 4 s)",
    ),
}


@dataclass(frozen=True)
class DatasetSpec:
    """Which fold-organised dataset to read: registry ``name`` (``esc50``, ``us8k``), its
    ``root`` as downloaded, the ``folds`` to use and further ``build_dataset`` keyword
    arguments (e.g. ``max_skip_fraction``)."""

    name: str
    root: str
    folds: tuple[int, ...]
    kwargs: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def display_name(self) -> str:
        return DISPLAY_NAMES.get(self.name, self.name)


@dataclass
class EmbeddedFolds:
    """Frozen audio embeddings of a fold-organised dataset."""

    audio_emb: torch.Tensor  # [N,D] L2-normalised, float32, CPU
    labels: torch.Tensor  # [N] class index into class_names
    folds: torch.Tensor  # [N] official fold of each clip
    keys: list[str]  # dataset key of each clip
    class_names: list[str]
    skipped: dict[int, int] = field(default_factory=dict)  # fold → unreadable clips left out

    reader: str = ""  # the peer's own reader, when it read the clips (PEER_READERS)

    def describe(self, spec: DatasetSpec) -> str:
        """The provenance line: dataset, root, folds, clip counts, unreadable clips, reader."""
        folds = ",".join(str(f) for f in spec.folds)
        skipped = sum(self.skipped.values())
        return (
            f"{spec.display_name} at {spec.root}, folds {folds}: {len(self.keys)} clips, "
            f"{len(self.class_names)} classes"
            + (f", {skipped} unreadable clips left out" if skipped else "")
            + (f", read by {self.reader}" if self.reader else "")
        )


def peer_reader(frontend: torch.nn.Module, dataset: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """``PEER_READERS``' entry for this front end and dataset, or ``({}, {}, "")``."""
    return PEER_READERS.get((getattr(frontend, "name", ""), dataset), ({}, {}, ""))


def rebuild_frontend(frontend: torch.nn.Module, settings: dict[str, Any]) -> torch.nn.Module:
    """The same front end with ``settings`` changed, on the same device."""
    from sound2img.audio.frontend import build_frontend

    spec = {**frontend.spec(), **settings}
    device = next(iter(frontend.buffers()), torch.empty(0)).device
    return build_frontend(spec.pop("name"), **spec).to(device)


@torch.no_grad()
def encode_dataset(
    dataset,
    encoder: torch.nn.Module,
    frontend: torch.nn.Module,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Every clip of ``dataset`` (items with fixed-length ``wav [S]``) → ``audio_emb [N,D]``
    (L2-normalised), ``labels [N]``, ``keys``.

    Batched: ``wav [B,S]`` → ``embed_audio`` (front end, encoder, normalisation). A clip
    the reader could not decode is replaced by the reader with the next readable one; those duplicates are dropped here (by item ``index``), so
    each clip counts once.
    """
    from torch.utils.data import DataLoader

    from sound2img.data.base import collate
    from sound2img.data.loading import iterate_loader

    batches = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate)
    loader = iterate_loader(batches)
    if progress:
        from tqdm import tqdm

        loader = tqdm(
            loader, total=len(batches), desc=f"embed {getattr(dataset, 'name', 'dataset')}", unit="batch", leave=False
        )
    embs, labels, keys, seen = [], [], [], set()
    for batch in loader:
        emb = embed_audio(batch["wav"].to(device), frontend, encoder).cpu()
        for i, index in enumerate(batch["index"].tolist()):
            if index in seen:
                continue
            seen.add(index)
            embs.append(emb[i])
            labels.append(int(batch["label"][i]))
            keys.append(batch["key"][i])
    if not embs:
        raise ValueError(f"{getattr(dataset, 'name', 'dataset')}: nothing was embedded")
    return torch.stack(embs), torch.tensor(labels, dtype=torch.long), keys


def encode_folds(
    spec: DatasetSpec, encoder: torch.nn.Module, frontend: torch.nn.Module, **loader: Any
) -> EmbeddedFolds:
    """Embed the folds of the dataset ``spec`` names, one fold at a time (``loader``:
    ``encode_dataset``'s batch_size, num_workers, device, progress).

    Audio is read at the front end's sample rate, through its resampler, with a
    deterministic centre crop (or end padding) to the dataset's clip length, so a run is
    reproducible; a peer encoder reads a dataset as its own reader did (``PEER_READERS``)."""
    from sound2img import factory

    peer, settings, reader_name = peer_reader(frontend, spec.name)
    if settings:
        frontend = rebuild_frontend(frontend, settings)
    reader = {
        "sample_rate": int(frontend.sample_rate),
        "resampler": getattr(frontend, "resampler", "soxr_hq"),
        "crop": "center",
        "load_images": False,
        **peer,
    }
    all_emb, all_labels, all_folds, all_keys, skipped = [], [], [], [], {}
    class_names: list[str] = []
    for fold in spec.folds:
        ds = factory.build_fold_dataset(spec, [fold], **reader)
        emb, labels, keys = encode_dataset(ds, encoder, frontend, **loader)
        class_names = list(ds.class_names)
        skipped[int(fold)] = len(ds) - len(keys)
        all_emb.append(emb)
        all_labels.append(labels)
        all_keys += keys
        all_folds.append(torch.full_like(labels, int(fold)))
    return EmbeddedFolds(
        torch.cat(all_emb), torch.cat(all_labels), torch.cat(all_folds), all_keys, class_names, skipped, reader_name
    )
