"""Driving the demo page from Playwright by its stable elem_ids. Every wait is on page
state with a generous limit (never sleep-then-assert)."""

from __future__ import annotations

import re
import urllib.parse
import urllib.request
from pathlib import Path

from .conftest import WAIT_MS


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 2200})
    page.set_default_timeout(WAIT_MS)
    page.goto(url)
    page.locator("#run").wait_for()
    return page


def status(page):
    return page.locator("#status textarea")


def wait_status(page, pattern: str):
    from playwright.sync_api import expect

    expect(status(page)).to_have_value(re.compile(pattern), timeout=WAIT_MS)
    return status(page).input_value()


def upload_sound(page, path: Path) -> None:
    """Upload into ``sound`` (clearing the one it holds); waits until the page has shown
    its mel (or an error)."""
    box = page.locator("#sound")
    if box.locator("input[type=file]").count() == 0:
        box.get_by_role("button", name="Clear", exact=True).click()
    box.locator("input[type=file]").set_input_files(str(path))
    wait_status(page, rf"^(sound: {re.escape(path.name)}|error|internal error)")


def set_number(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")
    box.blur()


TERMINAL = r"^(done|error|internal error|stopped)"


def start_run(page) -> None:
    """Click ``run`` and wait until this run has said something (each of its status lines
    names the run, so an earlier run's line never passes for this one's)."""
    from playwright.sync_api import expect

    before = status(page).input_value()
    page.locator("#run").click()
    expect(status(page)).not_to_have_value(before, timeout=WAIT_MS)


def run_and_wait(page, pattern: str = TERMINAL) -> str:
    """Click ``run`` and wait for this run's last status line."""
    start_run(page)
    return wait_status(page, pattern)


def image_loaded(page, elem_id: str) -> bool:
    """The element holds an <img> whose picture decoded (naturalWidth > 0)."""
    img = page.locator(f"#{elem_id} img").first
    img.wait_for()
    return pictures_loaded(page, f"#{elem_id} img") == (1, 1)


def pictures_loaded(page, selector: str = "img") -> tuple[int, int]:
    """(images that decoded, images) among ``selector``, once every one has finished
    loading or failing (``complete``)."""
    page.wait_for_function(
        "s => [...document.querySelectorAll(s)].every(e => e.complete)", arg=selector, timeout=WAIT_MS
    )
    return tuple(
        page.evaluate(
            "s => { const all = [...document.querySelectorAll(s)];"
            " return [all.filter(e => e.naturalWidth > 0).length, all.length]; }",
            selector,
        )
    )


def download_bytes(page, base_url: str) -> bytes:
    link = page.locator("#download a").first
    link.wait_for()
    href = link.get_attribute("href")
    with urllib.request.urlopen(urllib.parse.urljoin(base_url, href), timeout=60) as r:
        return r.read()
