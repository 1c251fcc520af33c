"""Time per optimisation step and peak RSS of a sound-guided edit: ours (sound2img's
optimiser and networks) vs a re-expression of the authors' loop, at 256 and 1024 px,
batch 1 and 8, random weights at full size, each case in its own subprocess.

The baseline follows the authors' code (docs/method.md §2, §6, §7): rosinality-style
ops (grouped modulated convs, the native upfirdn2d path: zero-stuffing, padding and a
single-channel conv over batch×channels) with parameter gradients left on everywhere;
the audio encoder re-run every step; CLIP input by ×7 nearest upsampling + average
pooling; the identity network run on both images every step although λ_ID = 0, its
arguments in the authors' order; ``backward(retain_graph=True)``. Not included (which
favours the baseline): the intermediate PNG written every 20 steps.

"Ours" times the default objective: StyleCLIP's CLIP input (``clip.preprocess=styleclip``,
computed as one area-resampling matrix), d_cos = 1 − e^0.07·cos, adaptive layer masking.
Like every sound2img script, "ours" keeps freed host memory for reuse
(``sound2img.utils.memory``); the baseline runs with the C library's defaults, as the
authors' script does. To measure where the time goes, ``authors_fix1`` … ``authors_fix5``
are the authors' loop with the first 1…5 of these changes applied cumulatively (FIXES):
the sound's embedding computed once, no identity network at λ_ID = 0, the CLIP input as
one area-resampling matrix instead of the 7H² nearest upsample + pool, frozen weights (no
parameter gradients, no retain_graph), freed memory kept for reuse. What remains between
``authors_fix5`` and ``ours`` is the generator's implementation (one autograd function
per layer, the up-convolution as four stride-1 phases, channels_last).

``--precision fp32 bf16`` times ours in each compute precision (``manipulate.precision``;
the authors' loop is fp32). Where the bf16 step's time goes by oneDNN kernel, and how
close a bf16 edit is to the fp32 one: ``benchmarks/precision.py``.

    python benchmarks/manipulate.py --profile 256          # torch.profiler's top ops of our step
    python benchmarks/manipulate.py --impl ours authors --precision fp32 bf16 --cases 256x1 1024x1

    python benchmarks/manipulate.py                      # 256x1, 256x8, 1024x1
    python benchmarks/manipulate.py --quick              # 256 px, batch 1, 2 steps
    python benchmarks/manipulate.py --cases 1024x8 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

# ------------------------------------------------------------------ the authors' loop


def ros_channels(res: int) -> int:
    """rosinality's width table with channel multiplier 2 (config-f)."""
    return {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128, 512: 64, 1024: 32}[res]


def fir_native(x: torch.Tensor, kernel: torch.Tensor, up: int, pad: tuple[int, int]) -> torch.Tensor:
    """rosinality's CPU upfirdn2d path: zeros inserted by padding a 6-D view, the padded
    image reshaped to [B·C,1,H,W] and filtered by a one-channel conv (flipped kernel)."""
    b, c, h, w = x.shape
    y = x.reshape(b * c, h, 1, w, 1)
    y = F.pad(y, [0, up - 1, 0, 0, 0, up - 1])
    y = y.reshape(b * c, 1, h * up, w * up)
    y = F.pad(y, [pad[0], pad[1], pad[0], pad[1]])
    y = F.conv2d(y, torch.flip(kernel, [0, 1])[None, None])
    return y.reshape(b, c, y.shape[-2], y.shape[-1])


class EqualLinear(nn.Module):
    def __init__(self, n_in: int, n_out: int, bias_init: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in))
        self.bias = nn.Parameter(torch.full((n_out,), bias_init))
        self.scale = 1 / math.sqrt(n_in)

    def forward(self, x):
        return F.linear(x, self.weight * self.scale, self.bias)


class RosModConv(nn.Module):
    """Modulated conv as one grouped conv over per-sample kernels (the reference's path)."""

    def __init__(
        self, c_in: int, c_out: int, k: int, demodulate: bool = True, upsample: bool = False, style_dim: int = 512
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, c_out, c_in, k, k))
        self.modulation = EqualLinear(style_dim, c_in, bias_init=1.0)
        self.scale, self.k, self.demodulate, self.upsample = 1 / math.sqrt(c_in * k * k), k, demodulate, upsample
        self.register_buffer("blur", torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64 * 4)

    def forward(self, x, style):
        b, c_in, h, w = x.shape
        s = self.modulation(style).view(b, 1, c_in, 1, 1)
        weight = self.scale * self.weight * s
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(b, -1, 1, 1, 1)
        c_out = weight.shape[1]
        x = x.reshape(1, b * c_in, h, w)
        if self.upsample:
            wt = weight.transpose(1, 2).reshape(b * c_in, c_out, self.k, self.k)
            y = F.conv_transpose2d(x, wt, stride=2, groups=b)
            y = y.reshape(b, c_out, y.shape[-2], y.shape[-1])
            return fir_native(y, self.blur, 1, (1, 1))
        y = F.conv2d(x, weight.reshape(b * c_out, c_in, self.k, self.k), padding=self.k // 2, groups=b)
        return y.reshape(b, c_out, h, w)


class RosStyledConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, upsample: bool = False, style_dim: int = 512):
        super().__init__()
        self.conv = RosModConv(c_in, c_out, 3, upsample=upsample, style_dim=style_dim)
        self.noise_weight = nn.Parameter(torch.zeros(1))
        self.bias = nn.Parameter(torch.zeros(c_out))

    def forward(self, x, style, noise):
        y = self.conv(x, style) + self.noise_weight * noise
        return F.leaky_relu(y + self.bias.view(1, -1, 1, 1), 0.2) * math.sqrt(2)  # the CPU fused_leaky_relu


class RosToRGB(nn.Module):
    def __init__(self, c_in: int, style_dim: int = 512):
        super().__init__()
        self.conv = RosModConv(c_in, 3, 1, demodulate=False, style_dim=style_dim)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.register_buffer("kernel", torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64 * 4)

    def forward(self, x, style, skip=None):
        y = self.conv(x, style) + self.bias
        return y if skip is None else y + fir_native(skip, self.kernel, 2, (2, 1))


class RosGenerator(nn.Module):
    """Synthesis from W+ (``input_is_latent=True``, ``randomize_noise=False``). ``channels``
    maps a resolution to its width (config-f's table by default); the tests load
    rosinality's own weights into a narrow one and compare with rosinality's outputs."""

    def __init__(self, size: int, style_dim: int = 512, channels=ros_channels):
        super().__init__()
        log = int(math.log2(size))
        self.num_ws = 2 * log - 2
        c_prev = channels(4)
        self.input = nn.Parameter(torch.randn(1, c_prev, 4, 4))
        self.conv1 = RosStyledConv(c_prev, c_prev, style_dim=style_dim)
        self.to_rgb1 = RosToRGB(c_prev, style_dim)
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        for i in range(3, log + 1):
            c = channels(2**i)
            self.convs += [
                RosStyledConv(c_prev, c, upsample=True, style_dim=style_dim),
                RosStyledConv(c, c, style_dim=style_dim),
            ]
            self.to_rgbs.append(RosToRGB(c, style_dim))
            c_prev = c
        for i in range(2 * log - 3):
            r = 2 ** ((i + 5) // 2)
            self.register_buffer(f"noise_{i}", torch.randn(1, 1, r, r))

    def forward(self, latent):
        noises = [getattr(self, f"noise_{i}") for i in range(2 * len(self.to_rgbs) + 1)]
        x = self.conv1(self.input.repeat(latent.shape[0], 1, 1, 1), latent[:, 0], noises[0])
        skip = self.to_rgb1(x, latent[:, 1])
        i = 1
        for k, to_rgb in enumerate(self.to_rgbs):
            x = self.convs[2 * k](x, latent[:, i], noises[2 * k + 1])
            x = self.convs[2 * k + 1](x, latent[:, i + 1], noises[2 * k + 2])
            skip = to_rgb(x, latent[:, i + 2], skip)
            i += 2
        return skip


FIXES = ("encoder_once", "no_identity", "area_preprocess", "frozen_weights", "keep_freed_memory")


def authors_steps(res: int, batch: int, steps: int, warmup: int, fixes: int = 0) -> dict:
    """The released optimisation loop (README settings: lr 0.1, λ_sim 0.002, λ_ID 0,
    plain L2): (wall, CPU) seconds of each step after the warm-up. The authors ran
    batch 1; batch B here means B latents in one tensor, the loss summed, as a batched
    version of their code would. ``fixes``: apply the first ``fixes`` of FIXES.
    Returns ``{"times": [(wall, CPU), …]}``."""
    from sound2img.models.clip import preprocess_styleclip

    fix = set(FIXES[:fixes])
    if "keep_freed_memory" in fix:
        from sound2img.utils.memory import keep_freed_memory

        keep_freed_memory()
    import open_clip
    import timm

    from sound2img.models.arcface import build_arcface, face_crop

    torch.manual_seed(0)
    G = RosGenerator(res).eval()
    clip_model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    audio_encoder = nn.Sequential(nn.Conv2d(1, 3, 3), timm.create_model("resnet18", num_classes=512)).eval()
    facenet = build_arcface(50, seed=0).requires_grad_(True)  # their IR-SE50: gradients never switched off
    upsample, pool = nn.Upsample(scale_factor=7), nn.AvgPool2d(kernel_size=res // 32)
    mel = torch.rand(1, 1, 128, 512)
    if "frozen_weights" in fix:
        for net in (G, clip_model, audio_encoder, facenet):
            net.requires_grad_(False)
    if "encoder_once" in fix:
        with torch.no_grad():
            fixed_audio = audio_encoder(mel)

    w_init = torch.randn(batch, G.num_ws, 512) * 0.5
    with torch.no_grad():
        img_orig = G(w_init)
    latent = w_init.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([latent], lr=0.1)
    times = []
    total = steps + warmup
    for i in range(total):
        t0, c0 = time.perf_counter(), time.process_time()
        t = i / total
        opt.param_groups[0]["lr"] = 0.1 * min(1, t / 0.05) * (0.5 - 0.5 * math.cos(math.pi * min(1, (1 - t) / 0.25)))
        img_gen = G(latent)
        clip_in = preprocess_styleclip(img_gen, 224) if "area_preprocess" in fix else pool(upsample(img_gen))
        image_features = clip_model.encode_image(clip_in)
        # re-run every step, although it never changes (unless fixed)
        audio_features = fixed_audio if "encoder_once" in fix else audio_encoder(mel)
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        audio_features = audio_features / audio_features.norm(dim=-1, keepdim=True)
        cosine_loss = (1 - (image_features @ audio_features.T)[:, 0] * math.exp(0.07)).sum()
        sim_loss = ((w_init - latent) ** 2).sum()
        loss = 0.002 * sim_loss + cosine_loss
        if "no_identity" not in fix:
            # id_loss(img_orig, img_gen): features of the edit detached, so no gradient reaches the latent
            y_hat, y = facenet(face_crop(img_orig)), facenet(face_crop(img_gen)).detach()
            id_loss = (1 - (y_hat * y).sum(dim=1)).mean()
            loss = loss + 0.0 * id_loss
        opt.zero_grad()
        loss.backward(retain_graph="frozen_weights" not in fix)
        opt.step()
        if i >= warmup:
            times.append((time.perf_counter() - t0, time.process_time() - c0))
    return {"times": times}


# ------------------------------------------------------------------ ours


def our_steps(
    res: int, batch: int, steps: int, warmup: int, channels_last: bool = False, precision: str = "fp32"
) -> dict:
    """sound2img's optimiser on the same sizes with the default objective (styleclip CLIP
    input, d_cos = 1 − e^0.07·cos, adaptive layer masking): frozen networks, the target
    encoded once, no identity network at λ_ID = 0. Wall time: the optimiser's
    own per-step times after ``warmup`` steps. CPU time: after an untimed first call
    (one-time costs), runs of 1 and 1 + ``steps`` steps; their difference over ``steps``
    (the fixed costs, source and final renders, cancel). Also each phase's median wall
    time per step (``optimize_latents(time_phases=True)``, the timed run) and the mapping
    network's time for the batch (run once per edit, for seeded sources, not per step).
    ``precision``: the generator's and CLIP's (``optimize_latents(precision=)``)."""
    from sound2img.manipulation.guidance import encode_sounds
    from sound2img.manipulation.optimizer import AUTHORS_COS_SCALE, optimize_latents
    from sound2img.models.audio_encoder import build_audio_encoder
    from sound2img.models.clip import build_clip
    from sound2img.models.stylegan2 import build_generator
    from sound2img.utils.memory import keep_freed_memory

    keep_freed_memory()  # as every script does (sound2img.cli.run_cli)
    G = build_generator(res, seed=0, estimate_w_avg=False)
    if channels_last:
        G = G.to(memory_format=torch.channels_last)
    clip = build_clip("ViT-B-32", seed=0, preprocess="styleclip")  # manipulate=landscape's default
    encoder = build_audio_encoder("resnet18_legacy").eval().requires_grad_(False)

    class MelOf(nn.Module):  # stands in for the front end: a fixed mel, as the baseline's
        def forward(self, wav):
            return torch.rand(wav.shape[0], 1, 128, 512)

    target = encode_sounds([torch.zeros(16)], encoder, MelOf())  # once per edit
    del encoder  # as run_edit: only the target is needed from here on
    torch.manual_seed(0)
    ws = torch.randn(batch, G.num_ws, 512) * 0.5

    def run(n: int):
        c0 = time.process_time()
        res = optimize_latents(
            G,
            clip.encode_image,
            ws,
            target,
            steps=n,
            lr=0.1,
            lambda_sim=0.002,
            cos_scale=AUTHORS_COS_SCALE,
            time_phases=True,
            precision=precision,
        )
        return res, time.process_time() - c0

    run(max(warmup, 1))
    _, cpu_one = run(1)
    res, cpu_more = run(1 + steps)
    cpu = (cpu_more - cpu_one) / steps
    with torch.no_grad():
        t0 = time.perf_counter()
        G.mapping(torch.randn(batch, G.z_dim))
        mapping_s = time.perf_counter() - t0
    phases = {k: sorted(v[1:])[len(v[1:]) // 2] for k, v in res.phase_seconds.items()}
    times = [(w, cpu) for w in res.step_seconds[1:]]
    return {"times": times, "phases": phases, "mapping_once_s": mapping_s, "precision": res.precision}


def profile_ours(res: int, rows: int = 20) -> str:
    """torch.profiler's table (self CPU time) of two of our steps, after one untimed step."""
    from torch.profiler import ProfilerActivity, profile

    from sound2img.manipulation.optimizer import AUTHORS_COS_SCALE, optimize_latents
    from sound2img.models.clip import build_clip
    from sound2img.models.stylegan2 import build_generator
    from sound2img.utils.memory import keep_freed_memory

    keep_freed_memory()
    G = build_generator(res, seed=0, estimate_w_avg=False)
    clip = build_clip("ViT-B-32", seed=0, preprocess="styleclip")
    target = F.normalize(torch.randn(1, 512, generator=torch.Generator().manual_seed(0)), dim=-1)
    ws = torch.randn(1, G.num_ws, 512, generator=torch.Generator().manual_seed(0)) * 0.5

    def run(n):
        return optimize_latents(
            G, clip.encode_image, ws, target, steps=n, lr=0.1, lambda_sim=0.002, cos_scale=AUTHORS_COS_SCALE
        )

    run(1)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run(2)  # two steps plus the source and final renders (forward only)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def cpu_info() -> dict:
    """The CPU model, PyTorch's vector ISA and the native-bf16 flags (what the times depend on)."""
    from sound2img.utils.precision import cpu_bf16_flags

    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return {
        "model": model,
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_flags": sorted(cpu_bf16_flags()),
    }


# ------------------------------------------------------------------ harness


def label(r: dict) -> str:
    """A result row's name: the impl, with ``_bf16`` for our bf16 rows."""
    return r["impl"] if r.get("precision", "fp32") == "fp32" else f"{r['impl']}_{r['precision']}"


def run_case(
    impl: str, res: int, batch: int, steps: int, warmup: int, threads: int = 0, precision: str = "fp32"
) -> dict:
    if threads > 0:
        torch.set_num_threads(threads)
    fn = {
        "ours": lambda *a: our_steps(*a, precision=precision),
        "authors": authors_steps,
        "ours_channels_last": lambda *a: our_steps(*a, channels_last=True, precision=precision),
        **{f"authors_fix{k}": (lambda *a, k=k: authors_steps(*a, fixes=k)) for k in range(1, len(FIXES) + 1)},
    }[impl]
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    measured = fn(res, batch, steps, warmup)
    times = measured["times"]
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    wall = sorted(t[0] for t in times)[len(times) // 2]
    cpu = sorted(t[1] for t in times)[len(times) // 2]
    return {
        "impl": impl,
        "precision": measured.get("precision", "fp32"),  # resolved (the authors' loop: fp32)
        "res": res,
        "batch": batch,
        "steps_timed": len(times),
        "step_s": wall,
        "step_cpu_s": cpu,
        "step_s_all": times,
        "per_edit_step_s": wall / batch,
        "per_edit_step_cpu_s": cpu / batch,
        "peak_rss_gib": peak_kib / 2**20,
        "wall_s": time.perf_counter() - t0,
        "threads": torch.get_num_threads(),
        "loadavg_1min": [load0, os.getloadavg()[0]],  # other processes on the machine skew timings
        **(
            {"phase_s": measured["phases"], "mapping_once_s": measured["mapping_once_s"]}
            if "phases" in measured
            else {}
        ),
    }


def run_in_subprocess(
    impl: str, res: int, batch: int, steps: int, warmup: int, threads: int, precision: str = "fp32"
) -> dict:
    """One case in a fresh interpreter, so that its peak RSS is its own."""
    cmd = [
        sys.executable,
        __file__,
        "--warmup",
        str(warmup),
        "--threads",
        str(threads),
        "--precision",
        precision,
        "--case",
        impl,
        str(res),
        str(batch),
        str(steps),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        print(out.stderr[-2000:], file=sys.stderr)
        last = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]
        return {"impl": impl, "precision": precision, "res": res, "batch": batch, "error": last}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="256 px, batch 1, 2 timed steps")
    p.add_argument("--steps", type=int, default=2, help="timed steps per case (after the warm-up)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument(
        "--cases",
        nargs="+",
        default=["256x1", "256x8", "1024x1"],
        metavar="RESxBATCH",
        help="resolution x batch; 1024x8 needs ~20 GB for ours and more for the baseline",
    )
    p.add_argument(
        "--impl",
        nargs="+",
        default=["ours", "authors"],
        choices=["ours", "authors", "ours_channels_last", *(f"authors_fix{k}" for k in range(1, len(FIXES) + 1))],
    )
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads per case (0: torch's default); "
        "1 keeps timings comparable on a machine shared with other jobs",
    )
    p.add_argument("--json", default=None, help="write the results here (default: print only)")
    p.add_argument(
        "--profile",
        type=int,
        metavar="RES",
        help="instead: profile two of our steps at RES px, batch 1 (torch.profiler), print the top ops",
    )
    p.add_argument(
        "--precision",
        nargs="+",
        default=["fp32"],
        choices=["fp32", "bf16", "auto"],
        help="our compute precision(s) (manipulate.precision); each is timed as its own case",
    )
    p.add_argument("--case", nargs=4, metavar=("IMPL", "RES", "BATCH", "STEPS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.case:
        impl, res, batch, steps = args.case
        print(
            json.dumps(run_case(impl, int(res), int(batch), int(steps), args.warmup, args.threads, args.precision[0]))
        )
        return 0
    if args.profile:
        print(profile_ours(args.profile))
        return 0
    if args.quick:
        args.cases, args.steps = ["256x1"], 2
    try:
        cases = [tuple(int(v) for v in c.lower().split("x")) for c in args.cases]
    except ValueError:
        p.error(f"--cases: expected RESxBATCH words like 256x8, got {args.cases}")
    results = []
    for res, batch in cases:
        row = {}
        # one after the other per case, so that all see similar machine load
        runs = [(i, p) for i in args.impl for p in (args.precision if i.startswith("ours") else ["fp32"])]
        for impl, precision in runs:
            r = run_in_subprocess(impl, res, batch, args.steps, args.warmup, args.threads, precision)
            row[label(r)] = r
            results.append(r)
            print(
                f"{label(r):>20} {res:5d}px batch {batch}: "
                + (
                    f"{r['step_s']:.2f} s/step (CPU {r['step_cpu_s']:.2f} s), {r['per_edit_step_s']:.2f} s/step/edit, peak RSS "
                    f"{r['peak_rss_gib']:.2f} GiB (load {r['loadavg_1min'][0]:.1f})"
                    if "error" not in r
                    else f"failed: {r['error']}"
                ),
                flush=True,
            )
            if "phase_s" in r:
                total = sum(r["phase_s"].values())
                print(
                    f"{'':>20} phases: "
                    + ", ".join(f"{k} {v:.3f} s ({100 * v / total:.0f} %)" for k, v in r["phase_s"].items())
                    + f"; mapping (once per edit) {r['mapping_once_s']:.3f} s",
                    flush=True,
                )
        for ours in ("ours", "ours_bf16"):
            if all(k in row and "error" not in row[k] for k in (ours, "authors")):
                a, o = row["authors"], row[ours]
                print(
                    f"{ours:>20} speed-up {a['step_s'] / o['step_s']:.2f}x wall, "
                    f"{a['step_cpu_s'] / o['step_cpu_s']:.2f}x CPU",
                    flush=True,
                )
    summary = {
        "device": "cpu",
        "cpu": cpu_info(),
        "threads": args.threads or torch.get_num_threads(),
        "torch": torch.__version__,
        "results": results,
    }
    by = {(label(r), r["res"], r["batch"]): r for r in results if "error" not in r}
    ratios = {}
    for (impl, res, batch), r in by.items():
        tag = "" if impl == "ours" else "_bf16" if impl == "ours_bf16" else None
        if tag is not None and ("authors", res, batch) in by:
            a = by[("authors", res, batch)]
            ratios[f"{res}px_b{batch}{tag}_speedup_wall"] = a["step_s"] / r["step_s"]
            ratios[f"{res}px_b{batch}{tag}_speedup_cpu"] = a["step_cpu_s"] / r["step_cpu_s"]
            ratios[f"{res}px_b{batch}{tag}_peak_rss_vs_authors"] = r["peak_rss_gib"] / a["peak_rss_gib"]
        if tag == "_bf16" and ("ours", res, batch) in by:
            f32 = by[("ours", res, batch)]
            ratios[f"{res}px_b{batch}_bf16_vs_fp32_wall"] = f32["step_s"] / r["step_s"]
            ratios[f"{res}px_b{batch}_bf16_vs_fp32_peak_rss"] = r["peak_rss_gib"] / f32["peak_rss_gib"]
        if impl in ("ours", "authors") and batch != 1 and (impl, res, 1) in by:
            one = by[(impl, res, 1)]
            ratios[f"{impl}_{res}px_b{batch}_per_edit_vs_b1_wall"] = r["per_edit_step_s"] / one["step_s"]
            ratios[f"{impl}_{res}px_b{batch}_per_edit_vs_b1_cpu"] = r["per_edit_step_cpu_s"] / one["step_cpu_s"]
        if impl == "ours" and ("authors", res, batch) in by:
            # each change's measured share of the time saved, in FIXES order, then the generator
            chain = (
                [by.get(("authors", res, batch))]
                + [by.get((f"authors_fix{k}", res, batch)) for k in range(1, len(FIXES) + 1)]
                + [r]
            )
            saved = chain[0]["step_s"] - r["step_s"]
            if all(c is not None for c in chain) and abs(saved) > 1e-9:
                for name, before, after in zip((*FIXES, "generator_and_rest"), chain[:-1], chain[1:]):
                    ratios[f"{res}px_b{batch}_share_{name}"] = (before["step_s"] - after["step_s"]) / saved
    summary["ratios"] = ratios
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}")
    if args.json:
        from sound2img.utils.files import atomic_write_text

        atomic_write_text(args.json, json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
