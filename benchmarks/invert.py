"""Photo inversion cost: seconds and peak memory of e4e encoding, N projector steps
(LPIPS-VGG16 + the noise regulariser, W+) and N PTI steps (L2 + LPIPS + locality), on
random full-size networks (config-f generator widths, IR-SE50 encoder, VGG16 with random
weights: the same arithmetic as the real ones). Each case runs in its own subprocess, so
its peak RSS is its own; the 1-minute load average at the start is recorded with it.

    python benchmarks/invert.py --res 256 --steps 100            # the README's figures
    python benchmarks/invert.py --res 256 --steps 5 --json b.json # a quick look
    python benchmarks/invert.py --res 1024 --steps 20             # only on a quiet machine

"implied_edit_s" adds what one 300-step edit costs (seconds per step measured by
benchmarks/manipulate.py, passed with --edit-step-s) to each inversion, per image.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

CASES = ("e4e", "projector", "pti")


def _vgg_file(tmp: str) -> str:
    """torchvision's VGG16 feature layout with random weights (LPIPS reads nothing else)."""
    import torch
    import torchvision

    path = os.path.join(tmp, "vgg16-random.pth")
    torch.manual_seed(0)
    feats = torchvision.models.vgg16(weights=None).features.state_dict()
    torch.save({f"features.{k}": v for k, v in feats.items()}, path)
    return path


def run_case(case: str, res: int, steps: int, device: str) -> dict:
    import torch

    from sound2img.utils.device import machine_info, resolve_device

    dev = resolve_device(device)
    machine = machine_info(dev)
    out = {"case": case, "res": res, "machine": machine}
    if case == "e4e":
        import math

        from sound2img.inversion.encoders import StyleEncoder

        enc = StyleEncoder("Encoder4Editing", 2 * int(math.log2(res)) - 2).eval().requires_grad_(False).to(dev)
        x = torch.rand(1, 3, 256, 256, device=dev) * 2 - 1
        with torch.no_grad():
            enc(x)  # warm-up
            times = []
            for _ in range(max(steps, 1)):
                t = time.perf_counter()
                enc(x)
                times.append(time.perf_counter() - t)
        out.update(reps=len(times), seconds=sorted(times)[len(times) // 2], what="one 256-px image, median")
    else:
        from sound2img.inversion.projector import ProjectorSettings, project
        from sound2img.inversion.pti import PTISettings, tune_generator
        from sound2img.metrics import load_lpips
        from sound2img.models.stylegan2 import build_generator

        with tempfile.TemporaryDirectory() as tmp:
            lpips = load_lpips(_vgg_file(tmp), dev)
        G = build_generator(res, seed=0, device=dev)
        target = torch.rand(1, 3, res, res, device=dev) * 2 - 1
        t = time.perf_counter()
        if case == "projector":
            r = project(
                G, target, lpips=lpips, settings=ProjectorSettings(steps=steps, space="wplus", noise="optimize")
            )
            seconds = r.seconds
        else:
            pivot = G.mapping(torch.randn(1, G.z_dim, device=dev))
            r = tune_generator(G, pivot, target, lpips=lpips, settings=PTISettings(steps=steps, lpips_threshold=-1.0))
            seconds = r.seconds
        out.update(steps=steps, seconds=seconds, per_step_s=seconds / steps, wall_s=time.perf_counter() - t)
    out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--res", type=int, nargs="+", default=[256])
    p.add_argument("--steps", type=int, default=100, help="projector / PTI steps (e4e: repetitions)")
    p.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--edit-step-s", type=float, help="seconds per edit step at this resolution (benchmarks/manipulate.py)"
    )
    p.add_argument("--json")
    p.add_argument("--_one", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a._one:
        print(json.dumps(run_case(a._one[0], int(a._one[1]), a.steps, a.device)))
        return 0
    results = []
    for res in a.res:
        for case in a.cases:
            proc = subprocess.run(
                [sys.executable, __file__, "--_one", case, str(res), "--steps", str(a.steps), "--device", a.device],
                capture_output=True,
                text=True,
            )
            if proc.returncode:
                print(f"{case}@{res}: failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            if a.edit_step_s and case != "e4e":
                r["implied_invert_plus_300_step_edit_s"] = r["seconds"] + 300 * a.edit_step_s
            results.append(r)
            extra = f", {r['per_step_s']:.3f} s/step" if "per_step_s" in r else ""
            print(
                f"{case:9s} {res:5d}px  {r['seconds']:8.2f} s{extra}  peak RSS {r['peak_rss_gib']:.2f} GiB  "
                f"(load {r['machine'].get('loadavg_1min_at_start')})",
                flush=True,
            )
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
