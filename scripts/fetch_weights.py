"""List the registered public weights and sample sounds, list what a command needs, or
fetch files into the cache (see --help; all logic in sound2img.needs).

python scripts/fetch_weights.py --list
python scripts/fetch_weights.py --for edit
python scripts/fetch_weights.py soundclip_resnet18 soundclip_landscape sample:rain
python scripts/fetch_weights.py ir_se50 --offline     # only check the cache
"""

from __future__ import annotations

import sys

from sound2img.cli import run_cli


def main(argv=None) -> int:
    from sound2img.needs import fetch_weights_main

    return run_cli(fetch_weights_main, argv)


if __name__ == "__main__":
    sys.exit(main())
