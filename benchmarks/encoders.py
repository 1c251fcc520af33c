"""Milliseconds per 10-s clip and peak memory of the sound encoders one can guide with:
the authors' ResNet-18 (``soundclip_legacy`` front end), AudioCLIP (ESResNeXt-FBSP, its own
spectrogram) and Wav2CLIP (ResNet-18 on its log-spectrogram), each front end + encoder, at
full size with random weights (the cost does not depend on the values), batch 1 and 16.

Each (encoder, batch) runs in a fresh process so that its peak resident memory
(``ru_maxrss``) is its own; the figure is the median over repeats after a warm-up. The
ResNet-18 is the baseline: ``relative`` is each encoder's time per clip over its time at the
same batch size, measured in the same run, in CPU time of the process (``cpu_ms_per_clip``:
what the work costs when other jobs share the machine; ``ms_per_clip`` is wall time).

    python benchmarks/encoders.py                         # CPU/CUDA auto, batch 1 and 16, 10-s clips
    python benchmarks/encoders.py --device cpu --batch-sizes 1 --seconds 2 --out results.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

ENCODERS = {  # name → (registry architecture, front end, embedding width)
    "resnet18_legacy": ("resnet18_legacy", "soundclip_legacy", 512),
    "audioclip": ("audioclip", "audioclip", 1024),
    "wav2clip": ("wav2clip", "wav2clip", 512),
}


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def worker(name: str, batch: int, seconds: float, repeats: int, warmup: int, device: str) -> dict:
    """One (encoder, batch) measurement in this process."""
    from sound2img.audio.frontend import build_frontend
    from sound2img.models.audio_encoder import build_audio_encoder
    from sound2img.utils.device import resolve_device

    dev = resolve_device(device)
    arch, frontend_name, dim = ENCODERS[name]
    torch.manual_seed(0)
    encoder = build_audio_encoder(arch, embed_dim=dim).eval().requires_grad_(False).to(dev)
    frontend = build_frontend(frontend_name).to(dev)
    wav = 0.1 * torch.randn(batch, int(seconds * frontend.sample_rate), generator=torch.Generator().manual_seed(1))
    wav = wav.to(dev)
    rss_loaded = _rss_mib()

    def step():
        with torch.no_grad():
            emb = encoder.encode_audio(frontend(wav))
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return emb

    for _ in range(warmup):
        step()
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        emb = step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    assert emb.shape == (batch, dim) and bool(torch.isfinite(emb).all())
    return {
        "encoder": name,
        "frontend": frontend_name,
        "batch": batch,
        "seconds": seconds,
        "ms_per_clip": 1000.0 * statistics.median(times) / batch,
        "repeats": repeats,
        # CPU time of this process: on a machine shared with other jobs, what the clip costs
        "cpu_ms_per_clip": 1000.0 * statistics.median(cpu) / batch,
        "threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in encoder.parameters()),
        "rss_loaded_mib": rss_loaded,
        "peak_rss_mib": _rss_mib(),
        "peak_cuda_mib": torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--encoders", nargs="+", default=list(ENCODERS), choices=list(ENCODERS))
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 16])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch threads in each worker (default: torch's)")
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--worker", nargs=2, metavar=("ENCODER", "BATCH"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        print(
            json.dumps(
                worker(args.worker[0], int(args.worker[1]), args.seconds, args.repeats, args.warmup, args.device)
            )
        )
        return 0

    from sound2img.utils.device import machine_info, resolve_device

    results = []
    for batch in args.batch_sizes:
        for name in args.encoders:
            cmd = [
                sys.executable,
                os.path.abspath(__file__),
                "--worker",
                name,
                str(batch),
                "--seconds",
                str(args.seconds),
                "--repeats",
                str(args.repeats),
                "--warmup",
                str(args.warmup),
                "--device",
                args.device,
            ] + (["--threads", str(args.threads)] if args.threads else [])
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return proc.returncode
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    # relative cost in CPU time (robust to other jobs on the machine), against the ResNet-18 at the same batch
    base = {r["batch"]: r["cpu_ms_per_clip"] for r in results if r["encoder"] == "resnet18_legacy"}
    for r in results:
        r["relative"] = r["cpu_ms_per_clip"] / base[r["batch"]] if r["batch"] in base else None
    print(
        f"{'encoder':16s} {'batch':>5s} {'ms/clip':>9s} {'CPU ms/clip':>11s} {'x ResNet-18':>11s} "
        f"{'loaded MiB':>10s} {'peak MiB':>9s}"
    )
    for r in results:
        rel = f"{r['relative']:.2f}" if r["relative"] else "-"
        print(
            f"{r['encoder']:16s} {r['batch']:5d} {r['ms_per_clip']:9.1f} {r['cpu_ms_per_clip']:11.1f} {rel:>11s} "
            f"{r['rss_loaded_mib']:10.0f} {r['peak_rss_mib']:9.0f}"
        )
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    summary = {
        "machine": machine_info(resolve_device(args.device)),
        "load_average": load,
        "seconds_per_clip": args.seconds,
        "results": results,
    }
    print(f"load average {load}")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(summary, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
