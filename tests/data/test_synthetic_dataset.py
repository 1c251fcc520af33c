"""The synthetic sound classes: deterministic by seed, train/test disjoint, varied within a
class, and separable from a log-mel (a linear probe on held-out clips)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sound2img.data import DatasetError, build_dataset
from sound2img.data.synthetic import list_synthetic_classes


def logmel_features(wav: torch.Tensor, sr: int, n_bands: int = 32, segments: int = 4) -> torch.Tensor:
    """Log mel-band energies (triangle-free: STFT bins pooled by mel band), averaged over
    ``segments`` time quarters, plus their standard deviation over time."""
    spec = torch.stft(wav, 256, 64, window=torch.hann_window(256), return_complex=True).abs() ** 2
    mel = 2595 * torch.log10(1 + torch.linspace(0, sr / 2, spec.shape[0]) / 700)
    band = torch.bucketize(mel, torch.linspace(0, float(mel[-1]) + 1e-3, n_bands + 1)[1:-1])
    logmel = torch.log(torch.zeros(n_bands, spec.shape[1]).index_add_(0, band, spec) + 1e-8)
    return torch.cat([c.mean(1) for c in logmel.chunk(segments, dim=1)] + [logmel.std(1)])


def test_shapes_labels_names_and_determinism():
    ds = build_dataset("synthetic", num_classes=5, num_per_class=3, sample_rate=8000, num_samples=4000, seed=7)
    assert len(ds) == 15 and ds.class_names == list_synthetic_classes()[:5]
    assert ds.class_names[:3] == ["low hum", "high whistle", "fast clicks"]
    assert [ds[i]["label"] for i in range(5)] == [0, 1, 2, 3, 4]  # interleaved: prefixes are balanced
    item = ds[3]
    assert item["wav"].shape == (4000,) and item["wav"].dtype == torch.float32
    assert 0.2 < item["wav"].abs().max() <= 1.0 and item["image"] is None
    assert item["class_name"] in item["text"]
    again = build_dataset("synthetic", num_classes=5, num_per_class=3, sample_rate=8000, num_samples=4000, seed=7)
    assert all(torch.equal(ds[i]["wav"], again[i]["wav"]) for i in range(len(ds)))
    other = build_dataset("synthetic", num_classes=5, num_per_class=3, sample_rate=8000, num_samples=4000, seed=8)
    test = build_dataset(
        "synthetic", num_classes=5, num_per_class=3, sample_rate=8000, num_samples=4000, seed=7, split="test"
    )
    assert not torch.equal(ds[0]["wav"], other[0]["wav"]) and not torch.equal(ds[0]["wav"], test[0]["wav"])
    assert ds[0]["key"] != test[0]["key"]
    # Variation within a class: different clips, different gains.
    same = [ds[i]["wav"] for i in (0, 5, 10)]
    assert abs(float(torch.corrcoef(torch.stack(same))[0, 1])) < 0.5
    assert len({round(float(w.abs().max()), 3) for w in same}) == 3
    with pytest.raises(DatasetError, match="num_classes"):
        build_dataset("synthetic", num_classes=99)


@pytest.mark.parametrize("sample_rate", [16000, 8000])
def test_classes_are_separable_by_a_linear_probe_on_held_out_clips(sample_rate):
    from sklearn.linear_model import LogisticRegression

    n_classes = len(list_synthetic_classes())
    kw = dict(num_classes=n_classes, num_per_class=8, sample_rate=sample_rate, num_samples=sample_rate, seed=0)

    def features(split):
        ds = build_dataset("synthetic", split=split, **kw)
        wavs = [ds[i]["wav"] for i in range(len(ds))]
        return (
            torch.stack([logmel_features(w, sample_rate) for w in wavs]).numpy(),
            np.array([[float(w.abs().max()), float(w.pow(2).mean().sqrt())] for w in wavs]),
            np.array([ds.records[i].label for i in range(len(ds))]),
        )

    x_tr, loud_tr, y_tr = features("train")
    x_te, loud_te, y_te = features("test")
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    probe = LogisticRegression(max_iter=2000).fit((x_tr - mu) / sd, y_tr)
    assert probe.score((x_te - mu) / sd, y_te) > 0.9  # chance is 1/12
    # ...and loudness alone does not give the class away (gain is random per clip).
    by_gain = LogisticRegression(max_iter=2000).fit(loud_tr, y_tr)
    assert by_gain.score(loud_te, y_te) < 0.4


def test_images_have_a_class_colour_with_noise():
    ds = build_dataset("synthetic", num_classes=3, num_per_class=2, sample_rate=8000, num_samples=800, image_size=16)
    imgs = [ds[i]["image"] for i in range(6)]
    assert all(im.shape == (3, 16, 16) and im.dtype == torch.uint8 for im in imgs)
    means = torch.stack([im.float().mean((1, 2)) for im in imgs])
    same_class = (means[0] - means[3]).abs().max()
    other_class = min((means[0] - means[1]).abs().max(), (means[0] - means[2]).abs().max())
    assert other_class > 3 * same_class and not torch.equal(imgs[0], imgs[3])
