"""The audio-encoder training loop (docs/method.md §1), edm-style: ``training_loop`` sets
up, resumes, then alternates ``train_epoch`` and ``end_epoch`` until the step budget is
spent; the same on a CPU, one GPU or ``torchrun`` DDP, with exact resume from its own
checkpoints."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from sound2img.data.loading import iterate_loader
from sound2img.data.prompts import encode_class_texts
from sound2img.errors import UserInputError
from sound2img.models.audio_encoder import save_audio_encoder
from sound2img.models.state_dict import load_state_dict_strict
from sound2img.training.batches import (
    ResumableSampler,
    StreamSampler,
    batches_per_epoch,
    epoch_loader,
    make_sampler,
    step_seed,
    to_device,
)
from sound2img.training.checkpoint import (
    capture_rng_state,
    load_latest_training_state,
    restore_rng_state,
    save_training_state,
)
from sound2img.training.clip_embeddings import ClipEmbeddings, fixed_prompts, frame_keys
from sound2img.training.losses import ContrastiveLoss, LogitScale
from sound2img.training.metrics import MetricsLogger
from sound2img.training.optimizer import autocast_dtype, build_optimizer, build_scheduler
from sound2img.training.step import ContrastiveModel, make_views
from sound2img.training.validation import zero_shot_accuracy
from sound2img.utils.distributed import DistInfo, all_gather_object, all_reduce_mean, barrier, init_distributed
from sound2img.utils.files import remove_stale_temps

STATE_FORMAT = "sound2img-train-state/1"


@dataclass
class Progress:
    """Where a run stands; the first five fields are saved in every training state."""

    step: int = 0  # optimiser steps taken
    epoch: int = 0  # current epoch (passes completed)
    batch_in_epoch: int = 0  # batches of the current epoch already trained
    best_acc: float = -1.0  # best zero-shot accuracy so far (-1: none yet)
    val_acc: float | None = None  # last zero-shot accuracy
    last_ckpt: int = -1  # step of the last checkpoint written by this process
    last_val: int = -1  # step of the last validation run by this process
    best_path: Path | None = None  # encoder_best.safetensors once written
    final_path: Path | None = None  # encoder_final.safetensors once written


@dataclass
class Trainer:
    """Everything a step, a checkpoint or a validation needs, built once by ``training_loop``."""

    info: DistInfo
    run_dir: Path
    student: ContrastiveModel  # encoder + loss (temperature), trained in place
    model: nn.Module  # ``student``, DDP-wrapped under torchrun
    loss_fn: ContrastiveLoss
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    sched_per_step: bool  # False: the scheduler moves once per epoch (the authors' CyclicLR)
    scaler: torch.amp.GradScaler
    autocast: Callable[[], contextlib.AbstractContextManager]
    frontend: nn.Module
    augment: Any
    targets: ClipEmbeddings | None
    train_set: Dataset
    sampler: ResumableSampler | StreamSampler
    with_frames: Any  # frame keys of the training set (a↔v), or None
    val_set: Dataset | None
    class_emb: torch.Tensor | None  # [C,D] zero-shot class prompts, None: no validation
    clip_spec: dict | None
    logger: MetricsLogger
    pbar: Any
    seed: int
    local_batch: int
    batch_size: int
    steps_per_epoch: int
    total_steps: int
    n_views: int
    clean_first_view: bool  # first view unaugmented (the authors' recipe)
    num_workers: int
    grad_clip: float | None
    log_every: int
    checkpoint_every: int
    keep_checkpoints: int
    run_config: str | None
    window: dict = field(default_factory=dict)  # logging window: "sums", "n", "t0"


def training_loop(
    run_dir,                            # Output directory: checkpoints/, metrics.jsonl, encoder_*.safetensors.
    encoder:        nn.Module,          # Audio encoder, mel [B,1,n_mels,T] -> audio_emb_raw [B,D]; trained in place.
    frontend:       nn.Module,          # Mel front end, wav [B,S] -> mel [B,1,n_mels,T]; fixed; has .spec().
    train_set:      Dataset,            # Items {"wav" [S], "text", "label", "image" | None, "key", ...}.
    val_set:        Dataset | None = None,  # Held-out split with .class_names: zero-shot accuracy each epoch.
    clip=None,                          # Frozen ClipTowers for the text/image targets (None: a↔â only).
    augment=None,                       # AudioAugment (gain on the wave, SpecAugment on the spectrogram); None = none.
    loss_terms:     Mapping[str, float] | None = None,  # Weights of "at", "av", "aa"; 0 = off. None = all 1.
    symmetric:      bool = True,        # Symmetric InfoNCE (paper) or audio -> target only.
    directions:     str = "mean",       # Symmetric terms: "mean" of the two directions (CLIP) or "sum" (paper).
    logit_scale:    str = "learnable",  # Temperature: "learnable" (CLIP), "fixed", "legacy" (authors' e^0.07).
    logit_scale_init: float = 1 / 0.07, # Initial (or fixed) multiplier on cosines.
    logit_scale_max: float = 100.0,     # Upper clamp of the learnable multiplier.
    batch_size:     int = 384,          # Global batch over all ranks, samples.
    epochs:         int = 50,           # Training length, passes over train_set.
    max_steps:      int | None = None,  # Stop after this many optimiser steps, if fewer (schedule unchanged).
    optimizer:      str = "sgd",        # "sgd" (paper: momentum, L2 weight decay) or "adamw".
    lr:             float = 1e-3,       # Peak learning rate.
    momentum:       float = 0.9,        # SGD momentum; AdamW beta1.
    weight_decay:   float = 1e-4,       # Weight decay (never applied to the temperature).
    lr_cycle_epochs: float = 10.0,      # Cosine annealing period with warm restarts, epochs.
    lr_min:         float = 0.0,        # Learning rate at the end of each cosine cycle.
    warmup_steps:   int = 0,            # Linear warm-up, optimiser steps.
    lr_schedule:    str = "cosine_restarts",  # "cosine_restarts" (per step) or "cyclic" (authors': CyclicLR per epoch).
    cyclic_max_lr:  float = 0.1,        # cyclic: the peak (lr is the base).
    cyclic_step_epochs: int = 5,        # cyclic: epochs from base to peak (and back).
    cyclic_base_momentum: float = 0.8,  # cyclic: momentum at the peak lr (momentum at the base lr).
    clean_first_view: bool = False,     # First view (a<->t, a<->v) unaugmented, second augmented (authors').
    separate_view_passes: bool = False, # One encoder pass per view (authors': per-view BatchNorm statistics).
    grad_clip:      float | None = None,  # Max global gradient norm; None = no clipping.
    amp:            str = "auto",       # "auto" (bf16/fp16 on CUDA, bf16 on a native-bf16 CPU, else off), "bf16", "fp16" (CUDA), "off".
    channels_last:  bool = False,       # NHWC memory format for conv encoders.
    seed:           int = 0,            # Data order, crops, prompts and augmentation draw from it.
    num_workers:    int = 0,            # DataLoader worker processes per rank.
    embedding_cache_dir=None,           # On-disk CLIP embedding cache; None = <run_dir>/embedding_cache.
    checkpoint_every: int = 1000,       # Training-state checkpoint period, optimiser steps.
    keep_checkpoints: int = 3,          # Training-state files kept (older ones deleted).
    resume:         bool = False,       # Continue from the newest readable checkpoint in run_dir.
    log_every:      int = 10,           # Metrics record period, optimiser steps.
    progress:       bool = True,        # tqdm progress bar (rank 0).
    wandb_project:  str | None = None,  # Mirror metrics to this wandb project (needs the wandb extra).
    clip_spec:      dict | None = None, # CLIP spec stored with the encoder; None = clip.spec().
    run_config:     str | None = None,  # Resolved config (YAML) kept in checkpoints for the record.
    device="auto",                      # "auto", "cpu", "cuda[:N]"; under torchrun, cuda:LOCAL_RANK.
) -> dict[str, Any]:  # fmt: skip
    """Train ``encoder`` and return ``{"step", "epoch", "final", "best", "best_val_acc",
    "val_acc"}`` (paths of the saved encoders and the last accuracies)."""
    info = init_distributed(device)
    dev = info.device
    run_dir = Path(run_dir)
    for name, value in (
        ("batch_size", batch_size),
        ("epochs", epochs),
        ("checkpoint_every", checkpoint_every),
        ("keep_checkpoints", keep_checkpoints),
        ("log_every", log_every),
    ):
        if int(value) < 1:
            raise UserInputError(f"{name} must be >= 1, got {value}")
    if max_steps is not None and max_steps < 0:
        raise UserInputError(f"max_steps must be >= 0 or None, got {max_steps}")
    if batch_size % info.world_size:
        raise UserInputError(f"batch_size {batch_size} is not divisible by the {info.world_size} ranks")
    local_batch = batch_size // info.world_size

    # ---- model, loss, optimiser ---------------------------------------------------------
    loss_fn = ContrastiveLoss(
        loss_terms,
        symmetric=symmetric,
        directions=directions,
        scale=LogitScale(logit_scale, init=logit_scale_init, max=logit_scale_max),
    )
    if (loss_fn.enabled("at") or loss_fn.enabled("av")) and clip is None:
        raise UserInputError("the a↔t and a↔v terms need CLIP towers (clip=None allows only loss_terms={'aa': w})")
    with_frames = frame_keys(train_set) if loss_fn.enabled("av") else None
    if loss_fn.enabled("av") and with_frames is not None and not with_frames:
        raise UserInputError(
            "the a↔v term is enabled but no training item has a video frame "
            "(set loss.terms.av=0, or train on a dataset with frames such as vggsound)"
        )
    frontend = frontend.to(dev).eval()
    student = ContrastiveModel(encoder, loss_fn, channels_last=channels_last, separate_passes=separate_view_passes).to(
        dev
    )
    if channels_last:
        student.encoder.to(memory_format=torch.channels_last)
    student.train()
    model = (
        DistributedDataParallel(student, device_ids=[dev.index] if dev.type == "cuda" else None)
        if info.distributed
        else student
    )
    opt = build_optimizer(student, optimizer, lr, momentum, weight_decay)

    sampler = make_sampler(train_set, info.world_size, info.rank, seed)  # streams (shards) split themselves
    steps_per_epoch = batches_per_epoch(sampler, local_batch)
    if steps_per_epoch == 0:
        raise UserInputError(
            f"training set of {len(train_set)} items is smaller than one batch "
            f"({batch_size} over {info.world_size} rank(s))"
        )
    total_steps = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    sched, sched_per_step = build_scheduler(
        opt,
        lr_schedule,
        optimizer,
        lr,
        momentum,
        steps_per_epoch,
        lr_cycle_epochs,
        lr_min,
        warmup_steps,
        cyclic_max_lr,
        cyclic_step_epochs,
        cyclic_base_momentum,
    )
    amp_dtype = autocast_dtype(amp, dev)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp_dtype == torch.float16)

    targets = (
        ClipEmbeddings(
            clip,
            dev,
            cache_dir=embedding_cache_dir or run_dir / "embedding_cache",
            need_text=loss_fn.enabled("at"),
            need_images=loss_fn.enabled("av"),
            info=info,
            frame_keys=with_frames,
        )
        if clip is not None
        else None
    )
    if targets is not None:
        targets.precompute_text(fixed_prompts(train_set))
    class_emb = None
    if val_set is not None:
        if clip is None:
            raise UserInputError("zero-shot validation needs CLIP towers (pass clip, or val_set=None)")
        class_emb = encode_class_texts(clip.encode_text, val_set.class_names).to(dev)

    # ---- where to start ---------------------------------------------------------------
    run = resume_progress(run_dir / "checkpoints", student, opt, sched, scaler, info, seed) if resume else None
    resumed = run is not None
    if run is None:
        run = Progress()
        torch.manual_seed(step_seed(seed, 0, info.rank, stream=1))
    best = run_dir / "encoder_best.safetensors"
    run.best_path = best if best.exists() else None

    t = Trainer(
        info=info,
        run_dir=run_dir,
        student=student,
        model=model,
        loss_fn=loss_fn,
        opt=opt,
        sched=sched,
        sched_per_step=sched_per_step,
        scaler=scaler,
        autocast=functools.partial(_autocast, amp_dtype, dev.type),
        frontend=frontend,
        augment=augment,
        targets=targets,
        train_set=train_set,
        sampler=sampler,
        with_frames=with_frames,
        val_set=val_set,
        class_emb=class_emb,
        clip_spec=clip_spec if clip_spec is not None else (clip.spec() if clip is not None else None),
        logger=MetricsLogger(
            run_dir,
            enabled=info.is_main,
            resume_step=run.step if resumed else None,
            wandb_project=wandb_project,
            config={"run_config": run_config, "autocast": str(amp_dtype).removeprefix("torch.") if amp_dtype else "off"},
        ),
        pbar=_progress(total_steps, run.step, progress and info.is_main),
        seed=seed,
        local_batch=local_batch,
        batch_size=batch_size,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        n_views=2 if loss_fn.enabled("aa") else 1,
        clean_first_view=clean_first_view,
        num_workers=num_workers,
        grad_clip=grad_clip,
        log_every=log_every,
        checkpoint_every=checkpoint_every,
        keep_checkpoints=keep_checkpoints,
        run_config=run_config,
        window={"sums": {}, "n": 0, "t0": time.perf_counter()},
    )

    # ---- the loop ---------------------------------------------------------------------
    try:
        if run.batch_in_epoch >= t.steps_per_epoch:  # resumed between an epoch's last step and its end
            end_epoch(t, run)
        while run.step < t.total_steps:
            train_epoch(t, run)
            if run.batch_in_epoch >= t.steps_per_epoch:
                end_epoch(t, run)
        if t.class_emb is not None and run.last_val != run.step and run.step > 0:  # stopped mid-epoch
            validate(t, run)
        if run.last_ckpt != run.step:
            checkpoint(t, run)
        run.final_path = save_encoder(t, run, "final")
    finally:
        t.pbar.close()
        t.logger.close()
    return {
        "step": run.step,
        "epoch": run.epoch,
        "final": run.final_path,
        "best": run.best_path,
        "best_val_acc": run.best_acc if run.best_acc >= 0 else None,
        "val_acc": run.val_acc,
    }


def resume_progress(
    ckpt_dir: Path, student: ContrastiveModel, opt: torch.optim.Optimizer, sched, scaler, info: DistInfo, seed: int
) -> Progress | None:
    """Restore the newest readable training state in ``ckpt_dir`` into the model,
    optimiser, scheduler, scaler and RNGs; its counters, or None when there is none."""
    loaded = load_latest_training_state(ckpt_dir, map_location="cpu")
    if loaded is None:
        return None
    state, state_path = loaded
    if state.get("format") != STATE_FORMAT:
        raise UserInputError(f"{ckpt_dir}: not a training state of this version ({state.get('format')!r})")
    # a run resumed with another encoder config: one line naming the first mismatched key
    load_state_dict_strict(student, state["student"], state_path)
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    rngs = state["rng"]
    restore_rng_state(rngs[info.rank] if info.rank < len(rngs) else rngs[0])
    return Progress(
        step=state["step"],
        epoch=state["epoch"],
        batch_in_epoch=state["batch_in_epoch"],
        best_acc=state["best_val_acc"],
        val_acc=state["val_acc"],
    )


def train_epoch(t: Trainer, run: Progress) -> None:
    """Train from batch ``run.batch_in_epoch`` of epoch ``run.epoch`` until the epoch's
    last batch or the step budget, logging and checkpointing on their periods."""
    if (
        run.epoch > 0
        and t.targets is not None
        and t.targets.need_images
        and t.targets.cache is not None
        and t.with_frames is not None
        and hasattr(t.train_set, "load_images")
    ):
        # every frame was embedded during epoch 0 (the cache persists across resumes):
        # stop decoding video frames
        t.train_set.load_images = False
    dev = t.info.device
    loader = epoch_loader(
        t.train_set,
        t.sampler,
        run.epoch,
        run.batch_in_epoch,
        t.local_batch,
        t.num_workers,
        pin_memory=dev.type == "cuda",
        generator=torch.Generator().manual_seed(step_seed(t.seed, run.epoch, 0, stream=3)),
    )
    for batch in iterate_loader(loader):
        out = train_step(t, run, to_device(batch, dev))
        run.step += 1
        run.batch_in_epoch += 1
        t.pbar.update(1)
        _log_step(t, run, out)
        if run.step % t.checkpoint_every == 0:
            checkpoint(t, run)
        if run.step >= t.total_steps or run.batch_in_epoch >= t.steps_per_epoch:
            break


def train_step(t: Trainer, run: Progress, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """One optimiser step on ``batch`` (already on the device) → the loss dict."""
    # a CPU generator: the same views on any device (sound2img.audio.augment)
    gen = torch.Generator().manual_seed(step_seed(t.seed, run.step, t.info.rank, stream=2))
    with torch.no_grad():
        views = make_views(batch["wav"], t.frontend, t.augment, t.n_views, gen, clean_first=t.clean_first_view)
        text_emb = t.targets.text(batch["text"]) if t.loss_fn.enabled("at") else None
        image_emb, image_valid = t.targets.images(batch) if t.loss_fn.enabled("av") else (None, None)
    with t.autocast():
        out = t.model(views, text_emb, image_emb, image_valid)
    t.opt.zero_grad(set_to_none=True)
    t.scaler.scale(out["loss"]).backward()
    if t.grad_clip is not None:
        t.scaler.unscale_(t.opt)
        torch.nn.utils.clip_grad_norm_(t.student.parameters(), t.grad_clip)
    t.scaler.step(t.opt)
    t.scaler.update()
    if t.sched_per_step:
        t.sched.step()
    t.loss_fn.scale.clamp_()
    return out


def _log_step(t: Trainer, run: Progress, out: dict[str, torch.Tensor]) -> None:
    """Accumulate the step's losses; every ``log_every`` steps (and at the last) write
    their rank-averaged means, the learning rate, temperature and throughput."""
    w = t.window
    w["n"] += 1
    for k, v in out.items():
        w["sums"][k] = w["sums"].get(k, 0.0) + v.detach().float()
    if run.step % t.log_every and run.step != t.total_steps:
        return
    now = time.perf_counter()
    rec = all_reduce_mean({k: (v / w["n"]).item() for k, v in w["sums"].items()}, t.info)
    if hasattr(t.train_set, "num_skipped"):  # bad rows + unreadable files seen by this rank
        rec["data_skipped"] = int(t.train_set.num_skipped)
    rec.update(
        step=run.step,
        epoch=run.epoch,
        lr=t.sched.get_last_lr()[0],
        logit_scale=t.loss_fn.scale().item(),
        samples_per_s=w["n"] * t.batch_size / max(now - w["t0"], 1e-9),
    )
    t.logger.log(rec)
    t.pbar.set_postfix(loss=f"{rec['loss']:.4f}")
    t.window = {"sums": {}, "n": 0, "t0": now}


def end_epoch(t: Trainer, run: Progress) -> None:
    """After an epoch's last batch: validate (when a validation set is given), move to
    the next epoch, checkpoint."""
    if t.class_emb is not None:
        validate(t, run)
    run.epoch += 1
    run.batch_in_epoch = 0
    if not t.sched_per_step:  # the authors' CyclicLR moves once per epoch
        t.sched.step()
    checkpoint(t, run)


def validate(t: Trainer, run: Progress) -> None:
    """Zero-shot accuracy on the validation set; a new best is saved as encoder_best."""
    run.val_acc = zero_shot_accuracy(
        t.student.encoder,
        t.frontend,
        t.val_set,
        t.class_emb,
        t.info,
        batch_size=t.local_batch,
        num_workers=t.num_workers,
        autocast=t.autocast,
    )
    t.logger.log({"step": run.step, "epoch": run.epoch, "val_zero_shot_acc": run.val_acc})
    run.last_val = run.step
    if run.val_acc > run.best_acc:
        run.best_acc = run.val_acc
        run.best_path = save_encoder(t, run, "best")


def checkpoint(t: Trainer, run: Progress) -> None:
    """Write the training state (every rank's RNG states gathered; rank 0 writes)."""
    rngs = all_gather_object(capture_rng_state(), t.info)
    if t.info.is_main:
        save_training_state(
            t.run_dir / "checkpoints",
            run.step,
            {
                "format": STATE_FORMAT,
                "step": run.step,
                "epoch": run.epoch,
                "batch_in_epoch": run.batch_in_epoch,
                "best_val_acc": run.best_acc,
                "val_acc": run.val_acc,
                "world_size": t.info.world_size,
                "student": t.student.state_dict(),
                "optimizer": t.opt.state_dict(),
                "scheduler": t.sched.state_dict(),
                "scaler": t.scaler.state_dict(),
                "rng": rngs,
                "run_config": t.run_config or "",
            },
            keep=t.keep_checkpoints,
        )
    barrier(t.info)
    run.last_ckpt = run.step


def save_encoder(t: Trainer, run: Progress, kind: str) -> Path:
    """``encoder_<kind>.safetensors`` with its front end and CLIP spec (rank 0 writes)."""
    path = t.run_dir / f"encoder_{kind}.safetensors"
    if t.info.is_main:  # the run dir is the run's own: best/final are replaced as they improve
        remove_stale_temps(path)  # left by a run killed while writing it (a resume replays that save)
        extra = {"step": run.step, "epoch": run.epoch, "val_zero_shot_acc": run.val_acc, "run_config": t.run_config}
        save_audio_encoder(
            path,
            t.student.encoder,
            t.frontend.spec(),
            clip_spec=t.clip_spec,
            extra_metadata={k: v for k, v in extra.items() if v is not None},
            overwrite=True,
        )
    barrier(t.info)
    return path


def _autocast(dtype: torch.dtype | None, device_type: str) -> contextlib.AbstractContextManager:
    """The mixed-precision context for ``dtype`` (None: full precision)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=dtype)


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True)
