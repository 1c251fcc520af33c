"""The web app in a real browser (headless Chromium): ``demo.py preset=tiny`` on
127.0.0.1, driven by the page's elem_ids. Untrained networks: what is checked is the
plumbing (an edit runs, its files come back, errors and Stop leave a usable page)."""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import soundfile as sf

from sound2img.manipulation.outputs import EDIT_FILES

from .pagehelp import download_bytes, image_loaded, open_page, run_and_wait, set_number, status, upload_sound

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("sounds") / "chirp.wav"
    sr = 16000
    t = np.arange(3 * sr) / sr
    sf.write(str(path), (0.4 * np.sin(2 * np.pi * (300 + 400 * t) * t)).astype(np.float32), sr)
    return path


def test_an_edit_runs_and_the_zip_holds_the_cli_files(chromium, server, wav):
    page = open_page(chromium, server.url)
    upload_sound(page, wav)
    assert image_loaded(page, "mel")
    set_number(page, "steps", 3)
    text = run_and_wait(page)
    assert text.startswith("done:") and "3 steps" in text, text
    assert image_loaded(page, "result")
    files = zipfile.ZipFile(io.BytesIO(download_bytes(page, server.url)))
    assert sorted(files.namelist()) == sorted(EDIT_FILES)
    metrics = json.loads(files.read("metrics.json"))
    assert metrics["steps"] == 3 and metrics["edit"]["target"]["kind"] == "sound"
    assert len(metrics["losses"]["total"]) == 3
    page.close()
