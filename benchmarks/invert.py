"""Photo inversion: each method's reconstruction (PSNR, LPIPS) and cost (seconds, peak
memory) on random full-size networks (config-f generator widths, IR-SE50 encoder): on
targets the generator made (its own image at truncation 0.7, saved as 8 bits) and on two
real photographs, scikit-image's ``astronaut`` and ``coffee`` (BSD-licensed; ``pip
install scikit-image``, used by this benchmark only). Each case runs in its own
subprocess through ``invert_image`` (what ``invert.py`` runs), so its peak RSS is its
own; the 1-minute load average at the start is recorded with it.

    python benchmarks/invert.py                                    # the README's row (slow: hours at 256 px)
    python benchmarks/invert.py --res 64 --steps 5 --json b.json   # a quick look

What the numbers mean with random weights: the generator cannot make a photograph, so
the photographs' PSNR shows how far each method gets towards an image outside the
generator's range, not how it does with trained weights; the e4e encoder is random, so
its reconstruction is a random latent's (only its time means something). LPIPS uses the
registry's backbones (``torchvision_vgg16`` for scores and the projectors,
``torchvision_alexnet`` for PTI's tuning) when they are in the cache, and otherwise
backbones with random weights: each record says which (``lpips_backbone``; with a random
AlexNet, PTI's early stop cannot trigger, so PTI runs its full 350 steps). Options not
given take each method's defaults (projector 500 steps, NVlabs' 1000, PTI 450 + up to 350).
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

METHODS = ("e4e", "projector", "projector_nvlabs", "pti")
TARGETS = ("generated", "astronaut", "coffee")


def _backbone(tmp: str, name: str, net: str) -> tuple[str, str]:
    """(file, "registry" | "random"): the registry's file when cached, else torchvision's
    layout with random weights (the same arithmetic as the real one)."""
    import torch
    import torchvision

    from sound2img.weights import cached_path, get_entry

    path = cached_path(get_entry(name))
    if path.is_file():
        return str(path), "registry"
    path = os.path.join(tmp, f"{name}-random.pth")
    torch.manual_seed(0)
    model = torchvision.models.vgg16(weights=None) if net == "vgg" else torchvision.models.alexnet(weights=None)
    torch.save({f"features.{k}": v for k, v in model.features.state_dict().items()}, path)
    return path, "random"


def _target_file(tmp: str, target: str, G) -> str:
    """The photo to invert, as an 8-bit PNG: the generator's own image or a scikit-image picture."""
    import numpy as np
    import torch
    from PIL import Image

    if target == "generated":
        z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            img = G.synthesis(G.mapping(z.to(G.w_avg.device), truncation_psi=0.7), noise_mode="const")
        arr = ((img[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    else:
        try:
            from skimage import data
        except ImportError:
            raise SystemExit("the photographs need scikit-image: pip install scikit-image") from None
        arr = np.asarray(getattr(data, target)())
    path = os.path.join(tmp, f"{target}.png")
    Image.fromarray(arr).save(path)
    return path


def _random_encoder(G, dev):
    """An e4e checkpoint object with a random IR-SE50 encoder for ``G`` (its rows, its w_avg)."""
    import torch

    from sound2img.inversion.encoders import EncoderCheckpoint, StyleEncoder

    torch.manual_seed(0)
    enc = StyleEncoder("Encoder4Editing", G.num_ws).eval().requires_grad_(False).to(dev)
    latent_avg = G.w_avg.reshape(1, -1).expand(G.num_ws, -1).contiguous()
    return EncoderCheckpoint(enc, latent_avg, {"dataset_type": "random"}, {}, "random e4e")


def run_case(method: str, target: str, res: int, steps: int | None, pti_steps: int | None, device: str) -> dict:
    from sound2img.inversion.run import InversionOptions, invert_image
    from sound2img.metrics import QualityMetrics, load_lpips
    from sound2img.models.stylegan2 import build_generator
    from sound2img.utils.device import machine_info, resolve_device

    dev = resolve_device(device)
    out = {"method": method, "target": target, "res": res, "machine": machine_info(dev)}
    G = build_generator(res, seed=0, device=dev)
    with tempfile.TemporaryDirectory() as tmp:
        vgg, kind = _backbone(tmp, "torchvision_vgg16", "vgg")
        alex, alex_kind = _backbone(tmp, "torchvision_alexnet", "alex")
        photo = _target_file(tmp, target, G)
        lpips = load_lpips(vgg, dev)
        alex_net = load_lpips(alex, dev, net="alex", max_size=None)

        def pti_lpips(a, b):
            # a random AlexNet's distances sit far below the 0.06 at which PTI stops, which would end
            # the tuning before its first step; 1 added keeps the gradient and runs PTI's full length
            return alex_net(a, b) + (1.0 if alex_kind == "random" else 0.0)

        name = {"projector_nvlabs": "projector"}.get(method, method)
        opts = InversionOptions(
            method=name,
            projector="nvlabs" if method == "projector_nvlabs" else "ours",
            encoder="random" if method == "e4e" else None,
            steps=steps,
            pti_steps=pti_steps,
            align="center",
        )
        t = time.perf_counter()
        inv = invert_image(
            photo,
            G,
            opts,
            faces=False,
            lpips=lambda: lpips,
            pti_lpips=lambda: pti_lpips,
            encoder_loader=lambda _: _random_encoder(G, dev),
            quality=QualityMetrics({"lpips": lambda: lpips}),
        )
        wall = time.perf_counter() - t
    m = inv.metrics
    out.update(
        psnr=m["quality"]["psnr"]["value"],
        lpips=m["quality"]["lpips"]["value"],
        lpips_backbone=kind if method != "pti" else f"{kind} (tuning: alexnet {alex_kind})",
        seconds=m["timings"]["invert_s"],
        wall_s=wall,
        steps=(m.get("projector") or {}).get("steps"),
        pti_steps_run=(m.get("pti") or {}).get("steps_run"),
    )
    out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--res", type=int, default=256, help="generator resolution (config-f widths)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    p.add_argument("--steps", type=int, help="projection steps of every method (default: each method's own)")
    p.add_argument("--pti-steps", type=int, help="PTI tuning steps (default: 350, early stop at LPIPS 0.06)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json")
    p.add_argument("--_one", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a._one:
        print(json.dumps(run_case(a._one[0], a._one[1], a.res, a.steps, a.pti_steps, a.device)))
        return 0
    results = []
    for target in a.targets:
        for method in a.methods:
            cmd = [sys.executable, __file__, "--_one", method, target, "--res", str(a.res), "--device", a.device]
            cmd += [f for k, v in (("--steps", a.steps), ("--pti-steps", a.pti_steps)) if v for f in (k, str(v))]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                print(f"{method} on {target}: failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(r)
            lp = "n/a" if r["lpips"] is None else f"{r['lpips']:.3f}"
            print(
                f"{target:9s} {method:16s} {res_text(r)} PSNR {r['psnr']:6.2f} dB  LPIPS {lp} ({r['lpips_backbone']})  "
                f"{r['seconds']:8.1f} s  peak RSS {r['peak_rss_gib']:.2f} GiB  "
                f"(load {r['machine'].get('loadavg_1min_at_start')})",
                flush=True,
            )
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


def res_text(r: dict) -> str:
    steps = f"{r['steps']} steps" if r.get("steps") else "one pass"
    if r.get("pti_steps_run") is not None:
        steps += f" + {r['pti_steps_run']} tuning"
    return f"{r['res']}px {steps:22s}"


if __name__ == "__main__":
    sys.exit(main())
