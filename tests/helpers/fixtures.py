"""Where the shared reference fixtures are: a ``shared/fixtures/`` folder beside the
checkout (``shared`` and the checkout in one parent folder), never copied into the
repository. Tests ask for a path inside it with ``fixture_path``; where it is absent they
skip with the path they looked for, or fail with it when ``SOUND2IMG_REQUIRE_FIXTURES=1``
(``.ci/run`` sets it, so that CI cannot pass by skipping the reference tests)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
REQUIRE = "SOUND2IMG_REQUIRE_FIXTURES"


def fixtures_required() -> bool:
    return os.environ.get(REQUIRE, "").strip() not in ("", "0")


def fixture_path(*parts: str) -> Path:
    """``ROOT/<parts>`` if it exists, else skip the test (or fail it under
    ``SOUND2IMG_REQUIRE_FIXTURES=1``) with the path that was looked for."""
    path = ROOT.joinpath(*parts)
    if not path.exists():
        reason = f"reference fixtures not found at {path} (the shared/fixtures folder next to the checkout)"
        if fixtures_required():
            pytest.fail(f"{reason}; {REQUIRE} is set", pytrace=False)
        pytest.skip(reason)
    return path


def manifest(*parts: str) -> dict:
    """The ``manifest.json`` of the fixture folder ``parts``."""
    return json.loads(fixture_path(*parts, "manifest.json").read_text())
