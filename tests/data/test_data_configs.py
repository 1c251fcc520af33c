"""configs/data/*.yaml: every file names a registered reader, passes only arguments that
reader accepts, leaves dataset paths mandatory (???), and the synthetic one builds as is."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from sound2img.data import build_dataset, list_datasets
from sound2img.data.registry import DATASETS, _accepted_arguments

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "data").glob("*.yaml"))
PATH_KEYS = {"root", "manifest"}


def test_every_expected_config_exists():
    names = {p.stem for p in CONFIGS}
    assert {"vggsound", "audioset_balanced", "audioset_unbalanced", "esc50", "us8k", "manifest", "synthetic"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_matches_its_reader(path):
    cfg = OmegaConf.load(path)
    assert cfg.name in list_datasets()
    accepted = _accepted_arguments(DATASETS.get(cfg.name))
    assert set(cfg) - {"name"} <= accepted, set(cfg) - {"name"} - accepted
    for key in PATH_KEYS & set(cfg):
        assert OmegaConf.is_missing(cfg, key), f"{path.name}: {key} must be ??? (mandatory)"


def test_synthetic_config_builds_as_is():
    cfg = OmegaConf.to_container(OmegaConf.load(CONFIGS[[p.stem for p in CONFIGS].index("synthetic")]))
    ds = build_dataset(**cfg)
    assert len(ds) == cfg["num_classes"] * cfg["num_per_class"]
    assert ds[0]["wav"].shape == (cfg["num_samples"],)
