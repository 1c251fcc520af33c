"""scripts/train_encoder.py and its config edge: --cfg job, preset=tiny end to end (the
encoder file it writes is what load_audio_encoder reads), run-directory protection,
one-line exit-2 errors, every experiment config composes and builds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from sound2img.audio.augment import build_augment
from sound2img.cli import compose
from sound2img.errors import UserInputError
from sound2img.models.audio_encoder import load_audio_encoder
from sound2img.training.checkpoint import load_latest_training_state
from sound2img.training.losses import ContrastiveLoss, LogitScale
from sound2img.training.metrics import MetricsLogger
from sound2img.training.run import effective_config, prepare_run_dir

from helpers import load_file_module

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "train_encoder.py"
EXPERIMENTS = sorted(p.stem for p in (ROOT / "configs" / "experiment").glob("*.yaml"))


def _main(argv):
    return load_file_module(SCRIPT).main(argv)


def test_cfg_job_prints_the_resolved_config(capsys):
    assert _main(["--cfg", "job", "--out", "somewhere", "preset=tiny", "loss.symmetric=false"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["run_dir"] == "somewhere" and cfg["tiny"] is True
    assert cfg["data"]["name"] == "synthetic" and cfg["train"]["max_steps"] == 6  # tiny_run applied
    assert cfg["loss"]["symmetric"] is False and cfg["encoder"]["arch"] == "tiny_cnn"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train.batch_sizee=3"], "config:"),
        (["--cfg", "job", "optim=rmsprop"], "config:"),
        (["--bogus"], "unrecognised argument"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, message, capsys):
    assert _main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err


def test_unset_dataset_root_is_a_user_error(tmp_path, capsys):
    assert _main(["--out", str(tmp_path / "run"), "experiment=paper"]) == 2
    err = capsys.readouterr().err.strip()
    assert "data.root" in err and "extra_data.audioset_balanced.root" in err and "\n" not in err
    assert not (tmp_path / "run").exists()


def test_bad_loss_setting_is_a_user_error(tmp_path, capsys):
    argv = ["--out", str(tmp_path / "run"), "preset=tiny", "loss.logit_scale=cosine", "train.progress=false"]
    assert _main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "loss.logit_scale must be one of learnable, fixed, legacy, got 'cosine'" in err and "\n" not in err
    assert not (tmp_path / "run").exists()  # refused at composition, before the run directory


def test_run_dir_is_never_overwritten_silently(tmp_path):
    run = tmp_path / "run"
    prepare_run_dir(run, "a: 1\n", resume=False, overwrite=False)
    assert (run / "config.yaml").read_text() == "a: 1\n"
    with pytest.raises(UserInputError, match="--resume .* --overwrite"):
        prepare_run_dir(run, "a: 2\n", resume=False, overwrite=False)
    (run / "checkpoints").mkdir()
    (run / "embedding_cache").mkdir()
    with pytest.warns(UserWarning, match="differs"):
        prepare_run_dir(run, "a: 2\n", resume=True, overwrite=False)
    assert (run / "config.yaml").read_text() == "a: 1\n"  # the record of the original run stays
    prepare_run_dir(run, "a: 2\n", resume=False, overwrite=True)
    assert (run / "config.yaml").read_text() == "a: 2\n"
    assert not (run / "checkpoints").exists() and (run / "embedding_cache").exists()


def test_wandb_missing_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb → ImportError
    with pytest.raises(UserInputError, match=r"sound2img\[wandb\]"):
        MetricsLogger(tmp_path, wandb_project="p")


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_builds(experiment):
    from omegaconf import OmegaConf

    from sound2img import factory
    from sound2img.training.optimizer import build_optimizer
    from sound2img.training.step import ContrastiveModel

    cfg = effective_config(compose("train_encoder", [f"experiment={experiment}"]))
    encoder, frontend = factory.build_encoder_from_cfg(cfg.encoder, cfg.audio, "cpu")
    assert encoder.arch == cfg.encoder.arch and frontend.spec()["name"] == cfg.audio.name
    augment = build_augment(**cfg.augment)
    loss = ContrastiveLoss(
        dict(cfg.loss.terms),
        symmetric=cfg.loss.symmetric,
        scale=LogitScale(cfg.loss.logit_scale, cfg.loss.logit_scale_init, cfg.loss.logit_scale_max),
    )
    opt = build_optimizer(ContrastiveModel(encoder, loss), OmegaConf.to_object(cfg.optim))
    wav = torch.randn(2, frontend.sample_rate)
    with torch.no_grad():
        mel = frontend.to_encoder_input(augment.mel(frontend.spectrogram(augment.wave(wav))))
        assert encoder(mel).shape == (2, cfg.encoder.embed_dim)
    assert cfg.train.batch_size == (320 if experiment == "authors_code" else 384)  # their released batch
    assert cfg.train.epochs == 50 and isinstance(opt, torch.optim.SGD)
    expected = {
        "paper": ({"at": 1, "av": 1, "aa": 1}, True, "learnable"),
        "ablation_no_aa": ({"at": 1, "av": 1, "aa": 0}, True, "learnable"),
        "ablation_one_directional": ({"at": 1, "av": 1, "aa": 1}, False, "learnable"),
        "legacy_scale": ({"at": 1, "av": 1, "aa": 1}, True, "legacy"),
        "soundclip_resnet18": ({"at": 1, "av": 0, "aa": 1}, True, "learnable"),
        "authors_code": ({"at": 0.5, "av": 0, "aa": 0.5}, True, "legacy"),
    }[experiment]
    assert (dict(cfg.loss.terms), cfg.loss.symmetric, cfg.loss.logit_scale) == expected
    if experiment == "authors_code":
        assert cfg.encoder.arch == "resnet18_legacy" and set(cfg.extra_data) == {
            "audioset_balanced",
            "audioset_unbalanced",
        }
    elif experiment == "soundclip_resnet18":
        assert cfg.audio.name == "soundclip_legacy" and cfg.encoder.arch == "resnet18_legacy"
        assert cfg.encoder.path is None and mel.shape[1:] == (1, 128, 512)
    else:
        assert cfg.encoder.arch == "resnet50" and set(cfg.extra_data) == {"audioset_balanced", "audioset_unbalanced"}


@pytest.mark.slow
def test_preset_tiny_trains_end_to_end(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, str(SCRIPT), "--out", str(run), "preset=tiny", "train.progress=false"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "trained 6 steps" in done.stdout
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["tiny"] is True and config["run_dir"] == str(run)

    encoder, frontend = load_audio_encoder(run / "encoder_final.safetensors")
    assert frontend.spec() == {**config["audio"]} and encoder.arch == "tiny_cnn"
    state, _ = load_latest_training_state(run / "checkpoints")
    assert state["step"] == 6
    trained = {k[len("encoder.") :]: v for k, v in state["student"].items() if k.startswith("encoder.")}
    saved = load_file(str(run / "encoder_final.safetensors"))
    assert saved.keys() == trained.keys() and all(torch.equal(saved[k], trained[k]) for k in saved)
    with torch.no_grad():
        emb = encoder(frontend(torch.randn(2, frontend.sample_rate)))
    assert emb.shape == (2, 32) and torch.isfinite(emb).all()

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert again.returncode == 2 and "already holds a run" in again.stderr
    resumed = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert torch.equal(load_file(str(run / "encoder_final.safetensors"))["head.weight"], saved["head.weight"])


def test_data_split_null_trains_on_both_splits(tmp_path):
    """``data.split=null`` (configs/data/vggsound.yaml: "null (both)") reaches the reader as
    None; dropping it applied the reader's default, the train split only."""
    from sound2img import factory
    from sound2img.cli import compose, to_object

    root = tmp_path / "vgg"
    (root / "video").mkdir(parents=True)
    rows = [("a", "train"), ("b", "train"), ("c", "test")]
    for ytid, _ in rows:
        (root / "video" / f"{ytid}_000010.mp4").write_bytes(b"")  # found, never decoded here
    (root / "vggsound.csv").write_text("".join(f"{y},10,rain,{s}\n" for y, s in rows))
    sizes = {}
    for split in ("null", "train", "test"):
        cfg = compose(
            "train_encoder", ["data=vggsound", f"data.root={root}", f"data.split={split}", "validation.data=null"]
        )
        train_set, _ = factory.build_training_sets(to_object(cfg), 16000, need_images=False)
        sizes[split] = len(train_set)
    assert sizes == {"null": 3, "train": 2, "test": 1}
