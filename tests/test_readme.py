"""The README's commands as a new user types them. Blocks marked ```` ```bash offline ````
run as written, in README order, in one empty folder, with no weights and no network (the
set-up the README documents: the environment active, i.e. this interpreter); every other
command names a script that exists, flags its ``--help`` lists and ``make`` targets the
Makefile has. And every flag of every script's ``--help`` has a description and its default."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from helpers import load_file_module

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
SCRIPTS = sorted(p.stem for p in (ROOT / "scripts").glob("*.py"))


def blocks(info: str) -> list[str]:
    """The fenced blocks whose info string is exactly ``info`` (``bash``, ``bash offline``)."""
    return re.findall(rf"^```{info}\n(.*?)^```", README, flags=re.S | re.M)


def commands(block: str) -> list[list[str]]:
    """A shell block → its commands as argument lists (``\\`` continuations joined,
    comments dropped)."""
    out = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words:
            out.append(words)
    return out


def script_of(words: list[str]) -> tuple[str, list[str]] | None:
    """``python scripts/X.py ARGS`` (also after ``torchrun``/``srun`` options) → (X, ARGS)."""
    for i, w in enumerate(words):
        if w.startswith("scripts/") and w.endswith(".py"):
            return Path(w).stem, words[i + 1 :]
    return None


@cache
def script_main(name: str):
    return load_file_module(ROOT / "scripts" / f"{name}.py", f"_readme_{name}").main


def help_entries(text: str) -> dict[str, str]:
    """``--help`` output → {option: its help text} (argparse's layout: an option at two
    spaces, its help beside it or on the lines below, indented further)."""
    entries: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("  -"):
            flag, _, rest = line.strip().partition("  ")
            current = re.findall(r"(?<![\w{,])(--?[\w-]+)", flag)[-1]  # the long name; not a {choice}
            entries[current] = rest.strip()
        elif current and line.startswith("   ") and line.strip():
            entries[current] = (entries[current] + " " + line.strip()).strip()
        else:
            current = None
    return entries


def readme_flags(script: str) -> set[str]:
    """Every ``--flag`` the README's shell blocks pass to ``scripts/<script>.py``."""
    flags = set()
    for block in blocks("bash") + blocks("bash offline"):
        for words in commands(block):
            found = script_of(words)
            if found and found[0] == script:
                flags |= {w.split("=", 1)[0] for w in found[1] if w.startswith("--")}
    return flags


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_describes_every_flag_with_its_default_and_has_the_readmes_flags(script, capsys):
    assert script_main(script)(["--help"]) == 0
    entries = help_entries(capsys.readouterr().out)
    assert "--device" in entries or script in ("fetch_weights", "report")  # the parse found the options
    undocumented = {
        f: h for f, h in entries.items() if f != "--help" and "default" not in h.lower() and "required" not in h
    }
    assert undocumented == {}, f"{script}.py --help: flags without a description or default"
    assert sorted(readme_flags(script) - set(entries)) == [], f"README passes flags {script}.py does not have"


def test_every_readme_command_names_a_real_script_or_make_target():
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.M))
    seen = set()
    for block in blocks("bash") + blocks("bash offline"):
        for words in commands(block):
            found = script_of(words)
            if found:
                assert found[0] in SCRIPTS, words
                seen.add(found[0])
            elif words[0] == "make":
                assert [w for w in words[1:] if "=" not in w and w not in targets] == [], words
    assert len(seen) >= 10  # the parse found the README's commands


def test_the_offline_blocks_are_there():
    ran = [script_of(w) or tuple(w) for b in blocks("bash offline") for w in commands(b)]
    assert ("make", "edit-tiny") in ran
    names = {r[0] for r in ran if len(r) == 2 and isinstance(r[1], list)}
    assert {"manipulate", "invert", "report", "generate", "train_encoder", "embed"} <= names


def _make_commands(words: list[str]) -> list[list[str]]:
    """The commands ``make TARGET`` runs with this interpreter's environment as its VENV
    (``make -n``, the environment taken as built)."""
    venv = Path(sys.prefix)
    dry = subprocess.run(
        ["make", "-n", "-C", str(ROOT), "-o", str(venv / ".complete"), f"VENV={venv}", *words[1:]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [shlex.split(line) for line in dry.splitlines() if "scripts/" in line]


@pytest.mark.slow  # every offline command in one process: tiny networks, ~30-60 s on 2 cores
def test_offline_commands_run_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SOUND2IMG_OFFLINE", "1")
    monkeypatch.setenv("SOUND2IMG_CACHE", str(tmp_path / "cache"))  # empty: nothing fetched, nothing found
    old_umask = os.umask(0o022)
    try:
        for block in blocks("bash offline"):
            for words in commands(block):
                for argv in _make_commands(words) if words[0] == "make" else [words]:
                    script, args = script_of(argv)
                    status = script_main(script)(args)
                    assert status == 0, (argv, capsys.readouterr().err[-3000:])
    finally:
        os.umask(old_umask)
    written = [p for p in tmp_path.rglob("*") if "cache" not in p.parts]
    assert {
        "outputs/edit-tiny/result.png",
        "outputs/x/latent.pt",
        "tiny.html",
        "runs/tiny/encoder_final.safetensors",
    } <= {p.relative_to(tmp_path).as_posix() for p in written}
    # every file written honours the umask (0644 under 022), weights included
    modes = {p.relative_to(tmp_path).as_posix(): oct(p.stat().st_mode & 0o777) for p in written if p.is_file()}
    assert {k: v for k, v in modes.items() if v != "0o644"} == {}
