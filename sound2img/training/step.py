"""One training step's model: the audio encoder and the contrastive loss as a single
module (so DDP synchronises the encoder *and* the temperature), and the augmented views
of a batch's mel spectrograms."""

from __future__ import annotations

import torch
from torch import nn

from sound2img.models.embedding import audio_embedding
from sound2img.training.losses import ContrastiveLoss


class ContrastiveModel(nn.Module):
    """The trainable part: ``encoder`` (mel → ``audio_emb_raw``) and ``loss`` (whose
    ``scale`` may hold the learnable temperature). Builders and loaders return encoders
    frozen; this is the one place they are unfrozen for training."""

    def __init__(
        self, encoder: nn.Module, loss: ContrastiveLoss, channels_last: bool = False, separate_passes: bool = False
    ):
        super().__init__()
        self.encoder = encoder.requires_grad_(True)
        self.loss = loss
        self.channels_last = channels_last
        # One pass over both views normalises BatchNorm over 2B rows that mix clean and
        # augmented inputs; separate passes (the authors' code) keep each view's own statistics.
        self.separate_passes = separate_passes

    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """``mel [B,1,n_mels,T]`` → ``audio_emb [B,D]`` (L2-normalised, float32)."""
        return audio_embedding(self.encoder, mel, channels_last=self.channels_last)

    def forward(
        self,
        views: list[torch.Tensor],
        text_emb: torch.Tensor | None = None,
        image_emb: torch.Tensor | None = None,
        image_valid: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``views``: one or two ``mel [B,1,n_mels,T]`` (the second only for a↔â), encoded
        in one batch; ``text_emb``/``image_emb [B,D]`` normalised CLIP targets,
        ``image_valid [B]`` the items that have a frame. Returns the loss dict of
        ``ContrastiveLoss``."""
        if self.separate_passes:
            audio = [self.encode(v) for v in views]
        else:
            audio = self.encode(torch.cat(views) if len(views) > 1 else views[0]).chunk(len(views))
        return self.loss(
            audio[0],
            text=text_emb,
            image=image_emb,
            audio_view=audio[1] if len(views) > 1 else None,
            image_valid=image_valid,
        )


def make_views(
    wav: torch.Tensor,
    frontend: nn.Module,
    augment,
    n_views: int,
    generator: torch.Generator | None,
    clean_first: bool = False,
) -> list[torch.Tensor]:
    """``n_views`` independently augmented encoder inputs ``mel [B,1,n_mels,T]`` of
    ``wav [B,S]``: per view, ``augment.wave`` (random gain) on the wave, the front end's
    spectrogram, ``augment.mel`` (SpecAugment) on it — before the legacy resize — and the
    front end's encoder-input transform (``sound2img.audio.augment.AudioAugment``).
    ``clean_first``: the first view (the one a↔t and a↔v use) is ``frontend(wav)``
    unaugmented, as in the authors' code (clean view + augmented view).
    Without ``augment`` every view is ``frontend(wav)``."""
    if augment is None:
        return [frontend(wav)] * n_views
    if clean_first:
        return [frontend(wav)] + (make_views(wav, frontend, augment, n_views - 1, generator) if n_views > 1 else [])
    # Without a gain range the views share one spectrogram (a front-end pass saved; the
    # soundclip_legacy front end normalises each clip by its peak, so gain is a no-op there).
    no_gain = getattr(augment, "min_gain_db", None) == getattr(augment, "max_gain_db", None) == 0
    shared = frontend.spectrogram(wav) if no_gain else None
    views = []
    for _ in range(n_views):
        spec = shared if shared is not None else frontend.spectrogram(augment.wave(wav, generator))
        views.append(frontend.to_encoder_input(augment.mel(spec, generator)))
    return views
