"""What librosa 0.8.1's resampling costs here: seconds per second of audio of the torch port
of resampy 0.2.2's ``kaiser_best`` (``sound2img/audio/resample.py``, what the
``soundclip_legacy`` and ``audioclip`` front ends read files with) against soxr ``HQ``
(today's librosa default, the other front ends'), one clip and a batch, for the common
recording rates to 44.1 kHz. Interleaved per repeat; medians.

    python benchmarks/resample.py                           # CPU (or --device cuda), 10-s clips
    python benchmarks/resample.py --threads 1 --out results.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import numpy as np
import torch

from sound2img.audio.resample import resample_kaiser_best
from sound2img.utils.device import machine_info, resolve_device, timed_call


def benchmark_rate(rate: int, *, seconds: float, batch: int, repeats: int, device: torch.device) -> dict:
    """Median seconds per second of audio at ``rate`` → 44.1 kHz: kaiser_best for one clip
    and for ``batch`` clips at once, soxr_hq one clip at a time."""
    import soxr

    x = np.random.default_rng(rate).uniform(-0.5, 0.5, (batch, int(seconds * rate))).astype(np.float32)
    on_device = torch.from_numpy(x).to(device)
    runs = {
        "kaiser_best_one": lambda: resample_kaiser_best(on_device[0], rate, 44100),
        "kaiser_best_batch": lambda: resample_kaiser_best(on_device, rate, 44100),
        "soxr_hq_one": lambda: soxr.resample(x[0], rate, 44100, quality="soxr_hq"),
    }
    runs["kaiser_best_one"]()  # warm-up (tables, allocator)
    times = {k: [] for k in runs}
    for r in range(repeats):
        for name in list(runs)[r % len(runs) :] + list(runs)[: r % len(runs)]:  # rotate who goes first
            times[name].append(timed_call(runs[name], device))
    audio = {"kaiser_best_one": seconds, "kaiser_best_batch": seconds * batch, "soxr_hq_one": seconds}
    return {name: statistics.median(t) / audio[name] for name, t in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rates", type=int, nargs="+", default=[48000, 32000, 22050, 16000])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    results = {"machine": machine_info(device), "settings": vars(args), "seconds_per_audio_second": {}}
    for rate in args.rates:
        row = benchmark_rate(rate, seconds=args.seconds, batch=args.batch, repeats=args.repeats, device=device)
        results["seconds_per_audio_second"][str(rate)] = row
        print(f"{rate} Hz → 44.1 kHz: " + ", ".join(f"{k} {v * 1e3:.1f} ms/s" for k, v in row.items()))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
