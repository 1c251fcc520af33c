"""Per-clip time of the batched torch mel front ends against the reference pipeline they
reproduce (librosa per clip, + cv2.resize for soundclip_legacy), on the same 10-s clips,
decoding excluded. Also a plain ``torch.stft`` + ``abs()**2`` + mel variant of our front
end, to show where the time goes. The three are interleaved within each repeat (so load
from other processes hits all alike); the figure is the median over repeats.

    python benchmarks/frontend.py                          # CPU/CUDA auto, batch 32, 10-s clips
    python benchmarks/frontend.py --device cpu --out results.json
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import runpy
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

from sound2img.audio.frontend import build_frontend, list_frontends
from sound2img.utils.device import machine_info, resolve_device, timed_call


@functools.lru_cache(maxsize=1)
def _reference_frontend():
    """The librosa pipelines the front ends reproduce. They live with the tests
    (``tests/helpers/reference.py``); a benchmark runs outside pytest, so it loads the file."""
    return runpy.run_path(
        str(Path(__file__).resolve().parents[1] / "tests" / "helpers" / "reference.py"),
        run_name="sound2img_test_reference",
    )["reference_frontend"]


def synthetic_clips(batch: int, seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """``[batch, seconds*sample_rate]`` float32: a gliding tone, noise bursts and clicks at
    random levels (the content does not change the cost, only makes the check meaningful)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    out = np.empty((batch, n), np.float32)
    for i in range(batch):
        f0 = rng.uniform(100, 2000)
        tone = np.sin(2 * np.pi * (f0 * t + rng.uniform(-50, 50) * t**2))
        bursts = rng.standard_normal(n) * (np.sin(2 * np.pi * rng.uniform(0.2, 2) * t) > 0.3)
        out[i] = (rng.uniform(0.05, 0.5) * tone + rng.uniform(0.01, 0.2) * bursts).astype(np.float32)
    return out


def _naive_mel_power(fe, wav: torch.Tensor, lengths=None):
    """The plain-torch way: ``torch.stft`` (its own padding copy, complex [B,F,T] output),
    ``abs()**2`` (a sqrt then a square), then the mel product."""
    spec = torch.stft(
        wav, fe.n_fft, fe.hop_length, window=fe.window, center=True, pad_mode="constant", return_complex=True
    )
    power = spec.abs() ** 2
    frames = torch.full((wav.shape[0],), spec.shape[-1], dtype=torch.long, device=wav.device)
    return torch.matmul(fe.mel_fb, power), frames


_timed = timed_call  # module attribute: tests script the timings through it


def benchmark_frontend(
    name: str,
    *,
    device: torch.device,
    batch: int = 32,
    seconds: float = 10.0,
    repeats: int = 5,
    warmup: int = 1,
    seed: int = 0,
) -> dict:
    """Median seconds per clip of the reference, the naive torch variant and ours."""
    fe = build_frontend(name).to(device)
    naive = build_frontend(name).to(device)
    naive.mel_power = lambda wav, lengths=None: _naive_mel_power(naive, wav, lengths)
    spec = fe.spec()
    clips = synthetic_clips(batch, seconds, fe.sample_rate, seed)
    wav = torch.from_numpy(clips).to(device)
    reference = _reference_frontend()

    runs = {
        "reference": lambda: [reference(y, spec) for y in clips],
        "torch_stft": lambda: naive(wav),
        "ours": lambda: fe(wav),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    with torch.no_grad():
        for _ in range(warmup):
            for fn in runs.values():
                fn()
        order = list(runs)
        for r in range(repeats):
            for key in order[r % 3 :] + order[: r % 3]:  # rotate who goes first
                times[key].append(_timed(runs[key], device) / batch)
        ours = fe(wav).cpu().numpy()
    ref = np.stack([reference(y, spec) for y in clips])
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "frontend": name,
        "spec": spec,
        "batch": batch,
        "seconds": seconds,
        "repeats": repeats,
        "ms_per_clip": {k: round(v * 1e3, 3) for k, v in med.items()},
        "speedup_vs_reference": round(med["reference"] / med["ours"], 2),
        "torch_stft_speedup_vs_reference": round(med["reference"] / med["torch_stft"], 2),
        "max_abs_diff_vs_reference": float(np.abs(ours - ref).max()),
        "all_ms_per_clip": {k: [round(x * 1e3, 3) for x in v] for k, v in times.items()},
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=int, default=32, help="clips per batch (default 32)")
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length (default 10 s)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is reported")
    parser.add_argument("--warmup", type=int, default=1)
    # the mel front ends that have a librosa (+ OpenCV) reference to race; the peer encoders'
    # own front ends are timed by benchmarks/encoders.py
    mel = [n for n in list_frontends() if n in ("logmel", "soundclip_legacy")]
    parser.add_argument("--frontend", action="append", choices=mel, help="default: " + ", ".join(mel))
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", help="write the results here as JSON")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {"machine": machine_info(device), "results": []}
    for name in args.frontend or mel:
        r = benchmark_frontend(
            name, device=device, batch=args.batch_size, seconds=args.seconds, repeats=args.repeats, warmup=args.warmup
        )
        result["results"].append(r)
        ms = r["ms_per_clip"]
        print(
            f"{name:17s} reference {ms['reference']:8.3f} ms/clip | torch.stft {ms['torch_stft']:8.3f} "
            f"({r['torch_stft_speedup_vs_reference']:.2f}x) | ours {ms['ours']:8.3f} "
            f"({r['speedup_vs_reference']:.2f}x) | max|diff| {r['max_abs_diff_vs_reference']:.2e}",
            flush=True,
        )
    if hasattr(os, "getloadavg"):
        result["machine"]["loadavg_1min_at_end"] = round(os.getloadavg()[0], 2)
    if args.out:
        from sound2img.utils.files import atomic_write_text

        atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
