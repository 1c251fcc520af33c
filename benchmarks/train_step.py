"""Samples/s of one audio-encoder training step at batch 32 (resnet18_legacy on the
soundclip_legacy front end, a↔t + a↔â, SGD) and its peak memory: ours (the loop's own
pieces: batched torch front end and views, text embeddings from the precomputed cache,
one encoder pass over both views, channels_last, bf16 autocast where the CPU has it /
AMP on CUDA) against a re-expression of the authors' loop in the same process.

The baseline (paper.md §4): per clip in a Python loop, librosa mel + power_to_db + crop
+ cv2.resize + reshape (``sound2img.audio.reference``, the numbers our front end is tested
against) and a numpy SpecAugment for the second view; CLIP's text tower run on the
batch's prompts every step; each view through the encoder separately; cosine logits
times e^0.07; fp32, contiguous tensors. Both run in the main process (no DataLoader
workers, which would hide the baseline's per-clip front end on other cores). CLIP is
ViT-B/32 at full size with random weights (open_clip, nothing downloaded). The two are
interleaved within each repeat so that load from other processes hits both alike;
figures are medians over repeats.

    python benchmarks/train_step.py                         # auto device, batch 32
    python benchmarks/train_step.py --device cpu --repeats 5 --out results.json
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

from sound2img.audio.augment import build_augment
from sound2img.audio.frontend import build_frontend
from sound2img.audio.reference import reference_frontend
from sound2img.data.prompts import training_templates
from sound2img.data.synthetic import list_synthetic_classes, synthesize
from sound2img.models.audio_encoder import build_audio_encoder
from sound2img.models.clip import build_clip
from sound2img.utils.distributed import DistInfo
from sound2img.training.loop import _build_optimizer
from sound2img.training.losses import LEGACY_SCALE, ContrastiveLoss, LogitScale
from sound2img.training.step import Student, make_views
from sound2img.training.targets import ClipTargets
from sound2img.utils.device import machine_info, resolve_device

# experiment=soundclip_resnet18's views: specaugment_legacy's masks (widths in mel bins /
# frames), no wave gain (a no-op for this peak-normalised front end)
AUGMENT = dict(min_gain_db=0.0, max_gain_db=0.0, num_freq_masks=2, max_freq_width=16, num_time_masks=2,
               max_time_width=64, mask_value=0.0)


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
                out[s:s + w] = 0.0
            else:
                out[:, s:s + w] = 0.0
    return out


def authors_step(encoder, clip, opt, wav: torch.Tensor, prompts: list[str], spec: dict,
                 rng: np.random.Generator, device: torch.device) -> float:
    """One step as the released code does it (see the module docstring): the front end
    per clip on the CPU, then the batch moved to ``device``."""
    clips = wav.numpy()
    mels = [reference_frontend(y, spec) for y in clips]  # [1,128,512] each, numpy
    views = [numpy_spec_augment(m[0], rng)[None] for m in mels]
    audio = torch.from_numpy(np.stack(mels)).to(device)
    audio_aug = torch.from_numpy(np.stack(views)).to(device)
    text = clip.encode_text(prompts)  # frozen tower, every step
    a = encoder(audio)
    a_aug = encoder(audio_aug)
    a, a_aug, t = (x / x.norm(dim=-1, keepdim=True) for x in (a, a_aug, text))
    labels = torch.arange(len(prompts), device=device)
    loss = 0.0
    for other in (t, a_aug):
        logits = math.exp(0.07) * a @ other.T
        loss = loss + (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


# ------------------------------------------------------------------ ours

def ours_step(model: Student, frontend, augment, targets: ClipTargets, opt, wav: torch.Tensor, prompts: list[str],
              step: int, autocast) -> float:
    """One step of ``training_loop`` (the same functions, without data loading)."""
    gen = torch.Generator().manual_seed(step)
    with torch.no_grad():
        views = make_views(wav, frontend, augment, 2, gen)
        text = targets.text(prompts)
    with autocast():
        out = model(views, text)
    opt.zero_grad(set_to_none=True)
    out["loss"].backward()
    opt.step()
    model.loss.scale.clamp_()
    return out["loss"].item()


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


def benchmark(device: torch.device, batch: int = 32, repeats: int = 3, warmup: int = 1, bf16: bool | None = None,
              channels_last: bool = True, seed: int = 0) -> dict:
    frontend = build_frontend("soundclip_legacy").to(device)
    spec = frontend.spec()
    wav, prompts = make_batch(batch, 10.0, frontend.sample_rate, seed)
    clip = build_clip("ViT-B-32", device=device)  # random weights at full size
    if bf16 is None:  # bf16 where the hardware has it: CUDA AMP, or AVX512-BF16/AMX on a CPU
        bf16 = device.type == "cuda" or torch.ops.mkldnn._is_mkldnn_bf16_supported()
    amp = torch.bfloat16 if device.type == "cpu" or torch.cuda.is_bf16_supported() else torch.float16

    def autocast():
        return torch.autocast(device.type, dtype=amp) if bf16 else contextlib.nullcontext()

    torch.manual_seed(seed)
    theirs_enc = build_audio_encoder("resnet18_legacy").to(device)
    theirs_opt = torch.optim.SGD(theirs_enc.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    torch.manual_seed(seed)
    ours_enc = build_audio_encoder("resnet18_legacy").to(device)
    model = Student(ours_enc, ContrastiveLoss({"at": 1.0, "aa": 1.0}, scale=LogitScale("learnable")),
                    channels_last=channels_last).to(device)
    if channels_last:
        model.encoder.to(memory_format=torch.channels_last)
    ours_opt = _build_optimizer(model, "sgd", 1e-3, 0.9, 1e-4)
    augment = build_augment(**AUGMENT)
    cache_dir = tempfile.mkdtemp(prefix="s2i-bench-cache-")
    info = DistInfo(0, 1, device)
    targets = ClipTargets(clip, device, cache_dir, need_text=True, need_images=False, info=info)
    targets.precompute_text(sorted(set(prompts)))  # as the loop does before training
    rng = np.random.default_rng(seed)
    wav_dev = wav.to(device)

    runs = {
        "authors": lambda: authors_step(theirs_enc, clip, theirs_opt, wav, prompts, spec, rng, device),
        "ours": lambda: ours_step(model, frontend, augment, targets, ours_opt, wav_dev, prompts, 0, autocast),
    }
    times = {k: [] for k in runs}
    rss = {k: [] for k in runs}
    cuda = {k: [] for k in runs}
    losses = {k: fn() for k, fn in runs.items() for _ in range(warmup)}
    order = list(runs)
    for r in range(repeats):
        for key in order[r % 2:] + order[:r % 2]:  # alternate who goes first
            s, m, c = _timed(runs[key], device)
            times[key].append(s)
            rss[key].append(m)
            cuda[key].append(c)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "batch": batch, "clip_seconds": 10.0, "repeats": repeats, "warmup": warmup,
        "ours_settings": {"bf16_autocast": bool(bf16), "amp_dtype": str(amp) if bf16 else None,
                          "channels_last": channels_last, "text": "embedding cache", "front_end": "batched torch"},
        "seconds_per_step": {k: round(v, 4) for k, v in med.items()},
        "samples_per_s": {k: round(batch / v, 3) for k, v in med.items()},
        "speedup": round(med["authors"] / med["ours"], 2),
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
    parser.add_argument("--no-bf16", action="store_true", help="ours in fp32 (default: bf16 where supported)")
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument("--out", help="write the results here as JSON")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {"machine": machine_info(device)}
    result.update(benchmark(device, args.batch_size, args.repeats, args.warmup,
                            bf16=False if args.no_bf16 else None, channels_last=not args.no_channels_last))
    if hasattr(os, "getloadavg"):
        result["machine"]["loadavg_1min_at_end"] = round(os.getloadavg()[0], 2)
    sps, rss = result["samples_per_s"], result["peak_rss_mib"]
    print(f"authors {sps['authors']:.2f} samples/s (peak RSS {rss['authors']:.0f} MiB) | ours {sps['ours']:.2f} "
          f"samples/s (peak RSS {rss['ours']:.0f} MiB) | speedup {result['speedup']:.2f}x "
          f"[{device}, batch {args.batch_size}, {json.dumps(result['ours_settings'])}]")
    if args.out:
        from sound2img.utils.files import atomic_write_text

        atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
