"""The one registry mechanism (sound2img.registry) and the tables built on it."""

from __future__ import annotations

import pytest

from sound2img.errors import UserInputError
from sound2img.registry import Registry


class _MyError(UserInputError):
    pass


def test_decorator_direct_and_family_lookups():
    reg: Registry = Registry("widget")

    @reg.register("round")
    def make_round(size=1):
        return ("round", size)

    assert reg.register("square", "S") == "S"  # direct form returns the thing
    reg.register("scaled", lambda arg, k=1: (arg, k), family=True)
    assert reg.get("round") is make_round and reg.get("square") == "S"
    assert reg.get("scaled:big")(k=3) == ("big", 3)  # the family argument comes first
    assert reg.names() == ["round", "square"] and reg.families() == ["scaled"]
    assert [n for n, _ in reg.items()] == ["round", "square"]  # registration order
    assert "round" in reg and "scaled:x" in reg and "scaled:" not in reg and "oval" not in reg


def test_one_unknown_name_error_and_no_silent_overwrite():
    reg: Registry = Registry("widget", error=_MyError, hint="see --list")
    reg.register("round", 1)
    reg.register("fam", print, family=True)
    with pytest.raises(_MyError, match=r"^unknown widget 'oval' \(known: round, fam:<name>; see --list\)$"):
        reg.get("oval")
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("round", 2)
    reg.register("round", 2, overwrite=True)
    assert reg.get("round") == 2
    with pytest.raises(ValueError, match="must not contain ':'"):
        reg.register("a:b", 3)


def test_a_long_table_suggests_close_names_only():
    reg: Registry = Registry("weights name")
    for i in range(Registry.MAX_LISTED + 1):
        reg.register(f"entry_{i:02d}", i)
    reg.register("ffhq1024", "f")
    message = str(reg.unknown("ffhq102"))
    assert "ffhq1024" in message and "entry_00" not in message
    assert "no close registered weights name" in str(reg.unknown("zzzzzzzz"))


def test_subscript_looks_a_name_up_by_its_text():
    reg: Registry = Registry("depth")
    reg.register("50", "fifty")
    assert reg[50] == reg["50"] == reg.get("50") == "fifty"
    with pytest.raises(UserInputError, match=r"^unknown depth '18' \(known: 50\)$"):
        reg[18]


def test_every_table_uses_the_mechanism():
    """Audio encoders, front ends, datasets, weights, evaluation tables, optimisers, lr
    schedules and IR-SE depths: one class, one unknown-name error."""
    from sound2img.audio.frontend import FRONTENDS
    from sound2img.data.registry import DATASETS
    from sound2img.evaluation.tables import TABLES
    from sound2img.models.arcface import STAGES
    from sound2img.models.audio_encoder import ENCODERS
    from sound2img.training.optimizer import OPTIMIZERS, SCHEDULES
    from sound2img.weights import WEIGHTS

    for table in (FRONTENDS, DATASETS, TABLES, ENCODERS, WEIGHTS, OPTIMIZERS, SCHEDULES, STAGES):
        assert isinstance(table, Registry) and table.names()
        with pytest.raises(UserInputError, match=f"unknown {table.kind} 'no-such-name'"):
            table.get("no-such-name")
