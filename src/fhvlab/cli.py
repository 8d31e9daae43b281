"""Command-line edge of the lab: parse arguments, run, turn expected errors into one line."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence

from fhvlab import paths
from fhvlab.download import DEFAULT_DATA_URL, describe, download_months
from fhvlab.errors import LabError
from fhvlab.months import months_for, parse_date, parse_month
from fhvlab.progress import LogProgress, TerminalBar

log = logging.getLogger("fhvlab")


def _cmd_data(args: argparse.Namespace) -> int:
    """`make data`: the months DATE needs, or exactly MONTHS."""
    if args.months:
        months = [parse_month(m) for m in args.months]
    else:
        months = list(months_for(parse_date(args.date)))
    base_url = args.base_url or os.environ.get("DATA_URL") or DEFAULT_DATA_URL
    dest = paths.data_dir()
    print(f"data: months {' '.join(map(str, months))} from {base_url} into {dest}")
    progress = TerminalBar() if sys.stderr.isatty() else LogProgress(log)
    fetched = download_months(
        months,
        dest,
        base_url,
        force=args.force,
        workers=args.workers,
        backoff=args.backoff,
        progress=progress,
    )
    for line in describe(fetched):
        print(f"data: {line}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The `python -m fhvlab` argument parser."""
    parser = argparse.ArgumentParser(prog="python -m fhvlab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    data = sub.add_parser("data", help="download FHV months into DATA_DIR")
    which = data.add_mutually_exclusive_group(required=True)
    which.add_argument("--date", help="run date YYYY-MM-DD: fetch the two months before it")
    which.add_argument("--months", nargs="+", metavar="YYYY-MM", help="fetch exactly these")
    data.add_argument("--force", action="store_true", help="download even if a valid file exists")
    data.add_argument("--base-url", help=f"default: $DATA_URL or {DEFAULT_DATA_URL}")
    data.add_argument("--workers", type=int, default=3, help="concurrent downloads (default 3)")
    data.add_argument("--backoff", type=float, default=0.5, help="retry backoff factor, seconds")
    data.set_defaults(func=_cmd_data)
    return parser


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command; expected failures become `error: ...` on stderr and exit 1."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return func(args)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; nothing was left half-written", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m fhvlab`."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return run(args.func, args)
