"""bf16 against fp32 in our edit step, beyond its speed (``benchmarks/manipulate.py
--precision fp32 bf16`` times it): where one step's time goes by oneDNN kernel, and how
close a 30-step bf16 edit comes to the fp32 edit from the same source, on full-size random
networks (the test suite checks the same at sizes CI can afford,
tests/models/stylegan2/test_precision.py).

oneDNN names its kernels by instruction set: ``brg…:avx512_core_amx`` are AMX tiles,
``…:avx512_core_bf16`` AVX512-BF16 dot products, ``…:avx512_core`` / ``…:avx2`` fp32 (or
bf16 emulated through fp32). The share is of the step's wall time with oneDNN's log on; the
rest is work outside oneDNN (fp32 matrix products run in MKL, elementwise ops, Python).

    python benchmarks/precision.py --kernels 256 --precision fp32 bf16 --threads 2
    python benchmarks/precision.py --fidelity 256 1024 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import torch
import torch.nn.functional as F


def kernel_step(res: int, precision: str, steps: int = 3) -> dict:
    """Our edit at ``res`` px, batch 1, with oneDNN's verbose log (each primitive's
    implementation and time, on stdout) on from the end of the first step to the end of
    the last: the logged steps' wall time (the source and result renders before and after
    the loop are not logged)."""
    from sound2img.manipulation.optimizer import AUTHORS_COS_SCALE, optimize_latents
    from sound2img.models.clip import build_clip
    from sound2img.models.stylegan2 import build_generator
    from sound2img.utils.memory import keep_freed_memory

    keep_freed_memory()
    G = build_generator(res, seed=0, estimate_w_avg=False)
    clip = build_clip("ViT-B-32", seed=0, preprocess="styleclip")
    target = F.normalize(torch.randn(1, 512, generator=torch.Generator().manual_seed(0)), dim=-1)
    ws = torch.randn(1, G.num_ws, 512, generator=torch.Generator().manual_seed(0)) * 0.5
    set_verbose = torch._C._verbose.mkldnn_set_verbose  # what torch.backends.mkldnn.verbose() calls

    def log_after_first(done: int, img, cosine) -> None:
        set_verbose(1 if done < steps else 0)

    res_ = optimize_latents(
        G,
        clip.encode_image,
        ws,
        target,
        steps=steps,
        lr=0.1,
        lambda_sim=0.002,
        cos_scale=AUTHORS_COS_SCALE,
        precision=precision,
        on_step=log_after_first,
    )
    return {"step_s": sum(res_.step_seconds[1:]), "steps": steps - 1, "precision": res_.precision}


def kernel_table(res: int, precision: str, threads: int) -> tuple[str, dict]:
    """``kernel_step`` in a subprocess; oneDNN's execution time per (primitive,
    implementation) and each one's share of the steps' wall time. Returns the printed
    table and ``{"step_s", "amx_share", "onednn_share", "by_kernel": {name: share}}``."""
    cmd = [sys.executable, __file__, "--threads", str(threads), "--case", str(res), precision]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "ONEDNN_VERBOSE": "0"})
    if out.returncode != 0:
        return f"{precision}: failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}", {}
    lines = out.stdout.strip().splitlines()
    step = json.loads(next(line for line in reversed(lines) if line.startswith("{")))
    per_kernel: dict[str, float] = {}
    for line in lines:
        f = line.split(",")
        at = next((i for i in range(1, len(f) - 3) if f[i - 1 : i + 1] == ["primitive", "exec"]), None)
        if f[0] == "onednn_verbose" and at is not None:
            key = f"{f[at + 2]} {f[at + 3]}"  # primitive kind, implementation (its ISA after the colon)
            per_kernel[key] = per_kernel.get(key, 0.0) + float(f[-1]) / 1000  # ms → s
    total, n = step["step_s"], step["steps"]
    shares = {k: v / total for k, v in per_kernel.items()}
    amx = sum(v for k, v in shares.items() if "amx" in k)
    rows = [f"{precision} (resolved {step['precision']}), {res} px: {total / n:.3f} s/step with the log on"]
    for key, share in sorted(shares.items(), key=lambda kv: -kv[1]):
        rows.append(f"  {100 * share:5.1f} %  {share * total / n:.3f} s/step  {key}")
    rows.append(f"  AMX kernels {100 * amx:.1f} % of the step, all oneDNN {100 * sum(shares.values()):.1f} %")
    summary = {"step_s": total / n, "amx_share": amx, "onednn_share": sum(shares.values()), "by_kernel": shares}
    return "\n".join(rows), summary


def fidelity(res: int, lr: float, steps: int = 30) -> dict:
    """A ``steps``-step edit in bf16 against the same edit in fp32 (full-size random
    networks, the default objective, batch 1): result PSNR (dB), |Δ final cosine| and the
    cosines, and ``fp32_nudged``: the fp32 edit from a source moved by fp32 round-off, against
    the fp32 edit. On random networks an edit can be chaotic (then the nudged edit is as far
    off as the bf16 one); tests/models/stylegan2/test_precision.py says where it is not."""
    from sound2img.manipulation.optimizer import AUTHORS_COS_SCALE, optimize_latents
    from sound2img.metrics import psnr
    from sound2img.models.clip import build_clip
    from sound2img.models.stylegan2 import build_generator, sample_source_latents
    from sound2img.utils.memory import keep_freed_memory

    keep_freed_memory()
    G = build_generator(res, seed=0)
    clip = build_clip("ViT-B-32", seed=0, preprocess="styleclip")
    ws = sample_source_latents(G, [0], 0.7, "cpu")
    target = F.normalize(torch.randn(1, 512, generator=torch.Generator().manual_seed(5)), dim=-1)
    kw = dict(steps=steps, lr=lr, lambda_sim=0.002, cos_scale=AUTHORS_COS_SCALE)
    out = {p: optimize_latents(G, clip.encode_image, ws, target, precision=p, **kw) for p in ("fp32", "bf16")}
    a, b = out["fp32"], out["bf16"]
    # How chaotic the edit is: the fp32 edit again from a source moved by fp32 round-off
    # (2^-24 relative, random signs). Where this is far from the fp32 edit too, no precision
    # can be compared on it.
    nudge = torch.randn(ws.shape, generator=torch.Generator().manual_seed(1)).sign() * ws.abs() * 2.0**-24
    c = optimize_latents(G, clip.encode_image, ws + nudge, target, precision="fp32", **kw)
    return {
        "res": res,
        "steps": steps,
        "lr": lr,
        "psnr_db": float(psnr(b.result_img, a.result_img)[0]),
        "abs_delta_final_cosine": float((b.final_cosine - a.final_cosine).abs()[0]),
        "fp32_nudged": {
            "psnr_db": float(psnr(c.result_img, a.result_img)[0]),
            "abs_delta_final_cosine": float((c.final_cosine - a.final_cosine).abs()[0]),
        },
        "cosine": {
            "initial": float(a.initial_cosine[0]),
            "fp32": float(a.final_cosine[0]),
            "bf16": float(b.final_cosine[0]),
        },
        "step_s": {p: sum(r.step_seconds) / steps for p, r in out.items()},
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--kernels", type=int, nargs="+", default=[], metavar="RES", help="kernel split of one step at RES px"
    )
    p.add_argument("--precision", nargs="+", default=["bf16"], choices=["fp32", "bf16", "auto"], help="for --kernels")
    p.add_argument("--fidelity", type=int, nargs="+", default=[], metavar="RES", help="bf16 vs fp32 edit at RES px")
    p.add_argument("--lr", type=float, default=0.1, help="--fidelity: the edit's peak learning rate (preset: 0.1)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--case", nargs=2, metavar=("RES", "PRECISION"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.case:
        print(json.dumps(kernel_step(int(args.case[0]), args.case[1])))
        return 0
    if not (args.kernels or args.fidelity):
        p.error("nothing to do: give --kernels RES and/or --fidelity RES")
    out = {"kernels": {}, "fidelity": []}
    for res in args.kernels:
        for precision in args.precision:
            table, shares = kernel_table(res, precision, args.threads)
            print(table, flush=True)
            out["kernels"][f"{res}px_{precision}"] = shares
    for res in args.fidelity:
        out["fidelity"].append(fidelity(res, args.lr))
        print(json.dumps(out["fidelity"][-1]), flush=True)
    if args.json:
        from sound2img.utils.files import atomic_write_text

        atomic_write_text(args.json, json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
