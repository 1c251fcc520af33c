"""The audio-encoder training loop (paper.md §1): one plain function, the same on a CPU,
one GPU or ``torchrun`` DDP, with exact resume from its own checkpoints."""
from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from sound2img.errors import UserInputError
from sound2img.models.audio_encoder import save_audio_encoder
from sound2img.models.state_dict import load_state_dict_strict
from sound2img.training.batches import (ResumableSampler, batches_per_epoch, epoch_loader, step_seed,
                                        to_device)
from sound2img.training.checkpoint import (capture_rng_state, load_latest_training_state, restore_rng_state,
                                           save_training_state)
from sound2img.utils.distributed import (all_gather_object, all_reduce_mean, barrier, broadcast_object,
                                            init_distributed)
from sound2img.training.losses import ContrastiveLoss, LogitScale
from sound2img.training.metrics import MetricsLogger
from sound2img.training.step import Student, make_views
from sound2img.training.targets import ClipTargets, fixed_prompts, frame_keys
from sound2img.training.validation import encode_class_texts, zero_shot_accuracy
from sound2img.utils.files import remove_stale_temps

STATE_FORMAT = "sound2img-train-state/1"


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
    grad_clip:      float | None = None,  # Max global gradient norm; None = no clipping.
    amp:            str = "auto",       # "auto" (bf16/fp16 on CUDA, off on CPU), "bf16", "fp16" (CUDA), "off".
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
) -> dict[str, Any]:
    """Train ``encoder`` and return ``{"step", "epoch", "final", "best", "best_val_acc",
    "val_acc"}`` (paths of the saved encoders and the last accuracies)."""
    info = init_distributed(device)
    dev = info.device
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    for name, value in (("batch_size", batch_size), ("epochs", epochs), ("checkpoint_every", checkpoint_every),
                        ("keep_checkpoints", keep_checkpoints), ("log_every", log_every)):
        if int(value) < 1:
            raise UserInputError(f"{name} must be >= 1, got {value}")
    if max_steps is not None and max_steps < 0:
        raise UserInputError(f"max_steps must be >= 0 or None, got {max_steps}")
    if batch_size % info.world_size:
        raise UserInputError(f"batch_size {batch_size} is not divisible by the {info.world_size} ranks")
    local_batch = batch_size // info.world_size

    # ---- model, loss, optimiser ---------------------------------------------------------
    loss_fn = ContrastiveLoss(loss_terms, symmetric=symmetric,
                              scale=LogitScale(logit_scale, init=logit_scale_init, max=logit_scale_max))
    if (loss_fn.enabled("at") or loss_fn.enabled("av")) and clip is None:
        raise UserInputError("the a↔t and a↔v terms need CLIP towers (clip=None allows only loss_terms={'aa': w})")
    with_frames = frame_keys(train_set) if loss_fn.enabled("av") else None
    if loss_fn.enabled("av") and with_frames is not None and not with_frames:
        raise UserInputError("the a↔v term is enabled but no training item has a video frame "
                             "(set loss.terms.av=0, or train on a dataset with frames such as vggsound)")
    frontend = frontend.to(dev).eval()
    student = Student(encoder, loss_fn, channels_last=channels_last).to(dev)
    if channels_last:
        student.encoder.to(memory_format=torch.channels_last)
    student.train()
    model = (DistributedDataParallel(student, device_ids=[dev.index] if dev.type == "cuda" else None)
             if info.distributed else student)
    opt = _build_optimizer(student, optimizer, lr, momentum, weight_decay)

    sampler = ResumableSampler(train_set, info.world_size, info.rank, seed)
    steps_per_epoch = batches_per_epoch(sampler, local_batch)
    if steps_per_epoch == 0:
        raise UserInputError(f"training set of {len(train_set)} items is smaller than one batch "
                             f"({batch_size} over {info.world_size} rank(s))")
    total_steps = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _cosine_restarts(
        max(1, round(lr_cycle_epochs * steps_per_epoch)), lr_min / lr if lr > 0 else 0.0, warmup_steps))
    amp_dtype = _amp_dtype(amp, dev)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp_dtype == torch.float16)

    def autocast():
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(dev.type, dtype=amp_dtype)

    targets = ClipTargets(clip, dev, cache_dir=embedding_cache_dir or run_dir / "embedding_cache",
                          need_text=loss_fn.enabled("at"), need_images=loss_fn.enabled("av"),
                          info=info, frame_keys=with_frames) if clip is not None else None
    if targets is not None:
        targets.precompute_text(fixed_prompts(train_set))
    class_emb = None
    if val_set is not None:
        if clip is None:
            raise UserInputError("zero-shot validation needs CLIP towers (pass clip, or val_set=None)")
        class_emb = encode_class_texts(clip.encode_text, val_set.class_names).to(dev)
    clip_spec = clip_spec if clip_spec is not None else (clip.spec() if clip is not None else None)

    # ---- where to start ---------------------------------------------------------------
    step, epoch, batch_in_epoch, best_acc, val_acc = 0, 0, 0, -1.0, None
    loaded = load_latest_training_state(ckpt_dir, map_location="cpu") if resume else None
    if loaded is not None:
        state, state_path = loaded
        if state.get("format") != STATE_FORMAT:
            raise UserInputError(f"{ckpt_dir}: not a training state of this version ({state.get('format')!r})")
        # a run resumed with another encoder config: one line naming the first mismatched key
        load_state_dict_strict(student, state["student"], state_path)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        best_acc, val_acc = state["best_val_acc"], state["val_acc"]
        rngs = state["rng"]
        restore_rng_state(rngs[info.rank] if info.rank < len(rngs) else rngs[0])
    else:
        torch.manual_seed(step_seed(seed, 0, info.rank, stream=1))

    logger = MetricsLogger(run_dir, enabled=info.is_main, resume_step=step if loaded else None,
                           wandb_project=wandb_project, config={"run_config": run_config})
    pbar = _progress(total_steps, step, progress and info.is_main)
    paths: dict[str, Path | None] = {"final": None, "best": run_dir / "encoder_best.safetensors"
                                     if (run_dir / "encoder_best.safetensors").exists() else None}

    def checkpoint() -> None:
        rngs = all_gather_object(capture_rng_state(), info)
        if info.is_main:
            save_training_state(ckpt_dir, step, {
                "format": STATE_FORMAT, "step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
                "best_val_acc": best_acc, "val_acc": val_acc, "world_size": info.world_size,
                "student": student.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "scaler": scaler.state_dict(), "rng": rngs,
                "run_config": run_config or ""}, keep=keep_checkpoints)
        barrier(info)

    def save(kind: str) -> Path:
        path = run_dir / f"encoder_{kind}.safetensors"
        if info.is_main:  # the run dir is the run's own: best/final are replaced as they improve
            remove_stale_temps(path)  # left by a run killed while writing it (a resume replays that save)
            extra = {"step": step, "epoch": epoch, "val_zero_shot_acc": val_acc, "run_config": run_config}
            save_audio_encoder(path, student.encoder, frontend.spec(), clip_spec=clip_spec,
                               extra_metadata={k: v for k, v in extra.items() if v is not None}, overwrite=True)
        barrier(info)
        return path

    # ---- the loop ---------------------------------------------------------------------
    n_views = 2 if loss_fn.enabled("aa") else 1
    sums: dict[str, torch.Tensor] = {}
    n_logged, t_last, last_ckpt, last_val = 0, time.perf_counter(), -1, -1

    def validate() -> None:
        nonlocal val_acc, best_acc, last_val
        val_acc = zero_shot_accuracy(student.encoder, frontend, val_set, class_emb, info, batch_size=local_batch,
                                     num_workers=num_workers, autocast=autocast)
        logger.log({"step": step, "epoch": epoch, "val_zero_shot_acc": val_acc})
        last_val = step
        if val_acc > best_acc:
            best_acc = val_acc
            paths["best"] = save("best")
    try:
        while step < total_steps or batch_in_epoch >= steps_per_epoch:
            if batch_in_epoch < steps_per_epoch:
                if epoch > 0 and targets is not None and targets.need_images and targets.cache is not None \
                        and with_frames is not None and hasattr(train_set, "load_images"):
                    # every frame was embedded during epoch 0 (the cache persists across
                    # resumes): stop decoding video frames
                    train_set.load_images = False
                loader = epoch_loader(train_set, sampler, epoch, batch_in_epoch, local_batch, num_workers,
                                      pin_memory=dev.type == "cuda",
                                      generator=torch.Generator().manual_seed(step_seed(seed, epoch, 0, stream=3)))
                for batch in loader:
                    batch = to_device(batch, dev)
                    # a CPU generator: the same views on any device (sound2img.audio.augment)
                    gen = torch.Generator().manual_seed(step_seed(seed, step, info.rank, stream=2))
                    with torch.no_grad():
                        views = make_views(batch["wav"], frontend, augment, n_views, gen)
                        text_emb = targets.text(batch["text"]) if loss_fn.enabled("at") else None
                        image_emb, image_valid = targets.images(batch) if loss_fn.enabled("av") else (None, None)
                    with autocast():
                        out = model(views, text_emb, image_emb, image_valid)
                    opt.zero_grad(set_to_none=True)
                    scaler.scale(out["loss"]).backward()
                    if grad_clip is not None:
                        scaler.unscale_(opt)
                        torch.nn.utils.clip_grad_norm_(student.parameters(), grad_clip)
                    scaler.step(opt)
                    scaler.update()
                    sched.step()
                    loss_fn.scale.clamp_()
                    step += 1
                    batch_in_epoch += 1
                    n_logged += 1
                    for k, v in out.items():
                        sums[k] = sums.get(k, 0.0) + v.detach().float()
                    pbar.update(1)
                    if step % log_every == 0 or step == total_steps:
                        now = time.perf_counter()
                        rec = all_reduce_mean({k: (v / n_logged).item() for k, v in sums.items()}, info)
                        if hasattr(train_set, "num_skipped"):  # bad rows + unreadable files seen by this rank
                            rec["data_skipped"] = int(train_set.num_skipped)
                        rec.update(step=step, epoch=epoch, lr=sched.get_last_lr()[0],
                                   logit_scale=loss_fn.scale().item(),
                                   samples_per_s=n_logged * batch_size / max(now - t_last, 1e-9))
                        logger.log(rec)
                        pbar.set_postfix(loss=f"{rec['loss']:.4f}")
                        sums, n_logged, t_last = {}, 0, now
                    if step % checkpoint_every == 0:
                        checkpoint()
                        last_ckpt = step
                    if step >= total_steps or batch_in_epoch >= steps_per_epoch:
                        break
            if batch_in_epoch >= steps_per_epoch:  # epoch complete: validate, then move on
                if class_emb is not None:
                    validate()
                epoch += 1
                batch_in_epoch = 0
                checkpoint()
                last_ckpt = step
        if class_emb is not None and last_val != step and step > 0:  # stopped mid-epoch by max_steps
            validate()
        if last_ckpt != step:
            checkpoint()
        paths["final"] = save("final")
    finally:
        pbar.close()
        logger.close()
    return {"step": step, "epoch": epoch, "final": paths["final"], "best": paths["best"],
            "best_val_acc": best_acc if best_acc >= 0 else None, "val_acc": val_acc}


def _build_optimizer(student: Student, name: str, lr: float, momentum: float,
                     weight_decay: float) -> torch.optim.Optimizer:
    """SGD (paper) or AdamW over the encoder and the temperature; weight decay on the
    encoder only, because decaying log(1/τ) would pull the temperature towards 1."""
    scale_params = list(student.loss.parameters())
    scale_ids = {id(p) for p in scale_params}
    enc_params = [p for p in student.parameters() if p.requires_grad and id(p) not in scale_ids]
    groups = [{"params": enc_params, "weight_decay": weight_decay}]
    if scale_params:
        groups.append({"params": scale_params, "weight_decay": 0.0})
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(momentum, 0.999))
    raise UserInputError(f"unknown optimizer {name!r} (use sgd or adamw)")


def _cosine_restarts(cycle_steps: int, floor: float, warmup_steps: int) -> Callable[[int], float]:
    """Learning-rate factor at step t: linear warm-up, then cosine annealing from 1 to
    ``floor`` over each cycle of ``cycle_steps``, restarting at 1 (SGDR, the paper's
    cyclic cosine schedule)."""
    def factor(t: int) -> float:
        if t < warmup_steps:
            return (t + 1) / warmup_steps
        phase = ((t - warmup_steps) % cycle_steps) / cycle_steps
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * phase))

    return factor


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device`` (None: full precision)."""
    if amp == "off":
        return None
    if amp == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        if device.type != "cuda":
            raise UserInputError("amp=fp16 needs CUDA; on a CPU use amp=bf16 or amp=off")
        return torch.float16
    raise UserInputError(f"unknown amp mode {amp!r} (use auto, bf16, fp16 or off)")


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True)
