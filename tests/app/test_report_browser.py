"""A report.py page in headless Chromium, opened from disk with the network cut off:
one card per edit, every picture decodes, the sound players are there, sorting works."""

from __future__ import annotations

import json

import pytest

from sound2img.app.report import write_report

from .outputs import make_edits, make_run, make_video
from .pagehelp import pictures_loaded

# one worker drives the browser tests, one after the other (make test runs several workers)
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]


def test_report_page_in_a_browser(chromium, tmp_path):
    root = tmp_path / "outputs"
    dirs = make_edits(root / "edits", "--audio", "tone:440", "--seed", "1", "--seed", "2", "--seed", "3")
    make_run(root / "run")
    out = write_report(root, tmp_path / "report.html")
    context = chromium.new_context(offline=True)  # self-contained: works without any network
    page = context.new_page()
    page.goto(out.as_uri())
    cards = page.locator("article.card")
    assert cards.count() == len(dirs) == 3
    loaded, total = pictures_loaded(page)
    assert total == 3 * 3 + 1 and loaded == total  # source/result/strip per card + the training plots
    assert page.locator("article.card audio").count() == 3
    # one sound, stored once: the three players share one Blob of it, which is a WAV file
    srcs = page.locator("audio").evaluate_all("els => els.map(e => e.src)")
    assert len(set(srcs)) == 1 and srcs[0].startswith("blob:")
    head = page.evaluate(
        "src => fetch(src).then(r => r.arrayBuffer()).then(b => [...new Uint8Array(b, 0, 4)])", srcs[0]
    )
    assert bytes(head) == b"RIFF"

    cosines = {f"edits/{d.name}": json.loads((d / "metrics.json").read_text())["final_cosine"] for d in dirs}
    page.select_option("#sort-key", "final-cosine")
    for direction, reverse in (("desc", True), ("asc", False)):
        page.select_option("#sort-dir", direction)
        names = cards.evaluate_all("els => els.map(e => e.dataset.name)")
        assert names == sorted(cosines, key=cosines.get, reverse=reverse)
    page.select_option("#sort-key", "name")
    page.select_option("#sort-dir", "asc")
    assert cards.evaluate_all("els => els.map(e => e.dataset.name)") == sorted(cosines)
    context.close()


def test_a_video_plays_in_the_report_page(chromium, tmp_path):
    """video.py's own output (preset=tiny): the embedded mp4 is demuxed and decoded by the
    browser with the sound's duration; the contact sheet decodes."""
    make_video(tmp_path / "outputs" / "tone")
    out = write_report(tmp_path / "outputs", tmp_path / "report.html")
    context = chromium.new_context(offline=True)
    page = context.new_page()
    page.goto(out.as_uri())
    assert page.locator("article.video").count() == 1
    assert pictures_loaded(page) == (1, 1)
    page.wait_for_function("() => document.querySelector('article.video video').readyState >= 2")
    duration, width = page.evaluate(
        "() => { const v = document.querySelector('video'); return [v.duration, v.videoWidth]; }"
    )
    # a 10-s tone: the container lasts as long as the sound, up to one AAC frame (1024 of 48000 samples) more
    assert 10.0 <= duration <= 10.0 + 1024 / 48000 + 1e-3 and width == 32, (duration, width)
    context.close()
