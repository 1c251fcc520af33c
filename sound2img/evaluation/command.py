"""``scripts/reproduce.py``'s command line: a table name, ``--out``/``--overwrite``/``--list``
and ``key=value`` overrides onto the ``reproduce`` config, then ``tables.reproduce``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from sound2img.cli import add_common_args, parse_with_overrides, script_parser, to_yaml
from sound2img.errors import UserInputError
from sound2img.evaluation.tables import compose_table, get_table, list_tables, reproduce

EPILOG = """\
examples:
  python scripts/reproduce.py --list
  python scripts/reproduce.py zeroshot datasets.esc50.root=data/ESC-50-master datasets.us8k.root=data/UrbanSound8K
  python scripts/reproduce.py supp_table1 eval.n_latents=150 --out outputs/reproduce
  python scripts/reproduce.py fig_volume --out outputs/tiny --overwrite preset=tiny eval.sound=tone:440
What each table needs (weights, data, where to put them): docs/reproduce.md.
"""


def build_parser() -> argparse.ArgumentParser:
    """``reproduce.py <table> [--out DIR] [--overwrite] [--list] [key=value ...]``."""
    p = script_parser(
        "reproduce.py",
        "Reproduce one table or figure of the paper: writes "
        "<table>.md and <table>.json (and PNGs for figures) with the paper's numbers beside ours.",
        EPILOG,
    )
    p.add_argument("table", nargs="?", metavar="TABLE", help=f"one of: {', '.join(list_tables())}")
    p.add_argument("--list", action="store_true", help="list the tables and figures and exit (default: off)")
    p.add_argument("--out", metavar="DIR", help="output directory (default: outputs/reproduce)")
    p.add_argument("--overwrite", action="store_true", help="replace this table's files in --out (default: off)")
    add_common_args(p)
    return p


def main(argv: Sequence[str]) -> int:
    """Parse, compose the table's configs, run it, print the files written."""
    args, overrides = parse_with_overrides(build_parser(), argv)
    if args.list:
        for spec in map(get_table, list_tables()):
            print(f"{spec.name:22s} {spec.paper}")
        return 0
    if not args.table:
        raise UserInputError("reproduce.py: name a table (see --list)")
    get_table(args.table)
    if args.device:
        overrides = [*overrides, f"device={args.device}"]
    from sound2img.factory import towers_override

    for o in list(overrides):  # encoder.path=audioclip_partial: its own CLIP towers unless clip= is given
        if o.split("=", 1)[0] == "encoder.path" and "=" in o:
            overrides = [*overrides, *towers_override(o.split("=", 1)[1], overrides)]
    cfgs = compose_table(args.table, overrides)
    if args.cfg == "job":
        for cfg in cfgs:
            print(to_yaml(cfg))
        return 0
    out = args.out or "outputs/reproduce"
    from sound2img.manipulation.queue import QueueFailed

    try:
        paths = reproduce(args.table, cfgs, out, overwrite=args.overwrite)
    except QueueFailed as exc:  # some edits failed (see the ledger): exit 1, one line
        from sound2img.utils.distributed import failed_run_status

        if int(os.environ.get("RANK", "0")) == 0:
            print(f"error: {exc}", file=sys.stderr)
        return failed_run_status(str(exc))
    for path in paths:
        print(path)
    return 0
