"""The web app in a real browser (headless Chromium): ``demo.py preset=tiny`` on
127.0.0.1, driven by the page's elem_ids. Untrained networks: what is checked is the
plumbing (an edit runs, its files come back, errors and Stop leave a usable page)."""

from __future__ import annotations

import io
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sound2img.manipulation.outputs import EDIT_FILES

from .conftest import WAIT_MS, start_server
from .pagehelp import (
    TERMINAL,
    download_bytes,
    image_loaded,
    open_page,
    run_and_wait,
    set_number,
    start_run,
    status,
    upload_sound,
    wait_status,
)

# one worker drives the browser tests, one after the other (make test runs several workers)
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]
# parameters + buffers of preset=tiny's generator, CLIP towers, encoder and front end
# (13.9 MiB, summed from the built modules); a second concurrent model set adds that
MODEL_COPY_MIB = 13.9


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("sounds") / "chirp.wav"
    sr = 16000
    t = np.arange(3 * sr) / sr
    sf.write(str(path), (0.4 * np.sin(2 * np.pi * (300 + 400 * t) * t)).astype(np.float32), sr)
    return path


def test_an_edit_runs_and_the_zip_holds_the_cli_files(chromium, server, wav):
    page = open_page(chromium, server.url)
    # preset=tiny: the page says that its networks are random (the same texture for every sound)
    assert "Random networks: generator, sound encoder, CLIP" in page.locator("#random_note").inner_text()
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


def test_a_text_file_as_sound_is_an_error_then_a_valid_edit_works(chromium, server, wav, tmp_path):
    page = open_page(chromium, server.url)
    # named .txt: the page itself refuses it (Gradio's file-type check), nothing is sent
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a sound\n" * 50)
    page.locator("#sound input[type=file]").set_input_files(str(notes))
    toast = page.locator("[data-testid=toast-body]").filter(has_text="Invalid file type")
    toast.first.wait_for()
    assert status(page).input_value() == ""
    # text named .wav reaches the server: its one-line message, in the status box
    fake = tmp_path / "fake.wav"
    fake.write_text("this is not a sound\n" * 50)
    upload_sound(page, fake)
    shown = status(page).input_value()
    assert shown.startswith("error: fake.wav: not a readable audio file"), shown
    set_number(page, "steps", 3)
    failed = run_and_wait(page)
    assert failed.startswith("error: fake.wav: not a readable audio file"), failed
    assert "Traceback" not in server.log.read_text()
    upload_sound(page, wav)
    assert run_and_wait(page).startswith("done:")
    assert image_loaded(page, "result")
    page.close()


def photo_file(path: Path) -> Path:
    from PIL import Image

    yy, xx = np.mgrid[:40, :48]
    Image.fromarray(np.stack([xx * 4, yy * 5, (xx + yy) * 2], -1).astype(np.uint8)).save(path)
    return path


def choose(page, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id}").get_by_text(option, exact=True).click()


def test_a_photo_that_is_not_a_picture_is_one_line_and_the_page_goes_on(chromium, server, wav, tmp_path):
    """The upload is a plain file the app reads itself: Gradio never rejects it first, and
    nothing of it sticks to later runs."""
    page = open_page(chromium, server.url)
    upload_sound(page, wav)
    fake = tmp_path / "holiday.png"
    fake.write_text("this is not a picture\n" * 50)
    page.locator("#photo input[type=file]").set_input_files(str(fake))
    assert wait_status(page, r"^(photo|error|internal error)") == "error: holiday.png: not an image Pillow can read"
    choose(page, "source", "photo")
    set_number(page, "steps", 3)
    failed = run_and_wait(page)
    assert failed.startswith("error: holiday.png: not an image Pillow can read"), failed
    choose(page, "source", "seed")
    assert run_and_wait(page).startswith("done:")
    assert image_loaded(page, "result")
    assert "Traceback" not in server.log.read_text()
    page.close()


@pytest.fixture(scope="module")
def long_server(tmp_path_factory):
    """Steps far beyond what could finish while a test acts (however fast the machine),
    for edits and for a photo's projection, and a queue of one waiting edit."""
    srv = start_server(
        tmp_path_factory.mktemp("long"),
        "app.bounds.steps=[1,1000000]",
        "edit.image_steps=1000000",
        "app.max_queue=1",
    )
    try:
        yield srv
    finally:
        srv.stop()


def start_long_edit(chromium, srv, wav):
    page = open_page(chromium, srv.url)
    upload_sound(page, wav)
    set_number(page, "steps", 1000000)
    page.locator("#run").click()
    wait_status(page, r"^running: step \d+/1000000")
    return page


def test_stop_ends_the_run_at_the_next_step_and_the_page_stays_usable(chromium, long_server, wav):
    page = start_long_edit(chromium, long_server, wav)
    page.locator("#stop").click()
    text = wait_status(page, r"^stopped after \d+ of 1000000 steps")
    assert int(text.split()[2]) < 1000000
    assert not list(long_server.work_dir.glob("edit-*/edit"))  # a stopped edit writes nothing
    log = long_server.log.read_text()  # Stop is one info line in the server log, not an error
    assert log.count("stopped by the user after") == 1 and "Traceback" not in log and "edit failed" not in log
    set_number(page, "steps", 3)
    assert run_and_wait(page).startswith("done:")
    assert image_loaded(page, "result")
    page.close()


def test_a_photo_inversion_shows_its_progress_and_stop_ends_it(chromium, long_server, wav, tmp_path):
    page = open_page(chromium, long_server.url)
    upload_sound(page, wav)
    page.locator("#photo input[type=file]").set_input_files(str(photo_file(tmp_path / "me.png")))
    wait_status(page, r"^photo: me\.png, 48x40$")
    assert image_loaded(page, "photo_preview")
    choose(page, "source", "photo")
    set_number(page, "steps", 3)
    written = set(long_server.work_dir.glob("edit-*/edit"))  # by earlier tests on this server
    page.locator("#run").click()
    wait_status(page, r"^inverting the photo: projection step \d+/1000000")
    page.locator("#stop").click()
    text = wait_status(page, r"^stopped while inverting the photo")
    assert "nothing written" in text, text
    assert set(long_server.work_dir.glob("edit-*/edit")) == written
    choose(page, "source", "seed")
    assert run_and_wait(page).startswith("done:")
    page.close()


def test_beyond_the_queue_the_page_says_busy(chromium, long_server, wav):
    running = start_long_edit(chromium, long_server, wav)
    waiting, extra = open_page(chromium, long_server.url), open_page(chromium, long_server.url)
    for page in (waiting, extra):
        upload_sound(page, wav)
        set_number(page, "steps", 3)
    waiting.locator("#run").click()
    waiting.locator("#status").get_by_text(re.compile("queue", re.I)).first.wait_for()  # it holds the one place
    extra.locator("#run").click()
    extra.locator("[data-testid=toast-body]").filter(has_text=re.compile("busy.*try again", re.I)).first.wait_for()
    running.locator("#stop").click()
    wait_status(running, r"^stopped after")
    assert wait_status(waiting, r"^(done|error)").startswith("done:")
    assert run_and_wait(extra).startswith("done:")  # and trying again works
    for page in (running, waiting, extra):
        page.close()


def _edit_log(server) -> list[tuple[int, str]]:
    out = []
    for line in server.log.read_text().splitlines():
        m = re.search(r"edit (\d+): (start|end)", line)
        if m:
            out.append((int(m.group(1)), m.group(2)))
    return out


def test_two_sessions_at_once_run_one_after_the_other_on_shared_models(chromium, server, wav):
    a, b = open_page(chromium, server.url), open_page(chromium, server.url)
    for page in (a, b):
        upload_sound(page, wav)
        set_number(page, "steps", 20)
    assert run_and_wait(a).startswith("done:")  # models built, first-use costs paid
    before = server.peak_rss_kib()
    b.locator("#run").click()
    start_run(a)  # whichever the queue takes first, the other waits for it
    for page in (a, b):
        assert wait_status(page, TERMINAL).startswith("done:")
    grown_mib = (server.peak_rss_kib() - before) / 1024
    # one copy of the preset=tiny networks (generator, CLIP, encoder): what a second,
    # concurrent model set would add at the least
    assert grown_mib < MODEL_COPY_MIB, grown_mib
    events = _edit_log(server)[-4:]
    assert [e for _, e in events] == ["start", "end", "start", "end"], events
    assert events[0][0] == events[1][0] and events[2][0] == events[3][0]  # one edit ran at a time
    a.close()
    b.close()


def test_screenshots_of_the_page_before_and_after_an_edit(chromium, server, wav, tmp_path):
    """The README's pictures (``make screenshots`` writes them into docs/img/)."""
    out = Path(os.environ.get("SOUND2IMG_SCREENSHOT_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    page = open_page(chromium, server.url)
    upload_sound(page, wav)
    page.locator("#text textarea").fill("a sunny beach")
    page.locator("#mode").get_by_text("embedding mix", exact=True).click()
    set_number(page, "steps", 30)
    page.screenshot(path=str(out / "demo-before.png"), full_page=True)
    assert run_and_wait(page).startswith("done:")
    assert image_loaded(page, "result") and image_loaded(page, "strip")
    page.screenshot(path=str(out / "demo-after.png"), full_page=True)
    for name in ("demo-before.png", "demo-after.png"):
        from PIL import Image

        with Image.open(out / name) as im:
            assert im.size[0] >= 1000 and im.size[1] >= 800
    page.close()


def test_an_upload_over_the_size_limit_is_refused_before_it_is_read(chromium, server, tmp_path):
    """The test server allows 1 MB (app.max_upload_mb=1); the default is 100 MB."""
    big = tmp_path / "big.wav"
    sr = 16000
    sf.write(str(big), np.zeros(40 * sr, dtype=np.float32), sr, subtype="FLOAT")  # 2.6 MB
    page = open_page(chromium, server.url)
    page.locator("#sound input[type=file]").set_input_files(str(big))
    page.locator("[data-testid=toast-body]").filter(has_text=re.compile("size", re.I)).first.wait_for()
    assert status(page).input_value() == ""
    # and the server's own check, for a client that skips the page's
    boundary = "s2iboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + big.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    req = urllib.request.Request(
        server.url + "gradio_api/upload",
        data=body,
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=60)
    assert refused.value.code == 413
    assert not [p for p in server.uploads.rglob("*") if p.is_file() and p.stat().st_size > 2**20]
    page.close()


# ---- the video tab ----------------------------------------------------------------------
VIDEO_SECONDS = 3.0


def video_status(page):
    return page.locator("#video_status textarea")


def set_slider(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")
    box.blur()


def test_the_video_tab_makes_a_video_that_plays_and_stop_works(chromium, long_server, tmp_path):
    """The video tab (issue28): progress, Stop in a long first keyframe, then a video that
    the browser itself demuxes and decodes, with the sound's duration, and its contact sheet."""
    wav = tmp_path / "chirp.wav"
    sr = 16000
    t = np.arange(int(VIDEO_SECONDS * sr)) / sr
    sf.write(str(wav), (0.4 * np.sin(2 * np.pi * (300 + 400 * t) * t)).astype(np.float32), sr)
    page = open_page(chromium, long_server.url)
    page.get_by_role("tab", name="video", exact=True).click()
    page.locator("#video_sound input[type=file]").set_input_files(str(wav))
    page.locator("#video_sound audio, #video_sound button").first.wait_for()

    # a first keyframe of a million steps: Stop ends it at the next step
    set_slider(page, "video_steps", 1000000)
    before = video_status(page).input_value()
    page.locator("#video_run").click()
    wait_status_of(page, r"^running: \d+/\d+ optimiser steps")
    page.locator("#video_stop").click()
    text = wait_status_of(page, r"^(stopped|done|error)")
    assert text.startswith("stopped while making the keyframes"), (before, text)

    set_slider(page, "video_steps", 2)
    set_slider(page, "video_keyframe_steps", 2)
    set_slider(page, "video_fps", 4)
    set_slider(page, "video_keyframe_seconds", 1.5)
    page.locator("#video_run").click()
    text = wait_status_of(page, r"^(done|error|internal error)")
    assert text.startswith(f"done: {round(VIDEO_SECONDS * 4)} frames at 4 fps"), text
    assert image_loaded(page, "video_sheet")
    # the browser itself demuxes and decodes the mp4: its duration is the sound's
    page.wait_for_function(
        "() => { const v = document.querySelector('#video_result video'); return v && v.readyState >= 2; }"
    )
    duration, width = page.evaluate(
        "() => { const v = document.querySelector('#video_result video'); return [v.duration, v.videoWidth]; }"
    )
    assert abs(duration - VIDEO_SECONDS) <= 0.25 + 2048 / 48000 and width > 0, (duration, width)
    files = zipfile.ZipFile(io.BytesIO(download_bytes_of(page, long_server.url)))
    assert sorted(files.namelist()) == ["contact_sheet.png", "keyframes.pt", "metrics.json", "video.mp4"]
    metrics = json.loads(files.read("metrics.json"))
    assert metrics["video"]["frames"] == round(VIDEO_SECONDS * 4) and len(metrics["keyframes"]) == 3
    page.close()


def wait_status_of(page, pattern: str) -> str:
    from playwright.sync_api import expect

    expect(video_status(page)).to_have_value(re.compile(pattern), timeout=WAIT_MS)
    return video_status(page).input_value()


def download_bytes_of(page, base_url: str) -> bytes:
    link = page.locator("#video_download a").first
    link.wait_for()
    with urllib.request.urlopen(urllib.parse.urljoin(base_url, link.get_attribute("href")), timeout=60) as r:
        return r.read()
