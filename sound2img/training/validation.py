"""Zero-shot accuracy on a held-out split, once per epoch: class prompts through the
zero-shot templates (CLIP prompt ensembling) against L2-normalised audio embeddings.
Normalisation happens inside, so un-normalised features cannot reach the argmax."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from sound2img.data.base import collate
from sound2img.data.prompts import zero_shot_templates
from sound2img.utils.distributed import DistInfo


@torch.no_grad()
def encode_class_texts(encode_text: Callable[[list[str]], torch.Tensor], class_names: Sequence[str],
                       templates: Sequence[str] | None = None) -> torch.Tensor:
    """``class_emb [C,D]``: per class, the mean of its normalised template embeddings,
    renormalised (the recipe of ``sound2img.evaluation.zero_shot``, which training may
    not import)."""
    templates = list(templates or zero_shot_templates())
    names = [" ".join(c.replace("_", " ").split()) for c in class_names]
    emb = encode_text([t.format(c) for c in names for t in templates]).float()
    emb = F.normalize(emb, dim=-1).reshape(len(names), len(templates), -1)
    return F.normalize(emb.mean(dim=1), dim=-1)


@torch.no_grad()
def zero_shot_accuracy(encoder: nn.Module, frontend: nn.Module, dataset: Dataset, class_emb: torch.Tensor,
                       info: DistInfo, batch_size: int = 64, num_workers: int = 0,
                       autocast: Callable | None = None) -> float:
    """Fraction of ``dataset`` items whose nearest class text is their label.

    Each rank scores a strided share; counts are summed over ranks. ``class_emb [C,D]``
    is normalised again here; so is every ``audio_emb_raw [B,D]``.
    """
    was_training = encoder.training
    encoder.eval()
    shard = Subset(dataset, range(info.rank, len(dataset), info.world_size))
    # An explicit generator keeps the loader from drawing on the global RNG (exact resume).
    loader = DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate,
                        generator=torch.Generator().manual_seed(0))
    class_emb = F.normalize(class_emb.to(info.device).float(), dim=-1)
    correct = torch.zeros(2, dtype=torch.float64, device=info.device)  # [correct, seen]
    try:
        for batch in loader:
            mel = frontend(batch["wav"].to(info.device))
            if autocast is not None:
                with autocast():
                    audio_raw = encoder(mel)
            else:
                audio_raw = encoder(mel)
            audio_emb = F.normalize(audio_raw.float(), dim=-1)
            pred = (audio_emb @ class_emb.T).argmax(dim=-1)
            correct[0] += (pred == batch["label"].to(info.device)).sum()
            correct[1] += pred.numel()
    finally:
        encoder.train(was_training)
    if info.distributed:
        torch.distributed.all_reduce(correct)
    return float(correct[0] / correct[1].clamp(min=1))
