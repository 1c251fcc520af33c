"""Concurrency: several ``scripts/fetch_weights.py`` processes fetching the same file into
one cache (from a local server on 127.0.0.1) end with exactly one valid file, also when
one of them is SIGKILLed mid-transfer or the server cuts a connection; two edits racing
for one new output directory leave one whole edit and a one-line refusal."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from .helpers import ROOT, check_complete_outputs, error_lines, script_cmd, script_env, temp_leftovers
from helpers.weights_server import PAYLOAD_SHA, serve

NAME, FILENAME = "reliability_blob", "reliability_blob.bin"

# The real script, with one temporary registry entry (sound2img.weights' test hook).
_LAUNCH = textwrap.dedent("""
    import runpy, sys
    from sound2img.weights import WeightsEntry, register_weights
    register_weights(WeightsEntry({name!r}, sys.argv.pop(1), {filename!r}, {sha!r}, "rosinality_pt", "test",
                                  "a test payload"))
    sys.argv[0] = {script!r}
    runpy.run_path({script!r}, run_name="__main__")
""").format(name=NAME, filename=FILENAME, sha=PAYLOAD_SHA, script=str(ROOT / "scripts" / "fetch_weights.py"))


@pytest.fixture
def server():
    with serve() as srv:
        yield srv


def _env(tmp_path: Path) -> dict[str, str]:
    return script_env(
        tmp_path,
        SOUND2IMG_CACHE=str(tmp_path / "cache"),
        SOUND2IMG_OFFLINE="",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )


def _fetch(server, tmp_path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _LAUNCH, f"{server.base}/file.bin", NAME, "--no-progress"],
        cwd=tmp_path,
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _one_valid_file(cache: Path) -> None:
    files = sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock"))
    assert files == [FILENAME], files  # no .part left, no second copy
    assert hashlib.sha256((cache / FILENAME).read_bytes()).hexdigest() == PAYLOAD_SHA


def _finish(procs) -> list[subprocess.CompletedProcess]:
    done = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            p.kill()
            pytest.fail("a fetch hung")
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done


@pytest.mark.parametrize("n", [2, 3])
def test_processes_fetching_one_file_end_with_one_valid_file(n, server, tmp_path):
    server.delay = 0.1  # about a second per transfer: the fetches overlap
    procs = [_fetch(server, tmp_path) for _ in range(n)]
    results = _finish(procs)
    for r in results:
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == f"{NAME}: {tmp_path / 'cache' / FILENAME}"
    _one_valid_file(tmp_path / "cache")
    assert 1 <= server.file_gets <= n  # the waiting ones found the file once the lock was theirs


def test_a_fetch_killed_mid_transfer_is_finished_by_the_next(server, tmp_path):
    """SIGKILL while bytes arrive (the lock dies with the process): a fetch waiting for the
    lock resumes the part file with a Range request and ends with one valid file."""
    server.delay = 0.3
    first = _fetch(server, tmp_path)
    part = tmp_path / "cache" / (FILENAME + ".part")
    deadline = time.monotonic() + 120
    while not (part.exists() and part.stat().st_size > 0):
        assert first.poll() is None and time.monotonic() < deadline, "the first fetch never started writing"
        time.sleep(0.02)
    second = _fetch(server, tmp_path)  # blocks on the lock the first one holds
    time.sleep(0.5)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL
    server.delay = 0.0
    (result,) = _finish([second])
    assert result.returncode == 0, result.stderr
    _one_valid_file(tmp_path / "cache")
    resumed = [r for r in server.requests if r[2] and r[2] != "bytes=0-"]
    assert resumed, f"the second fetch should resume the part file: {server.requests}"


def test_a_cut_connection_during_a_race(server, tmp_path):
    server.delay, server.cuts_left = 0.05, 1
    results = _finish([_fetch(server, tmp_path) for _ in range(2)])
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    _one_valid_file(tmp_path / "cache")


@pytest.mark.slow
def test_two_edits_racing_for_one_new_out(tmp_path):
    """Both start with --out absent; the one that finishes second finds it taken: one
    line, exit 2, and the winner's edit is whole."""
    out = tmp_path / "edit"
    args = ["--out", str(out), "--steps", "3", "preset=tiny", "progress=false"]
    env = script_env(tmp_path)
    procs = [
        subprocess.Popen(
            script_cmd("manipulate.py", ["--audio", f"tone:{hz}", *args]),
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for hz in (440, 880)
    ]
    results = _finish(procs)
    codes = sorted(r.returncode for r in results)
    assert codes in ([0, 0], [0, 2]), [r.stderr for r in results]
    if codes == [0, 2]:  # the usual outcome; [0, 0] when one finished before the other checked --out
        loser = next(r for r in results if r.returncode == 2)
        lines = error_lines(loser.stderr)
        assert len(lines) == 1 and str(out) in lines[0] and "Traceback" not in loser.stderr
    assert check_complete_outputs(out) == 5 and temp_leftovers(tmp_path) == []


def test_staged_out_taken_by_another_run_meanwhile(tmp_path):
    """The narrow window of that race, made certain: the other run's directory appears
    between this run's checks and its rename; a one-line user error, the other run's
    files untouched, this run's staging removed."""
    from sound2img.errors import UserInputError
    from sound2img.utils.files import staged_dir

    out = tmp_path / "edit"
    with pytest.raises(UserInputError, match="filled by another run") as info:
        with staged_dir(out) as d:
            (d / "result.png").write_bytes(b"ours")
            out.mkdir()
            (out / "result.png").write_bytes(b"theirs")
    assert "\n" not in str(info.value)
    assert (out / "result.png").read_bytes() == b"theirs" and temp_leftovers(tmp_path) == []
