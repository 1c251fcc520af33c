"""The web app's "video" tab: a sound and a source in, ``scripts/video.py``'s video out,
through the same :func:`~sound2img.video.run.run_video` on the engine's shared networks,
with progress and Stop. Stable ``elem_id``s all start with ``video_``."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from sound2img.app.engine import Engine, zip_dir
from sound2img.errors import UserInputError

log = logging.getLogger(__name__)

VIDEO_MODES = ("both", "semantic", "reactive")
VIDEO_SOURCES = ("seed", "photo")


@dataclass
class VideoRequest:
    """One video as the page asks for it (paths are files the page received)."""

    sound: str | None = None  # a file path, sample:NAME or tone:HZ
    mode: str = "both"
    source: str = "seed"  # one of VIDEO_SOURCES
    seed: int = 0
    photo: str | None = None
    fps: int = 24
    keyframe_seconds: float = 1.0
    keyframe_steps: int = 50
    steps: int = 300  # the first keyframe's


def video_config(engine: Engine, req: VideoRequest, out: Path):
    """The ``video`` config of one request: the engine's config (its model groups and
    overrides, ``video.*`` included) with the request's values, as ``scripts/video.py``'s
    flags would set them."""
    if not req.sound:
        raise UserInputError("a video needs a sound: upload or record one, or pick a sample clip")
    if req.mode not in VIDEO_MODES:
        raise UserInputError(f"mode must be one of {', '.join(VIDEO_MODES)}, got {req.mode!r}")
    updates: dict[str, Any] = {
        "video.mode": req.mode,
        "video.fps": engine.check_number("fps", req.fps, integer=True),
        "video.keyframe_seconds": engine.check_number("keyframe_seconds", req.keyframe_seconds),
        "video.keyframe_steps": engine.check_number("keyframe_steps", req.keyframe_steps, integer=True),
        "edit.audio": [str(req.sound)],
        "edit.text": [],
        "edit.mode": "separate",
        "edit.latents": [],
        "manipulate.steps": engine.check_number("steps", req.steps, integer=True),
        "out": str(out),
        "overwrite": False,
        "progress": False,
        "device": str(engine.device),
    }
    if req.source == "seed":
        updates.update({"edit.seeds": [engine.check_seed(req.seed)], "edit.images": []})
    elif req.source == "photo":
        if not req.photo:
            raise UserInputError("source 'photo' needs an image file (JPEG, PNG, ...)")
        updates.update({"edit.seeds": [], "edit.images": [str(req.photo)]})
    else:
        raise UserInputError(f"source must be one of {', '.join(VIDEO_SOURCES)}, got {req.source!r}")
    return engine.request_config(updates)


class VideoPage:
    """The handlers of the video tab; one per server, sharing the edit page's engine."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.defaults = dataclasses.asdict(engine.config.video)
        self._stops: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._runs = itertools.count(1)

    def stop(self, request: gr.Request = None) -> None:
        """Ask the session's running video to stop (keyframes: at the next step; frames:
        after the batch being rendered)."""
        key = getattr(request, "session_hash", None) or ""
        with self._lock:
            event = self._stops.get(key)
        if event is not None:
            event.set()

    def make(self, req: VideoRequest, on_progress) -> tuple[Path, Path, dict]:
        """Run one request → (its video directory, a zip of it, its metrics.json)."""
        from sound2img.video.run import run_video

        n = next(self.engine._count)  # one numbering with the edits: folders never collide
        folder = self.engine.work_dir / f"video-{n:04d}"
        folder.mkdir()
        cfg = video_config(self.engine, req, folder / "video")
        log.info("video %d: start (%s)", n, req.mode)
        try:
            out = run_video(cfg, nets=self.engine.nets, on_progress=on_progress)
        finally:
            log.info("video %d: end", n)
        zip_path = zip_dir(out, folder / "video.zip")
        return out, zip_path, json.loads((out / "metrics.json").read_text(encoding="utf-8"))

    def run(
        self, sound, mode, source, seed, photo, fps, keyframe_seconds, keyframe_steps, steps, request: gr.Request = None
    ):
        """Generator of page updates. Outputs: status, video, contact sheet, metrics, download."""
        from sound2img.app.page import _error_text
        from sound2img.video.render import VideoStopped

        key = getattr(request, "session_hash", None) or ""
        tag = f" [video {next(self._runs)}]"
        req = VideoRequest(sound, mode, source, seed, photo, fps, keyframe_seconds, keyframe_steps, steps)
        stop = threading.Event()
        with self._lock:
            self._stops[key] = stop
        events: queue.Queue = queue.Queue()

        def on_progress(stage, done, total):
            events.put(("progress", stage, done, total))
            return stop.is_set()

        def work():
            try:
                events.put(("done", self.make(req, on_progress)))
            except BaseException as exc:  # noqa: BLE001 - every failure is reported in the page
                if not isinstance(exc, (UserInputError, VideoStopped)):
                    log.exception("video failed")
                events.put(("error", exc))

        thread = threading.Thread(target=work, name="sound2img-video", daemon=True)
        thread.start()
        keep = (gr.update(),) * 4
        yield ("starting…" + tag, *keep)
        try:
            while True:
                kind, *rest = events.get()
                if kind == "progress":
                    stage, done, total = rest
                    what = "optimiser steps of the keyframes" if stage == "keyframes" else "frames"
                    yield (f"running: {done}/{total} {what}{tag}", *keep)
                elif kind == "error":
                    exc = rest[0]
                    if isinstance(exc, VideoStopped):
                        kept = " (finished keyframes kept)" if exc.stage == "keyframes" else ""
                        text = f"stopped while making the {exc.stage}{kept}; no video written"
                    else:
                        text = _error_text(exc, sound, photo)
                    yield (text + tag, None, None, None, None)
                    return
                else:
                    out, zip_path, m = rest[0]
                    v = m["video"]
                    warn = f" · warning: {m['warnings'][0]}" if m["warnings"] else ""
                    yield (
                        f"done: {v['frames']} frames at {v['fps']} fps, {v['duration_s']:.1f} s{warn}{tag}",
                        str(out / "video.mp4"),
                        str(out / "contact_sheet.png"),
                        video_rows(m),
                        str(zip_path),
                    )
                    return
        finally:
            stop.set()  # a closed page stops the run too
            thread.join()
            with self._lock:
                if self._stops.get(key) is stop:
                    del self._stops[key]


def video_rows(m: dict[str, Any]) -> list[list[Any]]:
    """metrics.json → (quantity, value) rows for the page's table."""
    rows = [["mode", m["video"]["mode"]], ["frames", m["video"]["frames"]], ["keyframes", len(m["keyframes"])]]
    if m["keyframes"]:
        after = [k["cosine_after"] for k in m["keyframes"]]
        source = [k["cosine_source"] for k in m["keyframes"]]
        rows.append(["mean cosine to the windows, source", round(sum(source) / len(source), 4)])
        rows.append(["mean cosine to the windows, keyframes", round(sum(after) / len(after), 4)])
    if m.get("frames_per_s"):
        rows.append(["frames rendered per second", round(float(m["frames_per_s"]), 2)])
    rows += [[f"{k} (s)", round(float(t), 2)] for k, t in m["timings"].items()]
    return rows


def build_video_tab(engine: Engine, sample_choices: list[str], pick_sample) -> None:
    """The tab's components and events, inside the caller's ``gr.Tab``."""
    page = VideoPage(engine)
    b, d = engine.bounds, page.defaults
    with gr.Row():
        with gr.Column():
            sound = gr.Audio(
                label="sound (upload or record)",
                sources=["upload", "microphone"],
                type="filepath",
                elem_id="video_sound",
            )
            sample = gr.Dropdown(sample_choices, value=None, label="…or a sample clip", elem_id="video_sample")
            mode = gr.Radio(
                list(VIDEO_MODES),
                value=d["mode"],
                label="mode",
                elem_id="video_mode",
                info="semantic: keyframe edits towards the sound's windows; reactive: motion with its loudness",
            )
            source = gr.Radio(list(VIDEO_SOURCES), value="seed", label="source", elem_id="video_source")
            seed = gr.Number(value=0, precision=0, minimum=0, label="seed", elem_id="video_seed")
            photo = gr.Image(label="photo", type="filepath", elem_id="video_photo")
        with gr.Column():
            fps = gr.Slider(*b["fps"], value=d["fps"], step=1, label="frames per second", elem_id="video_fps")
            kf_s = gr.Slider(
                *b["keyframe_seconds"], value=d["keyframe_seconds"], label="seconds between keyframes",
                elem_id="video_keyframe_seconds",
            )  # fmt: skip
            kf_steps = gr.Slider(
                *b["keyframe_steps"], value=d["keyframe_steps"], step=1, label="steps per keyframe",
                elem_id="video_keyframe_steps",
            )  # fmt: skip
            steps = gr.Slider(
                *b["steps"], value=engine.defaults["steps"], step=1, label="steps of the first keyframe",
                elem_id="video_steps",
            )  # fmt: skip
            with gr.Row():
                run = gr.Button("Make video", variant="primary", elem_id="video_run")
                stop = gr.Button("Stop", variant="stop", elem_id="video_stop")
            status = gr.Textbox(label="status", interactive=False, elem_id="video_status")
    with gr.Row():
        video = gr.Video(label="video", interactive=False, elem_id="video_result")
        sheet = gr.Image(label="keyframes (contact sheet)", interactive=False, elem_id="video_sheet")
    metrics = gr.Dataframe(headers=["quantity", "value"], label="metrics", interactive=False, elem_id="video_metrics")
    download = gr.File(label="everything video.py writes (zip)", interactive=False, elem_id="video_download")

    sample.change(pick_sample, sample, [sound, status], concurrency_limit=None, concurrency_id="light")
    run.click(
        page.run,
        [sound, mode, source, seed, photo, fps, kf_s, kf_steps, steps],
        [status, video, sheet, metrics, download],
        concurrency_limit=engine.settings.concurrency,
        concurrency_id="edit",  # one device: videos and edits share its queue
    )
    stop.click(page.stop, None, None, queue=False)
