"""Fixtures of the reliability suite: the bad-input corpus (written once per session),
the 1-hour file, and a working directory for child scripts."""

from __future__ import annotations

from pathlib import Path

import pytest

from .corpus import write_corpus, write_hour


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """Every short corpus case, written under one session directory."""
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def hour_file(tmp_path_factory) -> Path:
    """A 1-hour 8 kHz int16 wav (57.6 MB), written in blocks."""
    return write_hour(tmp_path_factory.mktemp("long") / "one hour.wav")
