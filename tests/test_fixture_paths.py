"""``helpers.fixtures.fixture_path``: a missing reference fixture skips the test with the
path it looked for, or fails it under ``SOUND2IMG_REQUIRE_FIXTURES=1`` (what ``.ci/run``
sets); a present one is returned."""

from __future__ import annotations

import pytest

from helpers import fixtures


@pytest.fixture()
def root(tmp_path, monkeypatch):
    monkeypatch.setattr(fixtures, "ROOT", tmp_path / "shared" / "fixtures")
    return tmp_path / "shared" / "fixtures"


@pytest.mark.parametrize("value", [None, "", "0"])
def test_missing_fixture_skips_with_its_path(root, monkeypatch, value):
    if value is None:
        monkeypatch.delenv(fixtures.REQUIRE, raising=False)
    else:
        monkeypatch.setenv(fixtures.REQUIRE, value)
    with pytest.raises(BaseException) as info:
        fixtures.fixture_path("stylegan2", "rosinality")
    assert info.type is pytest.skip.Exception and str(root / "stylegan2" / "rosinality") in str(info.value)


def test_missing_fixture_fails_when_required(root, monkeypatch):
    monkeypatch.setenv(fixtures.REQUIRE, "1")
    with pytest.raises(BaseException) as info:  # a skip here must fail this test, not skip it
        fixtures.fixture_path("e4e", "psp_64")
    assert info.type is pytest.fail.Exception
    assert str(root / "e4e" / "psp_64") in str(info.value) and "SOUND2IMG_REQUIRE_FIXTURES" in str(info.value)


def test_present_fixture_is_returned(root, monkeypatch):
    monkeypatch.setenv(fixtures.REQUIRE, "1")
    (root / "peer_audio" / "wav2clip").mkdir(parents=True)
    (root / "peer_audio" / "wav2clip" / "manifest.json").write_text('{"seed": 0}')
    assert fixtures.fixture_path("peer_audio", "wav2clip") == root / "peer_audio" / "wav2clip"
    assert fixtures.manifest("peer_audio", "wav2clip") == {"seed": 0}
