"""The two views of a batch: the wave gain, the front end's spectrogram and SpecAugment in
that order, reproducible from the step's generator, one shared spectrogram when there is
no gain to draw."""

from __future__ import annotations

import torch

from sound2img.audio.augment import build_augment
from sound2img.audio.frontend import build_frontend
from sound2img.training.step import make_views


class CountingFrontend(torch.nn.Module):
    def __init__(self, frontend):
        super().__init__()
        self.frontend, self.calls = frontend, 0

    def spectrogram(self, wav):
        self.calls += 1
        return self.frontend.spectrogram(wav)

    def to_encoder_input(self, spec):
        return self.frontend.to_encoder_input(spec)


def _views(fe, gain_db: float, seed: int):
    augment = build_augment(
        min_gain_db=-gain_db,
        max_gain_db=gain_db,
        num_freq_masks=1,
        max_freq_width=8,
        num_time_masks=1,
        max_time_width=10,
        mask_value="min",
    )
    wav = torch.randn(3, 8000, generator=torch.Generator().manual_seed(0))
    return make_views(wav, fe, augment, 2, torch.Generator().manual_seed(seed))


def test_views_differ_are_reproducible_and_share_the_spectrogram_without_gain():
    base = build_frontend("logmel", sample_rate=8000, n_fft=256, hop_length=128, n_mels=32)
    fe = CountingFrontend(base)
    a1, a2 = _views(fe, 0.0, seed=1)
    assert fe.calls == 1  # no gain: one front-end pass for both views
    wav = torch.randn(3, 8000, generator=torch.Generator().manual_seed(0))
    plain = base(wav)
    assert a1.shape == plain.shape and not torch.equal(a1, a2)
    unmasked = (a1 == plain) | (a2 == plain)
    assert unmasked.float().mean() > 0.5  # masks cover a part, the rest is the clip itself
    b1, b2 = _views(fe, 0.0, seed=1)
    assert torch.equal(a1, b1) and torch.equal(a2, b2)  # same step seed, same views
    fe.calls = 0
    g1, g2 = _views(fe, 6.0, seed=1)
    assert fe.calls == 2  # a gain per view: one pass each
    shift = (g1 - plain)[g1 != g1.amin()].median()
    assert shift.abs() > 0.01  # a gain of up to ±6 dB moves the log-mel level
