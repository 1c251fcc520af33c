"""Fixtures of the web-app tests: a ``demo.py preset=tiny`` server on 127.0.0.1 and a free
port (started by the tests, always stopped), and headless Chromium driven by Playwright
(the system's browser: Debian's ``chromium``; nothing is downloaded)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
# Page-state waits are generous: they bound a hang, they do not measure speed.
WAIT_MS = 180_000


def find_chromium() -> str | None:
    """``SOUND2IMG_CHROMIUM``, else Debian's ``chromium`` (or ``chromium-browser``) on PATH."""
    env = os.environ.get("SOUND2IMG_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Server:
    """A ``scripts/demo.py`` process; ``log`` holds its output."""

    def __init__(self, tmp: Path, *overrides: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.work_dir = tmp / "work"
        self.log = tmp / "server.log"
        self.uploads = tmp / "uploads"  # Gradio keeps uploaded files here
        env = dict(
            os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1", GRADIO_TEMP_DIR=str(self.uploads)
        )
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
        cmd = [
            sys.executable,
            str(ROOT / "scripts" / "demo.py"),
            "preset=tiny",
            "--device",
            "cpu",
            "--port",
            str(self.port),
            f"app.work_dir={self.work_dir}",
            *overrides,
        ]
        self._fh = open(self.log, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._fh, stderr=subprocess.STDOUT, env=env, cwd=str(tmp))

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"demo.py exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url, timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)  # polling for start-up, not a timed assertion
        raise RuntimeError(f"demo.py did not answer on {self.url} within {timeout} s:\n{self.log.read_text()}")

    def peak_rss_kib(self) -> int:
        """The server's peak resident memory so far (VmHWM)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise RuntimeError("no VmHWM")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()


def start_server(tmp: Path, *overrides: str) -> Server:
    server = Server(tmp, *overrides)
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


def _missing(reason: str):
    """Skip, or fail where a browser is required (CI sets SOUND2IMG_REQUIRE_BROWSER=1)."""
    if os.environ.get("SOUND2IMG_REQUIRE_BROWSER") == "1":
        pytest.fail(reason + " and SOUND2IMG_REQUIRE_BROWSER=1")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium():
    path = find_chromium()
    if path is None:
        _missing("no Chromium found (install Debian's chromium package or set SOUND2IMG_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[demo,dev]')")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, headless=True, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    try:
        import gradio  # noqa: F401
    except ImportError:
        _missing("gradio is not installed: the web app needs the [demo] extra")
    srv = start_server(tmp_path_factory.mktemp("demo"), "app.max_upload_mb=1", "app.max_queue=4")
    try:
        yield srv
    finally:
        srv.stop()
