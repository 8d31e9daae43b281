"""Command-line edge of the lab (`python -m fhvlab ...`), one module per Makefile section.

start (Getting started), module (The module, step by step), events (Runs started by
events), running (Running the lab), backfill (Many runs), cohort (Past one machine).
Each module parses its commands' arguments, calls the domain packages, and prints; an
expected failure becomes one `error: ...` line and exit 1 (`common.run`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from fhvlab import settings
from fhvlab.cli import backfill, cohort, common, events, module, running, start

SECTIONS = (start, module, events, running, backfill, cohort)
log = logging.getLogger("fhvlab")


def build_parser(knobs: settings.Settings) -> argparse.ArgumentParser:
    """The `python -m fhvlab` argument parser; the knobs give the defaults."""
    parser = argparse.ArgumentParser(prog="python -m fhvlab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for section in SECTIONS:
        section.add_parsers(sub, knobs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m fhvlab`."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    try:
        knobs = settings.current()
    except ValidationError as exc:
        print(f"error: {common.one_line(exc)}", file=sys.stderr)
        return 1
    args = build_parser(knobs).parse_args(argv)
    return common.run(args.func, args)
