"""A local HTTP server on 127.0.0.1 for the weights download tests: serves ``PAYLOAD`` at
``/file.bin`` with Range support, and can misbehave on purpose (cut connections, ignore
Range, answer with an HTML confirmation page, send slowly so that downloads overlap)."""

from __future__ import annotations

import contextlib
import hashlib
import random
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAYLOAD = random.Random(0).randbytes(300_000)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    """GET /file.bin serves PAYLOAD honouring ``bytes=N-`` ranges unless told otherwise;
    anything else is 404. Behaviour switches live on the server object."""

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        srv = self.server
        url = urllib.parse.urlsplit(self.path)
        with srv.lock:
            srv.requests.append((url.path, url.query, self.headers.get("Range")))
        if url.path != "/file.bin":
            self.send_error(404, "Not Found")
            return
        if srv.html_page is not None and "confirm=t" not in url.query:
            page = srv.html_page.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return
        with srv.lock:
            srv.file_gets += 1
        start, rng = 0, self.headers.get("Range")
        if rng and not srv.ignore_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(PAYLOAD):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with srv.lock:
            cut = srv.cuts_left > 0
            srv.cuts_left -= cut
        if cut:  # promise the whole body, send half, hang up
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            return
        step = max(1, len(body) // 10)
        try:
            for i in range(0, len(body), step):
                self.wfile.write(body[i : i + step])
                if srv.delay:
                    time.sleep(srv.delay)
        except (BrokenPipeError, ConnectionResetError):  # the client went away (e.g. killed)
            pass


@contextlib.contextmanager
def serve() -> Iterator[ThreadingHTTPServer]:
    """A running server; ``.base`` is its URL. Switches: ``cuts_left``, ``ignore_range``,
    ``delay`` (seconds per tenth of the body), ``html_page``; it records ``requests`` and
    counts ``file_gets``."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.lock = threading.Lock()
    srv.requests, srv.file_gets = [], 0
    srv.cuts_left, srv.ignore_range, srv.delay, srv.html_page = 0, False, 0.0, None
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)
