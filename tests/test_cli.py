"""CLI conventions: exit 2 + one line for user errors, exit 1 for internal ones, no
traceback; overrides separated from flags; device resolution."""

from __future__ import annotations

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
