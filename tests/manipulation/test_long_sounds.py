"""A sound file of an edit reaches the soundclip_legacy front end as the authors' pipeline
reads it: power_to_db with ref = max over the WHOLE file, then the centre 864 frames —
for files up to 60 s. Held to librosa + OpenCV (helpers/reference.py)."""

from __future__ import annotations

import numpy as np
import pytest

from sound2img.audio.frontend import build_frontend
from sound2img.manipulation import guidance as tg

pytest.importorskip("cv2")
librosa = pytest.importorskip("librosa")
sf = pytest.importorskip("soundfile")

SR = 44100


def _forty_seconds(path):
    """40 s of quiet noise with a loud tone in the first 5 s: the file's peak lies outside
    the centre window, so a reference taken over the window alone would differ."""
    rng = np.random.default_rng(0)
    y = 0.01 * rng.standard_normal(40 * SR).astype(np.float32)
    t = np.arange(5 * SR) / SR
    y[: 5 * SR] += (0.8 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    sf.write(path, y, SR, subtype="FLOAT")
    return y


@pytest.mark.slow
def test_a_40_s_file_gives_the_authors_input(tmp_path):
    from helpers.reference import reference_soundclip_legacy

    path = tmp_path / "long.wav"
    _forty_seconds(path)
    fe = build_frontend("soundclip_legacy")
    wav = tg.load_sound(str(path), SR, max_seconds=tg.sound_window_seconds(fe))
    assert wav.shape[-1] == 40 * SR  # decoded whole
    ours = fe(wav[None].float())[0].numpy()
    y, _ = librosa.load(path, sr=SR)  # the authors' reader
    ref = reference_soundclip_legacy(y, fe.spec())
    assert ours.shape == ref.shape == (1, 128, 512)
    assert np.abs(ours - ref).max() <= 1e-3
    # beyond full_seconds only the centre window is read, and its own peak is the reference
    windowed = tg.load_sound(str(path), SR, max_seconds=tg.sound_window_seconds(fe), full_seconds=30)
    assert windowed.shape[-1] < 11 * SR
    assert np.abs(fe(windowed[None].float())[0].numpy() - ref).max() > 0.05
