"""Decode a dataset once into WebDataset shards for training (README "Training at scale").

python scripts/prepare_data.py --out shards/vggsound data=vggsound data.root=DIR --workers 8
python scripts/prepare_data.py --out shards/vggsound data=vggsound data.root=DIR   # rerun: resumes
python scripts/train_encoder.py data=shards data.urls='shards/vggsound/{000000..000199}.tar' ...
"""

import sys

from sound2img.cli import run_cli
from sound2img.training.prepare_data import prepare_data_cli


def main(argv=None) -> int:
    return run_cli(prepare_data_cli, argv)


if __name__ == "__main__":
    sys.exit(main())
