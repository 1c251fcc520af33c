"""The video tab without a browser: a page request becomes the config scripts/video.py
would compose (so both run the same run_video), and bad values are refused in one line."""

from __future__ import annotations

import dataclasses

import pytest

pytest.importorskip("gradio")

from sound2img.app.engine import Engine  # noqa: E402
from sound2img.app.video_tab import VideoRequest, video_config  # noqa: E402
from sound2img.cli import to_plain  # noqa: E402
from sound2img.errors import UserInputError  # noqa: E402
from sound2img.video import command  # noqa: E402


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return Engine(["preset=tiny", f"app.work_dir={tmp_path_factory.mktemp('work')}"], device="cpu")


def test_a_video_request_is_the_cli_config(engine, tmp_path):
    req = VideoRequest(
        sound="tone:440", mode="reactive", seed=5, fps=12, keyframe_seconds=2.0, keyframe_steps=7, steps=9
    )
    ours = dataclasses.asdict(video_config(engine, req, tmp_path / "out"))
    cli, _ = command.compose_from_args(
        "preset=tiny --audio tone:440 --mode reactive --seed 5 --fps 12 --keyframe-seconds 2 "
        f"--keyframe-steps 7 --steps 9 --out {tmp_path / 'out'} --device cpu progress=false".split()
    )
    cli = to_plain(cli)
    assert ours["app"] is None  # the page's settings stay out of the record
    assert ours == cli


@pytest.mark.parametrize(
    "change,message",
    [
        ({"sound": None}, "a video needs a sound"),
        ({"mode": "sideways"}, "mode must be one of both, semantic, reactive"),
        ({"fps": 500}, "fps must be an integer in [1, 60]"),
        ({"keyframe_seconds": 0}, "keyframe_seconds must be a number in [0.25, 10]"),
        ({"seed": -1}, "seed must be a whole number >= 0"),
        ({"source": "photo"}, "source 'photo' needs an image file"),
    ],
)
def test_a_bad_video_request_is_one_line(engine, tmp_path, change, message):
    req = VideoRequest(**{"sound": "tone:440", **change})
    with pytest.raises(UserInputError) as info:
        video_config(engine, req, tmp_path / "out")
    assert message in str(info.value) and "\n" not in str(info.value)
