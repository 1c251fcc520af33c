"""The web app's engine without a browser: a page request becomes the config manipulate.py
would compose, runs through the same run_edit on shared networks, and bad values are
refused with the config's bounds."""

from __future__ import annotations

import dataclasses
import zipfile

import pytest

from sound2img.app.engine import EditRequest, Engine, summary_rows
from sound2img.cli import to_plain
from sound2img.errors import UserInputError
from sound2img.manipulation import command
from sound2img.manipulation.outputs import EDIT_FILES


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    # photos are projected in 20 steps here (the default, 500, would dominate these tests)
    overrides = ["preset=tiny", "edit.image_steps=20", f"app.work_dir={tmp_path_factory.mktemp('work')}"]
    return Engine(overrides, device="cpu")


def test_a_request_is_the_cli_config(engine, tmp_path):
    req = EditRequest(
        sound="tone:440",
        text="a red sky",
        mode="embedding mix",
        mix_weight=0.25,
        seed=7,
        steps=5,
        lr=0.05,
        lambda_sim=0.01,
        lambda_id=0.0,
    )
    ours = dataclasses.asdict(engine.edit_config(req, tmp_path / "out"))
    cli, _ = command.compose_from_args(
        [
            "preset=tiny",
            "--audio",
            "tone:440",
            "--text",
            "a red sky",
            "--mode",
            "embedding_mix",
            "--mix-weight",
            "0.25",
            "--seed",
            "7",
            "--steps",
            "5",
            "--lr",
            "0.05",
            "--lambda-sim",
            "0.01",
            "--lambda-id",
            "0",
            "--out",
            str(tmp_path / "out"),
            "--device",
            "cpu",
            "progress=false",
            "edit.image_steps=20",
        ]
    )
    cli = to_plain(cli)
    assert ours["app"] is None and cli["app"] is None  # the page's settings are not the edit's
    for key in ("edit", "manipulate", "generator", "clip", "encoder", "audio", "out", "device", "progress"):
        assert ours[key] == cli[key], key


@pytest.mark.parametrize(
    "change,match",
    [
        ({"steps": 10**6}, r"steps must be an integer in \[1, 1000\]"),
        ({"steps": 2.5}, r"steps must be an integer"),
        ({"lambda_sim": -0.1}, r"lambda_sim must be a number in \[0, 1\]"),
        ({"lr": float("nan")}, r"lr must be a number"),
        ({"seed": -1}, r"seed must be a whole number >= 0"),
        ({"mode": "text only", "text": "  "}, r"needs a text prompt"),
        ({"sound": None}, r"needs a sound"),
        ({"source": "latent file"}, r"needs a latent file"),
        ({"source": "photo"}, r"needs an image file"),
    ],
)
def test_bad_requests_are_refused_with_the_bounds(engine, tmp_path, change, match):
    req = EditRequest(**{"sound": "tone:440", "steps": 3, **change})
    with pytest.raises(UserInputError, match=match):
        engine.edit_config(req, tmp_path / "out")


def _photo(path, shift=0):
    import numpy as np
    from PIL import Image

    yy, xx = np.mgrid[:40, :48]
    Image.fromarray(np.stack([xx * 4 + shift, yy * 5, (xx + yy) * 2], -1).astype(np.uint8)).save(path)
    return str(path)


def test_a_photo_source_is_inverted_as_manipulate_image_does(engine, tmp_path):
    photo = _photo(tmp_path / "me.png")
    cfg = engine.edit_config(EditRequest(sound="tone:440", steps=3, source="photo", photo=photo), tmp_path / "o")
    assert list(cfg.edit.images) == [photo] and list(cfg.edit.seeds) == [] and list(cfg.edit.latents) == []
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(UserInputError, match="notes.png: not an image Pillow can read"):
        engine.edit_config(EditRequest(sound="tone:440", source="photo", photo=str(tmp_path / "notes.png")), tmp_path)


def test_a_photo_edit_runs_offline_reports_its_inversion_and_stops(engine, tmp_path, monkeypatch):
    """preset=tiny inverts with the pixel loss (no LPIPS download), reports every
    projection step, and a true return from the callback stops the inversion."""
    from sound2img.inversion.projector import InversionStopped

    monkeypatch.setenv("SOUND2IMG_OFFLINE", "1")
    monkeypatch.setenv("SOUND2IMG_CACHE", str(tmp_path / "cache"))
    seen = []
    req = EditRequest(sound="tone:440", steps=2, source="photo", photo=_photo(tmp_path / "me.png"))
    out = engine.run(req, on_invert=lambda stage, done, total: seen.append((stage, done, total)))
    assert out.metrics["edit"]["source"]["kind"] == "image" and out.metrics["steps"] == 2
    assert seen == [("projection", k, 20) for k in range(1, 21)]
    stopped = EditRequest(sound="tone:440", steps=2, source="photo", photo=_photo(tmp_path / "other.png", 9))
    with pytest.raises(InversionStopped) as exc:
        engine.run(stopped, on_invert=lambda stage, done, total: done >= 3)
    assert exc.value.steps_done == 3
    assert not list((tmp_path / "cache" / "inversions").glob("*/latent.pt"))[1:]  # only the first photo's


def test_runs_share_the_models_and_zip_the_cli_files(engine):
    first = engine.run(EditRequest(sound="tone:440", steps=3, seed=1))
    kept = dict(engine.nets._built)
    assert {k.split(":")[0] for k in kept} == {"encoder", "generator", "clip"}  # the first run built them here
    seen = []
    second = engine.run(
        EditRequest(sound="tone:440", text="a red sky", mode="layer mix", steps=2, seed=2),
        on_step=lambda done, img, cos: seen.append(done),
    )
    assert engine.nets._built.keys() == kept.keys() and all(engine.nets._built[k] is v for k, v in kept.items())
    assert seen == [1, 2]
    for outcome in (first, second):
        names = sorted(zipfile.ZipFile(outcome.zip_path).namelist())
        assert names == sorted(p.name for p in outcome.edit_dir.iterdir())
        assert set(EDIT_FILES) <= set(names)
    assert first.metrics["steps"] == 3 and second.metrics["edit"]["mode"] == "layer_mix"
    rows = dict((k, v) for k, v in summary_rows(second.metrics))
    assert {"cosine to the sound target", "cosine to the text target"} <= set(rows)


def test_mel_image_and_unreadable_sound(engine, tmp_path):
    assert engine.mel_png("tone:440").startswith(b"\x89PNG")
    bad = tmp_path / "x.wav"
    bad.write_text("not a sound")
    with pytest.raises(UserInputError, match="not a readable audio file"):
        engine.mel_png(str(bad))


@pytest.mark.slow  # imports Gradio (the page's error formatting)
def test_a_missing_weight_file_offline_is_one_line_with_url_and_path(tmp_path, monkeypatch):
    pytest.importorskip("gradio", reason="the page module needs the [demo] extra")
    from sound2img.app.page import _error_text

    monkeypatch.setenv("SOUND2IMG_OFFLINE", "1")
    monkeypatch.setenv("SOUND2IMG_CACHE", str(tmp_path / "cache"))
    engine = Engine(
        ["preset=tiny", "generator.name=soundclip_landscape", f"app.work_dir={tmp_path / 'w'}"], device="cpu"
    )
    with pytest.raises(UserInputError) as missing:
        engine.run(EditRequest(sound="tone:440", steps=1))
    line = _error_text(missing.value)
    assert line.startswith("error: ") and "\n" not in line
    assert "http" in line and str(tmp_path / "cache") in line
    # the engine still works afterwards
    assert engine.mel_png("tone:440").startswith(b"\x89PNG")


def test_random_networks_are_named(engine, tmp_path):
    """The page warns when its networks are untrained (every sound then gives much the same
    texture): preset=tiny makes all three random; the default models are trained weights."""
    assert engine.random_networks() == ["generator", "sound encoder", "CLIP"]
    assert Engine([f"app.work_dir={tmp_path}"], device="cpu").random_networks() == []
    assert Engine(["encoder.path=null", f"app.work_dir={tmp_path}"], device="cpu").random_networks() == [
        "sound encoder"
    ]


def test_stop_is_one_info_line_not_an_error(engine, caplog):
    from sound2img.manipulation.optimizer import EditStopped

    caplog.set_level("INFO", logger="sound2img.app.engine")
    with pytest.raises(EditStopped):
        engine.run(EditRequest(sound="tone:440", steps=50), on_step=lambda done, img, cos: done >= 2)
    records = [r for r in caplog.records if "stopped" in r.getMessage()]
    assert [r.levelname for r in records] == ["INFO"] and records[0].exc_info is None
    assert "stopped by the user after 2 steps" in records[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= 30]
