"""An HTML gallery of edits or a training run: ``python scripts/report.py DIR --out
report.html`` (see --help; all logic in sound2img.app.report)."""

import sys

from sound2img.app.report import main as report_main
from sound2img.cli import run_cli


def main(argv=None):
    return run_cli(report_main, argv)


if __name__ == "__main__":
    sys.exit(main())
