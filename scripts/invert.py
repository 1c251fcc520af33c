"""Invert a photo into a StyleGAN2 generator: ``python scripts/invert.py --image me.jpg
--out DIR`` (see --help; all logic in sound2img.inversion)."""

import sys

from sound2img.cli import run_cli
from sound2img.inversion.command import main as invert_main


def main(argv=None):
    return run_cli(invert_main, argv)


if __name__ == "__main__":
    sys.exit(main())
