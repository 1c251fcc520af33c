"""Reproduce one of the paper's tables or figures: ``python scripts/reproduce.py <table>``
(see --help and --list; all logic in sound2img.evaluation)."""

import sys

from sound2img.cli import run_cli
from sound2img.evaluation.command import main as reproduce_main


def main(argv=None):
    return run_cli(reproduce_main, argv)


if __name__ == "__main__":
    sys.exit(main())
