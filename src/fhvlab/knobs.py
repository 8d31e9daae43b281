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


# The result storage's environment (not knobs: each SDK reads its own variables). A change of
# any of them means the storage is checked again; the SECRETS are never printed.
STORAGE_SECRETS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_CLIENT_SECRET",
)
STORAGE_ENV = STORAGE_SECRETS + (  # noqa: RUF005  (doctor runs on Python 3.8)
    "AWS_ENDPOINT_URL",
    "AWS_PROFILE",
    "AWS_DEFAULT_REGION",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "STORAGE_EMULATOR_HOST",
    "AZURE_STORAGE_ACCOUNT_NAME",
)


def client_host(host: str) -> str:
    """Where a client on this machine calls a server listening on `host` (0.0.0.0 and ::
    are not addresses to call)."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def lab_api_url(host: str, port: str | int) -> str:
    """The API URL of the lab's server listening on `host`:`port`: the one place it is built."""
    return f"http://{client_host(host)}:{port}/api"
