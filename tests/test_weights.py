"""Weights registry and download cache, against a local HTTP server on 127.0.0.1 that
supports Range and can misbehave on purpose (cut connections, ignore Range, 404, an
HTML confirmation page, slow bodies for the two-process race)."""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import time
from pathlib import Path

import pytest

from sound2img import weights
from sound2img.errors import UserInputError, WeightsNotAvailableError
from sound2img.weights import WeightsEntry, download, get_entry, list_weights, resolve_weights

from helpers import free_port, load_file_module
from helpers.weights_server import PAYLOAD, PAYLOAD_SHA, serve

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def server():
    with serve() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SOUND2IMG_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SOUND2IMG_OFFLINE", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def _entry(server, name="test_blob", path="/file.bin", sha=PAYLOAD_SHA):
    return WeightsEntry(
        name=name,
        url=server.base + path,
        filename=f"{name}.bin",
        sha256=sha,
        format="rosinality_pt",
        licence="test",
        description="test payload",
    )


@pytest.fixture
def registered(server, monkeypatch):
    entry = _entry(server)
    monkeypatch.setitem(weights.WEIGHTS._items, entry.name, entry)
    return entry


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if not p.name.endswith(".lock")) if directory.exists() else []


# ---------------------------------------------------------------- registry contents


def test_registry_entries_are_consistent():
    entries = list_weights()
    names = [e.name for e in entries]
    assert names == sorted(set(names))
    assert len({e.filename for e in entries}) == len(entries), "two entries would share a cache file"
    for e in entries:
        assert e.url.startswith("https://") and e.licence and e.description
        assert e.format in weights.FORMATS
    required = {
        "soundclip_resnet18",
        "soundclip_landscape",
        "rosinality_ffhq1024",
        "nvlabs_ffhq1024",
        "nvlabs_afhqdog512",
        "nvlabs_afhqcat512",
        "nvlabs_afhqwild512",
        "nvlabs_metfaces1024",
        "nvlabs_brecahad512",
        "openai_vit_b32",
        "ir_se50",
        "sample_rain",
    }
    assert required <= set(names)
    for name in [n for n in names if n.startswith("nvlabs_") and n != "nvlabs_afhqv2_512"]:
        assert get_entry(name).url.startswith("https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/")
    assert get_entry("soundclip_landscape").format == "rosinality_pt"
    assert get_entry("soundclip_resnet18").filename == "resnet18_57.pth"


def test_openai_clip_entries_are_verified_and_pinned():
    ts = get_entry("openai_vit_b32_torchscript")
    assert ts.verified and ts.sha256 == ts.url.split("/")[-2]  # OpenAI's URL carries the hash
    st = get_entry("openai_vit_b32")  # what load_clip reads: safetensors, never TorchScript
    assert st.verified and st.format == "openai_clip" and st.filename.endswith(".safetensors")
    assert "/resolve/main/" not in st.url, "a hashed file must come from a pinned revision"


def test_sample_names_and_close_name_suggestions():
    assert get_entry("sample:rain") is get_entry("sample_rain")
    assert get_entry("sample:rain").format == "audio"
    with pytest.raises(UserInputError, match="rosinality_ffhq1024"):
        get_entry("rosinality_ffhq")
    with pytest.raises(UserInputError, match="sample_rain"):
        resolve_weights("sample:rainn")


def test_entry_validation():
    with pytest.raises(ValueError, match="format"):
        WeightsEntry("x", "https://e/x", "x.pt", None, "onnx", "l", "d")
    with pytest.raises(ValueError, match="sha256"):
        WeightsEntry("x", "https://e/x", "x.pt", "ABC", "audio", "l", "d")
    with pytest.raises(ValueError, match="bare file name"):
        WeightsEntry("x", "https://e/x", "../x.pt", None, "audio", "l", "d")


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("SOUND2IMG_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("SOUND2IMG_CACHE")
    assert weights.cache_dir() == tmp_path / "xdg" / "sound2img"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert weights.cache_dir() == tmp_path / "home" / ".cache" / "sound2img"


def test_existing_file_is_returned_as_is_and_missing_path_is_named(tmp_path):
    f = tmp_path / "mine.pt"
    f.write_bytes(b"x")
    assert resolve_weights(str(f)) == f
    assert resolve_weights(f) == f
    with pytest.raises(UserInputError, match="no such file"):
        resolve_weights(str(tmp_path / "absent.pt"))


# ---------------------------------------------------------------- downloads


def test_download_success_then_cache_hit(server, registered):
    path = resolve_weights(registered.name, progress=False)
    assert path == weights.cache_dir() / registered.filename
    assert path.read_bytes() == PAYLOAD
    assert _leftovers(path.parent) == [registered.filename]
    gets = server.file_gets
    assert resolve_weights(registered.name) == path
    assert server.file_gets == gets == 1, "a cached file must not be fetched again"


def test_resume_after_a_cut_on_the_next_call(server, registered):
    server.cuts_left = 1
    dest = weights.cached_path(registered)
    with pytest.raises(WeightsNotAvailableError, match="interrupted") as info:
        download(registered, dest, progress=False, retries=0)
    assert "\n" not in str(info.value) and str(dest) in str(info.value)
    part = dest.with_name(dest.name + ".part")
    assert part.stat().st_size == len(PAYLOAD) // 2 and not dest.exists()

    assert download(registered, dest, progress=False, retries=0) == dest
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == PAYLOAD_SHA
    assert ("/file.bin", "", f"bytes={len(PAYLOAD) // 2}-") in server.requests
    assert not part.exists()


def test_resume_within_one_call(server, registered):
    server.cuts_left = 1
    path = download(registered, progress=False, retries=1)
    assert path.read_bytes() == PAYLOAD
    assert [r[2] for r in server.requests] == [None, f"bytes={len(PAYLOAD) // 2}-"]


def test_server_ignoring_range_restarts_from_zero(server, registered):
    server.ignore_range = True
    dest = weights.cached_path(registered)
    dest.parent.mkdir(parents=True)
    # A stale part whose bytes are wrong: appending to it would break the checksum.
    dest.with_name(dest.name + ".part").write_bytes(b"\0" * 1000)
    download(registered, dest, progress=False, retries=0)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests[0][2] == "bytes=1000-"


def test_part_that_is_already_complete(server, registered):
    dest = weights.cached_path(registered)
    dest.parent.mkdir(parents=True)
    dest.with_name(dest.name + ".part").write_bytes(PAYLOAD)  # e.g. killed before the rename
    download(registered, dest, progress=False, retries=0)
    assert dest.read_bytes() == PAYLOAD and server.file_gets == 1  # the 416 answer
    assert _leftovers(dest.parent) == [dest.name]


def test_wrong_checksum_leaves_nothing(server, monkeypatch):
    entry = _entry(server, sha=hashlib.sha256(b"something else").hexdigest())
    monkeypatch.setitem(weights.WEIGHTS._items, entry.name, entry)
    with pytest.raises(WeightsNotAvailableError, match="checksum mismatch") as info:
        resolve_weights(entry.name, progress=False)
    msg = str(info.value)
    assert entry.sha256 in msg and PAYLOAD_SHA in msg and "\n" not in msg
    assert _leftovers(weights.cache_dir()) == []


def test_404_is_one_line_with_url_and_target(server, monkeypatch):
    entry = _entry(server, name="gone", path="/missing.bin")
    monkeypatch.setitem(weights.WEIGHTS._items, entry.name, entry)
    with pytest.raises(WeightsNotAvailableError) as info:
        resolve_weights("gone", progress=False)
    msg = str(info.value)
    assert "\n" not in msg and "404" in msg
    assert entry.url in msg and str(weights.cache_dir() / "gone.bin") in msg
    assert _leftovers(weights.cache_dir()) == []


def test_connection_refused_is_a_clear_error(monkeypatch):
    port = free_port()  # nothing listens there
    entry = WeightsEntry("nobody", f"http://127.0.0.1:{port}/x.bin", "nobody.bin", None, "audio", "l", "d")
    with pytest.raises(WeightsNotAvailableError, match=f"127.0.0.1:{port}/x.bin") as info:
        download(entry, progress=False, timeout=2)
    assert "\n" not in str(info.value)


def test_offline_missing_file_message(server, registered, monkeypatch):
    dest = weights.cache_dir() / registered.filename
    monkeypatch.setenv("SOUND2IMG_OFFLINE", "1")
    with pytest.raises(WeightsNotAvailableError) as info:
        resolve_weights(registered.name)
    msg = str(info.value)
    assert "\n" not in msg and "SOUND2IMG_OFFLINE" in msg
    assert registered.filename in msg and registered.url in msg and str(dest) in msg
    monkeypatch.delenv("SOUND2IMG_OFFLINE")
    with pytest.raises(WeightsNotAvailableError, match="offline"):
        resolve_weights(registered.name, offline=True)
    with pytest.raises(WeightsNotAvailableError, match="downloads are off"):
        resolve_weights(registered.name, allow_download=False)
    assert server.requests == []
    # Put by hand at the named path, it is found offline.
    dest.parent.mkdir(parents=True)
    dest.write_bytes(PAYLOAD)
    assert resolve_weights(registered.name, offline=True) == dest


def test_unverified_entry_logs_its_hash(server, monkeypatch, caplog):
    entry = _entry(server, sha=None)
    with caplog.at_level(logging.WARNING, logger="sound2img.weights"):
        path = download(entry, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert any(PAYLOAD_SHA in r.getMessage() and "unverified" in r.getMessage() for r in caplog.records)


def test_html_confirmation_page_is_followed(server, registered):
    server.html_page = (
        "<html><body>can't scan this file for viruses"
        '<form id="download-form" action="/file.bin" method="get">'
        '<input type="hidden" name="id" value="abc"><input type="hidden" name="confirm" value="t">'
        "</form></body></html>"
    )
    path = resolve_weights(registered.name, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert server.requests[1][1] == "id=abc&confirm=t"


def test_html_page_without_a_way_through_is_refused(server, registered):
    server.html_page = "<html><body>Too many users have viewed or downloaded this file recently.</body></html>"
    with pytest.raises(WeightsNotAvailableError, match="web page instead of the file") as info:
        resolve_weights(registered.name, progress=False)
    assert registered.url in str(info.value)
    assert _leftovers(weights.cache_dir()) == []


# ---------------------------------------------------------------- two processes


def _child_download(entry, dest):
    download(entry, dest, progress=False)


def test_two_processes_end_with_one_valid_file(server, registered):
    server.delay = 0.05  # ~0.5 s per transfer, so the two attempts overlap
    dest = weights.cached_path(registered)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_child_download, args=(registered, dest)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    for p in procs:
        if p.is_alive():
            p.kill()
    assert [p.exitcode for p in procs] == [0, 0]
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == PAYLOAD_SHA
    assert _leftovers(dest.parent) == [dest.name]
    assert server.file_gets in (1, 2)


def test_waiting_process_rechecks_the_cache_after_the_lock(server, registered):
    """While this process holds the lock a second process must wait, and once the file
    has appeared it must return it without fetching anything."""
    dest = weights.cached_path(registered)
    dest.parent.mkdir(parents=True)
    ctx = multiprocessing.get_context("spawn")
    with weights._exclusive_lock(dest):
        child = ctx.Process(target=_child_download, args=(registered, dest))
        child.start()
        time.sleep(1.5)
        assert child.is_alive() and server.requests == []
        dest.write_bytes(PAYLOAD)
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0 and server.requests == []


# ---------------------------------------------------------------- scripts/fetch_weights.py


def _script():
    return load_file_module(ROOT / "scripts" / "fetch_weights.py")


def test_script_list_fetch_and_offline(server, registered, capsys):
    script = _script()
    assert script.main(["--list"]) == 0
    out = capsys.readouterr().out
    block = out.split(registered.name + "  (", 1)[1].split("\n")[:4]
    assert block[0] == f"{registered.format}, verified, not cached)"
    assert block[1:] == [
        f"    url:     {registered.url}",
        f"    file:    {weights.cached_path(registered)}",
        f"    licence: {registered.licence}",
    ]
    assert "openai_vit_b32  (openai_clip, verified" in out and "unverified" in out

    assert script.main([registered.name, "--offline"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "offline" in err
    assert f"download {registered.url} yourself and put it at {weights.cached_path(registered)}" in err

    assert script.main([registered.name, "--no-progress"]) == 0
    assert str(weights.cached_path(registered)) in capsys.readouterr().out
    script.main(["--list"])
    assert f"{registered.name}  ({registered.format}, verified, cached)" in capsys.readouterr().out


def test_script_bad_name_help_and_cfg(capsys):
    script = _script()
    assert script.main(["no_such_weights"]) == 2
    assert "neither an existing file nor a registered weights name" in capsys.readouterr().err
    assert script.main(["--help"]) == 0
    assert "--offline" in capsys.readouterr().out
    assert script.main(["sample:rain", "--cfg", "job"]) == 0
    out = capsys.readouterr().out
    assert "sample_rain" in out and "offline: false" in out


def test_the_authors_files_carry_their_repository_licence():
    """Their encoder, landscape generator and sample clips: CC BY-NC-SA 4.0 (the LICENSE of
    their repository at its latest commit), not MIT."""
    from sound2img.weights import list_weights

    theirs = [
        e
        for e in list_weights()
        if e.name in ("soundclip_resnet18", "soundclip_landscape") or e.name.startswith("sample_")
    ]
    assert len(theirs) >= 10
    for e in theirs:
        assert (
            "CC BY-NC-SA 4.0" in e.licence and "Korea University CVLAB" in e.licence and "non-commercial" in e.licence
        )
        assert not e.licence.startswith("MIT")
