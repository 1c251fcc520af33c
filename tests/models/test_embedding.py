"""The one audio → embedding path (models.embedding)."""

from __future__ import annotations

import contextlib

import torch

from sound2img.models.embedding import audio_embedding, embed_audio


class _Scale(torch.nn.Module):
    """mel [B,1,F,T] → its per-frequency means times 3 (raw, not unit length)."""

    def forward(self, mel):
        return 3.0 * mel.mean(dim=(1, 3)).to(torch.float64)


def test_wave_front_end_encoder_unit_vector():
    seen = []

    def frontend(wav):
        seen.append(wav)
        return wav.reshape(wav.shape[0], 1, 4, -1)

    wav = torch.arange(1.0, 17.0).reshape(2, 8)
    emb = embed_audio(wav, frontend, _Scale())
    raw = 3.0 * wav.reshape(2, 4, 2).mean(dim=-1)
    assert len(seen) == 1 and torch.equal(seen[0], wav)
    assert emb.dtype == torch.float32 and emb.shape == (2, 4)
    torch.testing.assert_close(emb, raw / raw.norm(dim=-1, keepdim=True))


def test_autocast_wraps_the_encoder_only_and_channels_last_is_applied():
    entered, layouts = [], []

    @contextlib.contextmanager
    def autocast():
        entered.append(True)
        yield

    class _Probe(torch.nn.Module):
        def forward(self, mel):
            layouts.append(mel.is_contiguous(memory_format=torch.channels_last))
            return mel.flatten(1)

    mel = torch.randn(2, 2, 3, 5)  # two channels: with one, both layouts are the same strides
    out = audio_embedding(_Probe(), mel, autocast=autocast, channels_last=True)
    audio_embedding(_Probe(), mel)
    assert entered == [True] and layouts == [True, False]
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(2))
