"""The web app: ``python scripts/demo.py [preset=tiny]`` serves a page to edit images with
sounds on http://127.0.0.1:7860 (see --help; all logic in sound2img.app)."""

import sys

from sound2img.app.command import main as demo_main
from sound2img.cli import run_cli


def main(argv=None):
    return run_cli(demo_main, argv)


if __name__ == "__main__":
    sys.exit(main())
