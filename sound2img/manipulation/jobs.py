"""A job file of ``manipulate.py --jobs`` (``.csv`` or ``.jsonl``): one row per edit, an
``id`` and any of the command line's per-edit options (``JOB_COLUMNS``), read and checked
into ``Job``s before anything runs (``manipulation.queue`` runs them)."""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sound2img.cli import check_config, to_schema
from sound2img.errors import UserInputError
from sound2img.manipulation.command import FLAG_KEYS
from sound2img.manipulation.run import EditPlan, check_options

if TYPE_CHECKING:
    from sound2img.config import ManipulateConfig

LEDGER = "ledger.jsonl"
JOB_FILE_SUFFIXES = (".csv", ".jsonl")
# per-edit columns: the command line's flags that describe one edit (not where or how
# many at once), plus ``generator`` (a registry name or checkpoint file)
JOB_COLUMNS = {k: v for k, v in FLAG_KEYS.items() if k not in ("batch_size", "out", "device", "jobs")}
JOB_COLUMNS["generator"] = "generator.path"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_RESERVED_IDS = {LEDGER}
LIST_SEPARATOR = "|"  # a CSV cell with several sounds, prompts, seeds or files: "a.wav|b.wav"


@dataclass
class Job:
    """One row of a job file: its ``id``, where it is (``line``), the base config with the
    row's values ``c`` and its checked options ``o`` (``run.check_options``)."""

    id: str
    line: int
    c: ManipulateConfig
    o: EditPlan
    label: str = ""  # the row's ``batch`` column: only jobs with the same label share a batch

    @property
    def group(self) -> str:
        """Jobs with the same group share a generator and optimiser settings (and ``batch``
        label): they can be optimised in one batch."""
        keys = ("steps", "lr", "lambda_sim", "lambda_id", "latent_term", "mask_step", "strip_every")
        settings = {k: getattr(self.o.manipulate, k) for k in keys}
        generator = dataclasses.asdict(self.c.generator)
        return json.dumps({"generator": generator, "batch": self.label, **settings}, sort_keys=True)


def read_rows(path: str | os.PathLike) -> list[tuple[int, dict[str, Any]]]:
    """A ``.csv`` (header row, then one row per job) or ``.jsonl`` (one JSON object per
    line; blank lines skipped) file → ``(line number, row)`` pairs. Empty CSV cells and
    JSON nulls are dropped (the option then comes from the command line)."""
    p = Path(path)
    if p.suffix.lower() not in JOB_FILE_SUFFIXES:
        raise UserInputError(f"--jobs {p}: expected a .csv or .jsonl file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(f"--jobs {p}: cannot read it ({exc.__class__.__name__}: {exc})") from None
    rows = []
    if p.suffix.lower() == ".jsonl":
        for n, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise UserInputError(f"{p} line {n}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise UserInputError(f"{p} line {n}: expected a JSON object, got {type(row).__name__}")
            rows.append((n, {k: v for k, v in row.items() if v is not None}))
        return rows
    reader = csv.DictReader(text.splitlines())
    for row in reader:
        n = reader.line_num
        if None in row:
            raise UserInputError(f"{p} line {n}: more cells than the header has columns")
        rows.append((n, {k: v.strip() for k, v in row.items() if k is not None and v is not None and v.strip()}))
    if reader.fieldnames is not None:
        _check_columns(p, 1, reader.fieldnames)
    return rows


def _check_columns(path: Path, line: int, columns: Iterable[str]) -> None:
    columns = list(columns)
    unknown = [c for c in columns if c not in ("id", "batch") and c not in JOB_COLUMNS]
    if unknown:
        raise UserInputError(
            f"{path} line {line}: unknown column(s) {', '.join(map(repr, unknown))}; "
            f"known: id, batch, {', '.join(sorted(JOB_COLUMNS))}"
        )
    if len(set(columns)) != len(columns):
        raise UserInputError(f"{path} line {line}: a column is repeated")


def _cell(key: str, value: Any, base: Any, where: str) -> Any:
    """A row's value for ``key`` → the config's type: lists for the repeatable options
    (a CSV cell splits on ``|``), numbers and booleans parsed from CSV text."""
    if isinstance(base, list):
        items = (
            value
            if isinstance(value, list)
            else ([v.strip() for v in value.split(LIST_SEPARATOR)] if isinstance(value, str) else [value])
        )
        return [_scalar(key, v, "int" if key == "seed" else "str", where) for v in items]
    kind = "bool" if isinstance(base, bool) else "str" if isinstance(base, str) or key == "generator" else "number"
    return _scalar(key, value, kind, where)


def _scalar(key: str, value: Any, kind: str, where: str) -> Any:
    if kind == "str":
        if not isinstance(value, str):
            raise UserInputError(f"{where}: {key} must be text, got {value!r}")
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if kind == "bool" and low in ("true", "false", "1", "0", "yes", "no"):
            return low in ("true", "1", "yes")
        try:
            value = int(low) if re.fullmatch(r"[+-]?\d+", low) else float(low)
        except ValueError:
            raise UserInputError(
                f"{where}: {key} must be {'true/false' if kind == 'bool' else 'a number'}, got {value!r}"
            ) from None
    if kind == "bool" and not isinstance(value, bool):
        raise UserInputError(f"{where}: {key} must be true or false, got {value!r}")
    if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        raise UserInputError(f"{where}: {key} must be an integer, got {value!r}")
    return value


def _set(c: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for k in parents:
        c = c.setdefault(k, {})
    c[last] = value


def _get(c: dict[str, Any], dotted: str) -> Any:
    for k in dotted.split("."):
        c = (c or {}).get(k)
    return c


def parse_jobs(rows: list[tuple[int, dict[str, Any]]], base: ManipulateConfig, where: str = "jobs") -> list[Job]:
    """Rows → jobs, each checked as ``manipulate.py`` would check that edit (a row is data:
    its values are set on the base config as plain data, then the whole is converted to
    the schema's dataclasses as the command line's config is): an unknown
    column, a missing/repeated/unusable id, a bad value or no rows at all is a
    ``UserInputError`` naming the line (before anything runs)."""
    if not rows:
        raise UserInputError(f"{where}: no jobs in it")
    jobs, seen = [], {}
    base_data = dataclasses.asdict(base)
    for line, row in rows:
        at = f"{where} line {line}"
        _check_columns(Path(where), line, row)
        jid = row.get("id")
        if not isinstance(jid, str) or not _ID.fullmatch(jid) or jid in _RESERVED_IDS:
            raise UserInputError(
                f"{at}: id must be 1-100 letters, digits, '.', '_' or '-' (not starting with "
                f"'.', '_' or '-', not {LEDGER}), got {jid!r}"
            )
        if jid in seen:
            raise UserInputError(f"{at}: id {jid!r} repeats line {seen[jid]}")
        seen[jid] = line
        c = copy.deepcopy(base_data)
        c.pop("jobs", None)
        label = row.get("batch", "")
        if not isinstance(label, str):
            raise UserInputError(f"{at} (id {jid}): batch must be text (a label), got {label!r}")
        for key, value in row.items():
            if key in ("id", "batch"):
                continue
            dotted = JOB_COLUMNS[key]
            _set(c, dotted, _cell(key, value, _get(base_data, dotted), f"{at} (id {jid})"))
        if "generator" in row:  # a file or registry name replaces the configured one
            c["generator"].pop("name", None)
        if any(k in row for k in ("latent", "mean_latent", "image")) and "seed" not in row:
            _set(c, "edit.seeds", [])  # an explicit source replaces the default seed, as on the command line
        try:
            check_config("manipulate", c)  # each row's values against the schema's ranges and choices
            job_cfg = to_schema(type(base), c)
            o = check_options(job_cfg)
        except UserInputError as exc:
            raise UserInputError(f"{at} (id {jid}): {exc}") from None
        jobs.append(Job(jid, line, job_cfg, o, label))
    return jobs


def load_jobs(path: str | os.PathLike, base: ManipulateConfig) -> list[Job]:
    """Read and check a job file against the base config ``base``."""
    return parse_jobs(read_rows(path), base, str(path))
