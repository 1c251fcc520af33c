"""Video frames with PyAV: the *middle* frame of a clip (by timestamp), the image the paper
pairs with each VGGSound clip for its a↔v term (docs/method.md §1.3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sound2img.data.base import SampleReadError


def _import_av():
    try:
        import av
    except ImportError as exc:  # the dependency is declared; say which one is missing
        raise SampleReadError("reading video needs PyAV: pip install av") from exc
    return av


def read_middle_frame(path: str | Path) -> torch.Tensor:
    """The frame shown at half the clip's duration → ``img [3,H,W] uint8`` RGB.

    Seeks to the key frame before ``duration/2`` and decodes forward to the last frame that
    starts at or before it (frame ``N//2`` of ``N`` evenly spaced frames)."""
    av = _import_av()
    path = str(path)
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise SampleReadError(f"{path}: no video stream")
            stream = container.streams.video[0]
            start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
            middle = start + _duration_seconds(container, stream) / 2.0
            if stream.time_base is not None and middle > 0:
                container.seek(int(middle / stream.time_base), stream=stream, backward=True, any_frame=False)
            chosen = None
            for frame in container.decode(stream):
                if chosen is not None and frame.time is not None and frame.time > middle + 1e-6:
                    break  # ``chosen`` is on screen at ``middle``
                chosen = frame
    except SampleReadError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise SampleReadError(f"{path}: cannot decode video ({exc})") from exc
    if chosen is None:
        raise SampleReadError(f"{path}: no decodable video frame")
    rgb = chosen.to_ndarray(format="rgb24")  # [H,W,3] uint8
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).contiguous()


def _duration_seconds(container, stream) -> float:
    """Stream duration, else the container's, else 0 (then the first frame is used)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000.0  # av.time_base: microseconds
    return 0.0
