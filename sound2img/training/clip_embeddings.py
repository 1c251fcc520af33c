"""The frozen CLIP side of a training step: text and frame embeddings of a batch, read
from the on-disk ``EmbeddingCache`` when the prompt set and frames are fixed (computed
once), encoded by the towers every step when they are not (EDA-augmented prompts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from sound2img.data.embedding_cache import EmbeddingCache
from sound2img.errors import UserInputError
from sound2img.utils.distributed import DistInfo, barrier


def frame_keys(dataset) -> set[str] | None:
    """Keys of the items of ``dataset`` that have a video frame (None when the dataset
    does not describe its records): which rows take part in a↔v, known without decoding."""
    parts = getattr(dataset, "datasets", None)
    if parts is not None:
        found = [frame_keys(d) for d in parts]
        return None if any(f is None for f in found) else set().union(*found)
    records = getattr(dataset, "records", None)
    return None if records is None else {rec.key for rec in records if rec.image is not None}


def fixed_prompts(dataset) -> list[str] | None:
    """Every prompt ``dataset`` can produce when that set is finite and known (records'
    own texts, or each class name through each template); None when prompts are
    EDA-augmented or the dataset does not describe its prompts."""
    own = getattr(dataset, "fixed_prompts", None)
    if callable(own):  # shards know their prompt set from their index (sound2img.data.shards)
        return own()
    parts = getattr(dataset, "datasets", None)
    if parts is not None:  # a concatenation: the union, if every part is fixed
        found = [fixed_prompts(d) for d in parts]
        return None if any(f is None for f in found) else list(dict.fromkeys(p for f in found for p in f))
    if getattr(dataset, "text_augment", True) or not hasattr(dataset, "records") or not hasattr(dataset, "templates"):
        return None
    prompts: dict[str, None] = {}
    for rec in dataset.records:
        if rec.text is not None:
            prompts[rec.text] = None
        else:
            for t in dataset.templates:
                prompts[t.format(rec.prompt_name or rec.class_name)] = None
    return list(prompts)


class ClipEmbeddings:
    """``text(prompts) -> text_emb [B,D]`` and ``images(batch) -> image_emb [B,D]``,
    both L2-normalised float32 on ``device``, never carrying a gradient."""

    def __init__(
        self,
        clip,
        device: torch.device,
        cache_dir: str | Path | None,
        need_text: bool,
        need_images: bool,
        info: DistInfo,
        frame_keys: set[str] | None = None,
    ):
        self.clip = clip.to(device)
        self.device = device
        self.need_text, self.need_images = need_text, need_images
        self.info = info
        spec = clip.spec()
        self.cache = EmbeddingCache(cache_dir, spec, spec.get("preprocess", "clip")) if cache_dir else None
        self.text_cached = False
        self.frame_keys = frame_keys  # None: trust the batch's has_image

    def precompute_text(self, prompts: list[str] | None) -> None:
        """Encode a fixed prompt set (``fixed_prompts(dataset)``) once, rank 0 first, so
        steps only read the cache; ``None`` (EDA-augmented prompts) means the towers run
        every step instead."""
        self.text_cached = prompts is not None and self.need_text and self.cache is not None
        if not self.text_cached:
            return
        if self.info.is_main:
            self.cache.get_text(prompts, self._encode_text)
        barrier(self.info)
        self.cache.get_text(prompts, self._encode_text)  # other ranks: load what rank 0 wrote

    @torch.no_grad()
    def _encode_text(self, prompts: list[str]) -> torch.Tensor:
        return self.clip.encode_text(prompts).float()

    @torch.no_grad()
    def text(self, prompts: list[str]) -> torch.Tensor:
        if self.text_cached:
            emb = self.cache.get_text(prompts, self._encode_text)
        else:
            emb = self._encode_text(prompts)
        return F.normalize(emb.to(self.device, torch.float32), dim=-1)

    @torch.no_grad()
    def images(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(image_emb [B,D], valid [B])`` for ``batch["key"]``: items without a frame
        get zero rows and ``valid`` False. Frames (``image [B,3,H,W] uint8``) are
        encoded only for keys the cache does not hold yet."""
        keys, images = list(batch["key"]), batch.get("image")
        if self.frame_keys is not None:
            valid = torch.tensor([k in self.frame_keys for k in keys], dtype=torch.bool)
        else:
            has = batch.get("has_image")
            valid = torch.full((len(keys),), images is not None) if has is None else has.cpu().bool()
        emb = torch.zeros(len(keys), self.clip.embed_dim, device=self.device)
        rows = torch.nonzero(valid).flatten().tolist()
        if rows:
            wanted = [keys[i] for i in rows]

            def encode(missing: list[str]) -> torch.Tensor:
                if images is None:
                    raise UserInputError(
                        f"{len(missing)} video frame embedding(s) are not cached and the dataset "
                        "no longer loads frames (was the embedding cache deleted mid-run?)"
                    )
                idx = [keys.index(k) for k in missing]
                img = images[idx].to(self.device).float() / 127.5 - 1.0  # uint8 → [-1,1]
                return self.clip.encode_image(img).float()

            got = self.cache.get_images(wanted, encode) if self.cache is not None else encode(wanted)
            emb[rows] = F.normalize(got.to(self.device, torch.float32), dim=-1)
        return emb, valid.to(self.device)
