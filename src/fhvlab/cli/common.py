"""What every command-line module shares: the API URL, the server spec, one-line errors."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable

from pydantic import ValidationError

from fhvlab import settings
from fhvlab.errors import LabError
from fhvlab.local import server


def spec(args: argparse.Namespace) -> server.ServerSpec:
    """The lab server's host, port and home, from --host/--port (PREFECT_HOST/PREFECT_PORT)."""
    return server.ServerSpec(args.host, server.parse_port(args.port), settings.prefect_home())


def api_url(args: argparse.Namespace) -> str:
    """--api-url, else API_URL, else the lab server's own URL (PREFECT_HOST, PREFECT_PORT)."""
    knobs = settings.current()
    explicit = getattr(args, "api_url", None) or knobs.api_url.strip()
    if explicit:
        return server.parse_api_url(explicit)
    port = server.parse_port(knobs.prefect_port)
    return server.ServerSpec(knobs.prefect_host, port, knobs.prefect_home).api_url


def ui_base(args: argparse.Namespace) -> str:
    """The UI's address: UI_API_URL (else the API URL) without its /api."""
    return (settings.current().ui_api_url.strip() or api_url(args)).removesuffix("/api")


def add_server_args(parser: argparse.ArgumentParser, knobs: settings.Settings) -> None:
    """--host and --port of the lab's server."""
    parser.add_argument("--host", default=knobs.prefect_host)
    parser.add_argument("--port", default=knobs.prefect_port)


def add_api_arg(parser: argparse.ArgumentParser) -> None:
    """--api-url (default: API_URL, else the lab server's)."""
    parser.add_argument("--api-url", default=None, help="default: API_URL, else the lab server's")


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def one_line(exc: ValidationError) -> str:
    """A knob pydantic refused, as one line: which knob, what it was, what is wrong."""
    first = exc.errors()[0]
    name = str(first["loc"][0]).upper() if first.get("loc") else "a knob"
    return f"{name}={first.get('input')!r}: {first['msg']} (see lab.mk)"


def run(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command; expected failures become `error: ...` on stderr and exit 1."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return func(args)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValidationError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; nothing was left half-written", file=sys.stderr)
        return 130
