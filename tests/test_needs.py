"""Which weight files each command needs (sound2img/needs.py): the lists for the documented
commands (written out here by hand from the README), one offline message naming every missing
file with its URL and destination (a user's ``make edit`` with an empty cache and no network),
fetching what can be fetched, and ``fetch_weights.py --for``."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from sound2img import weights
from sound2img.errors import WeightsNotAvailableError
from sound2img.needs import command_needs
from sound2img.weights import WeightsEntry, cached_path, get_entry

from helpers import load_file_module
from helpers.weights_server import PAYLOAD, PAYLOAD_SHA, serve

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _empty_caches(tmp_path, monkeypatch):
    """An empty weights cache and an empty Hugging Face cache (open_clip's, where CLIP's
    towers would otherwise be found)."""
    monkeypatch.setenv("SOUND2IMG_CACHE", str(tmp_path / "cache"))
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))  # read at each lookup
    monkeypatch.delenv("SOUND2IMG_OFFLINE", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.mark.parametrize(
    "command,overrides,required",
    [
        ("edit", [], ["soundclip_landscape", "soundclip_resnet18", "openai_vit_b32", "sample_rain"]),
        ("edit", ["edit.audio=[rain.wav]"], ["soundclip_landscape", "soundclip_resnet18", "openai_vit_b32"]),
        ("edit", ["edit.audio=[]", "edit.text=[fire]"], ["soundclip_landscape", "openai_vit_b32"]),
        ("faces", [], ["rosinality_ffhq1024", "soundclip_resnet18", "openai_vit_b32", "sample_giggling", "ir_se50"]),
        ("faces", ["edit.images=[me.jpg]", "edit.audio=[g.wav]"], ["rosinality_ffhq1024", "soundclip_resnet18",
                                                                  "openai_vit_b32", "ir_se50", "e4e_ffhq"]),
        ("edit", ["edit.images=[hill.jpg]"], ["soundclip_landscape", "soundclip_resnet18", "openai_vit_b32",
                                               "sample_rain", "torchvision_vgg16"]),
        # peer encoders bring their towers' space: Wav2CLIP OpenAI ViT-B/32, AudioCLIP its own file
        ("edit", ["encoder.path=wav2clip", "clip=from_encoder"], ["soundclip_landscape", "wav2clip",
                                                                 "openai_vit_b32", "sample_rain"]),
        ("edit", ["encoder.path=audioclip_partial", "clip=from_encoder"], ["soundclip_landscape",
                                                                          "audioclip_partial", "sample_rain"]),
        ("invert", [], ["rosinality_ffhq1024", "e4e_ffhq"]),
        ("invert-projector", [], ["soundclip_landscape", "torchvision_vgg16"]),
        ("invert", ["invert.perceptual=none", "invert.method=projector"], ["rosinality_ffhq1024"]),
        ("train", [], ["openai_vit_b32"]),
        ("embed", [], ["soundclip_resnet18", "openai_vit_b32"]),
        ("generate", [], ["soundclip_landscape"]),
        ("edit", ["preset=tiny"], ["sample_rain"]),  # the sound is still the authors' clip
        ("edit", ["preset=tiny", "edit.audio=[tone:440]"], []),
        ("invert", ["preset=tiny", "invert.perceptual=none"], []),
        ("train", ["preset=tiny"], []),
    ],
)  # fmt: skip
def test_what_each_command_needs(command, overrides, required):
    needs = command_needs(command, overrides)
    assert list(needs.required) == required


def test_scores_are_optional_and_never_wanted_under_tiny():
    assert command_needs("faces").optional == {"torchvision_vgg16": "LPIPS score"}  # ir_se50 is required there
    assert command_needs("invert").optional == {"torchvision_vgg16": "LPIPS score", "ir_se50": "identity score"}
    assert command_needs("edit", ["preset=tiny"]).optional == {}


def test_make_edit_offline_names_every_missing_file_once(tmp_path, monkeypatch, capsys):
    """The README's `make edit` command, as a user runs it with an empty cache and no network."""
    monkeypatch.setenv("SOUND2IMG_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    script = load_file_module(ROOT / "scripts" / "manipulate.py")
    assert script.main(["--audio", "sample:rain", "--out", "edit-rain"]) == 2
    proc = subprocess.CompletedProcess([], 2, "", capsys.readouterr().err)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("error: 4 files this command needs are not in the cache") and "OFFLINE" in lines[0]
    wanted = {
        "generator": "soundclip_landscape",
        "sound encoder": "soundclip_resnet18",
        "CLIP": "openai_vit_b32",
        "sound sample:rain": "sample_rain",
    }
    for line, (purpose, name) in zip(lines[1:5], wanted.items()):
        entry = get_entry(name)
        dest = tmp_path / "cache" / entry.filename
        assert line == f"  {purpose} ({name}): {entry.url} -> {dest}"
    assert lines[5].startswith("(where there is a network, python scripts/fetch_weights.py soundclip_landscape")
    assert len(lines) == 6 and "Traceback" not in proc.stderr
    # the default edit of one's own sound file: three files, named before the sound is read
    assert script.main(["--audio", "rain.wav", "--out", "edit-rain"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("error: 3 files this command needs")
    assert [line.split(" (")[0].strip() for line in lines[1:4]] == ["generator", "sound encoder", "CLIP"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"] or not (tmp_path / "edit-rain").exists()


def _entry(base: str, name: str, path: str = "/file.bin") -> WeightsEntry:
    return WeightsEntry(name, base + path, f"{name}.bin", PAYLOAD_SHA, "rosinality_pt", "test", "test payload")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once closed


def test_fetch_missing_fetches_what_it_can_and_names_the_rest(monkeypatch):
    with serve() as srv:
        dead = f"http://127.0.0.1:{_closed_port()}"
        entries = [
            _entry(srv.base, "ok_first"),
            _entry(srv.base, "not_found", "/nope.bin"),  # a 404: the others are still tried
            _entry(dead, "unreachable"),  # no server: nothing after it is tried
            _entry(srv.base, "after_unreachable"),
        ]
        for e in entries:
            monkeypatch.setitem(weights.WEIGHTS._items, e.name, e)
        with pytest.raises(WeightsNotAvailableError) as info:
            weights.fetch_missing({e.name: f"part {i}" for i, e in enumerate(entries)}, progress=False)
        gets = [path for path, _, _ in srv.requests]
    assert cached_path(entries[0]).read_bytes() == PAYLOAD
    assert gets == ["/file.bin", "/nope.bin"]  # after_unreachable was not attempted
    lines = str(info.value).splitlines()
    assert lines[0].startswith("3 files this command needs are not in the cache and cannot be downloaded")
    assert "network is unreachable" in lines[0]
    assert lines[1:] == [f"  part {i} ({e.name}): {e.url} -> {cached_path(e)}" for i, e in enumerate(entries) if i]
    # once everything is there nothing is fetched and the paths come back
    with serve() as srv:
        for e in entries[1:]:
            cached_path(e).write_bytes(PAYLOAD)
        found = weights.fetch_missing({e.name: "x" for e in entries}, progress=False)
        assert srv.requests == [] and found == {e.name: cached_path(e) for e in entries}


def test_fetch_weights_for_lists_and_fetches(capsys, monkeypatch):
    script = load_file_module(ROOT / "scripts" / "fetch_weights.py")
    assert script.main(["--for", "edit", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("soundclip_landscape", "soundclip_resnet18", "openai_vit_b32", "sample_rain", "torchvision_vgg16"):
        entry = get_entry(name)
        assert f"{name}  ({entry.format}" in out
        assert f"    url:     {entry.url}\n      file:    {cached_path(entry)}\n      licence: {entry.licence}" in out
    assert out.index("optional") > out.index("sample_rain")  # the score's network is listed apart
    monkeypatch.setenv("SOUND2IMG_OFFLINE", "1")
    assert script.main(["--for", "faces"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 5 files this command needs") and "ir_se50" in err and "vgg16" not in err
    assert script.main(["--for", "edit", "encoder=tiny", "audio=logmel", "--list"]) == 0
    assert "soundclip_resnet18" not in capsys.readouterr().out
    assert script.main(["encoder=tiny"]) == 2
    assert "go with --for" in capsys.readouterr().err


def test_clip_towers_in_open_clips_own_cache_are_not_needed(tmp_path):
    """``clip.pretrained: openai`` is read from open_clip's (Hugging Face) cache when it is
    there (factory.build_clip_from_cfg): then the registry's copy is not needed."""
    from huggingface_hub import constants

    repo = Path(constants.HF_HUB_CACHE) / "models--timm--vit_base_patch32_clip_224.openai"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_model.safetensors").write_bytes(b"stands in for the towers")
    assert list(command_needs("edit").required) == ["soundclip_landscape", "soundclip_resnet18", "sample_rain"]


def test_one_missing_file_is_one_line(monkeypatch):
    monkeypatch.setenv("SOUND2IMG_OFFLINE", "1")
    with pytest.raises(WeightsNotAvailableError) as info:
        weights.fetch_missing({"ir_se50": "identity loss"}, hint="never shown for one file")
    entry = get_entry("ir_se50")
    assert str(info.value) == (
        f"{entry.filename} (ir_se50, identity loss) is not in the cache and cannot be downloaded "
        f"(SOUND2IMG_OFFLINE is set): download {entry.url} yourself and put it at {cached_path(entry)}"
    )
