"""Guidance targets and mixing: shapes, unit length, and that the weights reach the
embeddings and latents exactly as specified."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sound2img.errors import UserInputError
from sound2img.manipulation import guidance
from sound2img.models.clip import build_clip


def unit(*xs):
    return F.normalize(torch.tensor(xs, dtype=torch.float32), dim=-1)


def test_mix_embeddings_weights_and_renormalises():
    e = torch.eye(4)[:2]  # two orthogonal unit vectors
    mixed = guidance.mix_embeddings(e, [0.25, 0.75])
    assert mixed.shape == (4,)
    assert torch.allclose(mixed, unit(0.25, 0.75, 0, 0), atol=1e-6)
    assert torch.allclose(guidance.mix_embeddings(e, [1.0, 0.0]), e[0])
    with pytest.raises(UserInputError, match="weights"):
        guidance.mix_embeddings(e, [0.5])
    with pytest.raises(UserInputError, match=">= 0"):
        guidance.mix_embeddings(e, [-1.0, 2.0])
    with pytest.raises(UserInputError, match="cancel"):
        guidance.mix_embeddings(torch.stack([e[0], -e[0]]), [1.0, 1.0])


@pytest.mark.parametrize("mode", ["slerp", "lerp"])
def test_interpolation_ends_shapes_and_spacing(mode):
    a, b = unit(1, 0, 0), unit(0, 1, 0)
    path = guidance.interpolate_embeddings(a, b, 5, mode)
    assert path.shape == (5, 3)
    assert torch.allclose(path.norm(dim=-1), torch.ones(5), atol=1e-6)
    assert torch.allclose(path[0], a, atol=1e-6) and torch.allclose(path[-1], b, atol=1e-6)
    angles = torch.arccos((path[1:] * path[:-1]).sum(-1).clamp(-1, 1))
    if mode == "slerp":  # equal angular steps of 90°/4
        assert torch.allclose(angles, torch.full((4,), math.pi / 8), atol=1e-5)
    else:  # chord: the middle steps are wider
        assert angles[1] > angles[0]
        assert torch.allclose(path[2], unit(1, 1, 0), atol=1e-6)
    with pytest.raises(UserInputError):
        guidance.interpolate_embeddings(a, b, 1)


def test_latent_mixing_follows_the_formula():
    w_a, w_t = torch.randn(2, 14, 8), torch.randn(2, 14, 8)
    for alpha in (0.0, 0.3, 1.0):
        assert torch.allclose(guidance.mix_latents(w_a, w_t, alpha), (1 - alpha) * w_a + alpha * w_t)
    assert torch.equal(guidance.mix_latents(w_a, w_t, 0.0), w_a)


@pytest.mark.parametrize("num_ws,split", [(14, 7), (18, 4), (18, 0), (18, 18)])
def test_layer_mixing_takes_coarse_and_fine_rows(num_ws, split):
    coarse, fine = torch.randn(1, num_ws, 8), torch.randn(1, num_ws, 8)
    mixed = guidance.mix_layers(coarse, fine, split)
    assert mixed.shape == coarse.shape
    assert torch.equal(mixed[:, :split], coarse[:, :split]) and torch.equal(mixed[:, split:], fine[:, split:])
    with pytest.raises(UserInputError, match="outside"):
        guidance.mix_layers(coarse, fine, num_ws + 1)


def test_tone_and_sound_specs():
    wav = guidance.load_sound("tone:440", 8000)
    assert wav.shape == (int(guidance.TONE_SECONDS * 8000),) and wav.dtype == torch.float32
    peak = torch.fft.rfft(wav).abs().argmax().item() * 8000 / wav.numel()
    assert peak == pytest.approx(440, abs=0.2)
    for bad in ("tone:abc", "tone:5000", "tone:-3"):
        with pytest.raises(UserInputError, match="tone"):
            guidance.load_sound(bad, 8000)
    assert guidance.describe_sound("tone:440") == "tone440"
    assert guidance.describe_sound("some/dir/Rain drops.wav") == "Raindrops"


class SpyFrontend(torch.nn.Module):
    """Records the waveform it is given; mel = a fixed function of it."""

    sample_rate = 8000

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, wav):
        self.seen.append(wav.clone())
        return wav[:, None, None, :64]


class SpyEncoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0
        self.proj = torch.nn.Linear(64, 6).requires_grad_(False)

    def forward(self, mel):
        self.calls += 1
        return F.normalize(self.proj(mel.flatten(1)), dim=-1)


def test_encode_sounds_gain_once_and_normalised():
    fe, enc = SpyFrontend(), SpyEncoder()
    wavs = [torch.randn(100), torch.randn(80)]  # different lengths are fine
    embs = guidance.encode_sounds(wavs, enc, fe, gain_db=6.0)
    assert embs.shape == (2, 6) and torch.allclose(embs.norm(dim=-1), torch.ones(2), atol=1e-6)
    assert enc.calls == 2
    assert torch.allclose(fe.seen[0][0], wavs[0] * 10 ** (6 / 20))  # gain before the front end
    assert torch.allclose(fe.seen[1][0], wavs[1] * 10 ** (6 / 20))


def test_encode_texts_with_tiny_clip():
    clip = build_clip("tiny", seed=0)
    embs = guidance.encode_texts(["rain", "a burning fire", "rain"], clip)
    assert embs.shape == (3, clip.embed_dim)
    assert torch.allclose(embs.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(embs[0], embs[2]) and not torch.allclose(embs[0], embs[1])
