"""The audio-encoder training loop (docs/method.md §1), edm-style: ``training_loop`` builds
what it trains, resumes, then takes optimiser steps epoch by epoch until the step budget is
spent, validating, checkpointing and logging on their periods; the same on a CPU, one GPU
or ``torchrun`` DDP, with exact resume from its own checkpoints. The pieces it calls —
``Learner.step``, ``save_checkpoint``/``resume_progress``, ``LossWindow``, ``save_encoder``
— each do one thing."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from sound2img.data.loading import iterate_loader
from sound2img.data.prompts import encode_class_texts
from sound2img.errors import UserInputError
from sound2img.models.audio_encoder import save_audio_encoder
from sound2img.models.state_dict import load_state_dict_strict
from sound2img.training.batches import batches_per_epoch, epoch_loader, make_sampler, step_seed, to_device
from sound2img.training.checkpoint import (
    capture_rng_state,
    load_latest_training_state,
    restore_rng_state,
    save_training_state,
)
from sound2img.training.clip_embeddings import ClipEmbeddings, fixed_prompts, frame_keys
from sound2img.training.losses import ContrastiveLoss, build_loss
from sound2img.training.metrics import MetricsLogger
from sound2img.training.optimizer import autocast_dtype, build_optimizer, build_scheduler
from sound2img.training.step import ContrastiveModel, make_views
from sound2img.training.validation import zero_shot_accuracy
from sound2img.utils.distributed import DistInfo, all_gather_object, all_reduce_mean, barrier, init_distributed
from sound2img.utils.files import remove_stale_temps

if TYPE_CHECKING:
    from sound2img.config import LossOptions, OptimOptions, TrainOptions

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


def training_loop(
    run_dir,                            # Output directory: checkpoints/, metrics.jsonl, encoder_*.safetensors.
    encoder:        nn.Module,          # Audio encoder, mel [B,1,n_mels,T] -> audio_emb_raw [B,D]; trained in place.
    frontend:       nn.Module,          # Mel front end, wav [B,S] -> mel [B,1,n_mels,T]; fixed; has .spec().
    train_set:      Dataset,            # Items {"wav" [S], "text", "label", "image" | None, "key", ...}.
    val_set:        Dataset | None = None,  # Held-out split with .class_names: zero-shot accuracy each epoch.
    clip=None,                          # Frozen ClipTowers for the text/image targets (None: a↔â only).
    augment=None,                       # AudioAugment (gain on the wave, SpecAugment on the spectrogram); None = none.
    *,
    loss:           LossOptions,        # loss.*: term weights, symmetry, temperature (sound2img/config.py).
    optim:          OptimOptions,       # optim.*: optimiser, learning rate and its schedule.
    train:          TrainOptions,       # train.*: batch, length, precision, views, workers, periods.
    seed:           int = 0,            # Data order, crops, prompts and augmentation draw from it.
    resume:         bool = False,       # Continue from the newest readable checkpoint in run_dir.
    wandb_project:  str | None = None,  # Mirror metrics to this wandb project (needs the wandb extra).
    clip_spec:      dict | None = None, # CLIP spec stored with the encoder; None = clip.spec().
    run_config:     str | None = None,  # Resolved config (YAML) kept in checkpoints for the record.
    device="auto",                      # "auto", "cpu", "cuda[:N]"; under torchrun, cuda:LOCAL_RANK.
) -> dict[str, Any]:  # fmt: skip
    """Train ``encoder`` and return ``{"step", "epoch", "final", "best", "best_val_acc",
    "val_acc"}`` (paths of the saved encoders and the last accuracies)."""
    info = init_distributed(device)
    dev, run_dir = info.device, Path(run_dir)
    pin = dev.type == "cuda"  # pinned host memory for the batches
    local_batch = _local_batch(train, info)

    # The trained module (encoder + temperature), its optimiser, schedule and precision.
    loss_fn = build_loss(loss)
    with_frames = _frame_keys(loss_fn, clip, train_set)
    frontend = frontend.to(dev).eval()
    student = ContrastiveModel(
        encoder, loss_fn, channels_last=train.channels_last, separate_passes=train.separate_view_passes
    ).to(dev)
    if train.channels_last:
        student.encoder.to(memory_format=torch.channels_last)
    student.train()
    sampler = make_sampler(train_set, info.world_size, info.rank, seed)  # streams (shards) split themselves
    steps_per_epoch = batches_per_epoch(sampler, local_batch)
    if steps_per_epoch == 0:
        raise UserInputError(
            f"training set of {len(train_set)} items is smaller than one batch "
            f"({train.batch_size} over {info.world_size} rank(s))"
        )
    total_steps = train.epochs * steps_per_epoch
    if train.max_steps is not None:  # stop early; the schedule is the full run's
        total_steps = min(train.max_steps, total_steps)
    learner = Learner.build(student, optim, train, steps_per_epoch, info)

    # The CLIP targets (cached where the prompt set and frames are fixed) and the class prompts.
    cache_dir = train.embedding_cache_dir or run_dir / "embedding_cache"
    targets = _clip_targets(clip, loss_fn, train_set, with_frames, cache_dir, info) if clip is not None else None
    class_emb = _class_embeddings(clip, val_set, dev) if val_set is not None else None
    clip_spec = clip_spec if clip_spec is not None else (clip.spec() if clip is not None else None)
    save = functools.partial(save_encoder, run_dir, student.encoder, frontend, clip_spec, run_config, info)
    checkpoint = functools.partial(save_checkpoint, run_dir / "checkpoints", learner, info, train, run_config)

    # Where to start: the newest readable checkpoint, or step 0.
    run = resume_progress(run_dir / "checkpoints", learner, info) if resume else None
    resumed = run is not None
    if run is None:
        run = Progress()
        torch.manual_seed(step_seed(seed, 0, info.rank, stream=1))
    run.best_path = run_dir / "encoder_best.safetensors" if (run_dir / "encoder_best.safetensors").exists() else None
    logger = MetricsLogger(
        run_dir,
        enabled=info.is_main,
        resume_step=run.step if resumed else None,
        wandb_project=wandb_project,
        config={"run_config": run_config, "autocast": _dtype_name(autocast_dtype(train.amp, info.device))},
    )
    pbar = _progress(total_steps, run.step, train.progress and info.is_main)
    window = LossWindow()

    def validate() -> None:  # zero-shot accuracy on val_set; a new best is saved as encoder_best
        run.val_acc = zero_shot_accuracy(
            student.encoder, frontend, val_set, class_emb, info, local_batch, train.num_workers, learner.autocast
        )
        logger.log({"step": run.step, "epoch": run.epoch, "val_zero_shot_acc": run.val_acc})
        run.last_val = run.step
        if run.val_acc > run.best_acc:
            run.best_acc, run.best_path = run.val_acc, save(run, "best")

    try:
        while True:
            if run.batch_in_epoch >= steps_per_epoch:  # an epoch ended (or a resume landed at its end)
                if class_emb is not None:
                    validate()
                run.epoch, run.batch_in_epoch = run.epoch + 1, 0
                if not learner.sched_per_step:  # the authors' CyclicLR moves once per epoch
                    learner.sched.step()
                checkpoint(run)
            if run.step >= total_steps:
                break
            if run.epoch > 0 and targets is not None:
                _stop_decoding_frames(train_set, targets)
            workers_gen = torch.Generator().manual_seed(step_seed(seed, run.epoch, 0, stream=3))
            loader = epoch_loader(
                train_set, sampler, run.epoch, run.batch_in_epoch, local_batch, train.num_workers, pin, workers_gen
            )
            for batch in iterate_loader(loader):
                batch = to_device(batch, dev)
                # a CPU generator: the same views on any device (sound2img.audio.augment)
                gen = torch.Generator().manual_seed(step_seed(seed, run.step, info.rank, stream=2))
                with torch.no_grad():
                    n_views = 2 if loss_fn.enabled("aa") else 1
                    views = make_views(
                        batch["wav"], frontend, augment, n_views, gen, clean_first=train.clean_first_view
                    )
                    text_emb = targets.text(batch["text"]) if loss_fn.enabled("at") else None
                    image_emb, image_valid = targets.images(batch) if loss_fn.enabled("av") else (None, None)
                window.add(learner.step(views, text_emb, image_emb, image_valid))
                run.step, run.batch_in_epoch = run.step + 1, run.batch_in_epoch + 1
                pbar.update(1)
                if run.step % train.log_every == 0 or run.step == total_steps:
                    rec = window.flush(info, train.batch_size) | _skipped(train_set)
                    rec |= {"step": run.step, "epoch": run.epoch, "lr": learner.sched.get_last_lr()[0]}
                    logger.log(rec | {"logit_scale": loss_fn.scale().item()})
                    pbar.set_postfix(loss=f"{rec['loss']:.4f}")
                epoch_ends = run.batch_in_epoch >= steps_per_epoch
                # At an epoch's last batch the epoch's end writes this step's state (epoch
                # advanced); a second write of one file could be torn from its digest by Ctrl-C.
                if run.step % train.checkpoint_every == 0 and not epoch_ends:
                    checkpoint(run)
                if run.step >= total_steps or epoch_ends:
                    break
        if class_emb is not None and run.last_val != run.step and run.step > 0:  # stopped mid-epoch
            validate()
        if run.last_ckpt != run.step:
            checkpoint(run)
        final = save(run, "final")
    finally:
        pbar.close()
        logger.close()
    return {
        "step": run.step,
        "epoch": run.epoch,
        "final": final,
        "best": run.best_path,
        "best_val_acc": run.best_acc if run.best_acc >= 0 else None,
        "val_acc": run.val_acc,
    }


@dataclass(frozen=True)
class Learner:
    """What an optimiser step changes, and what a checkpoint saves and a resume restores."""

    student: ContrastiveModel  # encoder + loss (temperature), trained in place
    model: nn.Module  # ``student``, DDP-wrapped under torchrun
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    sched_per_step: bool  # False: the scheduler moves once per epoch (the authors' CyclicLR)
    scaler: torch.amp.GradScaler
    autocast: Callable[[], contextlib.AbstractContextManager]
    grad_clip: float | None  # max global gradient norm

    @classmethod
    def build(
        cls, student: ContrastiveModel, optim: OptimOptions, train: TrainOptions, steps_per_epoch: int, info: DistInfo
    ) -> Learner:
        """The optimiser and schedule of ``optim``, the precision of ``train.amp``."""
        dev = info.device
        ddp = info.distributed
        model = (
            DistributedDataParallel(student, device_ids=[dev.index] if dev.type == "cuda" else None) if ddp else student
        )
        opt = build_optimizer(student, optim)
        sched, sched_per_step = build_scheduler(opt, optim, steps_per_epoch)
        amp_dtype = autocast_dtype(train.amp, dev)
        scaler = torch.amp.GradScaler(dev.type, enabled=amp_dtype == torch.float16)
        autocast = functools.partial(_autocast, amp_dtype, dev.type)
        return cls(student, model, opt, sched, sched_per_step, scaler, autocast, train.grad_clip)

    def step(self, views, text_emb, image_emb, image_valid) -> dict[str, torch.Tensor]:
        """One optimiser step on the encoder inputs ``views`` (one or two ``mel``) and the
        CLIP targets (``ContrastiveModel.forward``) → the loss dict."""
        with self.autocast():
            out = self.model(views, text_emb, image_emb, image_valid)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(out["loss"]).backward()
        if self.grad_clip is not None:
            self.scaler.unscale_(self.opt)
            torch.nn.utils.clip_grad_norm_(self.student.parameters(), self.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        if self.sched_per_step:
            self.sched.step()
        self.student.loss.scale.clamp_()
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "student": self.student.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any], source: Path) -> None:
        # a run resumed with another encoder config: one line naming the first mismatched key
        load_state_dict_strict(self.student, state["student"], source)
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])


class LossWindow:
    """The losses of the steps since the last metrics record."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.n = 0
        self.t0 = time.perf_counter()

    def add(self, out: dict[str, torch.Tensor]) -> None:
        self.n += 1
        for k, v in out.items():
            self.sums[k] = self.sums.get(k, 0.0) + v.detach().float()

    def flush(self, info: DistInfo, batch_size: int) -> dict[str, float]:
        """Each loss's mean over the window and the ranks, and the throughput; then a new window."""
        now = time.perf_counter()
        rec = all_reduce_mean({k: (v / self.n).item() for k, v in self.sums.items()}, info)
        rec["samples_per_s"] = self.n * batch_size / max(now - self.t0, 1e-9)
        self.sums, self.n, self.t0 = {}, 0, now
        return rec


def save_checkpoint(
    ckpt_dir: Path, learner: Learner, info: DistInfo, train: TrainOptions, run_config: str | None, run: Progress
) -> None:
    """Write the training state (every rank's RNG states gathered; rank 0 writes), keeping
    the newest ``train.keep_checkpoints``."""
    rngs = all_gather_object(capture_rng_state(), info)
    if info.is_main:
        counters = {"step": run.step, "epoch": run.epoch, "batch_in_epoch": run.batch_in_epoch}
        state = {"format": STATE_FORMAT, **counters, "best_val_acc": run.best_acc, "val_acc": run.val_acc}
        state |= {"world_size": info.world_size, **learner.state_dict(), "rng": rngs, "run_config": run_config or ""}
        save_training_state(ckpt_dir, run.step, state, keep=train.keep_checkpoints)
    barrier(info)
    run.last_ckpt = run.step


def resume_progress(ckpt_dir: Path, learner: Learner, info: DistInfo) -> Progress | None:
    """Restore the newest readable training state in ``ckpt_dir`` into the model,
    optimiser, scheduler, scaler and RNGs; its counters, or None when there is none."""
    loaded = load_latest_training_state(ckpt_dir, map_location="cpu")
    if loaded is None:
        return None
    state, state_path = loaded
    if state.get("format") != STATE_FORMAT:
        raise UserInputError(f"{ckpt_dir}: not a training state of this version ({state.get('format')!r})")
    learner.load_state_dict(state, state_path)
    rngs = state["rng"]
    restore_rng_state(rngs[info.rank] if info.rank < len(rngs) else rngs[0])
    return Progress(
        step=state["step"],
        epoch=state["epoch"],
        batch_in_epoch=state["batch_in_epoch"],
        best_acc=state["best_val_acc"],
        val_acc=state["val_acc"],
    )


def save_encoder(
    run_dir: Path,
    encoder: nn.Module,
    frontend: nn.Module,
    clip_spec: dict | None,
    run_config: str | None,
    info: DistInfo,
    run: Progress,
    kind: str,
) -> Path:
    """``encoder_<kind>.safetensors`` with its front end and CLIP spec (rank 0 writes)."""
    path = run_dir / f"encoder_{kind}.safetensors"
    if info.is_main:  # the run dir is the run's own: best/final are replaced as they improve
        remove_stale_temps(path)  # left by a run killed while writing it (a resume replays that save)
        extra = {"step": run.step, "epoch": run.epoch, "val_zero_shot_acc": run.val_acc, "run_config": run_config}
        save_audio_encoder(
            path,
            encoder,
            frontend.spec(),
            clip_spec=clip_spec,
            extra_metadata={k: v for k, v in extra.items() if v is not None},
            overwrite=True,
        )
    barrier(info)
    return path


def _local_batch(train: TrainOptions, info: DistInfo) -> int:
    """This rank's share of ``train.batch_size``, after the checks a caller outside the
    scripts (whose configs the schema checked) could fail."""
    for name, value in (
        ("batch_size", train.batch_size),
        ("epochs", train.epochs),
        ("checkpoint_every", train.checkpoint_every),
        ("keep_checkpoints", train.keep_checkpoints),
        ("log_every", train.log_every),
    ):
        if int(value) < 1:
            raise UserInputError(f"{name} must be >= 1, got {value}")
    if train.max_steps is not None and train.max_steps < 0:
        raise UserInputError(f"max_steps must be >= 0 or None, got {train.max_steps}")
    if train.batch_size % info.world_size:
        raise UserInputError(f"batch_size {train.batch_size} is not divisible by the {info.world_size} ranks")
    return train.batch_size // info.world_size


def _frame_keys(loss_fn: ContrastiveLoss, clip, train_set: Dataset) -> set[str] | None:
    """The keys of the training items with a video frame when a↔v is on (None: off, or
    not known without decoding); refuses targets that cannot be computed."""
    if (loss_fn.enabled("at") or loss_fn.enabled("av")) and clip is None:
        raise UserInputError("the a↔t and a↔v terms need CLIP towers (clip=None allows only loss_terms={'aa': w})")
    with_frames = frame_keys(train_set) if loss_fn.enabled("av") else None
    if loss_fn.enabled("av") and with_frames is not None and not with_frames:
        raise UserInputError(
            "the a↔v term is enabled but no training item has a video frame "
            "(set loss.terms.av=0, or train on a dataset with frames such as vggsound)"
        )
    return with_frames


def _clip_targets(
    clip, loss_fn: ContrastiveLoss, train_set: Dataset, with_frames: set[str] | None, cache_dir, info: DistInfo
) -> ClipEmbeddings:
    """The text and frame embeddings the enabled terms need, the fixed prompt set encoded
    once up front (rank 0 first)."""
    need = {"need_text": loss_fn.enabled("at"), "need_images": loss_fn.enabled("av")}
    targets = ClipEmbeddings(clip, info.device, cache_dir, **need, info=info, frame_keys=with_frames)
    targets.precompute_text(fixed_prompts(train_set))
    return targets


def _class_embeddings(clip, val_set: Dataset, device: torch.device) -> torch.Tensor:
    """``[C,D]`` zero-shot prompts of ``val_set.class_names`` (prompt ensembling)."""
    if clip is None:
        raise UserInputError("zero-shot validation needs CLIP towers (pass clip, or val_set=None)")
    return encode_class_texts(clip.encode_text, val_set.class_names).to(device)


def _stop_decoding_frames(train_set: Dataset, targets: ClipEmbeddings) -> None:
    """After epoch 0 every frame is embedded (the cache persists across resumes): stop
    decoding video frames."""
    if targets.need_images and targets.cache is not None and targets.frame_keys is not None:
        if hasattr(train_set, "load_images"):
            train_set.load_images = False


def _skipped(train_set: Dataset) -> dict[str, int]:
    """Bad rows + unreadable files this rank's reader has skipped, where it counts them."""
    return {"data_skipped": int(train_set.num_skipped)} if hasattr(train_set, "num_skipped") else {}


def _dtype_name(dtype: torch.dtype | None) -> str:
    """What the run records as its autocast precision: ``bfloat16``, ``float16`` or ``off``."""
    return str(dtype).removeprefix("torch.") if dtype is not None else "off"


def _autocast(dtype: torch.dtype | None, device_type: str) -> contextlib.AbstractContextManager:
    """The mixed-precision context for ``dtype`` (None: full precision)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=dtype)


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True)
