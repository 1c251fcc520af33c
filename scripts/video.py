"""Sound → video: ``python scripts/video.py --audio song.wav --seed 0 --out outputs/song``
(see --help; all logic in sound2img.video)."""

import sys

from sound2img.cli import run_cli
from sound2img.video.command import main as video_main


def main(argv=None):
    return run_cli(video_main, argv)


if __name__ == "__main__":
    sys.exit(main())
