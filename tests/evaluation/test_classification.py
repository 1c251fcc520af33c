"""Zero-shot and linear-probe tables end to end on tiny ESC-50 / UrbanSound8K trees with
the tiny preset's front end and CLIP: encoders whose answer is known by construction."""

from __future__ import annotations

import json
import math

import pytest
import torch

from sound2img.data import build_dataset
from sound2img.data.prompts import encode_class_texts
from sound2img.evaluation.embed import DatasetSpec, encode_dataset
from sound2img.evaluation.linear_probe import run_linear_probe
from sound2img.evaluation.report import classification_report, save_report
from sound2img.evaluation.zero_shot import run_zero_shot

from .conftest import ESC50_CLASSES, US8K_CLASSES, NoiseEncoder, ToneEncoder, tone


@pytest.fixture(scope="module")
def tiny_nets():
    """The tiny preset's CLIP and front end, built through the config edge."""
    from sound2img import factory
    from sound2img.cli import compose

    cfg = compose("reproduce", ["preset=tiny"])
    _, frontend = factory.build_encoder_from_cfg(cfg.encoder, cfg.audio, "cpu")
    return factory.build_clip_from_cfg(cfg.clip, "cpu"), frontend


def _specs(esc50_root, us8k_root, frontend):
    """Both trees, read as 1-s clips (the files are that long; the readers' default 5 s / 4 s
    would only add silence and front-end time)."""
    kw = {"num_samples": int(frontend.sample_rate)}
    return {
        "esc50": DatasetSpec("esc50", str(esc50_root), (1, 2, 3, 4, 5), kw),
        "us8k": DatasetSpec("us8k", str(us8k_root), tuple(range(1, 11)), kw),
    }


def _tone_encoder(name, root, clip, frontend, perm=None, random_class=None):
    """A ToneEncoder over the dataset's class texts (rows permuted by ``perm``)."""
    names = build_dataset(name, root=str(root), load_images=False).class_names
    table = encode_class_texts(clip.encode_text, names)
    freqs = {t: f for t, (_, f) in ESC50_CLASSES.items()} if name == "esc50" else US8K_CLASSES
    refs = {k: torch.from_numpy(tone(f, sr=frontend.sample_rate)) for k, f in freqs.items()}
    return ToneEncoder(frontend, refs, table if perm is None else table[perm], random_class), len(names)


@pytest.mark.parametrize("name", ["esc50", "us8k"])
def test_perfect_encoder_scores_100(name, esc50_root, us8k_root, tiny_nets):
    clip, frontend = tiny_nets
    spec = _specs(esc50_root, us8k_root, frontend)[name]
    encoder, _ = _tone_encoder(name, spec.root, clip, frontend)
    res = run_zero_shot([spec], encoder, frontend, clip, batch_size=7)[name]  # 7: batches cross classes and folds
    assert res["mean"] == 1.0 and res["overall"] == 1.0
    assert set(res["per_fold"]) == set(spec.folds)
    n_expected = 5 * 2 * len(ESC50_CLASSES) if name == "esc50" else 10 * len(US8K_CLASSES)
    assert res["n"] == n_expected and sum(res["n_per_fold"].values()) == n_expected
    assert f"{n_expected} clips" in res["data"]


@pytest.mark.parametrize("name", ["esc50", "us8k"])
def test_permuted_encoder_scores_exactly_its_fixed_points(name, esc50_root, us8k_root, tiny_nets):
    """Class c's clips land on class perm[c]'s text: accuracy is the share of clips whose
    class is a fixed point of the permutation — the scorer counts exactly that."""
    clip, frontend = tiny_nets
    spec = _specs(esc50_root, us8k_root, frontend)[name]
    present = sorted(ESC50_CLASSES) if name == "esc50" else sorted(US8K_CLASSES)
    n_classes = 50 if name == "esc50" else 10
    perm = torch.arange(n_classes)
    perm[present] = torch.tensor(present)[[1, 0] + list(range(2, len(present)))]  # swap two, keep the rest
    encoder, _ = _tone_encoder(name, spec.root, clip, frontend, perm=perm)
    res = run_zero_shot([spec], encoder, frontend, clip, batch_size=16)[name]
    assert res["overall"] == pytest.approx((len(present) - 2) / len(present))


@pytest.mark.parametrize("name", ["esc50", "us8k"])
def test_random_class_encoder_is_at_chance(name, esc50_root, us8k_root, tiny_nets):
    clip, frontend = tiny_nets
    spec = _specs(esc50_root, us8k_root, frontend)[name]
    encoder, n_classes = _tone_encoder(name, spec.root, clip, frontend, random_class=torch.Generator().manual_seed(0))
    res = run_zero_shot([spec], encoder, frontend, clip, batch_size=16)[name]
    p = 1 / n_classes
    assert abs(res["overall"] - p) <= 3 * math.sqrt(p * (1 - p) / res["n"])


def test_linear_probe_separable_is_100_and_noise_is_chance(esc50_root, us8k_root, tiny_nets):
    clip, frontend = tiny_nets
    specs = _specs(esc50_root, us8k_root, frontend)
    for name in ("esc50", "us8k"):
        encoder, _ = _tone_encoder(name, specs[name].root, clip, frontend)
        res = run_linear_probe([specs[name]], encoder, frontend, C=1.0, batch_size=16)[name]
        assert res["mean"] == 1.0, name
    res = run_linear_probe([specs["esc50"]], NoiseEncoder(32), frontend, C=1.0, batch_size=16)["esc50"]
    p = 1 / len(ESC50_CLASSES)
    assert abs(res["mean"] - p) <= 3 * math.sqrt(p * (1 - p) / res["n"])


def test_report_has_paper_rows_ours_and_provenance(esc50_root, us8k_root, tiny_nets, tmp_path):
    clip, frontend = tiny_nets
    spec = _specs(esc50_root, us8k_root, frontend)["esc50"]
    encoder, _ = _tone_encoder("esc50", spec.root, clip, frontend)
    results = run_zero_shot([spec], encoder, frontend, clip, batch_size=16)
    prov = {"tiny": True, "weights": {"audio encoder": "stand-in"}, "frontend": "logmel", "clip_preprocess": "clip"}
    paths = save_report(classification_report("zeroshot", "Zero-shot", results, prov), tmp_path)
    md = paths[0].read_text()
    assert "| ours zero-shot (paper) | 57.8 | 45.7 |" in md
    assert "| **this run** | 100.0 | not run |" in md
    assert "preset=tiny" in md and f"ESC-50 at {spec.root}, folds 1,2,3,4,5: 40 clips" in md
    data = json.loads(paths[1].read_text())
    assert data["ours"]["esc50"]["mean"] == 1.0 and data["paper"]["ours zero-shot"]["esc50"] == pytest.approx(0.578)
    assert set(data["ours"]["esc50"]["per_fold"]) == {"1", "2", "3", "4", "5"}


class _ListDataset(torch.utils.data.Dataset):
    """Items as the readers return them; item 2 stands for an unreadable clip that the
    reader replaced by the next readable one (index 3)."""

    name = "list"

    def __init__(self, n=6):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        j = 3 if i == 2 else i
        return {
            "wav": torch.full((160,), float(j)),
            "text": "",
            "label": j,
            "class_name": str(j),
            "image": None,
            "key": f"k{j}",
            "index": j,
        }


class _MeanEncoder(torch.nn.Module):
    def forward(self, mel):
        return torch.stack([mel.flatten(1).mean(1), torch.ones(mel.shape[0])], dim=1)


def test_encode_dataset_counts_each_clip_once():
    emb, labels, keys = encode_dataset(_ListDataset(), _MeanEncoder(), lambda wav: wav[:, None, None, :], batch_size=4)
    assert keys == ["k0", "k1", "k3", "k4", "k5"]
    assert labels.tolist() == [0, 1, 3, 4, 5]
    assert torch.allclose(emb.norm(dim=-1), torch.ones(5))  # returned normalised
    assert torch.allclose(emb[:, 0] / emb[:, 1], torch.tensor([0.0, 1, 3, 4, 5]))
