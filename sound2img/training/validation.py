"""Zero-shot accuracy on a held-out split, once per epoch: the evaluation's scorer
(``models.embedding.zero_shot_logits``) on this rank's share of the split, class texts
from ``data.prompts.encode_class_texts`` (CLIP prompt ensembling)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from sound2img.data.base import collate
from sound2img.data.loading import iterate_loader
from sound2img.models.embedding import embed_audio, zero_shot_logits
from sound2img.utils.distributed import DistInfo


@torch.no_grad()
def zero_shot_accuracy(
    encoder: nn.Module,
    frontend: nn.Module,
    dataset: Dataset,
    class_emb: torch.Tensor,
    info: DistInfo,
    batch_size: int = 64,
    num_workers: int = 0,
    autocast: Callable | None = None,
) -> float:
    """Fraction of ``dataset`` items whose nearest class text is their label.

    Each rank scores a strided share; counts are summed over ranks. ``class_emb [C,D]``
    (normalised or not: the scorer normalises both sides).
    """
    was_training = encoder.training
    encoder.eval()
    shard = Subset(dataset, range(info.rank, len(dataset), info.world_size))
    # An explicit generator keeps the loader from drawing on the global RNG (exact resume).
    loader = DataLoader(
        shard,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(0),
    )
    class_emb = class_emb.to(info.device)
    correct = torch.zeros(2, dtype=torch.float64, device=info.device)  # [correct, seen]
    try:
        for batch in iterate_loader(loader):
            audio_emb = embed_audio(batch["wav"].to(info.device), frontend, encoder, autocast=autocast)
            pred = zero_shot_logits(audio_emb, class_emb).argmax(dim=-1)
            correct[0] += (pred == batch["label"].to(info.device)).sum()
            correct[1] += pred.numel()
    finally:
        encoder.train(was_training)
    if info.distributed:
        torch.distributed.all_reduce(correct)
    return float(correct[0] / correct[1].clamp(min=1))
