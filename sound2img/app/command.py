"""``scripts/demo.py``'s command line: serve the web app on this machine."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from sound2img.cli import parse_with_overrides, script_parser
from sound2img.errors import UserInputError

log = logging.getLogger(__name__)

EPILOG = """\
examples:
  python scripts/demo.py                      # the authors' landscape model (weights fetched on first use)
  python scripts/demo.py preset=tiny          # small random networks, offline (an install check)
  python scripts/demo.py manipulate=faces --device cuda
  python scripts/demo.py --port 7861 app.concurrency=1 app.max_queue=4
"""


def build_parser() -> argparse.ArgumentParser:
    p = script_parser(
        "demo.py",
        "A local web page to edit images with sounds (Gradio). "
        "Leftover key=value words are overrides of configs/demo.yaml (manipulate.yaml + app).",
        EPILOG,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=None, help="port (default: Gradio's, 7860 or the next free one)")
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")
    return p


def main(argv: Sequence[str]) -> int:
    args, overrides = parse_with_overrides(build_parser(), argv)
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UserInputError("the web app needs Gradio: pip install -e '.[demo]'") from None
    from sound2img.app.engine import Engine
    from sound2img.app.page import launch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "urllib3"):  # Gradio's own start-up probes
        logging.getLogger(noisy).setLevel(logging.WARNING)
    engine = Engine(overrides, device=args.device)
    if engine.random_networks():
        log.warning(
            "random networks (%s): an install check, every sound gives much the same picture",
            ", ".join(engine.random_networks()),
        )
    launch(engine, host=args.host, port=args.port, share=args.share)
    return 0
