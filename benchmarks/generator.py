"""StyleGAN2 generator speed and peak memory: synthesis forward, and forward + backward
w.r.t. ws (what latent optimisation runs; weights frozen), config-f widths with random
weights, at 256 and 1024 px, batch 1 and 8. Each case runs in its own subprocess so that
peak memory is its own (CPU: ru_maxrss; CUDA: max_memory_allocated).

Variants: ``default`` (one autograd function per layer: styles folded into the kernel
for a batch of one, else into the activations; no kernel gradients; NHWC activations on
CPU), ``nchw`` (the same with NCHW activations), ``fused`` (the reference codebases'
grouped conv over batch-folded per-sample kernels, plain autograd, NCHW), ``compile``
(default under ``torch.compile``; opt-in, compiling takes minutes).

Each case also reports the GFLOP of one call (``torch.utils.flop_counter``: convolutions
and matrix products, forward and the input backward) and the GFLOP/s it reached; on the
CPU, against the machine's measured fp32 matmul peak (sgemm 2048², same threads), the
ceiling any convolution could reach.

    python benchmarks/generator.py --quick
    python benchmarks/generator.py --skip 1024x8xbwd --json bench.json
    python benchmarks/generator.py --res 256 --batch 1 8 --variants default compile
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

VARIANTS = ("default", "nchw", "fused", "compile")
MODES = ("fwd", "bwd")


def _rss_gib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def run_case(res: int, batch: int, mode: str, variant: str, reps: int, warmup: int, device: str) -> dict:
    """One measurement in this process: median seconds per call and peak memory."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from sound2img.models.stylegan2 import build_generator
    from sound2img.utils.device import machine_info, resolve_device
    from sound2img.utils.memory import keep_freed_memory

    keep_freed_memory()  # as every sound2img script does (sound2img.cli.run_cli)
    dev = resolve_device(device)
    machine = machine_info(dev)  # before the work: its load average says how busy the machine was
    G = build_generator(res, seed=0, estimate_w_avg=False, device=dev)  # config-f widths
    G.synthesis.fused_modconv = variant == "fused"
    G.synthesis.channels_last = False if variant in ("nchw", "fused") else None  # None: NHWC on CPU
    synthesis = torch.compile(G.synthesis) if variant == "compile" else G.synthesis
    ws0 = G.mapping(torch.randn(batch, G.z_dim, generator=torch.Generator().manual_seed(0)).to(dev), 0.7)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    base_rss = _rss_gib()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        base_cuda = torch.cuda.memory_allocated(dev)

    def step():
        if mode == "fwd":
            with torch.no_grad():
                synthesis(ws0, noise_mode="const")
        else:
            ws = ws0.clone().requires_grad_(True)
            synthesis(ws, noise_mode="const").square().mean().backward()
            assert ws.grad is not None
        sync()

    # One untimed call, counted (the compiled variant does the same work as the default).
    gflop = None
    if variant != "compile":
        with FlopCounterMode(display=False) as counter:
            step()
        gflop = counter.get_total_flops() / 1e9
    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    warm_s = time.perf_counter() - t0
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    out = {
        "res": res,
        "batch": batch,
        "mode": "forward" if mode == "fwd" else "forward+backward(ws)",
        "variant": variant,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "reps": reps,
        "median_s": sorted(times)[len(times) // 2],
        "min_s": min(times),
        "warmup_s": warm_s,
        "per_image_s": sorted(times)[len(times) // 2] / batch,
        "gflop": gflop,
        **({"gflops_achieved": gflop / sorted(times)[len(times) // 2]} if gflop else {}),
        "machine": machine,
    }
    if dev.type == "cuda":
        out["device_name"] = torch.cuda.get_device_name(dev)
        out["peak_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
        out["activation_peak_gib"] = (torch.cuda.max_memory_allocated(dev) - base_cuda) / 2**30
    else:
        out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        out["rss_after_build_gib"] = base_rss
    return out


def matmul_peak(reps: int = 10, n: int = 2048) -> dict:
    """The best fp32 sgemm rate of this process's threads, GFLOP/s (n×n times n×n)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = min(_timed(lambda: a @ b) for _ in range(reps))
    return {"gflops": 2 * n**3 / best / 1e9, "threads": torch.get_num_threads(), "n": n}


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _cases(args) -> list[tuple[int, int, str, str]]:
    cases = []
    for res in args.res:
        for batch in args.batch:
            for mode in args.modes:
                for variant in args.variants:
                    if variant == "compile" and res > args.compile_max_res:
                        continue
                    key = f"{res}x{batch}x{mode}"
                    if key in args.skip or f"{key}x{variant}" in args.skip:
                        continue
                    cases.append((res, batch, mode, variant))
    return cases


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="256 px, batch 1, default and fused, one timed rep")
    p.add_argument("--res", type=int, nargs="+", default=[256, 1024])
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=["default", "nchw", "fused"])
    p.add_argument("--compile-max-res", type=int, default=256, help="compile only up to this resolution")
    p.add_argument(
        "--skip", nargs="*", default=[], metavar="RESxBATCHxMODE[xVARIANT]", help="cases to leave out, e.g. 1024x8xbwd"
    )
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch threads in each case (default: torch's)")
    p.add_argument("--device", default="auto")
    p.add_argument("--timeout", type=float, default=900, help="seconds per case")
    p.add_argument("--json", metavar="PATH", help="also write the results here")
    p.add_argument("--case", nargs=7, help=argparse.SUPPRESS)  # internal: run one case, print JSON
    p.add_argument("--peak", action="store_true", help=argparse.SUPPRESS)  # internal: matmul peak, print JSON
    args = p.parse_args(argv)

    if args.peak:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        print(json.dumps(matmul_peak()))
        return 0

    if args.case:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        res, batch, mode, variant, reps, warmup, device = args.case
        print(json.dumps(run_case(int(res), int(batch), mode, variant, int(reps), int(warmup), device)))
        return 0
    if args.quick:
        args.res, args.batch, args.variants, args.reps = [256], [1], ["default", "fused"], 1

    results = []
    peak = None
    if args.device in ("auto", "cpu"):
        cmd = [sys.executable, os.path.abspath(__file__), "--peak"] + (
            ["--threads", str(args.threads)] if args.threads else []
        )
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        if out.returncode == 0:
            peak = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"fp32 matmul peak ({peak['threads']} threads): {peak['gflops']:.0f} GFLOP/s", flush=True)
    for res, batch, mode, variant in _cases(args):
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--case",
            str(res),
            str(batch),
            mode,
            variant,
            str(args.reps),
            str(args.warmup),
            args.device,
        ]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
            row = (
                json.loads(proc.stdout.strip().splitlines()[-1])
                if proc.returncode == 0
                else {
                    "res": res,
                    "batch": batch,
                    "mode": mode,
                    "variant": variant,
                    "error": (proc.stderr.strip().splitlines() or ["failed"])[-1],
                }
            )
        except subprocess.TimeoutExpired:
            row = {"res": res, "batch": batch, "mode": mode, "variant": variant, "error": f"timeout {args.timeout}s"}
        if peak is not None and "gflops_achieved" in row and row["device"] == "cpu":
            row["fraction_of_matmul_peak"] = row["gflops_achieved"] / peak["gflops"]
        results.append(row)
        mem = row.get("peak_rss_gib", row.get("peak_gib"))
        print(
            f"{res:5d} px  batch {batch}  {mode:3s}  {variant:13s}  "
            + (
                f"median {row['median_s']:8.3f} s  min {row['min_s']:8.3f} s  peak {mem:6.2f} GiB  "
                + (f"{row['gflop']:6.1f} GFLOP at {row['gflops_achieved']:5.0f} GFLOP/s" if row.get("gflop") else "")
                + (
                    f" ({100 * row['fraction_of_matmul_peak']:.0f} % of peak)"
                    if "fraction_of_matmul_peak" in row
                    else ""
                )
                if "error" not in row
                else row["error"]
            ),
            flush=True,
        )
        if args.json:  # after every case, so that an interrupted run keeps what it measured
            with open(args.json, "w") as fh:
                json.dump({"matmul_peak": peak, "results": results}, fh, indent=2)
    if not args.json:
        print(json.dumps({"matmul_peak": peak, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
