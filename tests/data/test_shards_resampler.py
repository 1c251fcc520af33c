"""Shards hold audio resampled as the front end reads files: prepare_data.py with the
legacy front end stores resampy 0.2.2's kaiser_best output (load_audio's), records it in
the index, and a reader whose front end resamples otherwise is refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sound2img.audio.io import load_audio
from sound2img.data import build_dataset
from sound2img.data.base import DatasetError
from sound2img.data.shards import PCM_SCALE, ShardDataset, to_pcm16

from helpers import load_file_module

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "prepare_data.py"
SR = 44100


def test_legacy_shards_are_resampled_by_kaiser_best(tmp_path, fixtures):
    from test_shards import make_vggsound, prepare_argv  # the VGGSound tree of 16-kHz clips

    root, out = tmp_path / "vgg", tmp_path / "shards"
    keys = make_vggsound(root, fixtures, n=2)
    assert load_file_module(SCRIPT).main(prepare_argv(root, out, "audio=soundclip_legacy")) == 0
    index = json.loads((out / "index.json").read_text())
    assert index["resampler"] == "kaiser_best" and index["sample_rate"] == SR

    urls = [str(out / s["name"]) for s in index["shards"]]
    ds = ShardDataset(urls, sample_rate=SR, resampler="kaiser_best", num_samples=SR, crop="center", shuffle_buffer=0)
    ds.start(0)
    items = list(ds)
    assert sorted(it["key"] for it in items) == sorted(keys)
    by_key = {r.key: r for r in build_dataset("vggsound", root=str(root), sample_rate=SR, num_samples=SR).records}
    for it in items:
        full = load_audio(by_key[it["key"]].audio, SR, resampler="kaiser_best")
        offset = (full.shape[0] - SR) // 2
        expected = torch.from_numpy(to_pcm16(full[offset : offset + SR].numpy()).astype(np.float32) / PCM_SCALE)
        assert torch.equal(it["wav"], expected)
    with pytest.raises(DatasetError, match="resampled with kaiser_best but the front end reads audio with soxr_hq"):
        ShardDataset(urls, sample_rate=SR, resampler="soxr_hq")
