"""What the messages about config keys need: every dotted key a schema of
``sound2img/config.py`` declares, the closest declared keys to a misspelt one ("did you mean
manipulate.steps?"), and one line for an unknown key or a value of the wrong type
(``cli.compose`` and ``config.validate`` use them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields, is_dataclass

from sound2img.config import SCHEMA_MODULE, SCHEMAS, _dataclass_of, _dict_value_dataclass, _hints


def _schema_at(full_key: str, config_name: str) -> type | None:
    """The schema class holding ``full_key`` (``manipulate.steps`` → ``ManipulateOptions``)."""
    import typing

    schema = SCHEMAS.get(config_name)
    for part in [p for p in full_key.split(".") if p][:-1]:
        if schema is None:
            return None
        hint = _hints(schema).get(part)
        args = typing.get_args(hint)
        if typing.get_origin(hint) in (dict, dict) and len(args) == 2:
            hint = args[1]  # domains.<name>: a Dict[str, DomainOptions] entry
            continue
        schema = next((t for t in (hint, *args) if is_dataclass(t)), None)
    return schema


def schema_keys(schema: type, where: str = "") -> list[str]:
    """Every dotted key ``schema`` declares (sub-sections expanded; a ``dict`` of sections
    and an ``Any`` group count as one key, their contents being open)."""
    out = []
    for f in fields(schema):
        path = f"{where}.{f.name}" if where else f.name
        out.append(path)
        sub = _dataclass_of(schema, f) if _dict_value_dataclass(schema, f) is None else None
        if sub is not None:
            out += schema_keys(sub, path)
    return out


def did_you_mean(word: str, candidates: Sequence[str], cutoff: float = 0.7) -> list[str]:
    """The candidates closest to ``word`` (difflib on the last part of dotted keys): first
    among ``word``'s siblings (``manipulate.stpes`` → ``manipulate.steps``), else anywhere
    (``stpes`` → ``manipulate.steps``); at most three."""
    import difflib

    parent, _, leaf = word.rpartition(".")
    by_leaf: dict[str, list[str]] = {}
    for c in sorted(set(candidates)):
        c_parent, _, c_leaf = c.rpartition(".")
        if c_parent == parent:
            by_leaf.setdefault(c_leaf, []).insert(0, c)  # a sibling first
        else:
            by_leaf.setdefault(c_leaf, []).append(c)
    siblings = [c.rpartition(".")[2] for c in candidates if c.rpartition(".")[0] == parent]
    close = difflib.get_close_matches(leaf, siblings, n=1, cutoff=cutoff)
    if close:
        return [f"{parent}.{close[0]}" if parent else close[0]]
    close = difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=cutoff)
    return by_leaf[close[0]][:3] if close else []


def unknown_key_message(
    full_key: str, config_name: str = "", schema: type | None = None, candidates: Sequence[str] = ()
) -> str:
    """One line for a key no schema declares: the closest declared keys (``candidates``,
    else the schema's), or else the keys of its section and where a new one is declared."""
    if not candidates:
        if schema is not None:
            parent = full_key.rsplit(".", 1)[0] if "." in full_key else ""
            candidates = schema_keys(schema, parent)
        elif config_name in SCHEMAS:
            candidates = schema_keys(SCHEMAS[config_name])
    close = did_you_mean(full_key, candidates)
    if close:
        return f"unknown key {full_key!r}: did you mean {' or '.join(close)}?"
    parent = full_key.rsplit(".", 1)[0] + "." if "." in full_key else ""
    siblings = sorted({c[len(parent) :].split(".")[0] for c in candidates if c.startswith(parent)})
    section = f"{parent[:-1]} has" if parent else "the keys are"
    listed = f"{section}: {', '.join(siblings[:20])}{', …' if len(siblings) > 20 else ''}; " if siblings else ""
    schema = schema or _schema_at(full_key, config_name)
    where = f"a new key is declared in class {schema.__name__} in {SCHEMA_MODULE}" if schema else ""
    return f"unknown key {full_key!r} ({listed}{where})".replace("; )", ")").replace(" ()", "")


def type_message(full_key: str, omegaconf_message: str) -> str:
    """One line for a value of the wrong type, from OmegaConf's conversion error."""
    import re

    first = omegaconf_message.strip().splitlines()[0]
    value = re.search(r"Value '(.*?)'", first)
    # OmegaConf: "... could not be converted to Integer|Float", "... is not a valid bool (type str)"
    wanted = {"to Integer": "an integer", "to Float": "a number", "valid bool": "true or false"}
    kind = next((v for k, v in wanted.items() if k in first), None)
    if kind is None or value is None:
        return f"{full_key}: {first}"
    return f"{full_key} must be {kind}, got {value.group(1)!r}"
