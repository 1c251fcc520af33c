"""Embed sounds, text prompts and images in an audio encoder's CLIP space → one .npz (see --help;
all logic in sound2img.evaluation.embed_command).

python scripts/embed.py --encoder audioclip_partial --audio rain.wav --text "rain" --out e.npz
"""

from __future__ import annotations

import sys

from sound2img.cli import run_cli


def main(argv=None) -> int:
    from sound2img.evaluation.embed_command import main as embed_main

    return run_cli(embed_main, argv)


if __name__ == "__main__":
    sys.exit(main())
