"""On-disk cache of frozen-CLIP embeddings (text per prompt, image per frame), so that
training does not run the CLIP towers every step. Keyed by the CLIP spec (model,
pretrained tag, checkpoint sha256) and, for images, the preprocessing; the encode
function is passed in, so this module needs no CLIP import.

Layout under ``root``: ``text-<hash>/`` and ``image-<hash>/``, each with ``spec.json``,
``index.json`` (shard → sha256 and item ids) and one safetensors shard per computed batch.
Every file is written atomically; shards are immutable, so concurrent readers never see a
partial one. A shard whose bytes do not match its recorded sha256, or that fails to load,
is deleted and its items are recomputed."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from sound2img.utils.files import atomic_write_bytes, atomic_write_text

FORMAT_VERSION = 1
EncodeFn = Callable[[list[str]], torch.Tensor]


def spec_hash(spec: dict) -> str:
    """sha256 of the canonical JSON of ``spec`` (sorted keys): the cache directory key."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Text and image embeddings of one CLIP model, computed once and kept on disk.

    ``clip_spec`` is ``ClipTowers.spec()`` (model name, pretrained tag, checkpoint
    sha256, ...); ``preprocess`` the image preprocessing name (``clip``, ``styleclip``).
    Text embeddings depend on the CLIP spec only (the text tower never sees the image
    preprocessing, so both preprocessings share them); image embeddings on both."""

    def __init__(self, root: str | os.PathLike, clip_spec: dict, preprocess: str):
        self.root = Path(root)
        self.clip_spec = dict(clip_spec)
        self.preprocess = str(preprocess)
        text_spec = {"kind": "text", "clip": self.clip_spec, "version": FORMAT_VERSION}
        image_spec = {"kind": "image", "clip": self.clip_spec, "preprocess": self.preprocess, "version": FORMAT_VERSION}
        self.text = _ShardStore(self.root / f"text-{spec_hash(text_spec)[:20]}", text_spec)
        self.image = _ShardStore(self.root / f"image-{spec_hash(image_spec)[:20]}", image_spec)

    def get_text(self, prompts: Sequence[str], encode_fn: EncodeFn, batch_size: int = 256) -> torch.Tensor:
        """``text_emb [N,D]`` float32 for ``prompts`` (in order); only prompts never seen
        are passed to ``encode_fn(list[str]) -> [n,D]``, in batches of ``batch_size``."""
        return self.text.get(list(prompts), encode_fn, batch_size)

    def get_images(self, keys: Sequence[str], images_fn: EncodeFn, batch_size: int = 64) -> torch.Tensor:
        """``image_emb [N,D]`` float32 for item ``keys`` (dataset ``key``s); only missing
        keys are passed to ``images_fn(list[str]) -> [n,D]`` (which loads and encodes them)."""
        return self.image.get(list(keys), images_fn, batch_size)


class _ShardStore:
    """One directory of immutable shards plus an index, for one (kind, spec)."""

    def __init__(self, directory: Path, spec: dict):
        self.dir = directory
        self.spec = spec
        self._where: dict[str, tuple[str, int]] = {}  # item id -> (shard file name, row)
        self._shards: dict[str, dict] = {}  # shard file name -> {"sha256", "ids"}
        self._loaded: dict[str, torch.Tensor] = {}  # shard file name -> emb [n,D]
        self.num_computed = 0  # items this instance had to encode
        self.refresh()

    # ---- index ----------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the index and pick up shards other processes wrote since."""
        shards = self._read_index()
        if self.dir.is_dir():
            for path in self.dir.glob("*.safetensors"):
                if path.name not in shards:  # written, but its index update was lost
                    ids = _shard_ids(path)
                    if ids is not None:
                        shards[path.name] = {"sha256": None, "ids": ids}
        self._shards = shards
        self._where = {item: (name, row) for name, entry in shards.items() for row, item in enumerate(entry["ids"])}

    def _read_index(self) -> dict[str, dict]:
        try:
            index = json.loads((self.dir / "index.json").read_text(encoding="utf-8"))
            return {k: {"sha256": v["sha256"], "ids": list(v["ids"])} for k, v in index["shards"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}  # absent or unreadable: rebuilt from the shards themselves

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise index updates between processes (readers never lock)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # not POSIX: atomic renames still keep every file whole
            yield
            return
        with open(self.dir / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _update_index(self, add: dict[str, dict] | None = None, drop: Sequence[str] = ()) -> None:
        with self._locked():
            shards = self._read_index()
            shards.update(add or {})
            for name in drop:
                shards.pop(name, None)
                (self.dir / name).unlink(missing_ok=True)
            if not (self.dir / "spec.json").exists():
                atomic_write_text(self.dir / "spec.json", json.dumps(self.spec, indent=1, sort_keys=True, default=str))
            atomic_write_text(self.dir / "index.json", json.dumps({"format": FORMAT_VERSION, "shards": shards}))
        for name in drop:
            self._loaded.pop(name, None)
        self.refresh()

    # ---- reading and computing ------------------------------------------------------
    def get(self, items: list[str], compute: EncodeFn, batch_size: int) -> torch.Tensor:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if any(item not in self._where for item in items):
            self.refresh()
        rows = self._gather(items)
        missing = list(dict.fromkeys(item for item, row in zip(items, rows) if row is None))
        for start in range(0, len(missing), batch_size):
            self._compute(missing[start : start + batch_size], compute)
        if missing:
            rows = self._gather(items)
            if any(row is None for row in rows):  # a shard vanished between writing and reading
                raise RuntimeError(f"embedding cache {self.dir}: items still missing after encoding")
        if not items:
            return torch.zeros(0, self._dim() or 0)
        return torch.stack(rows)

    def _gather(self, items: list[str]) -> list[torch.Tensor | None]:
        """Each item's embedding, or None where it is not cached. Corrupt shards found on
        the way are deleted (their items then count as not cached)."""
        while True:
            out: list[torch.Tensor | None] = []
            corrupt: set[str] = set()
            for item in items:
                where = self._where.get(item)
                emb = self._load_shard(where[0]) if where is not None and where[0] not in corrupt else None
                if where is not None and emb is None:
                    corrupt.add(where[0])
                out.append(emb[where[1]] if emb is not None else None)
            if not corrupt:
                return out
            self._update_index(drop=sorted(corrupt))

    def _load_shard(self, name: str) -> torch.Tensor | None:
        if name in self._loaded:
            return self._loaded[name]
        entry = self._shards[name]
        try:
            data = (self.dir / name).read_bytes()
            if entry["sha256"] is not None and hashlib.sha256(data).hexdigest() != entry["sha256"]:
                return None
            emb = st_load(data)["emb"]
        except (OSError, SafetensorError, KeyError, ValueError, RuntimeError):
            return None
        if emb.ndim != 2 or emb.shape[0] != len(entry["ids"]):
            return None
        self._loaded[name] = emb
        return emb

    def _dim(self) -> int | None:
        """Width of the cached embeddings (None while the store is empty)."""
        for emb in self._loaded.values():
            return int(emb.shape[1])
        for name in list(self._shards):
            emb = self._load_shard(name)
            if emb is not None:
                return int(emb.shape[1])
        return None

    def _compute(self, items: list[str], compute: EncodeFn) -> None:
        emb = compute(list(items))
        if not isinstance(emb, torch.Tensor) or emb.ndim != 2 or emb.shape[0] != len(items):
            raise ValueError(
                f"embedding cache: the encode function returned "
                f"{getattr(emb, 'shape', type(emb))} for {len(items)} items (want [n,D])"
            )
        dim = self._dim()
        if dim is not None and emb.shape[1] != dim:
            raise ValueError(f"embedding cache {self.dir}: new embeddings have width {emb.shape[1]}, cached ones {dim}")
        emb = emb.detach().to("cpu", torch.float32).contiguous()
        data = st_save({"emb": emb}, metadata={"ids": json.dumps(items), "format": str(FORMAT_VERSION)})
        name = f"shard-{uuid.uuid4().hex}.safetensors"
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.dir / name, data)
        self._loaded[name] = emb
        self.num_computed += len(items)
        self._update_index(add={name: {"sha256": hashlib.sha256(data).hexdigest(), "ids": items}})


def _shard_ids(path: Path) -> list[str] | None:
    """Item ids stored in a shard's metadata (None if it cannot be read)."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            return list(json.loads(fh.metadata()["ids"]))
    except (OSError, SafetensorError, KeyError, ValueError, TypeError):
        return None
