"""List the registered public weights and sample sounds, or fetch some into the cache.

python scripts/fetch_weights.py --list
python scripts/fetch_weights.py soundclip_resnet18 soundclip_landscape sample:rain
python scripts/fetch_weights.py ir_se50 --offline     # only check the cache
"""

from __future__ import annotations

import sys

from sound2img.cli import ArgumentParser, run_cli
from sound2img.weights import cache_dir, format_weights_table, get_entry, resolve_weights


def _run(argv) -> int:
    parser = ArgumentParser(prog="fetch_weights.py", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help="registry names to fetch (see --list)")
    parser.add_argument("--list", action="store_true", help="print the registry table and exit")
    parser.add_argument("--offline", action="store_true", help="do not download; fail unless already cached")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--cfg", choices=["job"], help="print the resolved options and exit")
    args = parser.parse_args(argv)
    if args.cfg:
        from omegaconf import OmegaConf

        from sound2img.cli import to_yaml

        print(
            to_yaml(
                OmegaConf.create(
                    {
                        "names": [get_entry(n).name for n in args.names],
                        "list": args.list,
                        "offline": args.offline,
                        "cache_dir": str(cache_dir()),
                    }
                )
            ),
            end="",
        )
        return 0
    if args.list or not args.names:
        print(f"cache: {cache_dir()}")
        print(format_weights_table())
        return 0
    entries = [get_entry(n) for n in args.names]  # every name checked before any download
    for entry in entries:
        path = resolve_weights(entry.name, offline=True if args.offline else None, progress=not args.no_progress)
        print(f"{entry.name}: {path}")
    return 0


def main(argv=None) -> int:
    return run_cli(_run, argv)


if __name__ == "__main__":
    sys.exit(main())
