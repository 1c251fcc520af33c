"""Seeds → images, to pick sources for editing (``scripts/generate.py``): one PNG and one
W+ latent file per seed (``load_latents`` reads it back), a contact sheet labelled with
the seeds, and ``generate.json`` recording how they were made."""
from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from sound2img.errors import UserInputError
from sound2img.manipulation.outputs import check_out_dir, png_bytes, staged_dir, to_uint8
from sound2img.manipulation.sources import sample_source_latents
from sound2img.models.stylegan2 import NOISE_MODES, Generator, save_latents
from sound2img.utils.files import atomic_write_bytes, atomic_write_text

LATENT_SUFFIXES = (".npy", ".pt", ".npz")
MAX_SEEDS = 100_000


def parse_seeds(text: str | int | Sequence[int]) -> list[int]:
    """``"0-7"``, ``"3"``, ``"1,4,9-11"`` (or an int / list of ints) → seeds in order,
    duplicates dropped. ``UserInputError`` for anything else."""
    if isinstance(text, int) and not isinstance(text, bool):
        parts: list[str] = [str(text)]
    elif isinstance(text, str):
        parts = [p.strip() for p in text.split(",")]
    else:
        parts = [str(int(s)) for s in text]
    seeds: list[int] = []
    for part in parts:
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise UserInputError(f"seeds {text!r}: use N, A-B or a comma-separated list of those (e.g. 0-7,12)")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise UserInputError(f"seeds {text!r}: range {part} runs backwards")
        if len(seeds) + hi - lo + 1 > MAX_SEEDS:
            raise UserInputError(f"seeds {text!r}: more than {MAX_SEEDS} seeds")
        seeds += [s for s in range(lo, hi + 1) if s not in seeds]
    if not seeds:
        raise UserInputError("no seeds given")
    return seeds


def contact_sheet_png(imgs: torch.Tensor, labels: Sequence[str], thumb: int = 256, columns: int | None = None) -> bytes:
    """``imgs [N,3,H,W]`` in [-1,1] as a grid of thumbnails (≤ ``thumb`` px, area
    downscaling) with each label written under its image → PNG bytes."""
    from PIL import Image, ImageDraw

    n, _, h, w = imgs.shape
    scale = min(1.0, thumb / max(h, w))
    th, tw = max(1, round(h * scale)), max(1, round(w * scale))
    small = F.interpolate(imgs.detach().float().cpu(), size=(th, tw), mode="area") if scale < 1 else imgs.float().cpu()
    cols = columns or min(n, 8)
    rows = (n + cols - 1) // cols
    label_h, gap = 16, 4
    sheet = Image.new("RGB", (cols * (tw + gap) + gap, rows * (th + label_h + gap) + gap), "white")
    draw = ImageDraw.Draw(sheet)
    for i in range(n):
        x0 = gap + (i % cols) * (tw + gap)
        y0 = gap + (i // cols) * (th + label_h + gap)
        sheet.paste(Image.fromarray(to_uint8(small[i]).permute(1, 2, 0).numpy()), (x0, y0))
        draw.text((x0 + 2, y0 + th + 2), labels[i], fill="black")
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


@torch.no_grad()
def generate_images(
    G: Generator,                 # a loaded generator (frozen)
    seeds: Sequence[int],         # z = randn(z_dim) from torch.Generator(seed), as manipulate.py's --seed
    out_dir: str | os.PathLike,   # created; refused when it exists and is not empty, unless overwrite
    truncation: float = 0.7,      # ψ towards G.w_avg
    noise_mode: str = "const",    # const | random | none
    overwrite: bool = False,      # write into an existing, non-empty out_dir
    batch_size: int = 8,          # seeds per synthesis call (results do not depend on it)
    latent_suffix: str = ".npy",  # .npy | .pt | .npz: the format of the ws files
    record: dict[str, Any] | None = None,  # extra provenance for generate.json
) -> list[Path]:
    """Write ``seed%04d.png`` and ``seed%04d<latent_suffix>`` (``ws [1,num_ws,w_dim]``) per
    seed, ``contact_sheet.png`` and ``generate.json`` into ``out_dir``: all or nothing
    (built in a hidden sibling directory, renamed at the end). Returns the paths."""
    if noise_mode not in NOISE_MODES:
        raise UserInputError(f"noise_mode {noise_mode!r}: use one of {', '.join(NOISE_MODES)}")
    if latent_suffix not in LATENT_SUFFIXES:
        raise UserInputError(f"latent format {latent_suffix!r}: use one of {', '.join(LATENT_SUFFIXES)}")
    if batch_size < 1:
        raise UserInputError(f"batch_size must be ≥ 1, got {batch_size}")
    seeds = parse_seeds(list(seeds))
    out = check_out_dir(out_dir, overwrite)
    device = G.w_avg.device
    names, thumbs = [], []
    with staged_dir(out) as d:
        for start in range(0, len(seeds), batch_size):
            chunk = seeds[start:start + batch_size]
            ws = sample_source_latents(G, chunk, truncation, device)
            img = G.synthesis(ws, noise_mode=noise_mode).cpu()
            for i, seed in enumerate(chunk):
                stem = f"seed{seed:04d}"
                atomic_write_bytes(d / f"{stem}.png", png_bytes(img[i]))
                save_latents(d / f"{stem}{latent_suffix}", ws[i:i + 1], overwrite=True)
                names += [f"{stem}.png", f"{stem}{latent_suffix}"]
            thumbs.append(F.interpolate(img, scale_factor=min(1.0, 256 / max(img.shape[-2:])), mode="area")
                          if max(img.shape[-2:]) > 256 else img)
        atomic_write_bytes(d / "contact_sheet.png", contact_sheet_png(torch.cat(thumbs), [f"seed {s}" for s in seeds]))
        meta = {"seeds": seeds, "truncation": truncation, "noise_mode": noise_mode,
                "num_ws": G.num_ws, "w_dim": G.w_dim, "img_resolution": G.img_resolution,
                "generator": {k: v for k, v in G.info.items() if isinstance(v, (str, bool, int, float))},
                **(record or {})}
        atomic_write_text(d / "generate.json", json.dumps(meta, indent=2) + "\n")
        names += ["contact_sheet.png", "generate.json"]
    return [out / n for n in names]


def run_generate(cfg) -> list[Path]:
    """The composed ``generate`` config → ``generate_images`` (the script's whole job)."""
    from sound2img.factory import build_generator_from_cfg
    from sound2img.utils.device import resolve_device

    seeds = parse_seeds(cfg.seeds)
    if not cfg.out:
        raise UserInputError("generate: set --out DIR")
    device = resolve_device(cfg.device or "auto")
    check_out_dir(cfg.out, bool(cfg.overwrite))  # before the (possibly slow) generator load
    G = build_generator_from_cfg(cfg.generator, device)
    suffix = "." + str(cfg.latent_format).lstrip(".")
    return generate_images(G, seeds, cfg.out, truncation=float(cfg.generator.truncation),
                           noise_mode=str(cfg.generator.noise_mode), overwrite=bool(cfg.overwrite),
                           batch_size=int(cfg.batch_size), latent_suffix=suffix,
                           record={"generator_config": {"name": cfg.generator.name, "path": cfg.generator.path}})


def generate_command(argv: Sequence[str]) -> int:
    """``scripts/generate.py``: flags onto the ``generate`` config (a flag beats a
    ``key=value`` override), then print it (``--cfg job``) or ``run_generate``."""
    from omegaconf import OmegaConf, open_dict

    from sound2img.cli import ArgumentParser, add_common_args, compose, parse_with_overrides, to_yaml

    p = ArgumentParser(prog="generate.py", description="StyleGAN2 images from seeds, with their W+ latents and "
                       "a contact sheet (to pick sources for manipulate.py --seed/--latent).",
                       epilog="example: python scripts/generate.py --generator ffhq.pkl --seeds 0-15 "
                              "--truncation 0.7 --out outputs/ffhq-seeds   (or generator=ffhq1024, preset-free)")
    p.add_argument("--generator", metavar="PATH|NAME", help="generator file or weights-registry name "
                   "(default: the generator config group, lhq256)")
    p.add_argument("--seeds", help="N, A-B or a comma-separated list (default 0-7)")
    p.add_argument("--truncation", type=float, help="truncation ψ (default 0.7)")
    p.add_argument("--noise-mode", choices=NOISE_MODES, help="noise: const (default), random or none")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--out", metavar="DIR")
    p.add_argument("--overwrite", action="store_true", default=None, help="write into an existing, non-empty --out")
    add_common_args(p)
    args, overrides = parse_with_overrides(p, argv)
    cfg = compose("generate", overrides)
    updates = {"generator.truncation": args.truncation, "generator.noise_mode": args.noise_mode,
               "seeds": args.seeds, "batch_size": args.batch_size, "out": args.out,
               "overwrite": args.overwrite, "device": args.device}
    if args.generator:
        path = Path(args.generator).expanduser()
        updates["generator.path"] = str(path.resolve()) if path.is_file() else args.generator
        if not path.is_file() and ("/" in args.generator or path.suffix):
            raise UserInputError(f"--generator {args.generator}: no such file")
    with open_dict(cfg):
        for key, value in updates.items():
            if value is not None:
                OmegaConf.update(cfg, key, value, merge=False)
    if args.cfg == "job":
        print(to_yaml(cfg), end="")
        return 0
    for path in run_generate(cfg):
        if path.suffix == ".png" and path.name == "contact_sheet.png":
            print(path)
    return 0
