"""Seeds → images, to pick sources for editing (``scripts/generate.py``): one PNG and one
W+ latent file per seed (``load_latents`` reads it back), a contact sheet labelled with
the seeds, and ``generate.json`` recording how they were made. The command line is in
``sound2img.generation.command``."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from sound2img.errors import UserInputError
from sound2img.models.stylegan2 import LATENT_SUFFIXES, NOISE_MODES, Generator, sample_source_latents, save_latents
from sound2img.utils.files import atomic_write_bytes, atomic_write_text, check_out_dir, staged_dir
from sound2img.utils.images import contact_sheet_png, png_bytes

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


@torch.no_grad()
def generate_images(
    G: Generator,  # a loaded generator (frozen)
    seeds: Sequence[int],  # z = randn(z_dim) from torch.Generator(seed), as manipulate.py's --seed
    out_dir: str | os.PathLike,  # created; refused when it exists and is not empty, unless overwrite
    truncation: float = 0.7,  # ψ towards G.w_avg
    noise_mode: str = "const",  # const | random | none
    overwrite: bool = False,  # write into an existing, non-empty out_dir
    batch_size: int = 8,  # seeds per synthesis call (results do not depend on it)
    latent_suffix: str = ".npy",  # one of LATENT_SUFFIXES: the format of the ws files
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
            chunk = seeds[start : start + batch_size]
            ws = sample_source_latents(G, chunk, truncation, device)
            img = G.synthesis(ws, noise_mode=noise_mode).cpu()
            for i, seed in enumerate(chunk):
                stem = f"seed{seed:04d}"
                atomic_write_bytes(d / f"{stem}.png", png_bytes(img[i]))
                save_latents(d / f"{stem}{latent_suffix}", ws[i : i + 1], overwrite=True)
                names += [f"{stem}.png", f"{stem}{latent_suffix}"]
            thumbs.append(
                F.interpolate(img, scale_factor=min(1.0, 256 / max(img.shape[-2:])), mode="area")
                if max(img.shape[-2:]) > 256
                else img
            )
        atomic_write_bytes(d / "contact_sheet.png", contact_sheet_png(torch.cat(thumbs), [f"seed {s}" for s in seeds]))
        meta = {
            "seeds": seeds,
            "truncation": truncation,
            "noise_mode": noise_mode,
            "num_ws": G.num_ws,
            "w_dim": G.w_dim,
            "img_resolution": G.img_resolution,
            "generator": {k: v for k, v in G.info.items() if isinstance(v, (str, bool, int, float))},
            **(record or {}),
        }
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
    return generate_images(
        G,
        seeds,
        cfg.out,
        truncation=float(cfg.generator.truncation),
        noise_mode=str(cfg.generator.noise_mode),
        overwrite=bool(cfg.overwrite),
        batch_size=int(cfg.batch_size),
        latent_suffix=suffix,
        record={"generator_config": {"name": cfg.generator.name, "path": cfg.generator.path}},
    )
