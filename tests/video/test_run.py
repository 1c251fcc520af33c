"""``run_video`` end to end with ``preset=tiny`` (in process, networks built once): the mp4
(H.264 yuv420p + AAC, frame count and duration), the reactive motion against a sound that
is silent and then loud, silence, and every bad input refused before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sound2img.cli import compose, to_object
from sound2img.errors import UserInputError
from sound2img.factory import Networks
from sound2img.video.render import AUDIO_RATE
from sound2img.video.run import run_video

SR = 16000


def write_wav(path: Path, *parts: tuple[str, float]) -> Path:
    """Concatenated ("silence" | "noise" | "chirp", seconds) parts at 16 kHz."""
    g = np.random.default_rng(0)
    out = []
    for kind, seconds in parts:
        n = int(round(seconds * SR))
        t = np.arange(n) / SR
        out.append(
            np.zeros(n) if kind == "silence" else 0.5 * g.standard_normal(n) if kind == "noise"
            else 0.4 * np.sin(2 * np.pi * (300 + 400 * t) * t)
        )  # fmt: skip
    sf.write(str(path), np.concatenate(out).astype(np.float32), SR)
    return path


@pytest.fixture(scope="module")
def nets():
    return Networks("cpu")  # networks built by the first run, shared by the rest (as the web app does)


def make(nets, out: Path, sound: Path | str, *overrides: str) -> Path:
    cfg = compose(
        "video",
        [
            "preset=tiny",
            f"edit.audio=[{sound}]",
            f"out={out}",
            "manipulate.steps=3",
            "video.keyframe_steps=2",
            "progress=false",
            "device=cpu",
            *overrides,
        ],
    )
    return run_video(to_object(cfg), nets=nets)


def decode(path: Path) -> tuple[dict, np.ndarray]:
    import av

    with av.open(str(path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        info = {
            "duration": c.duration / 1e6,
            "video": (v.codec_context.name, v.codec_context.pix_fmt, v.width, v.height),
            "video_duration": float(v.duration * v.time_base),
            "audio": (a.codec_context.name, a.sample_rate),
        }
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    return info, frames


def test_the_mp4_holds_h264_and_the_sound_with_the_sounds_duration(nets, tmp_path):
    sound = write_wav(tmp_path / "chirp.wav", ("chirp", 2.6))
    out = make(nets, tmp_path / "v", sound, "video.fps=6", "video.keyframe_seconds=1")
    assert sorted(p.name for p in out.iterdir()) == ["contact_sheet.png", "keyframes.pt", "metrics.json", "video.mp4"]
    info, frames = decode(out / "video.mp4")
    n = round(2.6 * 6)  # 15.6 → 16 (not 15: rounded, not cut)
    assert frames.shape == (n, 32, 32, 3)
    assert info["video"] == ("h264", "yuv420p", 32, 32) and info["audio"] == ("aac", AUDIO_RATE)
    assert info["video_duration"] == n / 6
    # the container lasts as long as its longer stream: the sound (up to one AAC frame of
    # padding more) or the frames (round(D·fps)/fps: up to half a frame more)
    assert info["duration"] == pytest.approx(max(2.6 + 1024 / AUDIO_RATE, n / 6), abs=1024 / AUDIO_RATE + 1e-3)
    m = json.loads((out / "metrics.json").read_text())
    assert m["video"]["frames"] == n and len(m["keyframes"]) == 4  # round(2.6 / 1) = 3 intervals
    assert [k["time_s"] for k in m["keyframes"]] == pytest.approx([0, 2.6 / 3, 5.2 / 3, 2.6])
    assert m["keyframes"][0]["cosine_start"] == pytest.approx(m["keyframes"][0]["cosine_source"], abs=1e-5)
    saved = torch.load(out / "keyframes.pt", weights_only=True)
    assert saved["ws"].shape == (4, 8, 64) and m["warnings"] == [] and m["resumed_keyframes"] == 0


def test_reactive_frames_change_where_the_sound_is_loud_and_not_where_it_is_silent(nets, tmp_path):
    sound = write_wav(tmp_path / "late.wav", ("silence", 3.0), ("noise", 2.0))
    # crf 0: lossless H.264, so the decoded frames are the rendered ones (after the
    # deterministic RGB → yuv420p conversion): the encoder adds no change of its own
    out = make(nets, tmp_path / "v", sound, "video.mode=reactive", "video.fps=6", "video.crf=0")
    _, frames = decode(out / "video.mp4")
    change = np.abs(np.diff(frames.astype(np.float64), axis=0)).mean(axis=(1, 2, 3))  # frame i → i+1
    silent, loud = change[: 3 * 6 - 2], change[3 * 6 + 1 :]  # transitions well inside each part
    assert silent.max() == 0  # the same latent, frame after frame
    assert loud.min() > 5  # grey levels of 255, on average over the frame
    assert not (out / "keyframes.pt").exists()  # reactive alone has no keyframes


def test_a_silent_sound_gives_a_still_video_and_a_warning(nets, tmp_path):
    sound = write_wav(tmp_path / "quiet.wav", ("silence", 1.0))
    out = make(nets, tmp_path / "v", sound, "video.fps=4")
    _, frames = decode(out / "video.mp4")
    assert len(frames) == 4 and np.abs(np.diff(frames.astype(np.int16), axis=0)).max() <= 1
    m = json.loads((out / "metrics.json").read_text())
    assert m["keyframes"] == [] and len(m["warnings"]) == 1 and "silent" in m["warnings"][0]


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_every_bad_input_is_one_line_and_writes_nothing(nets, tmp_path):
    chirp = write_wav(tmp_path / "chirp.wav", ("chirp", 2.0))
    (tmp_path / "notes.wav").write_text("this is not a sound\n" * 20)
    done = make(nets, tmp_path / "done", chirp, "video.mode=reactive", "video.fps=2")
    other = tmp_path / "other"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    cases = {
        "not a sound": (tmp_path / "notes.wav", ["out=" + str(tmp_path / "a")], "not a readable audio file"),
        "too long": (chirp, ["video.max_seconds=1.5", f"out={tmp_path / 'b'}"], "over video.max_seconds=1.5"),
        "two sources": (chirp, ["edit.seeds=[1,2]", f"out={tmp_path / 'c'}"], "a video has one source"),
        "finished output": (chirp, [f"out={done}"], "holds a finished video (pass --overwrite"),
        "foreign output": (chirp, [f"out={other}"], "already exists and is not empty"),
    }
    before = tree(tmp_path)
    for name, (sound, overrides, message) in cases.items():
        with pytest.raises(UserInputError) as info:
            make(nets, tmp_path / "unused", sound, *overrides)
        assert message in str(info.value) and "\n" not in str(info.value), name
    assert tree(tmp_path) == before


def test_keyframes_of_another_run_are_not_resumed(nets, tmp_path):
    chirp = write_wav(tmp_path / "chirp.wav", ("chirp", 1.0))
    first = make(nets, tmp_path / "v", chirp, "video.fps=2", "video.mode=semantic")
    (first / "metrics.json").unlink()  # as if killed after its keyframes: resumable...
    (first / "video.mp4").unlink()
    (first / "contact_sheet.png").unlink()
    kept = (first / "keyframes.pt").read_bytes()
    with pytest.raises(UserInputError, match="was made from another sound, source or settings"):
        make(nets, tmp_path / "v", chirp, "video.fps=2", "video.mode=semantic", "edit.seeds=[4]")
    assert (first / "keyframes.pt").read_bytes() == kept and sorted(p.name for p in first.iterdir()) == ["keyframes.pt"]
    # ...by a run with the same sound, source and keyframe settings (the frame rate is free)
    again = make(nets, tmp_path / "v", chirp, "video.fps=3", "video.mode=semantic")
    assert json.loads((again / "metrics.json").read_text())["resumed_keyframes"] == 2
