"""lab.mk's knob defaults, read with the standard library only.

`scripts/doctor.py` runs before .venv exists, so this module imports nothing else;
`fhvlab.settings` builds the typed Settings on top of it.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAB_MK = ROOT / "lab.mk"
_LINE = re.compile(r"^([A-Z][A-Z0-9_]*)\s*\?=([^#]*)")


@lru_cache(maxsize=None)  # noqa: UP033  (functools.cache is 3.9+; doctor runs on 3.8)
def lab_defaults(path: Path = LAB_MK) -> dict[str, str]:
    """The knobs' defaults as lab.mk writes them, with `$(ROOT)` made the checkout's path."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if m := _LINE.match(line):
            found[m.group(1)] = m.group(2).strip().replace("$(ROOT)", str(ROOT))
    return found


def client_host(host: str) -> str:
    """Where a client on this machine calls a server listening on `host` (0.0.0.0 and ::
    are not addresses to call)."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def lab_api_url(host: str, port: str | int) -> str:
    """The API URL of the lab's server listening on `host`:`port`: the one place it is built."""
    return f"http://{client_host(host)}:{port}/api"
