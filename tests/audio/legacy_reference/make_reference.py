"""Reference arrays for the ``soundclip_legacy`` input, computed by the authors' pinned
environment itself (their env.yaml: librosa 0.8.1, resampy 0.2.2, numpy 1.20.3, scipy
1.7.3, numba 0.54.1, OpenCV 4.5.5.62). Not part of the test run: run it once, in a
scratch virtual environment, and commit the .npz it writes.

    python3.9 -m venv ../ref-venv                      # a scratch venv beside the checkout
    ../ref-venv/bin/pip install numpy==1.20.3 scipy==1.7.3 llvmlite==0.37.0 numba==0.54.1 \\
        resampy==0.2.2 librosa==0.8.1 soundfile==0.10.3.post1 opencv-python-headless==4.5.5.62
    ../ref-venv/bin/python tests/audio/legacy_reference/make_reference.py            # the generated sounds
    ../ref-venv/bin/python tests/audio/legacy_reference/make_reference.py --full \\
        --out clips.npz clip1.wav clip2.wav                                       # any files

(pip warns that opencv-python-headless 4.5.5.62 was yanked; it installs, and is the build
their env.yaml names, without the GUI.) For each sound: ``y, sr = librosa.load(path, sr=44100)`` (for a file over 60 s, the centre
window manipulate.py reads), then the authors' inference code (their
optimization/run_optimization.py) with the centre crop where theirs draws a random one.
The same computation in float64 (``librosa.load(dtype=np.float64)``: resampy then sums in
float64; complex128 STFT; cv2.resize in double) gives each reference's own rounding error,
from which the tests take their tolerance. Stored per case: the PCM's sha256 (generated
sounds), the wave's length and three 1024-sample windows of it (start, middle, end), the
encoder input (image columns 0-7, 120-127 and every 4th, or all of it with ``--full``), and
the float32-vs-float64 differences; ``versions`` records the libraries and the machine.
For three of the sounds also what AudioCLIP's UrbanSound8K reader gives its model (two
channels, three 1024-sample windows; librosa 0.7.2, which AudioCLIP pins, resamples as 0.8.1).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sounds  # noqa: E402  (beside this file; numpy only)

RATE, N_MELS, FRAMES, HEIGHT = 44100, 128, 864, 512
WINDOW = 1024  # samples per stored stretch of the wave
# the seconds of audio 864 frames cover (guidance.sound_window_seconds for soundclip_legacy)
WINDOW_SECONDS = ((FRAMES - 1) * 512 + 2048) / RATE


def stored_columns() -> np.ndarray:
    """Which of the 128 columns of the resized 512×128 image are stored (the first and last
    frames' columns, where STFT padding shows, and every 4th)."""
    c = np.arange(N_MELS)
    return (c < 8) | (c >= N_MELS - 8) | (c % 4 == 0)


def authors_input(y: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Their run_optimization.py from the wave on (centre crop for their random one):
    ``[1, 128, 512]``, float32 as their ``.float()`` (``dtype`` float64 for the twin)."""
    import cv2
    import librosa

    spec = librosa.feature.melspectrogram(y=y, sr=RATE, n_mels=N_MELS)
    spec = librosa.power_to_db(spec, ref=np.max) / 80.0 + 1
    zero = np.zeros((N_MELS, FRAMES))
    w = spec.shape[1]
    if w >= FRAMES:
        j = (w - FRAMES) // 2
        spec = spec[:, j : j + FRAMES]
    else:
        zero[:, :w] = spec[:, :w]
        spec = zero
    spec = cv2.resize(spec, (N_MELS, HEIGHT))
    return np.array([spec]).reshape((1, N_MELS, HEIGHT)).astype(dtype)


def load_window(path: str) -> dict:
    """librosa.load's arguments for ``path``: the whole file, or for a file over 60 s (and
    twice the window) the centre window, as manipulate.py reads it."""
    import soundfile as sf

    info = sf.info(path)
    duration = info.frames / info.samplerate
    if duration > max(sounds.FULL_FILE_SECONDS, 2 * WINDOW_SECONDS):
        return {"offset": (duration - WINDOW_SECONDS) / 2, "duration": WINDOW_SECONDS}
    return {}


def reference(path: str, full: bool) -> dict:
    import librosa

    crop = load_window(path)
    y32, _ = librosa.load(path, sr=RATE, **crop)
    y64, _ = librosa.load(path, sr=RATE, dtype=np.float64, **crop)
    x32, x64 = authors_input(y32), authors_input(y64, np.float64)
    n, mid = y32.shape[0], max(0, y32.shape[0] // 2 - WINDOW // 2)
    keep = np.ones(N_MELS, bool) if full else stored_columns()
    mask = keep[np.arange(N_MELS * HEIGHT) % N_MELS]
    return {
        "wave_length": np.int64(n),
        "wave_start": y32[:WINDOW],
        "wave_middle": y32[mid : mid + WINDOW],
        "wave_end": y32[-WINDOW:],
        "input": x32.reshape(-1)[mask],
        "own_error_wave": np.float64(np.abs(y32.astype(np.float64) - y64).max()),
        "own_error_input": np.float64(np.abs(x32.astype(np.float64) - x64).max()),
        "offset": np.float64(crop.get("offset", 0.0)),
        "duration": np.float64(crop.get("duration", 0.0)),
    }


def audioclip_us8k(path: str) -> np.ndarray:
    """AudioCLIP's UrbanSound8K reader (utils/datasets/us8k.py ``_load_worker`` with
    ``sample_rate=44100, mono=False``) and its test-time ``RandomPadding(176400,
    train=False)`` (written here in numpy; theirs is torch): ``[2, 176400]`` float32."""
    import librosa
    import soundfile as sf

    wav, sr = sf.read(path, dtype="float32", always_2d=True)
    if wav.shape[1] == 1:  # librosa 0.8.1 refuses a [1, S] array, 0.7.2 resampled it as this row
        wav = librosa.resample(wav[:, 0], sr, RATE)[None]
    else:
        wav = librosa.resample(wav.T, sr, RATE)
    if wav.shape[0] == 1:
        wav = np.concatenate((wav, wav), axis=0)
    wav = wav[:, : RATE * 4]
    old_min, old_max = wav.min(), wav.max()
    wav = (((wav - old_min) * (32767.0 - -32768.0)) / (old_max - old_min)) + -32768.0
    wav = wav.astype(np.float32)
    out_len = RATE * 4
    if wav.shape[-1] < out_len:
        left = int(round(0.5 * (out_len - wav.shape[-1])))
        right = out_len - (left + wav.shape[-1])
        first, last = wav[..., 0].astype(np.float32).mean(), wav[..., -1].astype(np.float32).mean()
        wav = np.concatenate(
            [np.full((wav.shape[0], left), first, np.float32), wav, np.full((wav.shape[0], right), last, np.float32)],
            axis=-1,
        )
    return wav


def versions() -> dict:
    import cv2
    import librosa
    import llvmlite
    import numba
    import resampy
    import scipy
    import soundfile

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "librosa": librosa.__version__,
        "resampy": resampy.__version__,
        "numba": numba.__version__,
        "llvmlite": llvmlite.__version__,
        "soundfile": soundfile.__version__,
        "opencv": cv2.__version__,
        "machine": f"{platform.system()} {platform.machine()} {platform.processor()}".strip(),
    }


def main() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="sound files (default: the generated sounds of sounds.py)")
    parser.add_argument("--out", default=os.path.join(here, "legacy_input.npz"))
    parser.add_argument("--full", action="store_true", help="store the whole encoder input")
    args = parser.parse_args()
    import librosa

    if librosa.__version__ != "0.8.1":
        print(f"needs librosa 0.8.1 (found {librosa.__version__}); see the docstring", file=sys.stderr)
        return 2
    arrays = {"versions": np.array(json.dumps(versions())), "columns": stored_columns()}
    with tempfile.TemporaryDirectory() as tmp:
        items = [(os.path.splitext(os.path.basename(f))[0], f) for f in args.files]
        if not args.files:
            items = [(name, sounds.write_case(name, tmp)) for name in sounds.CASES]
        for name, path in items:
            for key, value in reference(path, args.full).items():
                arrays[f"{name}/{key}"] = value
            if not args.files:
                arrays[f"{name}/pcm_sha256"] = np.array(sounds.pcm_digest(sounds.make_pcm(name)[0]))
            if name in sounds.AUDIOCLIP_US8K_CASES:
                us8k = audioclip_us8k(path)
                mid = us8k.shape[1] // 2 - WINDOW // 2
                for part, values in (("start", us8k[:, :WINDOW]), ("middle", us8k[:, mid : mid + WINDOW])):
                    arrays[f"{name}/audioclip_us8k_{part}"] = values
                arrays[f"{name}/audioclip_us8k_end"] = us8k[:, -WINDOW:]
            print(name, {k: float(arrays[f"{name}/{k}"]) for k in ("own_error_wave", "own_error_input")})
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
