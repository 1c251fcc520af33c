"""The edge between a composed ``video`` config and a video on disk (README "Sound to
video"): check every input first, build the frozen networks, embed the sound's windows,
optimise the keyframes (resuming from keyframes.pt), add the loudness-driven walk, render
and mux, then write the contact sheet and ``metrics.json`` (last: its presence means the
video is complete)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from sound2img.errors import UserInputError
from sound2img.manipulation import guidance
from sound2img.manipulation.optimizer import EditStopped
from sound2img.manipulation.run import EditPlan, check_options, image_sources, resolve_sources
from sound2img.utils.files import atomic_path, atomic_write_bytes, atomic_write_text, check_out_dir, remove_stale_temps
from sound2img.utils.versions import package_versions
from sound2img.video import keyframes as kf
from sound2img.video.envelope import SILENCE_PEAK, envelopes
from sound2img.video.motion import w_offsets, z_walk
from sound2img.video.render import AUDIO_RATE, VideoStopped, VideoWriter, render_video

MODES = ("both", "semantic", "reactive")
VIDEO_FILES = ("video.mp4", "keyframes.pt", "contact_sheet.png", "metrics.json")
# Test hook: seconds of sleep after each keyframes.pt update, so that the resume test can
# kill a run while it is certainly between two keyframes (never set by users).
TEST_DELAY_ENV = "SOUND2IMG_TEST_KEYFRAME_DELAY"
# video.* keys that change the keyframes (a resume must agree on them); the rest only
# change how the frames are made from them.
KEYFRAME_KEYS = ("keyframe_seconds", "keyframe_steps", "lambda_prev", "window_seconds", "batch_size")
MIN_SHEET_PX = 96  # contact-sheet thumbnails of smaller generators are enlarged (nearest) to this

if TYPE_CHECKING:
    from sound2img.config import ManipulateConfig, VideoOptions
    from sound2img.factory import Networks


@dataclass
class VideoInputs:
    """What a run works from, all checked and built before anything is written."""

    cfg: ManipulateConfig
    o: EditPlan  # manipulation.run.check_options' options
    v: VideoOptions  # the video section
    out: Path
    resume: bool  # out holds keyframes.pt of an interrupted run (to check against the fingerprint)
    wav: torch.Tensor  # [S] at the front end's rate
    sample_rate: int
    duration: float  # seconds
    frames: int  # round(duration × fps)
    warnings: list[str] = field(default_factory=list)


def check_video_options(cfg: ManipulateConfig) -> tuple[EditPlan, VideoOptions]:
    """(manipulation options, video section) of a config: one sound, one source."""
    v = cfg.video
    if v.mode not in MODES:
        raise UserInputError(f"video.mode must be one of {', '.join(MODES)}, got {v.mode!r}")
    if not cfg.edit.audio:
        raise UserInputError("a video needs a sound: give --audio (a file, sample:NAME or tone:HZ)")
    o = check_options(cfg)
    e = o.edit
    if len(e.audio) != 1 or e.text:
        raise UserInputError(f"a video follows one sound: give one --audio and no --text (got {len(e.audio)})")
    count = len(e.seeds) + len(e.latents) + len(e.images) + int(e.mean_latent)
    if count != 1:
        raise UserInputError(f"a video has one source: give one --seed, --latent or --image (got {count})")
    return o, v


def sound_seconds(spec: str) -> float:
    """The sound's length from its header (before decoding): a file, sample:NAME or tone:HZ."""
    from sound2img.audio.io import audio_info

    if spec.startswith("tone:"):
        return guidance.TONE_SECONDS
    if spec.startswith("sample:"):
        from sound2img.weights import resolve_weights

        return audio_info(resolve_weights("sample_" + spec[len("sample:") :])).duration
    return audio_info(spec).duration


def check_length(spec: str, seconds: float, limit: float) -> None:
    if seconds > limit:
        raise UserInputError(
            f"{spec} is {seconds:.1f} s long, over video.max_seconds={limit:g} (raise it or cut the sound)"
        )


def check_out_state(out: Path, overwrite: bool) -> bool:
    """Refuse an unusable ``out`` before any work; True when it holds only the keyframes.pt
    of an interrupted run (resumed if it was made from the same inputs and settings)."""
    check_out_dir(out, overwrite=True)  # a file, or not writable: refused even with --overwrite
    if overwrite or not out.is_dir():
        return False
    names = {p.name for p in out.iterdir() if not (p.name.startswith(".") and p.name.endswith(".tmp"))}
    if not names:
        return False
    if "metrics.json" in names:
        raise UserInputError(f"{out} holds a finished video (pass --overwrite to replace it)")
    if names == {"keyframes.pt"}:
        return True
    raise UserInputError(f"{out} already exists and is not empty (pass --overwrite to replace its files)")


def fingerprint(cfg: ManipulateConfig, wav: torch.Tensor, source_ws: torch.Tensor) -> str:
    """What the keyframes depend on: the networks, the objective, the keyframe settings,
    the decoded sound and the source latent (sha256)."""
    c = dataclasses.asdict(cfg)
    keys = {k: c[k] for k in ("generator", "encoder", "audio", "clip", "identity", "tiny", "manipulate")}
    keys["gain_db"] = cfg.edit.gain_db
    keys["video"] = {k: getattr(cfg.video, k) for k in KEYFRAME_KEYS}
    digest = hashlib.sha256(json.dumps(keys, sort_keys=True, default=str).encode())
    for t in (wav, source_ws):
        digest.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_inputs(cfg: ManipulateConfig, frontend) -> VideoInputs:
    """Check the options, the output directory and the sound (its length from the header
    first, then decoded whole at the front end's rate)."""
    o, v = check_video_options(cfg)
    out = Path(cfg.out or "outputs/video")
    resume = check_out_state(out, cfg.overwrite)
    spec = o.edit.audio[0]
    check_length(spec, sound_seconds(spec), v.max_seconds)
    sr = int(frontend.sample_rate)
    wav = guidance.load_sound(spec, sr)
    duration = wav.shape[0] / sr
    check_length(spec, duration, v.max_seconds)  # the header of a compressed file estimates
    frames = round(duration * v.fps)
    if frames < 1:
        raise UserInputError(f"{spec} is {duration * 1000:.1f} ms long: shorter than one frame at {v.fps} fps")
    return VideoInputs(cfg, o, v, out, resume, wav, sr, duration, frames)


def _progress_hooks(on_progress, total_steps: int):
    """An optimize_latents on_step that reports keyframe steps done across calls."""
    seen = {"base": 0, "last": 0}

    def on_step(done, img, cosine):
        if done < seen["last"]:  # a new optimize_latents call began
            seen["base"] += seen["last"]
        seen["last"] = done
        return on_progress("keyframes", seen["base"] + done, total_steps) if on_progress else None

    return on_step


def run_video(
    cfg: ManipulateConfig, *, progress: bool | None = None, nets: Networks | None = None, on_progress=None
) -> Path:
    """Make the video a ``video`` config describes; returns its directory.

    ``nets``: the caller's ``factory.Networks`` (the web app's), so networks are built
    once; without it a fresh one on ``cfg.device``.
    ``on_progress(stage, done, total)``: stage ``keyframes`` (optimiser steps) or
    ``frames``; a true return stops the run with ``VideoStopped`` (the finished keyframes
    stay in keyframes.pt, nothing else is written)."""
    from sound2img import factory

    t0 = time.perf_counter()
    check_video_options(cfg)  # before any network is built
    nets = factory.Networks(cfg.device) if nets is None else nets
    device = nets.device
    progress = cfg.progress if progress is None else progress
    noise_mode = cfg.generator.noise_mode

    encoder, frontend = nets.encoder(cfg.encoder, cfg.audio)
    inp = load_inputs(cfg, frontend)
    o, v, e = inp.o, inp.v, inp.o.edit
    G = nets.generator(cfg.generator)
    sources = image_sources(cfg, o, G, device, progress) + (
        resolve_sources(o, G, device) if (e.latents or e.mean_latent or e.seeds) else []
    )
    if len(sources) != 1:
        raise UserInputError(f"a video has one source; {e.latents[0]} holds {len(sources)} latents")
    source = sources[0]
    silent = float(inp.wav.abs().max()) < SILENCE_PEAK
    if silent:
        inp.warnings.append(
            f"the sound is silent (peak below {20 * np.log10(SILENCE_PEAK):.0f} dBFS): a still video of the source"
        )
    semantic = v.mode in ("semantic", "both") and not silent
    reactive = v.mode in ("reactive", "both") and not silent
    if inp.resume and not semantic:
        raise UserInputError(f"{inp.out} holds the keyframes of a semantic run (pass --overwrite to replace them)")
    audio_track = (
        inp.wav.numpy() if inp.sample_rate == AUDIO_RATE else guidance.load_sound(e.audio[0], AUDIO_RATE).numpy()
    )
    setup_s = time.perf_counter() - t0

    times = kf.keyframe_times(inp.duration, v.keyframe_seconds)
    state, records, resumed, keyframes_s = None, [], 0, 0.0
    if semantic:
        state, records, resumed, keyframes_s = make_keyframes(
            inp, source, times, encoder, frontend, G, nets, noise_mode, progress, on_progress
        )
    offsets, reactive_record = reactive_offsets(inp, frontend, G) if reactive else (None, None)
    del encoder
    source_cpu = source.ws.detach().cpu()

    def latents(first: int, count: int) -> torch.Tensor:
        t = torch.arange(first, first + count, dtype=torch.float64) / v.fps
        base = kf.interpolate(state.ws, times, t, v.interpolation) if semantic else source_cpu.expand(count, -1, -1)
        return base + offsets[first : first + count, None, :] if reactive else base

    sheet_times = times[kf.sheet_indices(len(times), v.sheet_frames)].tolist()
    keep = {kf.frame_of(t, v.fps, inp.frames): t for t in sheet_times}
    return write_video(inp, G, latents, keep, audio_track, noise_mode, progress, on_progress, metrics={
        "video": {
            "mode": v.mode,
            "semantic": semantic,
            "reactive": reactive,
            "fps": v.fps,
            "frames": inp.frames,
            "duration_s": inp.duration,
            "keyframe_spacing_s": float(times[1] - times[0]) if len(times) > 1 else inp.duration,
            "interpolation": v.interpolation,
            "codec": "H.264 yuv420p + AAC",
        },
        "sound": {"spec": e.audio[0], "sample_rate": inp.sample_rate, "duration_s": inp.duration},
        "source": source.info,
        "keyframes": records,
        "resumed_keyframes": resumed,
        "reactive": reactive_record,
        "warnings": inp.warnings,
        "timings": {"setup_s": setup_s, "keyframes_s": keyframes_s, "start": t0},
        "config": dataclasses.asdict(cfg),
        "device": str(device),
        "versions": package_versions(),
    })  # fmt: skip


def reactive_offsets(inp: VideoInputs, frontend, G) -> tuple[torch.Tensor, dict[str, float]]:
    """The loudness-driven walk (docs/method.md §10.3) as W offsets [N,w_dim], one per frame,
    and its record for metrics.json."""
    v = inp.v
    env = envelopes(inp.wav, frontend, fps=v.fps, num_frames=inp.frames, smooth_seconds=v.smooth_seconds)
    z0, z = z_walk(
        env["loudness"],
        env["onset"],
        z_dim=G.z_dim,
        fps=v.fps,
        pulse_strength=v.pulse_strength,
        motion_strength=v.motion_strength,
        motion_randomness=v.motion_randomness,
        seed=v.seed,
    )
    offsets = w_offsets(G.mapping, z0, z, float(inp.o.manipulate.truncation))
    return offsets, {
        "loudness_mean": float(env["loudness"].mean()),
        "onset_mean": float(env["onset"].mean()),
        "offset_norm_max": float(offsets.norm(dim=1).max()),
    }


def make_keyframes(inp, source, times, encoder, frontend, G, nets: Networks, noise_mode, progress, on_progress):
    """Embed the windows, then optimise (or resume) the keyframes → (state, per-keyframe
    records, keyframes resumed, seconds)."""
    from sound2img import factory

    cfg, o, v, device = inp.cfg, inp.o, inp.v, nets.device
    t0 = time.perf_counter()
    window = float(v.window_seconds or guidance.sound_window_seconds(frontend))
    bounds = kf.window_bounds(times, inp.duration, window)
    targets = kf.encode_windows(inp.wav, bounds, encoder, frontend, gain_db=o.edit.gain_db, device=device)
    clip = nets.clip(cfg.clip, encoder)
    identity = nets.identity(factory.identity_source(cfg)) if o.manipulate.lambda_id > 0 else None
    fp = fingerprint(cfg, inp.wav, source.ws)
    path = kf.keyframes_path(inp.out)
    state = kf.Keyframes(fp, times, torch.zeros(0, *source.ws.shape[1:]), torch.zeros(0), torch.zeros(0))
    if inp.resume:
        remove_stale_temps(path)
        state = kf.load_keyframes(path)
        if state.fingerprint != fp or state.times.shape != times.shape or state.done > len(times):
            raise UserInputError(
                f"{path} was made from another sound, source or settings (pass --overwrite to start again)"
            )
    resumed = state.done
    with torch.no_grad():
        src_img = G.synthesis(source.ws, noise_mode=noise_mode)
        cos_source = (clip.encode_image(src_img).cpu() * targets).sum(-1)
    first = o.manipulate.steps
    later = len(times) - max(state.done, 1)
    total_steps = (first if state.done == 0 else 0) + -(-later // v.batch_size) * v.keyframe_steps
    delay = float(os.environ.get(TEST_DELAY_ENV) or 0)

    def save(s):
        inp.out.mkdir(parents=True, exist_ok=True)
        kf.save_keyframes(path, s)
        if delay:
            time.sleep(delay)

    try:
        state = kf.optimize_keyframes(
            G,
            clip,
            source.ws,
            targets,
            state,
            optim=o.optim,
            keyframe_steps=v.keyframe_steps,
            lambda_prev=v.lambda_prev,
            batch_size=v.batch_size,
            identity=identity,
            noise_mode=noise_mode,
            save=save,
            on_step=_progress_hooks(on_progress, total_steps),
            progress=progress,
        )
    except EditStopped:
        raise VideoStopped("keyframes", state.done) from None
    records = [
        {
            "time_s": float(times[k]),
            "window_s": [float(bounds[k, 0]), float(bounds[k, 1])],
            "cosine_source": float(cos_source[k]),
            "cosine_start": float(state.cosine_start[k]),
            "cosine_after": float(state.cosine_after[k]),
        }
        for k in range(len(times))
    ]
    return state, records, resumed, time.perf_counter() - t0


def write_video(
    inp: VideoInputs, G, latents, keep: dict[int, float], audio, noise_mode, progress, on_progress, metrics
):
    """Render into video.mp4 (atomically), then contact_sheet.png, then metrics.json."""
    from sound2img.utils.images import contact_sheet_png

    v, out = inp.v, inp.out
    out.mkdir(parents=True, exist_ok=True)
    for name in VIDEO_FILES:
        remove_stale_temps(out / name)
    (out / "metrics.json").unlink(missing_ok=True)  # --overwrite: the old record goes first
    res = int(G.img_resolution)
    on_frames = (lambda done: on_progress("frames", done, inp.frames)) if on_progress else None
    with atomic_path(out / "video.mp4") as tmp:
        writer = VideoWriter(tmp, fps=v.fps, width=res, height=res, crf=v.crf, audio=audio)
        try:
            kept, render_s = render_video(
                writer, latents, G, frames=inp.frames, batch=v.render_batch, noise_mode=noise_mode,
                keep=set(keep), on_frames=on_frames, progress=progress,
            )  # fmt: skip
        finally:
            writer.close()
    order = sorted(kept)
    imgs = torch.stack([kept[f] for f in order])
    if res < MIN_SHEET_PX:
        imgs = torch.nn.functional.interpolate(imgs, scale_factor=-(-MIN_SHEET_PX // res), mode="nearest")
    labels = [f"{keep[f]:.1f} s" for f in order]
    atomic_write_bytes(out / "contact_sheet.png", contact_sheet_png(imgs, labels))
    timings = metrics["timings"]
    timings["render_s"] = render_s
    timings["total_s"] = time.perf_counter() - timings.pop("start")
    metrics["frames_per_s"] = inp.frames / render_s if render_s > 0 else None
    metrics["sheet"] = {"frames": order, "times_s": [keep[f] for f in order]}
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1, allow_nan=False) + "\n")
    return out
