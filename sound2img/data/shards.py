"""WebDataset tar shards of training clips (``scripts/prepare_data.py`` writes them,
``data=shards`` reads them): the per-sample layout, the shard index, and
``ShardDataset``, a stream over shards split across ranks and DataLoader workers.

One sample is a group of tar members sharing the key ``{number:09d}`` (its position in
the prepared order): ``.flac`` (mono 16-bit PCM at the index's sample rate, already
cropped), ``.jpg`` (the middle video frame, when the dataset has one), ``.txt`` (the
record's own text, else its class name) and ``.json`` (key, label, class and prompt
names, source file, crop offset). ``index.json`` beside the shards lists every shard
with its sample count, size and sha256, the class names, the prompt names and the
samples that could not be prepared, with reasons (README "Training at scale")."""

from __future__ import annotations

import io
import json
import logging
import os
import random
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sound2img.data.base import READ_ERRORS, DatasetError, Record, SampleReadError, fix_length, item_seed, square_image
from sound2img.data.prompts import augment_text, make_prompt, training_templates
from sound2img.data.streams import ClipStream, round_robin_taken, split_for, worker_position

INDEX_NAME = "index.json"
INDEX_FORMAT = "sound2img-shards/1"
PCM_SCALE = 32768.0  # int16 full scale: x_int = round(x · 32768), read back as x_int / 32768
log = logging.getLogger(__name__)


# ---- sample layout ------------------------------------------------------------------
def to_pcm16(wav: torch.Tensor | np.ndarray) -> np.ndarray:
    """``wav [S]`` float in [-1, 1] → ``[S] int16`` (rounded, clipped): what a shard stores,
    and exactly what ``decode_sample`` gives back divided by 32768."""
    x = np.asarray(wav, dtype=np.float64) * PCM_SCALE
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def encode_sample(
    number: int,
    pcm: np.ndarray,
    sample_rate: int,
    meta: dict[str, Any],
    text: str,
    image: torch.Tensor | None = None,
    jpeg_quality: int = 90,
) -> dict[str, Any]:
    """One prepared clip → the member bytes of a WebDataset sample (``TarWriter`` input).
    ``pcm [S] int16``; ``image [3,H,W] uint8`` or None; ``meta`` must be JSON-serialisable."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.asarray(pcm, dtype=np.int16), int(sample_rate), format="FLAC", subtype="PCM_16")
    sample = {
        "__key__": f"{int(number):09d}",
        "flac": buf.getvalue(),
        "txt": text.encode("utf-8"),
        "json": json.dumps(meta, sort_keys=True).encode("utf-8"),
    }
    if image is not None:
        from PIL import Image

        jpg = io.BytesIO()
        Image.fromarray(image.permute(1, 2, 0).contiguous().numpy()).save(jpg, format="JPEG", quality=jpeg_quality)
        sample["jpg"] = jpg.getvalue()
    return sample


def decode_audio(data: bytes) -> tuple[np.ndarray, int]:
    """A sample's ``.flac`` → ``(pcm [S] int16, sample_rate)``."""
    import soundfile as sf

    pcm, sr = sf.read(io.BytesIO(data), dtype="int16", always_2d=False)
    if pcm.ndim != 1:
        raise SampleReadError(f"expected mono audio, got {pcm.shape[1]} channels")
    return pcm, int(sr)


def decode_image(data: bytes) -> torch.Tensor:
    """A sample's ``.jpg`` → ``img [3,H,W] uint8`` RGB."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous()


# ---- index --------------------------------------------------------------------------
def read_index(path: str | os.PathLike) -> dict[str, Any]:
    """A shard set's ``index.json``; ``DatasetError`` when missing or not one."""
    path = Path(path)
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(
            f"shards: index {path} not found (prepare_data.py writes it beside the shards; "
            "pass data.index=PATH when the shards are elsewhere)"
        ) from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"shards: cannot read index {path}: {exc}") from exc
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        raise DatasetError(
            f"shards: {path} is not a shard index of this version (format "
            f"{index.get('format') if isinstance(index, dict) else None!r})"
        )
    return index


def expand_urls(urls: str | Sequence[str]) -> list[str]:
    """Brace patterns (``shards/{000000..000199}.tar``) and ``::``-separated lists, as
    WebDataset expands them; a list is expanded item by item."""
    from webdataset.shardlists import expand_urls as wds_expand

    items = [urls] if isinstance(urls, str) else list(urls)
    return [u for item in items for u in wds_expand(str(item))]


_SHARD_NAME = re.compile(r"([^/\s'\"]+\.tar)(?![^\s'\"]*/)")


def shard_name(url: str) -> str:
    """The shard's file name in ``url`` (a path, a URL, or a ``pipe:`` command naming it)."""
    found = _SHARD_NAME.findall(url)
    if not found:
        raise DatasetError(f"shards: cannot tell which shard {url!r} is (no NAME.tar in it)")
    return found[-1]


def default_index_path(urls: Sequence[str]) -> Path:
    """``index.json`` beside the first shard, which must be a local path."""
    first = urls[0]
    if first.startswith("pipe:") or "://" in first:
        raise DatasetError(f"shards: {first} is not a local file; pass data.index=PATH of its index.json")
    return Path(first.removeprefix("file:")).parent / INDEX_NAME


def quota_for(counts: Sequence[int], world: int) -> int:
    """Samples every rank is sure to read in any epoch when shards are dealt one each in
    turn: a rank gets at least ``len(counts) // world`` shards, so at least the sum of
    that many smallest counts."""
    return int(sum(sorted(int(c) for c in counts)[: len(counts) // world]))


# ---- reader -------------------------------------------------------------------------
class ShardDataset(ClipStream):
    """Clips from WebDataset shards, as a stream.

    Each epoch the shard list is permuted from (seed, epoch), dealt to ranks and then to
    DataLoader workers (``streams.split_for``); each worker reads its shards in turn
    through WebDataset's openers (local paths, ``file:``, ``pipe:CMD``, http) into a
    shuffle buffer of ``shuffle_buffer`` samples seeded from (seed, epoch, rank, worker).
    Items are ``AudioClipDataset``'s: ``{"wav" [num_samples] float32, "text", "label",
    "class_name", "image" [3,size,size] uint8 | None, "key", "index"}``; crops and
    prompts are drawn from (``seed``, epoch, sample number) as the file readers do.
    A sample that fails to decode, or a shard that is unreadable or ends early (its
    count is in the index), is skipped and counted (shared by the workers); past
    ``max_skip_fraction`` of all samples ``DatasetError`` stops the run."""

    name = "shards"

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        index: str | None = None,  # None: each shard dir's index.json
        sample_rate: int = 16000,  # Hz; must be the rate the shards were prepared at
        resampler: str | None = None,  # when given, must be how the shards were resampled
        num_samples: int | None = None,  # crop length; None: the prepared length
        crop: str = "random",
        templates: Sequence[str] | None = None,
        text_augment: bool = False,
        seed: int = 0,
        max_skip_fraction: float = 0.05,
        load_images: bool = True,
        image_size: int | None = 224,
        shuffle_buffer: int = 1000,  # samples held for shuffling, per worker; 0/1 = shard order
        clip_seconds: float | None = None,
    ):  # unused here: accepted so data configs stay uniform
        super().__init__()
        self.urls = expand_urls(urls) if urls else []
        if not self.urls:
            raise DatasetError("shards: data.urls names no shard (e.g. data.urls='shards/{000000..000009}.tar')")
        # one index per shard directory (several prepared sets may be read as one), or the given one
        paths = [Path(index) if index else default_index_path([u]) for u in self.urls]
        self.indexes = {p: read_index(p) for p in dict.fromkeys(paths)}
        self.counts = []
        for url, path in zip(self.urls, paths):
            entry = next((s for s in self.indexes[path]["shards"] if s["name"] == shard_name(url)), None)
            if entry is None:
                raise DatasetError(f"shards: {shard_name(url)} ({url}) is not in {path}")
            self.counts.append(int(entry["count"]))
        for path, idx in self.indexes.items():
            if int(idx["sample_rate"]) != int(sample_rate):
                raise DatasetError(
                    f"shards: {path.parent} was prepared at {idx['sample_rate']} Hz but the front end "
                    f"needs {sample_rate} Hz; run prepare_data.py with the same audio config"
                )
            # indexes written before the resampler was recorded were all prepared with soxr_hq
            if resampler is not None and idx.get("resampler", "soxr_hq") != resampler:
                raise DatasetError(
                    f"shards: {path.parent} was resampled with {idx.get('resampler', 'soxr_hq')} but the front "
                    f"end reads audio with {resampler}; run prepare_data.py with the same audio config"
                )
        self.sample_rate = int(sample_rate)
        self.num_samples = int(num_samples or max(idx["num_samples"] for idx in self.indexes.values()))
        self.crop = crop
        # labels index the union of the sets' class names (one set: its own order)
        self.class_names = list(dict.fromkeys(c for idx in self.indexes.values() for c in idx["class_names"]))
        self._label_of = {c: i for i, c in enumerate(self.class_names)}
        self.templates = tuple(templates) if templates else training_templates()
        self.text_augment = bool(text_augment)
        self.seed = int(seed)
        if not 0.0 <= float(max_skip_fraction) <= 1.0:
            raise DatasetError(f"shards: max_skip_fraction must be in [0, 1], got {max_skip_fraction}")
        self.max_skip_fraction = float(max_skip_fraction)
        self.load_images = bool(load_images)
        self.image_size = image_size
        self.shuffle_buffer = int(shuffle_buffer)
        # Skipped samples per shard, in shared memory so every DataLoader worker adds to one
        # count; a shard re-read in a later epoch overwrites (not adds to) its own entry.
        self._skipped = torch.zeros(len(self.urls), dtype=torch.int64).share_memory_()
        self._reasons: list[str] = []
        self._epoch_missing: dict[tuple[int, int], int] = {}  # (epoch, shard) → skipped, this worker

    def __len__(self) -> int:
        return sum(self.counts)

    def rank_quota(self, world: int) -> int:
        if len(self.urls) < world:
            raise DatasetError(
                f"shards: {len(self.urls)} shard(s) cannot be split over {world} ranks; "
                "prepare with a smaller --shard-size"
            )
        return quota_for(self.counts, world)

    @property
    def num_skipped(self) -> int:
        """Samples skipped so far: undecodable ones, and those of unreadable or short shards."""
        return int(self._skipped.sum())

    @property
    def skip_reasons(self) -> list[str]:
        return list(self._reasons)

    def fixed_prompts(self) -> list[str] | None:
        """Every prompt this set can produce, when prompts are not augmented (for the text
        embedding cache): the records' own texts and each prompt name through each template."""
        if self.text_augment or any(idx.get("texts") is None for idx in self.indexes.values()):
            return None
        prompts: dict[str, None] = {}
        for idx in self.indexes.values():
            prompts.update(dict.fromkeys(idx["texts"]))
            for name in idx.get("prompt_names", []):
                prompts.update(dict.fromkeys(t.format(name) for t in self.templates))
        return list(prompts)

    # ---- reading --------------------------------------------------------------------
    def my_shards(self, worker: int, num_workers: int) -> list[int]:
        """Indices into ``urls`` that ``worker`` reads this epoch, after the resume skip:
        whole shards whose samples were all delivered before the checkpoint are dropped
        (shard granularity; see README "Training at scale"). Deliveries are counted as if
        the loader took one item from each worker in turn; it takes whole batches, so the
        count is right to within a batch per worker."""
        parts = [
            split_for(len(self.urls), self.order_seed, self.epoch, self.rank, self.world, k, num_workers)
            for k in range(num_workers)
        ]
        mine = parts[worker]
        if self.skip <= 0:
            return mine
        done = round_robin_taken(self.skip, [sum(self.counts[i] for i in p) for p in parts])[worker]
        while mine and self.counts[mine[0]] <= done:
            done -= self.counts[mine[0]]
            mine = mine[1:]
        return mine

    def __iter__(self) -> Iterator[dict[str, Any]]:
        from webdataset.filters import shuffle

        worker, num_workers = worker_position()
        raw = self._raw_samples(self.my_shards(worker, num_workers))
        if self.shuffle_buffer > 1:
            rng = random.Random(item_seed(self.order_seed, self.epoch, 1 + self.rank * 4096 + worker))
            raw = shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, rng=rng)(raw)
        for sample in raw:
            item = self._decode(sample)
            if item is not None:
                yield item

    def _raw_samples(self, shard_ids: list[int]) -> Iterator[dict[str, Any]]:
        """Undecoded samples (``{"__key__", "flac", "json", ...}`` bytes) of each shard in
        turn, each tagged with its shard; a shard that fails or ends early is counted."""
        from webdataset.tariterators import tarfile_samples

        for shard in shard_ids:
            errors: list[BaseException] = []

            def handler(exc: BaseException, errors: list[BaseException] = errors) -> bool:
                errors.append(exc)
                return True  # skip what failed and go on (WebDataset's convention)

            got = 0
            try:
                for sample in tarfile_samples([{"url": self.urls[shard]}], handler=handler):
                    sample["__shard__"] = shard
                    got += 1
                    yield sample
            except READ_ERRORS as exc:  # raised outside WebDataset's handlers (e.g. closing a pipe)
                errors.append(exc)
            missing = max(0, self.counts[shard] - got)
            if missing or errors:
                why = _first_line(errors[0]) if errors else f"ended after {got} of {self.counts[shard]} samples"
                self._count(shard, missing, f"{self.urls[shard]}: {why}")

    def _count(self, shard: int, missing: int, reason: str) -> None:
        """Record ``missing`` more skipped samples of ``shard`` this epoch, warn, and stop
        past the threshold."""
        key = (self.epoch, shard)
        self._epoch_missing[key] = self._epoch_missing.get(key, 0) + missing
        self._skipped[shard] = max(int(self._skipped[shard]), self._epoch_missing[key])
        if len(self._reasons) < 5:
            self._reasons.append(reason)
        total = sum(self.counts)
        log.warning("shards: skipped %d sample(s) (%d of %d so far): %s", missing, self.num_skipped, total, reason)
        if self.num_skipped / max(1, total) > self.max_skip_fraction:
            raise DatasetError(
                f"shards: {self.num_skipped} of {total} samples unreadable "
                f"({self.num_skipped / max(1, total):.1%} > max_skip_fraction "
                f"{self.max_skip_fraction:.1%}); first: {'; '.join(self._reasons[:3])}"
            )

    def _decode(self, sample: dict[str, Any]) -> dict[str, Any] | None:
        shard = sample["__shard__"]
        try:
            meta = json.loads(sample["json"])
            number = int(sample["__key__"])
            pcm, sr = decode_audio(sample["flac"])
            if sr != self.sample_rate:
                raise SampleReadError(f"audio at {sr} Hz, index says {self.sample_rate} Hz")
            image = None
            if self.load_images and "jpg" in sample:
                image = square_image(decode_image(sample["jpg"]), self.image_size)
        except (*READ_ERRORS, KeyError) as exc:
            self._count(shard, 1, f"{self.urls[shard]} sample {sample.get('__key__')}: {_first_line(exc)}")
            return None
        seed = item_seed(self.seed, self.epoch, number)
        gen = torch.Generator().manual_seed(seed)
        wav = fix_length(torch.from_numpy(pcm.astype(np.float32) / PCM_SCALE), self.num_samples, self.crop, gen)
        rec = Record(
            key=meta["key"],
            audio=None,
            label=self._label_of[meta["class_name"]],
            class_name=meta["class_name"],
            text=meta.get("text"),
            prompt_name=meta.get("prompt_name"),
        )
        rng = random.Random(seed)  # as AudioClipDataset.make_text: one generator, prompt then EDA
        text = rec.text if rec.text is not None else make_prompt(rec.prompt_name or rec.class_name, rng, self.templates)
        if self.text_augment:
            text = augment_text(text, rng)
        return {
            "wav": wav,
            "text": text,
            "label": rec.label,
            "class_name": rec.class_name,
            "image": image,
            "key": rec.key,
            "index": number,
        }


def _first_line(exc: BaseException) -> str:
    text = str(exc.args[0]) if getattr(exc, "args", None) else str(exc)
    return f"{type(exc).__name__}: {text}".splitlines()[0]
