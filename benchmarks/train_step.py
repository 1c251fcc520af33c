"""Samples/s of one audio-encoder training step at batch 32 (resnet18_legacy on the
soundclip_legacy front end, a↔t + a↔â, SGD) and its peak memory: ours (the loop's own
pieces) against a re-expression of the authors' loop, in two rows:

- ``code``: code for code, the SAME recipe on both sides (the authors' released one, as
  ``experiment=authors_code``): EDA on, so CLIP's text tower runs on the batch's prompts
  every step on both sides; a clean and an augmented view, each through its own encoder
  pass; the fixed e^0.07 scale. What differs is only the code.
- ``recipe``: recipe for recipe, our default recipe (fixed prompt set → text embeddings
  read from the precomputed cache, two augmented views in ONE encoder pass, learnable
  temperature) against theirs.

Both sides run at the same precision, the one ``train_encoder.py`` really uses by default
on the device (``train.amp=auto``: fp32 on a CPU, bf16/fp16 autocast on CUDA), and
channels_last is on for ours (``train.channels_last`` default). The baseline (docs/method.md §5.2)
loads PRECOMPUTED mel spectrograms as the authors' code does (``power_to_db`` arrays saved
once as ``.npy``; per clip: np.load, crop 864 frames, cv2.resize, reshape, a numpy
SpecAugment for the augmented view); ours computes its front end from the wave every step
(batched torch), as the loop does. Both run in the main process (the authors' 8 DataLoader
workers would move their per-clip loading to other cores; ours would too). CLIP is
ViT-B/32 at full size with random weights (open_clip, nothing downloaded). The sides are
interleaved within each repeat so that load from other processes hits both alike; figures
are medians over repeats, with each step split into phases (data → encoder input, text
targets, encoder + loss + backward + SGD) so that each factor's share is measured.

    python benchmarks/train_step.py                         # auto device, batch 32
    python benchmarks/train_step.py --device cpu --repeats 5 --out results.json
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import resource
import runpy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sound2img.audio.augment import build_augment
from sound2img.audio.frontend import build_frontend
from sound2img.config import OptimOptions
from sound2img.data.prompts import training_templates
from sound2img.data.synthetic import list_synthetic_classes, synthesize
from sound2img.models.audio_encoder import build_audio_encoder
from sound2img.models.clip import build_clip
from sound2img.training.clip_embeddings import ClipEmbeddings
from sound2img.training.losses import LEGACY_SCALE, ContrastiveLoss, LogitScale
from sound2img.training.optimizer import autocast_dtype, build_optimizer
from sound2img.training.step import ContrastiveModel, make_views
from sound2img.utils.device import machine_info, resolve_device
from sound2img.utils.distributed import DistInfo

# experiment=soundclip_resnet18's views: specaugment_legacy's masks (widths in mel bins /
# frames), no wave gain (a no-op for this peak-normalised front end)
AUGMENT = dict(
    min_gain_db=0.0,
    max_gain_db=0.0,
    num_freq_masks=2,
    max_freq_width=16,
    num_time_masks=2,
    max_time_width=64,
    mask_value=0.0,
)


@functools.lru_cache(maxsize=1)
def _reference() -> dict:
    """The librosa pipelines the front ends reproduce. They live with the tests
    (``tests/helpers/reference.py``); a benchmark runs outside pytest, so it loads the file."""
    return runpy.run_path(
        str(Path(__file__).resolve().parents[1] / "tests" / "helpers" / "reference.py"),
        run_name="sound2img_test_reference",
    )


def make_batch(batch: int, seconds: float, sample_rate: int, seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """``wav [B,S]`` of synthetic sound classes and one prompt per clip."""
    rng = np.random.default_rng(seed)
    names = list_synthetic_classes()
    templates = training_templates()
    labels = rng.integers(0, len(names), batch)
    wav = np.stack([synthesize(int(k), sample_rate, int(seconds * sample_rate), rng) for k in labels])
    prompts = [templates[i % len(templates)].format(names[k]) for i, k in enumerate(labels)]
    return torch.from_numpy(wav), prompts


# ------------------------------------------------------------------ the authors' loop


def numpy_spec_augment(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-clip SpecAugment on the ``[128, 512]`` encoder input (2 frequency, 2 time masks)."""
    out = img.copy()
    for axis, max_w in ((0, AUGMENT["max_freq_width"]), (1, AUGMENT["max_time_width"] * 512 // 864)):
        for _ in range(2):
            w = int(rng.integers(0, max_w + 1))
            s = int(rng.integers(0, out.shape[axis] - w + 1))
            if axis == 0:
                out[s : s + w] = 0.0
            else:
                out[:, s : s + w] = 0.0
    return out


def precompute_mels(wav: torch.Tensor, spec: dict, directory: str) -> list[str]:
    """What the authors' curate step writes once per clip: ``power_to_db(ref=max)/80 + 1``
    of the whole clip, ``[1,128,T]`` float32, as a ``.npy`` file. Returns the paths."""
    import librosa

    reference_mel_power = _reference()["reference_mel_power"]
    paths = []
    for i, y in enumerate(wav.numpy()):
        S = reference_mel_power(y, spec)
        d = librosa.power_to_db(S, ref=np.max, amin=spec["amin"], top_db=spec["top_db"]) / spec["top_db"] + 1
        path = os.path.join(directory, f"clip{i:03d}.npy")
        np.save(path, d[None].astype(np.float32))
        paths.append(path)
    return paths


def authors_inputs(paths: list[str], rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Their ``__getitem__`` per clip: load the ``.npy``, random crop of 864 frames (zero
    pad when shorter), ``cv2.resize`` to 512×128, a numpy SpecAugment copy; → two
    ``[B,1,128,512]`` batches (clean, augmented)."""
    import cv2

    clean, aug = [], []
    for path in paths:
        d = np.load(path)[0]
        if d.shape[1] >= 864:
            j = int(rng.integers(0, d.shape[1] - 864 + 1))
            d = d[:, j : j + 864]
        else:
            d = np.pad(d, ((0, 0), (0, 864 - d.shape[1])))
        img = cv2.resize(d, (128, 512))
        clean.append(img.reshape(1, 128, 512))
        aug.append(numpy_spec_augment(img.reshape(128, 512), rng)[None])
    return torch.from_numpy(np.stack(clean)), torch.from_numpy(np.stack(aug))


def authors_step(
    encoder,
    clip,
    opt,
    paths: list[str],
    prompts: list[str],
    rng: np.random.Generator,
    device: torch.device,
    autocast,
    phases: dict,
) -> float:
    """One step as the released code does it (see the module docstring)."""
    t0 = time.perf_counter()
    audio, audio_aug = (x.to(device) for x in authors_inputs(paths, rng))
    t1 = time.perf_counter()
    with torch.no_grad(), autocast():
        text = clip.encode_text(prompts).float()  # frozen tower, every step (EDA prompts)
    _sync(device)
    t2 = time.perf_counter()
    with autocast():
        a = encoder(audio)
        a_aug = encoder(audio_aug)
        a, a_aug, t = (x.float() / x.float().norm(dim=-1, keepdim=True) for x in (a, a_aug, text))
    labels = torch.arange(len(prompts), device=device)
    loss = 0.0
    for other in (t, a_aug):
        logits = math.exp(0.07) * a @ other.T
        loss = loss + F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)
    loss = loss / 4
    opt.zero_grad()
    loss.backward()
    opt.step()
    value = loss.item()
    t3 = time.perf_counter()
    for k, v in (("inputs", t1 - t0), ("text", t2 - t1), ("model", t3 - t2)):
        phases.setdefault(k, []).append(v)
    return value


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------ ours


def ours_step(
    model: ContrastiveModel,
    frontend,
    augment,
    targets: ClipEmbeddings,
    opt,
    wav: torch.Tensor,
    prompts: list[str],
    step: int,
    autocast,
    clean_first: bool,
    phases: dict,
) -> float:
    """One step of ``training_loop`` (the same functions, without data loading)."""
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(step)
    with torch.no_grad():
        views = make_views(wav, frontend, augment, 2, gen, clean_first=clean_first)
    _sync(wav.device)
    t1 = time.perf_counter()
    with torch.no_grad():
        text = targets.text(prompts)
    _sync(wav.device)
    t2 = time.perf_counter()
    with autocast():
        out = model(views, text)
    opt.zero_grad(set_to_none=True)
    out["loss"].backward()
    opt.step()
    model.loss.scale.clamp_()
    value = out["loss"].item()
    t3 = time.perf_counter()
    for k, v in (("inputs", t1 - t0), ("text", t2 - t1), ("model", t3 - t2)):
        phases.setdefault(k, []).append(v)
    return value


# ------------------------------------------------------------------ measurement


def _reset_peak_rss() -> bool:
    """Linux: reset VmHWM so the next read is this phase's peak (False elsewhere)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mib() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _timed(fn, device: torch.device) -> tuple[float, float, float]:
    """(seconds, peak RSS MiB, peak CUDA MiB) of ``fn()``."""
    per_phase = _reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    cuda = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0
    return seconds, (_peak_rss_mib() if per_phase else float("nan")), cuda


def _sgd(weight_decay: float) -> OptimOptions:
    """The paper's SGD (lr 1e-3, momentum 0.9) with ``weight_decay`` (the schedule is not timed)."""
    return OptimOptions(
        name="sgd", lr=1e-3, momentum=0.9, weight_decay=weight_decay, lr_cycle_epochs=10, lr_min=0.0, warmup_steps=0
    )


def _our_side(recipe: str, device: torch.device, clip, prompts: list[str], channels_last: bool, seed: int):
    """(ContrastiveModel, optimiser, ClipEmbeddings, clean_first) for ``recipe``: ``authors`` (the
    authors_code experiment: text tower every step, clean + augmented view, separate
    passes, e^0.07) or ``default`` (our default recipe)."""
    torch.manual_seed(seed)
    enc = build_audio_encoder("resnet18_legacy").to(device)
    if recipe == "authors":
        loss = ContrastiveLoss({"at": 0.5, "aa": 0.5}, scale=LogitScale("legacy"))
        model = ContrastiveModel(enc, loss, channels_last=channels_last, separate_passes=True).to(device)
        opt = build_optimizer(model, _sgd(weight_decay=5e-4))
    else:
        loss = ContrastiveLoss({"at": 1.0, "aa": 1.0}, scale=LogitScale("learnable"))
        model = ContrastiveModel(enc, loss, channels_last=channels_last).to(device)
        opt = build_optimizer(model, _sgd(weight_decay=1e-4))
    if channels_last:
        model.encoder.to(memory_format=torch.channels_last)
    targets = ClipEmbeddings(
        clip,
        device,
        tempfile.mkdtemp(prefix="s2i-bench-cache-"),
        need_text=True,
        need_images=False,
        info=DistInfo(0, 1, device),
    )
    # EDA prompts (authors' recipe): no fixed set, the tower runs every step; else cached once
    targets.precompute_text(None if recipe == "authors" else sorted(set(prompts)))
    return model, opt, targets, recipe == "authors"


def benchmark(
    device: torch.device,
    batch: int = 32,
    repeats: int = 3,
    warmup: int = 1,
    channels_last: bool = True,
    seed: int = 0,
    rows: tuple[str, ...] = ("code", "recipe"),
) -> dict:
    frontend = build_frontend("soundclip_legacy").to(device)
    spec = frontend.spec()
    wav, prompts = make_batch(batch, 10.0, frontend.sample_rate, seed)
    clip = build_clip("ViT-B-32", device=device)  # random weights at full size
    amp = autocast_dtype("auto", device)  # what train_encoder.py uses by default here, for both sides

    def autocast():
        return torch.autocast(device.type, dtype=amp) if amp is not None else contextlib.nullcontext()

    paths = precompute_mels(wav, spec, tempfile.mkdtemp(prefix="s2i-bench-npy-"))
    torch.manual_seed(seed)
    theirs_enc = build_audio_encoder("resnet18_legacy").to(device)
    theirs_opt = torch.optim.SGD(theirs_enc.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    augment = build_augment(**AUGMENT)
    rng = np.random.default_rng(seed)
    wav_dev = wav.to(device)
    sides = {"authors": None, "code": "authors", "recipe": "default"}
    ours = {row: _our_side(sides[row], device, clip, prompts, channels_last, seed) for row in rows}
    phases: dict[str, dict] = {k: {} for k in ("authors", *rows)}
    runs = {
        "authors": lambda: authors_step(
            theirs_enc, clip, theirs_opt, paths, prompts, rng, device, autocast, phases["authors"]
        )
    }
    for row in rows:
        model, opt, targets, clean_first = ours[row]
        runs[row] = lambda m=model, o=opt, t=targets, c=clean_first, r=row: ours_step(
            m, frontend, augment, t, o, wav_dev, prompts, 0, autocast, c, phases[r]
        )
    times = {k: [] for k in runs}
    rss = {k: [] for k in runs}
    cuda = {k: [] for k in runs}
    losses = {k: fn() for k, fn in runs.items() for _ in range(warmup)}
    for v in phases.values():
        v.clear()  # warm-up steps are not timed
    order = list(runs)
    for r in range(repeats):
        for key in order[r % len(order) :] + order[: r % len(order)]:  # rotate who goes first
            s, m, c = _timed(runs[key], device)
            times[key].append(s)
            rss[key].append(m)
            cuda[key].append(c)
    med = {k: statistics.median(v) for k, v in times.items()}
    phase_med = {k: {p: round(statistics.median(v), 4) for p, v in ph.items()} for k, ph in phases.items()}
    result_rows = {}
    for row in rows:
        gain = med["authors"] - med[row]
        result_rows[row] = {
            "recipe_ours": sides[row],
            "samples_per_s": {"authors": round(batch / med["authors"], 3), "ours": round(batch / med[row], 3)},
            "speedup": round(med["authors"] / med[row], 2),
            # each phase's share of the time saved (negative: ours spends more there)
            "saved_by_phase_share": {
                p: round((phase_med["authors"][p] - phase_med[row][p]) / gain, 3) if abs(gain) > 1e-9 else None
                for p in phase_med[row]
            },
        }
    return {
        "batch": batch,
        "clip_seconds": 10.0,
        "repeats": repeats,
        "warmup": warmup,
        "precision": str(amp) if amp is not None else "fp32",
        "channels_last_ours": channels_last,
        "rows": result_rows,
        "seconds_per_step": {k: round(v, 4) for k, v in med.items()},
        "phase_seconds": phase_med,
        "peak_rss_mib": {k: round(max(v), 1) for k, v in rss.items()},
        "peak_cuda_mib": {k: round(max(v), 1) for k, v in cuda.items()} if device.type == "cuda" else None,
        "all_seconds": {k: [round(x, 4) for x in v] for k, v in times.items()},
        "last_loss": {k: round(v, 4) for k, v in losses.items()},
        "legacy_scale": LEGACY_SCALE,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="timed steps of each; the median is reported")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--rows", nargs="+", default=["code", "recipe"], choices=["code", "recipe"])
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument("--out", help="write the results here as JSON")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {"machine": machine_info(device)}
    if hasattr(os, "getloadavg"):
        result["machine"]["loadavg_1min_at_start"] = round(os.getloadavg()[0], 2)
    result.update(
        benchmark(
            device,
            args.batch_size,
            args.repeats,
            args.warmup,
            channels_last=not args.no_channels_last,
            rows=tuple(args.rows),
        )
    )
    if hasattr(os, "getloadavg"):
        result["machine"]["loadavg_1min_at_end"] = round(os.getloadavg()[0], 2)
    rss = result["peak_rss_mib"]
    for row, r in result["rows"].items():
        sps = r["samples_per_s"]
        print(
            f"{row:>6}: authors {sps['authors']:.2f} samples/s (peak RSS {rss['authors']:.0f} MiB) | ours "
            f"{sps['ours']:.2f} samples/s (peak RSS {rss[row]:.0f} MiB) | speedup {r['speedup']:.2f}x | "
            f"share of the time saved by phase {json.dumps(r['saved_by_phase_share'])}"
        )
    print(
        f"[{device}, batch {args.batch_size}, {result['precision']} both sides; phases (s): "
        f"{json.dumps(result['phase_seconds'])}]"
    )
    if args.out:
        from sound2img.utils.files import atomic_write_text

        atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
