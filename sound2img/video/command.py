"""``scripts/video.py``'s command line: conventional flags mapped onto the ``video``
config's keys (a flag beats a ``key=value`` override), then ``run_video``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from sound2img.cli import add_common_args, parse_with_overrides, script_parser, to_object, to_yaml
from sound2img.manipulation.command import compose_edit_flags, model_flag_keys

CONFIG_NAME = "video"
# flag dest → config key it sets
FLAG_KEYS = {
    "audio": "edit.audio",
    "seed": "edit.seeds",
    "image": "edit.images",
    "latent": "edit.latents",
    "mode": "video.mode",
    "fps": "video.fps",
    "keyframe_seconds": "video.keyframe_seconds",
    "keyframe_steps": "video.keyframe_steps",
    "batch_size": "video.batch_size",
    "steps": "manipulate.steps",
    "truncation": "manipulate.truncation",
    "out": "out",
    "device": "device",
}

EPILOG = """\
sounds: --audio takes a file (wav/flac/ogg/mp3/m4a or a video's audio track), sample:NAME
or tone:HZ (a 10-s sine made on the spot, for offline checks with preset=tiny).
examples:
  python scripts/video.py --audio song.wav --seed 0 --out outputs/song                  # semantic + reactive, 24 fps
  python scripts/video.py --audio rain_then_fire.wav --image me.jpg manipulate=faces --mode semantic
  python scripts/video.py --audio drums.wav --seed 3 --mode reactive --fps 30 --out outputs/drums
  python scripts/video.py --audio tone:440 --fps 8 --steps 5 --keyframe-steps 3 --out outputs/tiny preset=tiny
an interrupted run resumes from its finished keyframes when run again with the same --out.
"""


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``video.py``; leftover ``key=value`` words are Hydra overrides."""
    p = script_parser(
        "video.py",
        "A video whose edits follow a sound: keyframe edits towards the sound's successive "
        "windows and motion driven by its loudness, written as an mp4 with the sound.",
        EPILOG,
    )
    p.add_argument("--audio", action="append", metavar="SOUND", help="the sound: a file, sample:NAME or tone:HZ")
    s = p.add_argument_group("source (one)")
    s.add_argument("--seed", type=int, action="append", help="source seed (default 0)")
    s.add_argument("--image", action="append", metavar="PHOTO", help="a photo, inverted first and cached")
    s.add_argument("--latent", action="append", metavar="FILE", help="a source latent file")
    s.add_argument("--truncation", type=float, help="truncation ψ for a seed source")
    v = p.add_argument_group("video")
    v.add_argument("--mode", help="both (default) | semantic | reactive")
    v.add_argument("--fps", type=int, help="frames per second (default 24)")
    v.add_argument("--keyframe-seconds", type=float, metavar="S", help="keyframe spacing (default 1)")
    v.add_argument("--keyframe-steps", type=int, metavar="N", help="Adam steps per keyframe after the first")
    v.add_argument("--steps", type=int, help="Adam steps of the first keyframe (manipulate.steps)")
    v.add_argument("--batch-size", type=int, help="keyframes optimised together (default 1)")
    m = p.add_argument_group("models and output")
    m.add_argument("--generator", metavar="NAME|PATH", help="generator config, registry name or checkpoint file")
    m.add_argument("--encoder", metavar="NAME|PATH", help="encoder config, registry name or checkpoint file")
    m.add_argument("--out", metavar="DIR", help="where video.mp4, keyframes.pt, contact_sheet.png and metrics.json go")
    m.add_argument("--overwrite", action="store_true", default=None, help="replace the files of an existing --out")
    add_common_args(p)
    p.config_defaults = (CONFIG_NAME, model_flag_keys(FLAG_KEYS))
    return p


def compose_from_args(argv: Sequence[str]):
    """argv → (the composed config with the flags applied, whether ``--cfg job`` was asked)."""
    args, overrides = parse_with_overrides(build_parser(), argv)
    return compose_edit_flags(CONFIG_NAME, args, overrides, FLAG_KEYS), args.cfg == "job"


def main(argv: Sequence[str]) -> int:
    """Parse, compose, then print the config (``--cfg job``) or make the video."""
    cfg, show = compose_from_args(argv)
    if show:
        print(to_yaml(cfg), end="")
        return 0
    from sound2img.video.run import run_video

    print(run_video(to_object(cfg)) / "video.mp4")
    return 0
