"""The download cache behind the weights registry: where files live, and fetching one
streamed, resumable, checksum-verified, atomic, and safe when several processes fetch the
same file."""

from __future__ import annotations

import contextlib
import html.parser
import http.client
import http.cookiejar
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from sound2img.errors import WeightsNotAvailableError
from sound2img.utils.files import sha256_file
from sound2img.weights.table import WeightsEntry

try:  # POSIX; elsewhere concurrent downloads of one file are not serialised (see _exclusive_lock)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

log = logging.getLogger("sound2img.weights")  # the registry's logger, as users configure it

USER_AGENT = "sound2img-weights/0.1 (+urllib)"
CHUNK_BYTES = 1 << 16
MAX_HTML_BYTES = 1 << 21  # a confirmation page is small; never buffer a mislabelled file


def cache_dir() -> Path:
    """``$SOUND2IMG_CACHE``, else ``$XDG_CACHE_HOME/sound2img``, else ``~/.cache/sound2img``."""
    env = os.environ.get("SOUND2IMG_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "sound2img"


def cached_path(entry: WeightsEntry) -> Path:
    """Where ``entry`` lives in the cache (whether or not it is there yet)."""
    return cache_dir() / entry.filename


def _manual_hint(entry: WeightsEntry, dest: Path) -> str:
    return f"download {entry.url} yourself and put it at {dest}"


class NetworkUnreachable(WeightsNotAvailableError):
    """A download that could not reach its server at all (no network, DNS, refused): the
    other files of the same command would fail the same way, so they are not tried.
    ``reason``: the network error in one line."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason


class _Interrupted(Exception):
    """The transfer stopped part-way; what arrived stays in the ``.part`` file."""


def _one_line(exc: BaseException | str) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


@contextlib.contextmanager
def _exclusive_lock(dest: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on a hidden lock file beside ``dest``. The lock file
    stays: deleting it would race with a process that opened it but has not locked yet."""
    lock_path = dest.with_name(f".{dest.name}.lock")
    with open(lock_path, "a+b") as fh:
        if fcntl is not None:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.warning("waiting for another process that is downloading %s", dest.name)
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class _ConfirmPageParser(html.parser.HTMLParser):
    """Finds Google Drive's "can't scan this file for viruses" form (or, on older pages,
    a link carrying ``confirm=``) that leads to the real download."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: list[tuple[str, str]] = []
        self.confirm_href: str | None = None
        self._in_form = False

    def handle_starttag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        if (
            tag == "form"
            and self.action is None
            and (a.get("id") == "download-form" or "download" in a.get("action", ""))
        ):
            self.action, self._in_form = a.get("action", ""), True
        elif tag == "input" and self._in_form and a.get("type") == "hidden" and a.get("name"):
            self.fields.append((a["name"], a.get("value", "")))
        elif tag == "a" and self.confirm_href is None and "confirm=" in a.get("href", ""):
            self.confirm_href = a["href"]

    def handle_endtag(self, tag):
        if tag == "form":
            self._in_form = False


def _confirm_url(page: str, base_url: str) -> str | None:
    parser = _ConfirmPageParser()
    parser.feed(page)
    if parser.action is not None and parser.fields:
        action = urllib.parse.urljoin(base_url, parser.action)
        return action + ("&" if "?" in action else "?") + urllib.parse.urlencode(parser.fields)
    if parser.confirm_href:
        return urllib.parse.urljoin(base_url, parser.confirm_href)
    return None


def _open(opener, entry: WeightsEntry, dest: Path, offset: int, timeout: float):
    """Open the download at byte ``offset``; follow one HTML confirmation page. Returns the
    response, or ``None`` when the server says the ``.part`` file is already complete."""
    url = entry.url
    for hop in range(2):
        headers = {"User-Agent": USER_AGENT}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            resp = opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:
                total = (exc.headers.get("Content-Range") or "").rpartition("/")[2]
                exc.close()
                if total.isdigit() and int(total) == offset:
                    return None
                _part_path(dest).unlink(missing_ok=True)
                raise _Interrupted(f"server refused to resume at byte {offset}; starting over") from exc
            raise WeightsNotAvailableError(
                f"cannot download {entry.name}: HTTP {exc.code} {_one_line(exc.reason)} "
                f"from {url}; {_manual_hint(entry, dest)}"
            ) from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise NetworkUnreachable(
                f"cannot download {entry.name} from {url}: {_one_line(reason)}; {_manual_hint(entry, dest)}",
                _one_line(reason),
            ) from exc
        if resp.headers.get_content_type() != "text/html":
            return resp
        with resp:
            page = resp.read(MAX_HTML_BYTES).decode("utf-8", errors="replace")
            final_url = resp.geturl()
        url = _confirm_url(page, final_url) if hop == 0 else None
        if url is None:
            break
    raise WeightsNotAvailableError(
        f"cannot download {entry.name}: {entry.url} returned a web page instead of "
        f"the file (a browser download may be needed); {_manual_hint(entry, dest)}"
    )


def _stream(opener, entry: WeightsEntry, dest: Path, *, progress: bool, timeout: float) -> None:
    """Append the rest of the file to ``dest.part`` (restart when the server ignores Range)."""
    from tqdm import tqdm

    part = _part_path(dest)
    have = part.stat().st_size if part.exists() else 0
    resp = _open(opener, entry, dest, have, timeout)
    if resp is None:
        return
    with resp:
        if have and resp.status == 206:
            start = (resp.headers.get("Content-Range") or "").removeprefix("bytes ").partition("-")[0]
            if start != str(have):
                part.unlink(missing_ok=True)
                raise _Interrupted(f"server resumed at byte {start or '?'} instead of {have}; starting over")
            mode = "ab"
        else:
            if have:
                log.info("%s: server ignored the Range request; downloading from the start", entry.name)
            have, mode = 0, "wb"
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        total = have + length if length is not None else entry.size_bytes
        received = 0
        with (
            open(part, mode) as fh,
            tqdm(
                total=total,
                initial=have,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=entry.filename,
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            while True:
                try:
                    chunk = resp.read(CHUNK_BYTES)
                except (http.client.HTTPException, OSError) as exc:
                    raise _Interrupted(_one_line(exc)) from exc
                if not chunk:
                    break
                fh.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
            fh.flush()
            os.fsync(fh.fileno())
    if length is not None and received < length:
        raise _Interrupted(f"connection closed after {have + received} of {have + length} bytes")


def download(
    entry: WeightsEntry,
    dest: str | os.PathLike | None = None,
    *,
    progress: bool = True,
    retries: int = 2,
    timeout: float = 30.0,
) -> Path:
    """Fetch ``entry`` to ``dest`` (default: its cache path) and return ``dest``.

    Streams into ``dest.part`` with a tqdm bar and resumes it with an HTTP Range request
    (from an earlier call, or up to ``retries`` times within this one); verifies the
    sha256 (a mismatch removes the part file and raises) or logs the computed hash of an
    unverified entry; renames into place only after that. An exclusive lock serialises
    processes fetching the same file, and the cache is re-checked once it is held."""
    dest = Path(dest) if dest is not None else cached_path(entry)
    dest.parent.mkdir(parents=True, exist_ok=True)
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with _exclusive_lock(dest):
        if dest.is_file():  # another process finished it while we waited
            return dest
        for attempt in range(retries + 1):
            try:
                _stream(opener, entry, dest, progress=progress, timeout=timeout)
                break
            except _Interrupted as exc:
                if attempt == retries:
                    raise WeightsNotAvailableError(
                        f"download of {entry.name} from {entry.url} was interrupted ({exc}); run the same command "
                        f"again to resume, or {_manual_hint(entry, dest)}"
                    ) from exc
                log.warning("%s: download interrupted (%s); resuming", entry.name, exc)
        part = _part_path(dest)
        digest = sha256_file(part)
        if entry.sha256 is not None and digest != entry.sha256:
            part.unlink(missing_ok=True)
            raise WeightsNotAvailableError(
                f"checksum mismatch for {entry.name} from {entry.url}: expected sha256 {entry.sha256}, got {digest}; "
                f"the partial file was removed; retry, or put a verified copy at {dest}"
            )
        if entry.sha256 is None:
            log.warning("%s is unverified (no published sha256); the downloaded file has sha256 %s", entry.name, digest)
        os.replace(part, dest)
    return dest
