"""``scripts/manipulate.py``'s command line: conventional flags mapped onto the
``manipulate`` config's keys (a flag beats a ``key=value`` override), then ``run_edit``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from sound2img.cli import (
    add_common_args,
    compose_with_flags,
    model_choice,
    parse_with_overrides,
    script_parser,
    to_object,
    to_yaml,
)

CONFIG_NAME = "manipulate"
# flag dest → config key it sets
FLAG_KEYS = {
    "audio": "edit.audio",
    "text": "edit.text",
    "mode": "edit.mode",
    "mix_weight": "edit.mix_weight",
    "gain_db": "edit.gain_db",
    "seed": "edit.seeds",
    "latent": "edit.latents",
    "mean_latent": "edit.mean_latent",
    "batch_size": "edit.batch_size",
    "steps": "manipulate.steps",
    "lr": "manipulate.lr",
    "lambda_sim": "manipulate.lambda_sim",
    "lambda_id": "manipulate.lambda_id",
    "truncation": "manipulate.truncation",
    "out": "out",
    "device": "device",
    "image": "edit.images",
    "jobs": "jobs",
}

EPILOG = """\
sounds: --audio takes a file (wav/flac/ogg/mp3/m4a or a video's audio track), sample:NAME
(an example clip of the weights registry, e.g. sample:rain, fetched on first use) or
tone:HZ (a 10-s sine made on the spot, for offline checks with preset=tiny).
examples:
  python scripts/manipulate.py --audio sample:rain --out outputs/rain
  python scripts/manipulate.py --audio fire.wav --text "a burning forest" --mode latent_mix --mix-weight 0.3
  python scripts/manipulate.py --audio giggling.wav --seed 3 manipulate=faces
  python scripts/manipulate.py --audio tone:440 --out outputs/tiny --overwrite preset=tiny
  python scripts/manipulate.py --audio giggling.wav --image me.jpg manipulate=faces
  torchrun --nproc_per_node 8 scripts/manipulate.py --jobs edits.csv --out outputs/edits
"""


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``manipulate.py``; leftover ``key=value`` words are Hydra overrides."""
    p = script_parser(
        "manipulate.py",
        "Edit StyleGAN2 images with a sound (or text): "
        "W+ latent optimisation towards the sound's CLIP-space embedding.",
        EPILOG,
    )
    g = p.add_argument_group("guidance")
    g.add_argument("--audio", action="append", metavar="SOUND", help="sound file, sample:NAME or tone:HZ (repeatable)")
    g.add_argument("--text", action="append", metavar="PROMPT", help="text prompt (repeatable)")
    g.add_argument("--mode", help="separate | embedding_mix | latent_mix | layer_mix | interpolate")
    g.add_argument("--mix-weight", type=float, metavar="ALPHA", help="text's share α in a mix (0..1)")
    g.add_argument("--gain-db", type=float, metavar="DB", help="volume change before the front end")
    s = p.add_argument_group("source")
    s.add_argument("--seed", type=int, action="append", help="source seed (repeatable)")
    s.add_argument("--latent", action="append", metavar="FILE", help="source latent file (repeatable)")
    s.add_argument(
        "--image",
        action="append",
        metavar="PHOTO",
        help="a photo to edit, inverted first and cached (repeatable; see invert.py for the options)",
    )
    s.add_argument("--mean-latent", action="store_true", default=None, help="start from the mean latent")
    s.add_argument("--truncation", type=float, help="truncation ψ for seed sources")
    o = p.add_argument_group("optimisation")
    o.add_argument("--steps", type=int, help="Adam steps")
    o.add_argument("--lr", type=float, help="learning rate (the StyleCLIP ramp's peak)")
    o.add_argument("--lambda-sim", type=float, metavar="λ_SIM", help="weight of the latent distance to the source")
    o.add_argument("--lambda-id", type=float, metavar="λ_ID", help="weight of the identity loss (face generators)")
    o.add_argument("--batch-size", type=int, help="(source, target) pairs optimised together")
    m = p.add_argument_group("models and output")
    m.add_argument("--generator", metavar="NAME|PATH", help="generator config, registry name or checkpoint file")
    m.add_argument("--encoder", metavar="NAME|PATH", help="encoder config, registry name or checkpoint file")
    m.add_argument("--out", metavar="DIR", help="where the edit (or one sub-directory per edit) is written")
    m.add_argument(
        "--jobs",
        metavar="FILE",
        help="a .csv/.jsonl job file, one edit per row, into --out/<id>/ "
        "(resumable; shared over the ranks under torchrun; see README 'Many edits')",
    )
    m.add_argument("--overwrite", action="store_true", default=None, help="replace edits in an existing --out")
    add_common_args(p)
    p.config_defaults = (CONFIG_NAME, model_flag_keys(FLAG_KEYS))
    return p


def model_flag_keys(flag_keys: dict[str, str]) -> dict[str, str]:
    """A flag → config key table plus ``--generator``/``--encoder``/``--overwrite``'s keys
    (what ``--help`` shows the defaults of)."""
    return {**flag_keys, "generator": "generator.name", "encoder": "encoder.path", "overwrite": "overwrite"}


def compose_from_args(argv: Sequence[str]):
    """argv → (the composed config with the flags applied, whether ``--cfg job`` was asked)."""
    args, overrides = parse_with_overrides(build_parser(), argv)
    return compose_edit_flags(CONFIG_NAME, args, overrides, FLAG_KEYS), args.cfg == "job"


def compose_edit_flags(config_name: str, args: argparse.Namespace, overrides: Sequence[str], flag_keys: dict[str, str]):
    """The composed config of an edit-shaped script (manipulate.py, video.py): the model
    flags, each flag's key, ``--overwrite``; an explicit source (latent files, photos, the
    mean latent) replaces the default seed."""
    groups, updates = model_flags(args, overrides)
    updates.update({key: getattr(args, dest) for dest, key in flag_keys.items()})
    if args.overwrite:
        updates["overwrite"] = True
    explicit = getattr(args, "latent", None) or getattr(args, "mean_latent", None) or getattr(args, "image", None)
    if explicit and updates["edit.seeds"] is None:
        updates["edit.seeds"] = []
    return compose_with_flags(config_name, overrides, updates, groups=groups)


def model_flags(args: argparse.Namespace, overrides: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """``--generator`` / ``--encoder`` → (group overrides, key updates), as manipulate.py and
    video.py take them."""
    from sound2img.factory import GENERATOR_FORMATS

    updates: dict[str, Any] = {}
    groups: list[str] = []
    if args.generator:
        g, u = model_choice("--generator", "generator", args.generator, GENERATOR_FORMATS, "a StyleGAN2 generator")
        groups += g
        updates.update(u)
    if args.encoder:
        from sound2img.factory import towers_override
        from sound2img.weights import AUDIO_ENCODER_FORMATS

        g, u = model_choice("--encoder", "encoder", args.encoder, AUDIO_ENCODER_FORMATS, "an audio encoder")
        groups += g
        updates.update(u)
        # a peer encoder (AudioCLIP, Wav2CLIP) lives in its own CLIP space: pair it with its towers
        # unless the user chose towers (then run_edit checks they are of the same space)
        groups += towers_override(args.encoder, overrides)
    return groups, updates


def main(argv: Sequence[str]) -> int:
    """Parse, compose, then print the config (``--cfg job``) or run the edits."""
    cfg, show = compose_from_args(argv)
    if show:
        print(to_yaml(cfg), end="")
        return 0
    cfg = to_object(cfg)
    if cfg.jobs:
        from sound2img.manipulation.queue import run_queue
        from sound2img.utils.distributed import failed_run_status

        summary = run_queue(cfg, cfg.jobs)
        if summary.rank == 0:
            print(summary.line(), file=sys.stdout if summary.ok else sys.stderr)
        return 0 if summary.ok else failed_run_status(summary.line())
    from sound2img.manipulation.run import run_edit

    dirs = run_edit(cfg)
    for d in dirs:
        print(d)
    return 0
