"""Augmentations: reproducible from a seed, independent per clip, and exactly the geometry
and values they promise (mask widths and counts, gain in dB, crop offsets)."""

from __future__ import annotations

import pytest
import torch

from sound2img.audio.augment import AudioAugment, build_augment, random_gain, spec_augment, spec_augment_masks
from sound2img.audio.frontend import build_frontend
from sound2img.errors import UserInputError


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def runs(mask: torch.Tensor) -> list[list[tuple[int, int]]]:
    """Per row, the (start, width) of each run of True."""
    out = []
    for row in mask.tolist():
        spans, start = [], None
        for i, v in enumerate(row + [False]):
            if v and start is None:
                start = i
            elif not v and start is not None:
                spans.append((start, i - start))
                start = None
        out.append(spans)
    return out


def test_spec_augment_is_reproducible_and_per_sample():
    spec = torch.randn(16, 1, 128, 300)
    a = spec_augment(spec, generator=gen(0))
    assert torch.equal(a, spec_augment(spec, generator=gen(0)))
    assert not torch.equal(a, spec_augment(spec, generator=gen(1)))
    masked = a != spec
    patterns = {tuple(m.flatten().nonzero().flatten().tolist()) for m in masked}
    assert len(patterns) > 1  # different clips get different masks


def test_mask_geometry():
    batch, n_freq, n_time = 2000, 128, 300
    freq, time = spec_augment_masks(
        batch,
        n_freq,
        n_time,
        num_freq_masks=1,
        max_freq_width=16,
        num_time_masks=1,
        max_time_width=40,
        generator=gen(3),
    )
    assert freq.shape == (batch, n_freq) and time.shape == (batch, n_time)
    for mask, max_width, size in ((freq, 16, n_freq), (time, 40, n_time)):
        spans = runs(mask)
        assert all(len(s) <= 1 for s in spans)  # one mask: one contiguous band (or none, width 0)
        widths = torch.tensor([s[0][1] if s else 0 for s in spans])
        assert int(widths.max()) == max_width and int(widths.min()) == 0
        # widths uniform over 0..max: every value appears, mean close to max/2
        assert set(widths.tolist()) == set(range(max_width + 1))
        assert abs(widths.float().mean().item() - max_width / 2) < 0.1 * max_width
        starts = torch.tensor([s[0][0] for s in spans if s])
        ends = torch.tensor([s[0][0] + s[0][1] for s in spans if s])
        assert int(starts.min()) == 0 and int(ends.max()) == size  # masks reach both edges

    # several masks: the masked count is at most count * max_width, widths clamp to the axis
    freq, time = spec_augment_masks(
        500, 10, 50, num_freq_masks=3, max_freq_width=100, num_time_masks=2, max_time_width=5, generator=gen(4)
    )
    assert int(time.sum(1).max()) <= 10 and bool(freq.all(1).any())
    none_f, none_t = spec_augment_masks(
        4, 10, 50, num_freq_masks=0, max_freq_width=5, num_time_masks=3, max_time_width=0
    )
    assert not none_f.any() and not none_t.any()


def test_spec_augment_writes_the_mask_value_only_inside_the_masks():
    spec = torch.randn(8, 1, 64, 100)
    g_masks, g_apply = gen(7), gen(7)
    freq, time = spec_augment_masks(
        8, 64, 100, num_freq_masks=2, max_freq_width=8, num_time_masks=2, max_time_width=20, generator=g_masks
    )
    out = spec_augment(
        spec,
        num_freq_masks=2,
        max_freq_width=8,
        num_time_masks=2,
        max_time_width=20,
        mask_value=-3.5,
        generator=g_apply,
    )
    mask = freq[:, None, :, None] | time[:, None, None, :]
    assert torch.equal(out[mask.expand_as(out)], torch.full((int(mask.expand_as(out).sum()),), -3.5))
    assert torch.equal(out[~mask.expand_as(out)], spec[~mask.expand_as(out)])
    mean = spec_augment(spec, mask_value="mean", generator=gen(7))
    low = spec_augment(spec, mask_value="min", generator=gen(7))
    for i in range(8):
        inside = mask[i].expand_as(spec[i])
        assert torch.allclose(mean[i][inside], spec[i].mean().expand(int(inside.sum())))
        assert torch.all(low[i][inside] == spec[i].min())
    with pytest.raises(UserInputError, match="mask_value"):
        spec_augment(spec, mask_value="median")


def test_random_gain():
    wav = torch.randn(1000, 64)
    out, gain_db = random_gain(wav, -6.0, 3.0, generator=gen(0))
    assert torch.equal(out, random_gain(wav, -6.0, 3.0, generator=gen(0))[0])
    assert gain_db.shape == (1000,) and float(gain_db.min()) >= -6.0 and float(gain_db.max()) <= 3.0
    assert float(gain_db.min()) < -5.5 and float(gain_db.max()) > 2.5  # spans the range
    ratio = out.norm(dim=1) / wav.norm(dim=1)
    assert torch.allclose(20 * torch.log10(ratio), gain_db, atol=1e-4)
    same, zero = random_gain(wav, 2.0, 2.0)
    assert torch.allclose(zero, torch.full((1000,), 2.0)) and torch.allclose(same, wav * 10**0.1)
    with pytest.raises(UserInputError):
        random_gain(wav, 3.0, -3.0)


def test_audio_augment_from_config_keys_and_the_legacy_view():
    """Masks go on the spectrogram before the legacy resize, where 0 is silence."""
    aug = build_augment(
        min_gain_db=-3,
        max_gain_db=3,
        num_freq_masks=1,
        max_freq_width=20,
        num_time_masks=1,
        max_time_width=100,
        mask_value=0.0,
    )
    assert isinstance(aug, AudioAugment) and aug.spec()["max_time_width"] == 100
    fe = build_frontend("soundclip_legacy")
    wav = torch.randn(2, 44100 * 3) * 0.1
    spec = fe.spectrogram(aug.wave(wav, gen(0)))
    view = aug.mel(spec, gen(1))
    assert torch.equal(view, aug.mel(spec, gen(1)))
    assert bool((view == 0).sum() > (spec == 0).sum())
    assert fe.to_encoder_input(view).shape == (2, 1, 128, 512)
    with pytest.raises(UserInputError, match="augment"):
        build_augment(max_time_widht=3)
