"""One training step's model: the audio encoder and the contrastive loss as a single
module (so DDP synchronises the encoder *and* the temperature), and the augmented views
of a batch's mel spectrograms."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from sound2img.training.losses import ContrastiveLoss


class Student(nn.Module):
    """The trainable part: ``encoder`` (mel → ``audio_emb_raw``) and ``loss`` (whose
    ``scale`` may hold the learnable temperature)."""

    def __init__(self, encoder: nn.Module, loss: ContrastiveLoss, channels_last: bool = False):
        super().__init__()
        self.encoder = encoder
        self.loss = loss
        self.channels_last = channels_last

    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """``mel [B,1,n_mels,T]`` → ``audio_emb [B,D]`` (L2-normalised, float32)."""
        if self.channels_last:
            mel = mel.contiguous(memory_format=torch.channels_last)
        return F.normalize(self.encoder(mel).float(), dim=-1)

    def forward(self, views: list[torch.Tensor], text_emb: torch.Tensor | None = None,
                image_emb: torch.Tensor | None = None,
                image_valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``views``: one or two ``mel [B,1,n_mels,T]`` (the second only for a↔â), encoded
        in one batch; ``text_emb``/``image_emb [B,D]`` normalised CLIP targets,
        ``image_valid [B]`` the items that have a frame. Returns the loss dict of
        ``ContrastiveLoss``."""
        emb = self.encode(torch.cat(views) if len(views) > 1 else views[0])
        audio = emb.chunk(len(views))
        return self.loss(audio[0], text=text_emb, image=image_emb,
                         audio_view=audio[1] if len(views) > 1 else None, image_valid=image_valid)


def make_views(mel: torch.Tensor, n_views: int, augment: Callable | None,
               generator: torch.Generator | None) -> list[torch.Tensor]:
    """``n_views`` independently augmented copies of ``mel [B,1,n_mels,T]``;
    ``augment(mel, generator) -> mel`` (None: the views are the input itself)."""
    if augment is None:
        return [mel] * n_views
    return [augment(mel, generator) for _ in range(n_views)]
