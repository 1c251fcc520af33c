"""``scripts/generate.py``: flags onto the ``generate`` config, then the library's
``run_generate``."""

from __future__ import annotations

from collections.abc import Sequence

from sound2img.cli import (
    ArgumentParser,
    add_common_args,
    compose_with_flags,
    model_choice,
    parse_with_overrides,
    to_yaml,
)
from sound2img.generation import run_generate
from sound2img.models.stylegan2 import NOISE_MODES


def generate_command(argv: Sequence[str]) -> int:
    """``scripts/generate.py``: flags onto the ``generate`` config (a flag beats a
    ``key=value`` override), then print it (``--cfg job``) or ``run_generate``."""
    from sound2img.factory import GENERATOR_FORMATS

    p = ArgumentParser(
        prog="generate.py",
        description="StyleGAN2 images from seeds, with their W+ latents and "
        "a contact sheet (to pick sources for manipulate.py --seed/--latent).",
        epilog="example: python scripts/generate.py --generator ffhq.pkl --seeds 0-15 "
        "--truncation 0.7 --out outputs/ffhq-seeds   (or generator=ffhq1024, preset-free)",
    )
    p.add_argument(
        "--generator",
        metavar="PATH|NAME",
        help="generator file or weights-registry name (default: the generator config group, lhq256)",
    )
    p.add_argument("--seeds", help="N, A-B or a comma-separated list (default 0-7)")
    p.add_argument("--truncation", type=float, help="truncation ψ (default 0.7)")
    p.add_argument("--noise-mode", choices=NOISE_MODES, help="noise: const (default), random or none")
    p.add_argument("--batch-size", type=int, help="seeds per synthesis call (results do not depend on it)")
    p.add_argument("--out", metavar="DIR", help="where the PNGs, latents and contact sheet go")
    p.add_argument("--overwrite", action="store_true", default=None, help="write into an existing, non-empty --out")
    add_common_args(p)
    p.config_defaults = ("generate", {"batch_size": "batch_size", "out": "out", "overwrite": "overwrite"})
    args, overrides = parse_with_overrides(p, argv)
    groups: list[str] = []
    updates = {
        "generator.truncation": args.truncation,
        "generator.noise_mode": args.noise_mode,
        "seeds": args.seeds,
        "batch_size": args.batch_size,
        "out": args.out,
        "overwrite": args.overwrite,
        "device": args.device,
    }
    if args.generator:
        groups, choice = model_choice(
            "--generator", "generator", args.generator, GENERATOR_FORMATS, "a StyleGAN2 generator"
        )
        updates.update(choice)
    cfg = compose_with_flags("generate", overrides, updates, groups=groups)
    if args.cfg == "job":
        print(to_yaml(cfg), end="")
        return 0
    for path in run_generate(cfg):
        if path.suffix == ".png" and path.name == "contact_sheet.png":
            print(path)
    return 0
