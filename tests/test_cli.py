"""CLI conventions: exit 2 + one line for user errors, exit 1 for internal ones, no
traceback; overrides separated from flags; device resolution; every flag of every script's
--help described with its default."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sound2img.cli import ArgumentParser, add_common_args, parse_with_overrides, run_cli
from sound2img.errors import AudioLoadError, UserInputError
from sound2img.utils.device import resolve_device


def test_user_error_is_one_line_exit_2(capsys):
    def fn(argv):
        raise AudioLoadError("x.wav: not an audio file")

    assert run_cli(fn, []) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: x.wav: not an audio file"
    assert "Traceback" not in err


def test_internal_error_is_exit_1_without_traceback(capsys, monkeypatch):
    monkeypatch.delenv("SOUND2IMG_DEBUG", raising=False)

    def fn(argv):
        raise RuntimeError("boom\nsecond line")

    assert run_cli(fn, []) == 1
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: boom" in err
    assert "second line" not in err and "Traceback" not in err


def test_success_and_explicit_status():
    assert run_cli(lambda argv: None, []) == 0
    assert run_cli(lambda argv: 3, []) == 3


def test_argparse_usage_error_goes_through_user_error(capsys):
    parser = ArgumentParser(prog="demo")
    parser.add_argument("--steps", type=int)

    def fn(argv):
        parser.parse_args(argv)

    assert run_cli(fn, ["--steps", "many"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--steps" in err


def test_help_exits_zero(capsys):
    parser = ArgumentParser(prog="demo", description="demo tool")
    assert run_cli(lambda argv: parser.parse_args(argv), ["--help"]) == 0
    assert "demo tool" in capsys.readouterr().out


def test_parse_with_overrides_splits_flags_and_key_values():
    parser = ArgumentParser(prog="demo")
    parser.add_argument("--text")
    add_common_args(parser)
    args, overrides = parse_with_overrides(parser, ["--text", "a=b c", "optim.lr=0.1", "--cfg", "job", "preset=tiny"])
    assert args.text == "a=b c" and args.cfg == "job"
    assert overrides == ["optim.lr=0.1", "preset=tiny"]
    with pytest.raises(UserInputError, match="unrecognised argument 'stray'"):
        parse_with_overrides(parser, ["stray"])
    with pytest.raises(UserInputError, match="--bogus"):
        parse_with_overrides(parser, ["--bogus", "1"])


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UserInputError):
        resolve_device("tpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(UserInputError, match="CUDA is not available"):
            resolve_device("cuda")


def test_broken_pipe_is_not_an_internal_error(capsys):
    def fn(argv):
        raise BrokenPipeError(32, "Broken pipe")

    assert run_cli(fn, []) == 0
    assert "internal error" not in capsys.readouterr().err


SCRIPTS = sorted(p.stem for p in (Path(__file__).resolve().parent.parent / "scripts").glob("*.py"))


def help_entries(text: str) -> dict[str, str]:
    """``--help`` output → {option: its help text} (argparse's layout: an option at two
    spaces, its help beside it or on the lines below, indented further)."""
    entries: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("  -"):
            flag, _, rest = line.strip().partition("  ")
            current = flag.split(",")[-1].split()[0]
            entries[current] = rest.strip()
        elif current and line.startswith("   ") and line.strip():
            entries[current] = (entries[current] + " " + line.strip()).strip()
        else:
            current = None
    return entries


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_flag_has_a_description_and_its_default(script, capsys):
    from helpers import load_file_module

    main = load_file_module(Path(__file__).resolve().parent.parent / "scripts" / f"{script}.py").main
    assert main(["--help"]) == 0
    entries = help_entries(capsys.readouterr().out)
    assert "--device" in entries or script in ("fetch_weights", "report")  # the parse found the options
    undocumented = {
        f: h for f, h in entries.items() if f != "--help" and "default" not in h.lower() and "required" not in h
    }
    assert undocumented == {}, f"{script}.py --help: flags without a description or default"
