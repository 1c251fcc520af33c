"""``scripts/invert.py``'s command line and the config edge of photo inversion: flags →
the ``invert`` config, networks built through ``factory``, the photo inverted and
written all-or-nothing; plus :func:`invert_for_edit`, the cached inversion behind
``manipulate.py --image``."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sound2img.cli import (
    add_common_args,
    compose_with_flags,
    model_choice,
    parse_with_overrides,
    script_parser,
    to_object,
    to_yaml,
)
from sound2img.errors import UserInputError
from sound2img.inversion.align import ALIGN_MODES
from sound2img.inversion.images import load_image
from sound2img.inversion.projector import SPACES
from sound2img.inversion.run import (
    METHODS,
    PERCEPTUAL,
    RECIPES,
    InversionOptions,
    Progress,
    cache_key,
    cached_inversion,
    invert_image,
    store_inversion,
    write_inversion,
)
from sound2img.utils.precision import resolve_precision

if TYPE_CHECKING:
    from sound2img.config import GeneratorOptions, InvertConfig, InvertOptions, ManipulateConfig

CONFIG_NAME = "invert"
FLAG_KEYS = {
    "image": "invert.image",
    "method": "invert.method",
    "projector": "invert.projector",
    "encoder": "invert.encoder",
    "space": "invert.space",
    "perceptual": "invert.perceptual",
    "steps": "invert.steps",
    "pti_steps": "invert.pti_steps",
    "seed": "invert.seed",
    "align": "invert.align",
    "out": "out",
    "device": "device",
}
OPTION_KEYS = (
    "method",
    "projector",
    "space",
    "perceptual",
    "steps",
    "pti_steps",
    "seed",
    "align",
    "encoder",
    "pixel_weight",
    "noise",
    "precision",
)

EPILOG = """\
examples:
  python scripts/invert.py --image me.jpg --out outputs/me                       # ffhq1024, e4e
  python scripts/invert.py --image me.jpg --method pti --out outputs/me_pti      # most faithful
  python scripts/invert.py --image hill.jpg --generator lhq256 --method projector --out outputs/hill
  python scripts/invert.py --image hill.jpg --generator lhq256 --projector nvlabs --out outputs/hill_nv
  python scripts/invert.py --image car.jpg --method e4e --encoder e4e_cars_encode.pt --out outputs/car
  python scripts/invert.py --image x.png --perceptual none --steps 300 --out outputs/x preset=tiny
"""


def build_parser() -> argparse.ArgumentParser:
    p = script_parser(
        "invert.py",
        "Invert a photo into a StyleGAN2 generator: a W+ latent "
        "for manipulate.py --latent (and, with --method pti, a tuned generator copy).",
        EPILOG,
    )
    p.add_argument("--image", metavar="PHOTO", help="the photo to invert (required)")
    p.add_argument("--out", metavar="DIR", help="where latent.pt, the pictures and metrics.json go")
    p.add_argument("--generator", metavar="NAME|PATH", help="generator config, registry name or checkpoint file")
    p.add_argument(
        "--method", choices=METHODS, help="how to invert (the generator config's inversion.method unless given)"
    )
    p.add_argument(
        "--encoder",
        metavar="NAME|PATH",
        help="e4e/pSp checkpoint (methods e4e, psp); without --generator its decoder is the generator",
    )
    p.add_argument(
        "--projector", choices=RECIPES, help="the projector's settings: ours (default) or NVlabs' own (W, 1000 steps)"
    )
    p.add_argument("--space", choices=SPACES, help="the projector's latent space (default: the recipe's)")
    p.add_argument("--perceptual", choices=PERCEPTUAL, help="the projector's loss: LPIPS, or none (pixel loss only)")
    p.add_argument("--steps", type=int, help="projector steps (default: the recipe's; 450 for pti's projection)")
    p.add_argument("--pti-steps", type=int, help="generator tuning steps of pti (default: 350, fewer at LPIPS ≤ 0.06)")
    p.add_argument("--seed", type=int, help="the projector's noise draws")
    p.add_argument("--align", choices=ALIGN_MODES, help="auto: ffhq for face generators, else center")
    p.add_argument("--overwrite", action="store_true", default=None, help="replace an existing --out")
    add_common_args(p)
    keys = {**FLAG_KEYS, "generator": "generator.name", "method": "generator.inversion.method"}
    p.config_defaults = (CONFIG_NAME, {**keys, "encoder": "generator.inversion.encoder", "overwrite": "overwrite"})
    return p


def compose_from_args(argv: Sequence[str]):
    """argv → (the composed ``invert`` config with the flags applied, ``--cfg job`` asked)."""
    from sound2img.factory import GENERATOR_FORMATS

    args, overrides = parse_with_overrides(build_parser(), argv)
    groups: list[str] = []
    updates: dict[str, Any] = {key: getattr(args, dest) for dest, key in FLAG_KEYS.items()}
    generator = args.generator
    if not generator and args.encoder and Path(args.encoder).expanduser().is_file():
        # an e4e/pSp file holds the decoder it was trained with: that is the generator, nothing to fetch
        if not any(o.split("=", 1)[0].lstrip("+~").startswith("generator") for o in overrides):
            generator = args.encoder
    if generator:
        g, u = model_choice("--generator", "generator", generator, GENERATOR_FORMATS, "a StyleGAN2 generator")
        groups += g
        updates.update(u)
    if args.overwrite:
        updates["overwrite"] = True
    return compose_with_flags(CONFIG_NAME, overrides, updates, groups=groups), args.cfg == "job"


def options_from(section: InvertOptions, generator: GeneratorOptions | None) -> InversionOptions:
    """The ``invert`` section (or an edit's ``EditOptions.photo_section()``) with the
    generator config's ``inversion`` defaults filled in."""
    g_inv = generator.inversion if generator is not None else None
    g_method, g_encoder, g_perceptual = (g_inv.method, g_inv.encoder, g_inv.perceptual) if g_inv else (None,) * 3
    method = section.method or g_method or "projector"
    encoder = section.encoder or (g_encoder if method == g_method else None)
    # the generator config's default loss: pixel only for preset=tiny's random network (offline)
    perceptual = section.perceptual or g_perceptual or "lpips"
    kw = {k: getattr(section, k) for k in OPTION_KEYS if getattr(section, k) is not None}
    kw.update(method=method, encoder=encoder, perceptual=perceptual)
    try:
        return InversionOptions(**kw).check()
    except TypeError as exc:
        raise UserInputError(f"invert: {exc}") from None


def quality_metrics(cfg: ManipulateConfig | InvertConfig, device: torch.device, *, faces: bool, clip=None):
    """``metrics.QualityMetrics`` for this config: LPIPS from ``cfg.lpips`` (``null``: not
    scored), the identity network for face generators, the given CLIP towers. Under
    ``preset=tiny`` nothing is downloaded for a score: LPIPS is used only when its VGG16 is
    already in the cache, else recorded as unavailable."""
    from sound2img import factory
    from sound2img.errors import WeightsNotAvailableError
    from sound2img.metrics import QualityMetrics

    identity_src = factory.identity_source(cfg)

    def lpips():
        if not cfg.lpips:
            raise UserInputError("lpips=null")
        try:
            return factory.build_lpips(cfg.lpips, device, allow_download=not cfg.tiny)
        except WeightsNotAvailableError as exc:
            if not cfg.tiny:
                raise
            raise UserInputError(f"preset=tiny downloads nothing for a score: {exc}") from exc

    return QualityMetrics(
        {
            "lpips": lpips,
            "identity": (lambda: factory.build_arcface_from_cfg(identity_src, device).arcface) if faces else None,
            "clip": (lambda: clip) if clip is not None else None,
        }
    )


def _builders(cfg: ManipulateConfig | InvertConfig, device: torch.device):
    from sound2img import factory

    def lpips():
        return factory.build_lpips(cfg.lpips or "torchvision_vgg16", device)

    def pti_lpips():  # PTI tunes with LPIPS-AlexNet on the full-resolution image
        name = getattr(cfg, "pti_lpips", None) or "torchvision_alexnet"  # an edit never tunes (no pti_lpips key)
        return factory.build_lpips(name, device, net="alex", max_size=None)

    def encoder(name_or_path: str):
        from sound2img.inversion.encoders import load_encoder_checkpoint

        path = factory.resolve_checkpoint(name_or_path, ("e4e_pt",), "an e4e/pSp encoder checkpoint")
        return load_encoder_checkpoint(path, device)

    return lpips, pti_lpips, encoder


def run_invert(cfg: InvertConfig, *, progress: bool | None = None) -> Path:
    """Invert ``cfg.invert.image`` as the ``invert`` config says; returns the output
    directory. Inputs and the output directory are checked before any work."""
    import dataclasses

    from sound2img import factory
    from sound2img.utils.device import resolve_device
    from sound2img.utils.files import check_out_dir

    image = cfg.invert.image
    if not image:
        raise UserInputError("no photo: give --image PHOTO")
    opts = options_from(cfg.invert, cfg.generator)
    out = check_out_dir(cfg.out or "outputs/invert", cfg.overwrite)
    load_image(image)  # a bad photo fails before any network is built
    device = resolve_device(cfg.device or "auto")
    progress = cfg.progress if progress is None else progress
    from sound2img.needs import ensure_weights, invert_needs

    ensure_weights(invert_needs(cfg), progress=progress)  # offline: one message names every missing file
    G = factory.build_generator_from_cfg(cfg.generator, device)
    faces = cfg.generator.faces
    lpips, pti_lpips, encoder = _builders(cfg, device)
    inv = invert_image(
        image,
        G,
        opts,
        faces=faces,
        lpips=lpips,
        pti_lpips=pti_lpips,
        encoder_loader=encoder,
        quality=quality_metrics(cfg, device, faces=faces),
        progress=progress,
    )
    extra = {"device": str(device), "config": dataclasses.asdict(cfg)}
    return write_inversion(out, inv, overwrite=cfg.overwrite, extra=extra)


def invert_for_edit(
    cfg: ManipulateConfig,
    images: Sequence[str],
    G,
    device: torch.device,
    *,
    cache_root: Path | None = None,
    progress: bool = False,
    on_progress: Progress | None = None,
) -> list[tuple[torch.Tensor, dict]]:
    """``manipulate.py --image``: each photo → (``ws [1,num_ws,w_dim]``, record), by the
    generator config's default method (``edit.image_method`` etc. override it), cached
    under ``<cache dir>/inversions`` by image content, generator, method and settings.
    ``on_progress(stage, done, total)``: the inversion's progress (``invert_image``)."""
    from sound2img import factory
    from sound2img.models.stylegan2 import load_latents
    from sound2img.weights import cache_dir

    # the edit's precision, resolved here so that the cache tells bf16 inversions from fp32 ones
    section = cfg.edit.photo_section(resolve_precision(cfg.manipulate.precision, device))
    opts = options_from(section, cfg.generator)
    if opts.method == "pti":
        raise UserInputError(
            "--image inverts without tuning the generator; for PTI run scripts/invert.py "
            "--method pti, then edit with --generator DIR/tuned_generator.safetensors "
            "--latent DIR/latent.pt"
        )
    root = Path(cache_root or cache_dir() / "inversions")
    gid = factory.generator_identity(cfg.generator)
    faces = cfg.generator.faces
    lpips, _, encoder = _builders(cfg, device)
    out = []
    for image in images:
        if not Path(image).is_file():
            raise UserInputError(f"{image}: image file not found")
        t0 = time.perf_counter()
        key = cache_key(image, gid, opts)
        hit = cached_inversion(root, key)
        if hit is None:
            inv = invert_image(
                image,
                G,
                opts,
                faces=faces,
                lpips=lpips,
                encoder_loader=encoder,
                progress=progress,
                on_progress=on_progress,
            )
            hit = store_inversion(root, key, inv)
            ws, cached = inv.ws, False
        else:
            ws, cached = load_latents(hit / "latent.pt", G.num_ws, G.w_dim), True
        out.append(
            (
                ws.to(device),
                {
                    "kind": "image",
                    "path": str(image),
                    "method": opts.method,
                    "settings": opts.record(),
                    "cache_key": key,
                    "cache_dir": str(hit),
                    "cache_hit": cached,
                    "invert_s": time.perf_counter() - t0,
                },
            )
        )
    return out


def main(argv: Sequence[str]) -> int:
    cfg, show = compose_from_args(argv)
    if show:
        print(to_yaml(cfg), end="")
        return 0
    print(run_invert(to_object(cfg)))
    return 0
