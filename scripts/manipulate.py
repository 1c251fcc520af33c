"""Sound-guided image manipulation: ``python scripts/manipulate.py --audio x.wav``
(see --help; all logic in sound2img.manipulation)."""

import sys

from sound2img.cli import run_cli
from sound2img.manipulation.command import main as manipulate_main


def main(argv=None):
    return run_cli(manipulate_main, argv)


if __name__ == "__main__":
    sys.exit(main())
