"""Run by test_train_shards.py under ``python -m torch.distributed.run --nproc_per_node 2``:
each gloo rank reads its part of the shards with 2 DataLoader workers for two epochs,
then trains the tiny task on them for one epoch; rank 0 writes what every rank saw."""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import torch
from torch.utils.data import DataLoader

from sound2img.audio.frontend import build_frontend
from sound2img.data.shards import ShardDataset
from sound2img.models.audio_encoder import build_audio_encoder
from sound2img.models.clip import build_clip
from sound2img.training.batches import StreamSampler
from sound2img.training.loop import training_loop
from sound2img.utils.distributed import all_gather_object, init_distributed, shutdown_distributed

from helpers.training import OPTIM, TRAIN, loss_options  # tests/ is on PYTHONPATH


def main(urls: str, run_dir: str, out: str) -> None:
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    finished = False
    try:
        ds = ShardDataset(urls, sample_rate=8000, shuffle_buffer=3)
        sampler = StreamSampler(ds, info.world_size, info.rank, seed=5)
        seen = {}
        for epoch in (0, 1):
            sampler.start(epoch)
            loader = DataLoader(ds, batch_size=None, num_workers=2)
            seen[epoch] = [(int(it["index"]), torch.utils.data.get_worker_info() is None) for it in loader]
        torch.manual_seed(0)
        summary = training_loop(
            run_dir,
            build_audio_encoder("tiny_cnn", embed_dim=32),
            build_frontend("logmel", sample_rate=8000, n_fft=256, hop_length=128, n_mels=32),
            ShardDataset(urls, sample_rate=8000),
            clip=build_clip("tiny"),
            loss=loss_options(at=1.0, aa=1.0),
            optim=OPTIM,
            train=replace(TRAIN, batch_size=4, epochs=1, num_workers=2, log_every=1),
            device="cpu",
        )
        gathered = all_gather_object(
            {
                "rank": info.rank,
                "seen": {e: [i for i, _ in v] for e, v in seen.items()},
                "quota": sampler.num_samples,
                "steps": summary["step"],
            },
            info,
        )
        if info.is_main:
            with open(out, "w") as fh:
                json.dump(gathered, fh)
        finished = True
    finally:
        shutdown_distributed(wait_for_peers=finished)


if __name__ == "__main__":
    main(*sys.argv[1:])
