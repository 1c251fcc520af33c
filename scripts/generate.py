"""Seeds → StyleGAN2 images, their W+ latents and a contact sheet, to pick sources for
editing: ``python scripts/generate.py --generator ffhq.pkl --seeds 0-7 --out DIR``
(see --help; all logic in sound2img.generation)."""

import sys

from sound2img.cli import run_cli
from sound2img.generation.command import generate_command


def main(argv=None):
    return run_cli(generate_command, argv)


if __name__ == "__main__":
    sys.exit(main())
