"""The edge of ``scripts/prepare_data.py``: flags and ``key=value`` overrides → a composed
``prepare_data`` config → its schema's dataclass (``cli.to_object``, once) → the dataset
reader (``factory.build_shard_source``) → ``sound2img.data.prepare.prepare_shards``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sound2img.cli import ArgumentParser, add_common_args, compose_with_flags, parse_with_overrides, to_object, to_yaml

if TYPE_CHECKING:
    from sound2img.config import PrepareDataConfig

DESCRIPTION = (
    "Decode a dataset once into WebDataset shards (mono, resampled to the front end's rate, cropped "
    "to clip_seconds; FLAC audio, JPEG middle frame, texts, metadata) plus index.json. A rerun "
    "writes only missing shards. Extra words are Hydra overrides, e.g. data=vggsound data.root=DIR."
)


def prepare_data_cli(argv: Sequence[str]) -> int:
    """``scripts/prepare_data.py``: parse, compose, then print (``--cfg job``) or prepare."""
    parser = ArgumentParser(prog="prepare_data.py", description=DESCRIPTION)
    add_common_args(parser)
    parser.add_argument("--out", help="directory of the shards (sets out; required)")
    parser.add_argument("--shard-size", type=int, help="samples per shard (sets shard_size, default 1000)")
    parser.add_argument("--workers", type=int, help="processes decoding shards in parallel (sets workers)")
    parser.config_defaults = ("prepare_data", {"workers": "workers"})
    parser.add_argument(
        "--overwrite", action="store_true", help="discard shards prepared with other settings (default: off)"
    )
    args, overrides = parse_with_overrides(parser, argv)
    flags = {"out": args.out, "shard_size": args.shard_size, "workers": args.workers, "device": args.device}
    cfg = compose_with_flags("prepare_data", overrides, flags | {"overwrite": args.overwrite or None})
    if args.cfg == "job":
        print(to_yaml(cfg), end="")
        return 0
    cfg = to_object(cfg)
    index = prepare_from_cfg(cfg)
    print(
        f"{index['num_written']} samples in {index['num_shards']} shard(s) under {cfg.out}; "
        f"{index['num_skipped']} skipped (reasons in index.json)"
    )
    if cfg.embedding_cache_dir:
        frames = precompute_embeddings(cfg, index)
        print(f"CLIP embeddings of the prompts and {frames} frame(s) in {cfg.embedding_cache_dir}")
    return 0


def prepare_from_cfg(cfg: PrepareDataConfig) -> dict:
    """Build the configured dataset (centre crops of ``clip_seconds`` at the front end's
    rate, frames as decoded) and write its shards; returns the index."""
    from tqdm.auto import tqdm

    from sound2img import factory
    from sound2img.data.prepare import prepare_shards

    dataset, settings = factory.build_shard_source(cfg)
    with tqdm(total=len(dataset.records), unit="clip", disable=not cfg.progress, dynamic_ncols=True) as bar:
        return prepare_shards(
            dataset,
            cfg.out,
            settings=settings,
            shard_size=cfg.shard_size,
            workers=cfg.workers,
            seed=cfg.seed,
            jpeg_quality=cfg.jpeg_quality,
            overwrite=cfg.overwrite,
            progress=bar.update,
        )


def precompute_embeddings(cfg: PrepareDataConfig, index: dict, batch_size: int = 64) -> int:
    """Encode the shards' fixed prompt set and every frame with the configured CLIP into
    ``cfg.embedding_cache_dir``, exactly as training would (``ClipEmbeddings``, frames read
    back from the shards at the reader's default 224²), so training reads them from the
    cache. Returns the number of frames."""
    from pathlib import Path

    from sound2img import factory
    from sound2img.data import collate
    from sound2img.data.shards import ShardDataset
    from sound2img.training.clip_embeddings import ClipEmbeddings, fixed_prompts
    from sound2img.utils.device import resolve_device
    from sound2img.utils.distributed import DistInfo

    device = resolve_device(cfg.device)
    clip = factory.build_clip_from_cfg(cfg.clip, device)
    urls = [str(Path(cfg.out) / s["name"]) for s in index["shards"]]
    stream = ShardDataset(urls, sample_rate=int(index["sample_rate"]), crop="center", shuffle_buffer=0)
    targets = ClipEmbeddings(
        clip, device, cfg.embedding_cache_dir, need_text=True, need_images=True, info=DistInfo(0, 1, device)
    )
    targets.precompute_text(fixed_prompts(stream))
    frames, rows = 0, []
    for item in stream:
        if item["image"] is not None:
            rows.append(item)
        if len(rows) == batch_size:
            targets.images(collate(rows))
            frames, rows = frames + len(rows), []
    if rows:
        targets.images(collate(rows))
        frames += len(rows)
    return frames
