"""The edge of ``scripts/train_encoder.py``: flags and ``key=value`` overrides → a
composed ``train_encoder`` config → its schema's dataclasses (``cli.to_object``, once) →
the run directory, datasets and networks (``sound2img.factory``) and the one
``training_loop`` call."""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sound2img.cli import (
    ArgumentParser,
    add_common_args,
    check_config,
    compose_with_flags,
    parse_with_overrides,
    to_object,
    to_yaml,
)
from sound2img.errors import UserInputError
from sound2img.utils.files import atomic_write_text

if TYPE_CHECKING:
    from sound2img.config import TrainEncoderConfig

# What a run directory holds; --overwrite removes exactly these (the embedding cache is
# keyed by the CLIP spec and stays valid).
RUN_FILES = ("config.yaml", "metrics.jsonl", "encoder_best.safetensors", "encoder_final.safetensors")
RUN_DIRS = ("checkpoints",)
DESCRIPTION = (
    "Train the audio encoder into CLIP's embedding space (docs/method.md §1). Extra words are "
    "Hydra overrides, e.g. experiment=paper, preset=tiny, data.root=DIR, train.batch_size=64."
)


def train_encoder_cli(argv: Sequence[str]) -> int:
    """``scripts/train_encoder.py``: parse, compose, then print (``--cfg job``) or train."""
    parser = ArgumentParser(prog="train_encoder.py", description=DESCRIPTION)
    add_common_args(parser)
    parser.add_argument("--out", help="run directory (sets run_dir)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="discard an existing run in --out and start again")
    parser.config_defaults = ("train_encoder", {"out": "run_dir", "resume": "resume", "overwrite": "overwrite"})
    args, overrides = parse_with_overrides(parser, argv)
    cfg = compose_with_flags(
        "train_encoder",
        overrides,
        {  # store_true flags: False means "not given"
            "run_dir": args.out,
            "device": args.device,
            "resume": args.resume or None,
            "overwrite": args.overwrite or None,
        },
    )
    cfg = effective_config(cfg)
    check_config("train_encoder", cfg)  # preset=tiny's tiny_run.train, now merged over train
    if args.cfg == "job":
        print(to_yaml(cfg), end="")
        return 0
    out = train_from_cfg(to_object(cfg), to_yaml(cfg))
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 reports
        return 0
    print(
        f"trained {out['step']} steps; encoder: {out['final']}"
        + (f"; best zero-shot accuracy {out['best_val_acc']:.4f} ({out['best']})" if out.get("best") else "")
    )
    return 0


def effective_config(cfg):
    """Apply ``preset=tiny`` (``tiny: true``): ``tiny_run.data`` replaces ``data`` and
    ``extra_data``, ``tiny_run.train`` is merged over ``train``. Returns a new config (of
    the same schema)."""
    import copy

    from omegaconf import OmegaConf

    cfg = copy.deepcopy(cfg)
    if cfg.tiny:
        cfg.data = cfg.tiny_run.data
        cfg.extra_data = {}
        cfg.train = OmegaConf.merge(cfg.train, cfg.tiny_run.train)
    return cfg


def prepare_run_dir(run_dir: Path, config_yaml: str, resume: bool, overwrite: bool) -> None:
    """Refuse an existing run unless ``resume`` or ``overwrite``; with ``overwrite`` remove
    its files; record ``config.yaml`` before anything else is written."""
    existing = [p for p in [*(run_dir / f for f in RUN_FILES), *(run_dir / d for d in RUN_DIRS)] if p.exists()]
    if existing and not resume:
        if not overwrite:
            raise UserInputError(
                f"{run_dir} already holds a run ({existing[0].name}); pass --resume to continue "
                "it or --overwrite to start again"
            )
        for p in existing:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    config_path = run_dir / "config.yaml"
    if resume and config_path.exists():
        old = config_path.read_text(encoding="utf-8")
        if _training_settings(old) != _training_settings(config_yaml):
            warnings.warn(
                f"resuming {run_dir} with a config that differs from its config.yaml; the run is "
                "only an exact continuation if the training settings are unchanged",
                stacklevel=2,
            )
        return
    atomic_write_text(config_path, config_yaml)


def _training_settings(config_yaml: str) -> dict:
    """A recorded config without ``resume`` and ``overwrite``: how this invocation was
    started, which a continuation changes by definition."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(OmegaConf.create(config_yaml))
    return {k: v for k, v in cfg.items() if k not in ("resume", "overwrite")} if isinstance(cfg, dict) else cfg


def train_from_cfg(cfg: TrainEncoderConfig, config_yaml: str) -> dict[str, Any]:
    """Train as ``cfg`` (an effective ``train_encoder`` config, as its schema's dataclasses)
    says; ``config_yaml`` is what the run records. Returns the loop's summary. Under
    ``torchrun`` every rank calls this; rank 0 owns the run directory."""
    import dataclasses

    from sound2img import factory
    from sound2img.needs import ensure_weights, train_needs
    from sound2img.training.loop import training_loop
    from sound2img.utils.distributed import broadcast_object, init_distributed, shutdown_distributed

    ensure_weights(train_needs(dataclasses.asdict(cfg)))  # offline: one message names every missing file
    run_dir = Path(cfg.run_dir)
    info = init_distributed(cfg.device)
    created: list[Path] | None = None
    finished = False
    try:
        problem = None
        if info.is_main:
            try:
                created = _paths_this_run_creates(run_dir, cfg.overwrite)
                prepare_run_dir(run_dir, config_yaml, cfg.resume, cfg.overwrite)
            except UserInputError as exc:
                problem = str(exc)
        problem = broadcast_object(problem, info)
        if problem:
            raise UserInputError(problem)

        terms = cfg.loss.terms
        need_clip = terms.at > 0 or terms.av > 0 or cfg.validation.data is not None
        torch.manual_seed(cfg.seed)  # the encoder's initialisation (the same on every rank)
        encoder, frontend = factory.build_encoder_from_cfg(cfg.encoder, cfg.audio, info.device)  # frozen
        clip = factory.build_clip_from_cfg(cfg.clip, info.device) if need_clip else None
        augment = factory.build_augment_from_cfg(cfg.augment)
        train_set, val_set = factory.build_training_sets(
            cfg, frontend.sample_rate, need_images=terms.av > 0, resampler=frontend.resampler
        )
        summary = training_loop(
            run_dir,
            encoder,
            frontend,
            train_set,
            val_set,
            clip=clip,
            augment=augment,
            loss=cfg.loss,
            optim=cfg.optim,
            train=cfg.train,
            seed=cfg.seed,
            resume=cfg.resume,
            wandb_project=cfg.logging.wandb_project if cfg.logging.wandb else None,
            run_config=config_yaml,
            device=info.device,
        )
        finished = True
        return summary
    except BaseException:
        if created is not None:
            _remove_failed_start(run_dir, created)
        raise
    finally:
        shutdown_distributed(wait_for_peers=finished)


def _paths_this_run_creates(run_dir: Path, overwrite: bool) -> list[Path]:
    """The run directory's entries that this run will create: those absent now (all of
    the run's own with ``overwrite``, which discards them), and the directory itself."""
    names = [*RUN_FILES, *RUN_DIRS, "embedding_cache"]
    paths = [run_dir / n for n in names if overwrite and n != "embedding_cache" or not (run_dir / n).exists()]
    return paths + ([run_dir] if not run_dir.exists() else [])


def _remove_failed_start(run_dir: Path, created: list[Path]) -> None:
    """A run that stops (bad data, Ctrl-C, a crash) before its first checkpoint leaves
    nothing to resume: remove what it created, so the directory is as it was and the same
    command can be run again. Once a checkpoint exists, everything stays for --resume."""
    from sound2img.training.checkpoint import list_checkpoints

    if list_checkpoints(run_dir / "checkpoints"):
        return
    for p in created:
        if p == run_dir:
            continue
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    if run_dir in created and run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()
