"""Decode a dataset once into WebDataset shards (``scripts/prepare_data.py``): each clip
mixed to mono, resampled to the front end's rate and centre-cropped to the training
length (the crop's offset kept in its metadata), with its middle frame and its texts;
the layout is ``sound2img.data.shards``'.

Samples are dealt to shards by a permutation of the records drawn from ``seed`` (shard
``i`` holds entries ``[i·shard_size, (i+1)·shard_size)`` of it, each keyed by its record
number), so a rerun assigns every sample to the
same shard and writes byte-identical shards. Each shard is written to a temporary file
and renamed (complete or absent); ``index.json`` is rewritten atomically after each
shard, so a rerun after a crash keeps the shards whose sha256 the index records and
writes only the rest."""

from __future__ import annotations

import json
import logging
import os
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sound2img.data.base import READ_ERRORS, AudioClipDataset
from sound2img.data.shards import INDEX_FORMAT, INDEX_NAME, encode_sample, to_pcm16
from sound2img.data.streams import epoch_order
from sound2img.errors import UserInputError
from sound2img.utils.files import atomic_path, atomic_write_text, remove_stale_temps, sha256_file

# Test hook: SIGKILL this process after writing that many samples (the crash tests stop
# a run mid-shard deterministically, without timing).
KILL_AFTER_ENV = "SOUND2IMG_TEST_PREPARE_KILL_AFTER"
MAX_INDEXED_TEXTS = 100_000  # beyond this many distinct texts the index does not list them
log = logging.getLogger(__name__)


def shard_file_name(shard: int) -> str:
    return f"{int(shard):06d}.tar"


def prepare_shards(
    dataset: AudioClipDataset,
    out: str | os.PathLike,
    *,
    settings: dict[str, Any],
    shard_size: int = 1000,
    workers: int = 1,
    seed: int = 0,
    jpeg_quality: int = 90,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Write ``dataset`` (crop length ``dataset.num_samples`` at ``dataset.sample_rate``)
    as shards ``out/000000.tar ...`` plus ``out/index.json``, and return the index.

    ``settings`` (plain data: dataset config, rates, sizes) is recorded; a rerun into the
    same ``out`` with the same settings resumes, with others it is refused unless
    ``overwrite``. ``progress(n)`` is called with the samples of each finished shard."""
    out = Path(out)
    if shard_size < 1 or workers < 1:
        raise UserInputError(f"--shard-size and --workers must be >= 1, got {shard_size} and {workers}")
    settings = {
        **settings,
        "shard_size": int(shard_size),
        "seed": int(seed),
        "jpeg_quality": int(jpeg_quality),
        "sample_rate": dataset.sample_rate,
        "num_samples": dataset.num_samples,
    }
    settings = json.loads(json.dumps(settings))  # plain JSON types, as a reread index has them
    index_path = out / INDEX_NAME
    done = _resumable_shards(index_path, settings, overwrite)
    order = epoch_order(len(dataset.records), seed, 0)
    num_shards = -(-len(order) // shard_size)
    index = _base_index(dataset, settings, num_shards)
    index["shards"] = [s for s in done if s["shard"] < num_shards]
    have = {s["shard"] for s in index["shards"]}
    todo = [i for i in range(num_shards) if i not in have]
    if progress is not None and have:
        progress(sum(s["count"] + len(s["skipped"]) for s in index["shards"]))
    _write_index(index_path, index)

    jobs = [(i, order[i * shard_size : (i + 1) * shard_size]) for i in todo]  # (shard, record numbers)
    if workers == 1 or len(jobs) <= 1:
        _init_worker(dataset, out, jpeg_quality)
        results = (_write_shard(i, numbers) for i, numbers in jobs)
        for result in results:
            _finish(index, index_path, result, progress)
    else:
        with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(dataset, out, jpeg_quality)) as pool:
            futures = [pool.submit(_write_shard, i, numbers) for i, numbers in jobs]
            for fut in as_completed(futures):
                _finish(index, index_path, fut.result(), progress)
    index["complete"] = True
    _write_index(index_path, index)
    return index


def _resumable_shards(index_path: Path, settings: dict[str, Any], overwrite: bool) -> list[dict[str, Any]]:
    """Shard entries of an earlier run in the same directory whose files are intact."""
    if not index_path.exists():
        strangers = sorted(index_path.parent.glob("[0-9][0-9][0-9][0-9][0-9][0-9].tar"))
        if strangers and not overwrite:  # shard names, but no index of ours: not ours to replace
            raise UserInputError(
                f"{strangers[0]} exists but {index_path} does not; use another --out, or "
                "pass --overwrite to replace those files"
            )
        return []
    try:
        old = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = None
    if not isinstance(old, dict) or old.get("format") != INDEX_FORMAT:
        if not overwrite:
            raise UserInputError(f"{index_path} exists and is not a shard index; pass --overwrite to replace it")
        old = {"shards": [], "settings": None}
    if old.get("settings") != settings:
        if not overwrite:
            raise UserInputError(
                f"{index_path.parent} holds shards prepared with other settings; use another "
                "--out, or pass --overwrite to discard them"
            )
        for s in old.get("shards", []):
            (index_path.parent / s["name"]).unlink(missing_ok=True)
        index_path.unlink()
        return []
    kept = []
    for s in old.get("shards", []):
        path = index_path.parent / s["name"]
        if path.is_file() and path.stat().st_size == s["bytes"] and sha256_file(path) == s["sha256"]:
            kept.append(s)
        else:
            log.warning("prepare: %s is missing or differs from the index; writing it again", path)
    return kept


def _base_index(dataset: AudioClipDataset, settings: dict[str, Any], num_shards: int) -> dict[str, Any]:
    recs = dataset.records
    texts = list(dict.fromkeys(r.text for r in recs if r.text is not None))
    return {
        "format": INDEX_FORMAT,
        "complete": False,
        "settings": settings,
        "dataset": dataset.name,
        "sample_rate": dataset.sample_rate,
        "resampler": dataset.resampler,
        "num_samples": dataset.num_samples,
        "num_shards": num_shards,
        "num_records": len(recs),
        "class_names": list(dataset.class_names),
        "prompt_names": list(dict.fromkeys(r.prompt_name or r.class_name for r in recs if r.text is None)),
        "texts": texts if len(texts) <= MAX_INDEXED_TEXTS else None,
        "bad_rows": list(getattr(dataset, "bad_rows", [])),
        "num_missing": int(getattr(dataset, "num_missing", 0)),
        "shards": [],
    }


def _finish(index: dict[str, Any], index_path: Path, result: dict[str, Any], progress) -> None:
    index["shards"] = sorted([*index["shards"], result], key=lambda s: s["shard"])
    _write_index(index_path, index)
    if progress is not None:
        progress(result["count"] + len(result["skipped"]))


def _write_index(path: Path, index: dict[str, Any]) -> None:
    index["num_written"] = sum(s["count"] for s in index["shards"])
    index["num_skipped"] = sum(len(s["skipped"]) for s in index["shards"])
    atomic_write_text(path, json.dumps(index, indent=1, sort_keys=True) + "\n")


# ---- one shard (in this process or a pool worker) -------------------------------------
_STATE: dict[str, Any] = {}


def _init_worker(dataset: AudioClipDataset, out: Path, jpeg_quality: int) -> None:
    _STATE.update(
        dataset=dataset,
        out=Path(out),
        jpeg_quality=int(jpeg_quality),
        written=0,
        kill_after=int(os.environ.get(KILL_AFTER_ENV, "0") or 0),
    )


def _write_shard(shard: int, numbers: list[int]) -> dict[str, Any]:
    """Decode the records ``numbers`` and write them as shard ``shard``; returns its
    index entry (count, bytes, sha256, skipped samples with reasons)."""
    from webdataset.writer import TarWriter

    dataset, out = _STATE["dataset"], _STATE["out"]
    path = out / shard_file_name(shard)
    remove_stale_temps(path)  # left by a run killed while writing this shard
    count, skipped = 0, []
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        # fixed owner and mtime: the same samples give byte-identical shards on every rerun
        with TarWriter(fh, encoder=False, mtime=0.0, user="sound2img", group="sound2img") as tar:
            for number in numbers:
                rec = dataset.records[number]
                try:
                    pcm, image, meta = prepare_record(dataset, number)
                except READ_ERRORS as exc:
                    reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
                    skipped.append({"key": rec.key, "source": rec.audio, "reason": reason})
                    log.warning("prepare: skipped %s: %s", rec.key, reason)
                    continue
                text = rec.text if rec.text is not None else rec.class_name
                tar.write(encode_sample(number, pcm, dataset.sample_rate, meta, text, image, _STATE["jpeg_quality"]))
                count += 1
                _STATE["written"] += 1
                if _STATE["kill_after"] and _STATE["written"] >= _STATE["kill_after"]:
                    fh.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
    return {
        "shard": shard,
        "name": path.name,
        "count": count,
        "bytes": path.stat().st_size,
        "sha256": sha256_file(path),
        "skipped": skipped,
    }


def prepare_record(dataset: AudioClipDataset, index: int) -> tuple[np.ndarray, torch.Tensor | None, dict[str, Any]]:
    """Record ``index`` of ``dataset`` → ``(pcm [S] int16, img [3,H,W] uint8 | None, meta)``:
    the whole clip decoded once (``audio.io.load_audio``: mono, resampled to
    ``dataset.sample_rate``), centre-cropped to ``dataset.num_samples`` (shorter clips are
    kept whole; readers pad), ``meta["offset_seconds"]`` where the crop starts."""
    from sound2img.audio.io import load_audio

    rec = dataset.records[index]
    sr, n = dataset.sample_rate, dataset.num_samples
    if rec.audio is None:  # generated sets (synthetic): the reader makes the wave
        wav = dataset.read_wav(index, torch.Generator().manual_seed(index))
    else:
        wav = load_audio(rec.audio, sr, resampler=dataset.resampler)  # the front end's, recorded in the index
    total = int(wav.shape[-1])
    offset = max(0, (total - n) // 2)
    wav = wav[offset : offset + n]
    image = dataset.read_image(index) if rec.image is not None else None
    meta = {
        "key": rec.key,
        "label": int(rec.label),
        "class_name": rec.class_name,
        "text": rec.text,
        "prompt_name": rec.prompt_name,
        "source": rec.audio,
        "offset_seconds": offset / sr,
        "source_seconds": total / sr,
        "sample_rate": sr,
    }
    return to_pcm16(wav.numpy()), image, meta
