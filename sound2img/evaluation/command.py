"""``scripts/reproduce.py``'s command line: a table name, ``--out``/``--overwrite``/``--list``
and ``key=value`` overrides onto the ``reproduce`` config, then ``tables.reproduce``."""

from __future__ import annotations

import argparse
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


# what a registry file is for, by its format (the table's message names each missing file)
PURPOSES = {
    "rosinality_pt": "generator",
    "nvlabs_pkl": "generator",
    "soundclip_pth": "sound encoder",
    "audioclip_pt": "sound encoder",
    "wav2clip_pt": "sound encoder",
    "openai_clip": "CLIP",
    "arcface_pth": "identity loss",
    "audio": "sound",
}


def ensure_table_weights(table: str, cfgs) -> None:
    """Every registry file the table reads (``reproduce_doc.table_requirements``, the list of
    docs/reproduce.md) fetched before it starts; offline, one message names all missing ones.
    CLIP's towers already in open_clip's own cache count as there."""
    from sound2img.cli import to_plain
    from sound2img.evaluation.reproduce_doc import table_requirements
    from sound2img.factory import clip_source
    from sound2img.needs import Needs, ensure_weights
    from sound2img.weights import get_entry

    needs = Needs()
    towers = clip_source(to_plain(cfgs[0]).get("clip"))
    for name in table_requirements(table, cfgs).weights:
        entry = get_entry(name)
        if entry.format != "openai_clip" or towers is not None:
            needs.add(name, PURPOSES.get(entry.format, entry.format))
    ensure_weights(needs)


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
    ensure_table_weights(args.table, cfgs)
    out = args.out or "outputs/reproduce"
    from sound2img.manipulation.queue import QueueFailed

    try:
        paths = reproduce(args.table, cfgs, out, overwrite=args.overwrite)
    except QueueFailed as exc:  # some edits failed (see the ledger): exit 1, one line
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0
