"""Atomic writes never leave partial files; overwrite protection names the path."""

from __future__ import annotations

import pytest

from sound2img.errors import UserInputError
from sound2img.utils.files import atomic_path, atomic_write_text, check_can_write


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "out" / "metrics.json"
    atomic_write_text(target, "first")
    assert target.read_text() == "first"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert target.read_text() == "first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]


def test_check_can_write(tmp_path):
    existing = tmp_path / "a.png"
    existing.write_bytes(b"x")
    check_can_write([tmp_path / "b.png"], overwrite=False)
    check_can_write([existing], overwrite=True)
    with pytest.raises(UserInputError, match="a.png already exists"):
        check_can_write([tmp_path / "b.png", existing], overwrite=False)
