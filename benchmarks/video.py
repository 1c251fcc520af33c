"""Sound-to-video costs (README "Sound to video"): how fast frames are rendered (synthesis
alone, and synthesis + uint8 + H.264 encoding through ``render_video``), and what one
keyframe costs (an optimiser step of ``video.batch_size`` keyframes, as
``optimize_keyframes`` runs it: warm start, the term towards the previous keyframe, the
default objective), for batch sizes 1–16. ``256``: a config-f 256-px generator and CLIP
ViT-B/32 with random weights at full size; ``tiny``: preset=tiny's networks.

    python benchmarks/video.py                          # 256 px and tiny, batches 1 2 4 8 16
    python benchmarks/video.py --quick                  # tiny only, batches 1 2 (a smoke test)
    python benchmarks/video.py --cases 256 --batches 1 8 --device cuda --json video.json

Seconds per keyframe = seconds per step of a batch × ``--keyframe-steps`` / batch size
(the first keyframe of a video runs ``manipulate.steps`` instead).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def build(case: str, device):
    """(generator, CLIP towers) of a case, frozen, on ``device``."""
    from sound2img.models.clip import build_clip
    from sound2img.models.stylegan2 import build_generator

    if case == "256":
        G = build_generator(256, seed=0, estimate_w_avg=False, device=device)  # config-f widths
        clip = build_clip("ViT-B-32", seed=0, preprocess="styleclip", device=device)  # manipulate=landscape's input
        return G, clip
    from sound2img import factory
    from sound2img.cli import compose

    cfg = compose("video", ["preset=tiny"])
    return factory.build_generator_from_cfg(cfg.generator, device), factory.build_clip_from_cfg(cfg.clip, device)


def sample_ws(G, count: int, device):
    import torch

    z = torch.randn(count, G.z_dim, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        return G.mapping(z, truncation_psi=0.7)


def time_render(G, batch: int, frames: int, device) -> dict:
    """Frames/s of synthesis alone and of the whole render loop (synthesis, uint8, H.264 +
    AAC into an mp4) at render batch ``batch``, one untimed batch first."""
    import torch

    from sound2img.video.render import AUDIO_RATE, VideoWriter, render_video

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    ws = sample_ws(G, frames, device).cpu()
    with torch.no_grad():
        G.synthesis(ws[:batch].to(device), noise_mode="const")
        sync()
        t0 = time.perf_counter()
        for i in range(0, frames, batch):
            G.synthesis(ws[i : i + batch].to(device), noise_mode="const").cpu()
        sync()
        synth_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        fps = 24
        audio = np.zeros(round(frames / fps * AUDIO_RATE), np.float32)
        writer = VideoWriter(
            Path(tmp) / "v.mp4", fps=fps, width=G.img_resolution, height=G.img_resolution, crf=18, audio=audio
        )
        try:
            _, render_s = render_video(writer, lambda first, n: ws[first : first + n], G, frames=frames, batch=batch)
        finally:
            writer.close()
    return {"synthesis_frames_per_s": frames / synth_s, "render_frames_per_s": frames / render_s}


def time_keyframes(G, clip, batch: int, steps: int, keyframe_steps: int, device) -> dict:
    """Seconds per optimiser step of ``batch`` keyframes (median of ``steps`` after one
    warm-up step) and the seconds per keyframe that gives."""
    import math

    import torch
    import torch.nn.functional as F

    from sound2img.manipulation.optimizer import optimize_latents

    source = sample_ws(G, 1, device).expand(batch, -1, -1)
    previous = sample_ws(G, 2, device)[1:].expand(batch, -1, -1)  # the last finished keyframe
    dim = clip.encode_image(torch.zeros(1, 3, 32, 32, device=device)).shape[-1]
    targets = F.normalize(torch.randn(batch, dim, generator=torch.Generator().manual_seed(1)), dim=-1).to(device)
    res = optimize_latents(
        G, clip.encode_image, source, targets, steps=steps + 1, lr=0.1, lambda_sim=0.002,
        cos_scale=math.exp(0.07), latent_term="adaptive", init_ws=previous, anchor_ws=previous, lambda_anchor=0.01,
    )  # fmt: skip
    step_s = statistics.median(res.step_seconds[1:])
    return {"step_s": step_s, "keyframe_s": step_s * keyframe_steps / batch}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--cases", nargs="+", default=["256", "tiny"], choices=["256", "tiny"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    p.add_argument("--steps", type=int, default=2, help="timed optimiser steps per batch size (after one warm-up)")
    p.add_argument("--frames", type=int, default=32, help="frames rendered per batch size")
    p.add_argument("--keyframe-steps", type=int, default=50, help="steps per keyframe (video.keyframe_steps)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--json", metavar="FILE", help="also write the results here")
    p.add_argument("--quick", action="store_true", help="tiny only, batches 1 and 2, 8 frames, 1 step")
    args = p.parse_args(argv)
    if args.quick:
        args.cases, args.batches, args.frames, args.steps = ["tiny"], [1, 2], 8, 1

    import torch

    from sound2img.utils.device import machine_info, resolve_device
    from sound2img.utils.memory import keep_freed_memory

    keep_freed_memory()  # as every sound2img script does (sound2img.cli.run_cli)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    out = {"machine": machine_info(device), "keyframe_steps": args.keyframe_steps, "cases": []}
    for case in args.cases:
        G, clip = build(case, device)
        for batch in args.batches:
            row = {"case": case, "batch": batch}
            row.update(time_render(G, batch, max(args.frames, batch), device))
            row.update(time_keyframes(G, clip, batch, args.steps, args.keyframe_steps, device))
            if device.type == "cuda":
                row["cuda_peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
            out["cases"].append(row)
            print(
                f"{case:>4} batch {batch:2d}: render {row['render_frames_per_s']:8.2f} frames/s "
                f"(synthesis alone {row['synthesis_frames_per_s']:8.2f}), keyframe step {row['step_s']:7.3f} s, "
                f"{row['keyframe_s']:8.2f} s per keyframe",
                flush=True,
            )
    out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"peak RSS {out['peak_rss_gib']:.2f} GiB; load average at the start {out['machine'].get('loadavg_1min_at_start')}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
