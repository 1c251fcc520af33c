"""The shared embedding space, once: audio → unit vector (wave → front end → encoder →
L2 normalisation, the one path used by the training step, validation, evaluation and the
edit targets) and the zero-shot scorer (cosine of unit audio embeddings against unit
class-text embeddings, used by training's validation and by the evaluation tables)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from sound2img.errors import UserInputError

# Unit-norm check tolerance: embeddings are float32, so 1e-3 is loose enough for any
# device and tight enough to catch a raw (un-normalised) feature, whose norm is arbitrary.
_NORM_TOL = 1e-3


def audio_embedding(
    encoder: nn.Module, mel: torch.Tensor, *, autocast: Callable | None = None, channels_last: bool = False
) -> torch.Tensor:
    """``mel [B,1,n_mels,T]`` → ``audio_emb [B,D]``, float32, unit length: the encoder's
    raw output (``forward``, under ``autocast()`` when given) normalised exactly once."""
    if channels_last:
        mel = mel.contiguous(memory_format=torch.channels_last)
    with autocast() if autocast is not None else contextlib.nullcontext():
        raw = encoder(mel)
    return F.normalize(raw.float(), dim=-1)


def embed_audio(
    wav: torch.Tensor,
    frontend: Callable[[torch.Tensor], torch.Tensor],
    encoder: nn.Module,
    *,
    autocast: Callable | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """``wav [B,S]`` at ``frontend.sample_rate`` → front end (full precision) →
    ``audio_embedding`` → ``audio_emb [B,D]`` unit length."""
    return audio_embedding(encoder, frontend(wav), autocast=autocast, channels_last=channels_last)


def unit_rows(x: torch.Tensor, what: str) -> torch.Tensor:
    """Normalise rows of ``x [N,D]`` and check they really are unit length afterwards (a
    zero vector or a NaN would otherwise pass silently); ``ValueError`` otherwise."""
    if x.ndim != 2:
        raise ValueError(f"{what}: expected [N,D], got shape {tuple(x.shape)}")
    x = F.normalize(x.float(), dim=-1)
    if not torch.all((x.norm(dim=-1) - 1).abs() < _NORM_TOL):
        raise ValueError(f"{what}: rows are not unit-norm after normalisation (zero or non-finite features)")
    return x


def zero_shot_logits(audio_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """The zero-shot scorer: cosine similarities ``[N,C]`` between ``audio_emb [N,D]`` and
    class texts ``text_emb [C,D]`` (argmax over C = predicted class).

    Both sides are normalised here, whatever the caller passed, so un-normalised features
    (the cause of a 3 % ESC-50 result with the authors' code) cannot reach the argmax.
    """
    a = unit_rows(audio_emb, "audio embeddings")
    t = unit_rows(text_emb.to(a.device), "text embeddings")
    if a.shape[1] != t.shape[1]:
        raise UserInputError(
            f"zero-shot: audio embedding width {a.shape[1]} != text embedding width {t.shape[1]} "
            "(encoder aligned to a different CLIP model?)"
        )
    return a @ t.T
