"""The librosa (+ OpenCV) pipelines that the torch front ends must reproduce, one clip at a
time in numpy. They define "the same settings" for the tests and the speed benchmarks
(which run outside pytest and load this file by its path); nothing in the package calls
them. OpenCV is a dev dependency, imported here."""

from __future__ import annotations

import librosa
import numpy as np


def reference_mel_power(y: np.ndarray, spec: dict) -> np.ndarray:
    """``librosa.feature.melspectrogram`` with the front end's settings: ``[n_mels, T]``
    (the legacy front end pads by reflection, as librosa 0.8.1 did)."""
    return librosa.feature.melspectrogram(
        y=np.asarray(y, dtype=np.float32),
        sr=spec["sample_rate"],
        n_fft=spec["n_fft"],
        hop_length=spec["hop_length"],
        win_length=spec["win_length"],
        window="hann",
        center=True,
        pad_mode="reflect" if spec["name"] == "soundclip_legacy" else "constant",
        power=2.0,
        n_mels=spec["n_mels"],
        fmin=spec["f_min"],
        fmax=spec["f_max"],
        htk=spec["mel_scale"] == "htk",
        norm=spec["mel_norm"],
    )


def reference_logmel(y: np.ndarray, spec: dict, start: int | None = None) -> np.ndarray:
    """``wav [S]`` → ``[1, n_mels, T]``: mel power, then ``np.log(S + log_offset)`` (``ln``) or
    ``librosa.power_to_db(S, ref=1.0, amin=log_offset, top_db=None)`` (``db``); with
    ``num_frames``, frames ``[start, start + num_frames)`` (centre by default) padded at the
    end with the log of silence."""
    S = reference_mel_power(y, spec)
    if spec["log"] == "ln":
        out, silence = np.log(S + np.float32(spec["log_offset"])), np.log(np.float32(spec["log_offset"]))
    else:
        out = librosa.power_to_db(S, ref=1.0, amin=spec["log_offset"], top_db=None)
        silence = 10.0 * np.log10(spec["log_offset"])
    if spec.get("num_frames") is not None:
        out = _crop(out, spec["num_frames"], silence, start)
    return out[None].astype(np.float32)


def reference_soundclip_legacy(y: np.ndarray, spec: dict, start: int | None = None) -> np.ndarray:
    """The authors' input (docs/method.md §5.2): ``[1, n_mels, H*W/n_mels]``, i.e. ``[1,128,512]``."""
    import cv2

    S = reference_mel_power(y, spec)
    d = librosa.power_to_db(S, ref=np.max, amin=spec["amin"], top_db=spec["top_db"]) / spec["top_db"] + 1
    d = _crop(d, spec["num_frames"], 0.0, start)
    img = cv2.resize(d, (spec["resize_width"], spec["resize_height"]))  # dsize is (width, height)
    return img.reshape(1, spec["n_mels"], -1)


def reference_frontend(y: np.ndarray, spec: dict, start: int | None = None) -> np.ndarray:
    """Dispatch on ``spec["name"]`` (a front end's ``spec()``)."""
    fn = {"logmel": reference_logmel, "soundclip_legacy": reference_soundclip_legacy}[spec["name"]]
    return fn(y, spec, start)


def _crop(x: np.ndarray, n: int, pad_value: float, start: int | None) -> np.ndarray:
    T = x.shape[1]
    if T >= n:
        s = (T - n) // 2 if start is None else start
        return x[:, s : s + n]
    return np.pad(x, ((0, 0), (0, n - T)), constant_values=pad_value)
