"""Train the audio encoder into CLIP's embedding space (docs/method.md §1).

python scripts/train_encoder.py --out runs/paper experiment=paper data.root=DIR ...
python scripts/train_encoder.py --out runs/tiny preset=tiny     # offline install check
torchrun --nproc_per_node=8 scripts/train_encoder.py --out runs/paper experiment=paper ...
python scripts/train_encoder.py --out runs/paper --resume       # continue after a stop
"""

import sys

from sound2img.cli import run_cli
from sound2img.training.run import train_encoder_cli


def main(argv=None) -> int:
    return run_cli(train_encoder_cli, argv)


if __name__ == "__main__":
    sys.exit(main())
