"""Frames → ``video.mp4`` (docs/formats.md §9): frames synthesised in batches and streamed to
an H.264 (yuv420p) encoder as they come, the sound encoded as AAC beside them and
interleaved by time, so memory does not grow with the sound's length."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import torch

from sound2img.errors import Sound2ImgError, UserInputError

AUDIO_RATE = 48000  # the AAC track's sample rate (the sound is decoded at it once more)
AUDIO_BITRATE = 128_000


class VideoStopped(Sound2ImgError):
    """A progress callback asked the run to stop, in ``stage`` (keyframes or frames) after
    ``done`` of its units; the finished keyframes stay in keyframes.pt (resumable)."""

    def __init__(self, stage: str, done: int):
        super().__init__(f"stopped in {stage} after {done}")
        self.stage, self.done = stage, done


def _av():
    try:
        import av
    except ImportError:  # a base dependency; a broken install says so in one line
        raise UserInputError("writing video needs PyAV: pip install av") from None
    return av


class VideoWriter:
    """An mp4 being written: ``write(frames)`` encodes uint8 frames [B,H,W,3] in order;
    ``close()`` flushes both encoders. The audio [S] (mono, float in [-1,1], ``AUDIO_RATE``)
    is encoded up to each written frame's time, so the file's packets interleave."""

    def __init__(self, path: str | os.PathLike, *, fps: int, width: int, height: int, crf: int, audio: np.ndarray):
        av = _av()
        if width % 2 or height % 2:
            raise UserInputError(f"H.264 in yuv420p needs an even frame size, got {width}×{height}")
        self.container = av.open(str(path), mode="w", format="mp4")
        self.video = self.container.add_stream("libx264", rate=Fraction(fps))
        self.video.width, self.video.height, self.video.pix_fmt = width, height, "yuv420p"
        self.video.codec_context.time_base = Fraction(1, fps)
        # x264's macroblock-tree lookahead read memory it had not written on small frames (32 px,
        # preset=tiny): the same frames gave different files from run to run. Without it the
        # encoding is a function of the frames (checked by tests/video/test_script.py), at the
        # cost of a few per cent of bitrate at the same quality.
        self.video.options = {"crf": str(crf), "x264-params": "mbtree=0"}
        self.audio = self.container.add_stream("aac", rate=AUDIO_RATE)
        self.audio.layout = "mono"
        self.audio.bit_rate = AUDIO_BITRATE
        self.fps, self.frames = fps, 0
        self._samples = np.asarray(audio, dtype=np.float32)  # clipped chunk by chunk: no second copy
        self._audio_done = 0

    def write(self, frames: np.ndarray) -> None:
        """frames uint8 [B,H,W,3], the next B frames of the video."""
        av = _av()
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = self.frames
            self.frames += 1
            self.container.mux(self.video.encode(frame))
        self._write_audio(min(len(self._samples), round(self.frames * AUDIO_RATE / self.fps)))

    def _write_audio(self, until: int) -> None:
        av = _av()
        step = 1 << 15
        while self._audio_done < until:
            chunk = np.clip(self._samples[self._audio_done : min(until, self._audio_done + step)], -1.0, 1.0)
            frame = av.AudioFrame.from_ndarray(chunk[None], format="flt", layout="mono")
            frame.sample_rate = AUDIO_RATE
            frame.pts = self._audio_done
            frame.time_base = Fraction(1, AUDIO_RATE)
            self._audio_done += len(chunk)
            self.container.mux(self.audio.encode(frame))

    def close(self) -> None:
        """Encode the rest of the sound, flush both encoders and finish the file."""
        try:
            self._write_audio(len(self._samples))
            self.container.mux(self.video.encode(None))
            self.container.mux(self.audio.encode(None))
        finally:
            self.container.close()


def render_video(
    writer: VideoWriter,
    latents: Callable[[int, int], torch.Tensor],  # (first frame, count) → ws [count,num_ws,w_dim]
    generator,                  # frozen G
    *,
    frames: int,                # frames of the video
    batch: int,                 # frames synthesised together
    noise_mode: str = "const",
    keep: set[int] = frozenset(),  # frames to return (the contact sheet's), as [3,H,W] in [-1,1]
    on_frames: Callable[[int], bool | None] | None = None,  # frames done → a true return stops
    progress: bool = False,
) -> tuple[dict[int, torch.Tensor], float]:  # fmt: skip
    """Synthesise every frame in order, ``batch`` at a time, into ``writer`` → (the kept
    frames, seconds spent). Only one batch of frames is ever in memory."""
    from sound2img.utils.images import to_uint8

    device = next(generator.parameters()).device
    kept: dict[int, torch.Tensor] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=frames, desc="frames", unit="frame", leave=False)
    t0 = time.perf_counter()
    for first in range(0, frames, batch):
        count = min(batch, frames - first)
        with torch.no_grad():
            img = generator.synthesis(latents(first, count).to(device), noise_mode=noise_mode).cpu()
        for i in range(count):
            if first + i in keep:
                kept[first + i] = img[i].clone()
        writer.write(to_uint8(img).permute(0, 2, 3, 1).numpy())
        if bar is not None:
            bar.update(count)
        if on_frames is not None and on_frames(first + count):
            raise VideoStopped("frames", first + count)
    if bar is not None:
        bar.close()
    return kept, time.perf_counter() - t0
