"""`make setup`: choose the Python that builds .venv, and say which one and why in one line.

Standard library only, Python 3.8+ syntax: it runs under whatever `python3` the machine has
(macOS's own is 3.9, Ubuntu 22.04's is 3.10), before .venv exists. Order:

1. `--python P` (the PYTHON knob): P, as given;
2. the first Python >= 3.11 uv's discovery finds (uv-managed ones, python3.X on the PATH);
3. the newest pyenv-installed Python >= 3.11 (pyenv's shims hide versions not made active);
4. a uv-managed Python that uv installs into its own store (no root; needs the network).

Prints the interpreter's path on stdout and one line "setup: ..." on stderr. When there is
none, one line says what to install and how, and the exit status is 1.
"""

from __future__ import annotations  # `X | None` annotations on Python 3.8-3.9 too

import argparse
import glob
import os
import re
import subprocess
import sys

MINIMUM = (3, 11)
REQUEST = ">=3.11"

HOW_TO_INSTALL = (
    "install one, then run make setup again: "
    "Ubuntu/Debian/WSL2 `sudo apt install python3.12` (Ubuntu 22.04: from ppa:deadsnakes/ppa), "
    "macOS `brew install python@3.12`, pyenv `pyenv install 3.12`, "
    "or with network `uv python install 3.12`; or pass PYTHON=/path/to/python3.11+"
)


def dotted(version: tuple[int, int, int]) -> str:
    """3.12.1 from (3, 12, 1)."""
    return ".".join(str(part) for part in version)


def version_of(python: str) -> tuple[int, int, int] | None:
    """The (major, minor, micro) of the interpreter `python`; None when it does not run."""
    code = "import sys; print('%d %d %d' % sys.version_info[:3])"
    try:
        done = subprocess.run(
            [python, "-c", code],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    parts = done.stdout.split()
    if done.returncode != 0 or len(parts) != 3:
        return None
    return (int(parts[0]), int(parts[1]), int(parts[2]))


def run_uv(uv: str, args: list[str], env: dict | None = None, timeout: float = 60) -> str:
    """stdout of `uv args` (stripped), or "" when it fails."""
    try:
        done = subprocess.run(
            [uv, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def uv_find(uv: str) -> str:
    """The first Python >= 3.11 uv's discovery finds outside any virtualenv, or ""."""
    return run_uv(uv, ["python", "find", "--system", "--no-project", REQUEST])


def is_uv_managed(uv: str, path: str) -> bool:
    """Does `path` lie in uv's own store of Pythons?"""
    store = run_uv(uv, ["python", "dir"])
    return bool(store) and os.path.abspath(path).startswith(os.path.abspath(store) + os.sep)


def pyenv_versions(root: str) -> list[tuple[tuple[int, int, int], str]]:
    """(version, interpreter) of every plain CPython X.Y.Z pyenv installed under `root`."""
    found = []
    for python in glob.glob(os.path.join(root, "versions", "*", "bin", "python3")):
        name = os.path.basename(os.path.dirname(os.path.dirname(python)))
        match = re.match(r"^(\d+)\.(\d+)\.(\d+)$", name)
        if match:
            found.append(((int(match.group(1)), int(match.group(2)), int(match.group(3))), python))
    return sorted(found, reverse=True)


def pyenv_find() -> str:
    """The newest pyenv Python >= 3.11 that runs, or ""."""
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    for version, python in pyenv_versions(root):
        if version >= MINIMUM and version_of(python):
            return python
    return ""


def uv_install(uv: str, version: str) -> str:
    """Install a uv-managed Python `version` into uv's own store; its path, or ""."""
    env = dict(os.environ, UV_PYTHON_DOWNLOADS="manual")
    run_uv(uv, ["python", "install", version], env=env, timeout=900)
    return run_uv(uv, ["python", "find", "--no-project", version], env=env)


def describe(python: str, why: str) -> str:
    """The one line that says which Python setup uses and why."""
    version = version_of(python)
    shown = dotted(version) if version else "?"
    return f"setup: using Python {shown} ({python}): {why}"


def own_python_note() -> str:
    """' (python3 is 3.10.13, too old)' when the interpreter running this is < 3.11."""
    if sys.version_info[:2] >= MINIMUM:
        return ""
    return f" (python3 is {dotted(tuple(sys.version_info[:3]))}, too old for the lab)"


def choose(uv: str, forced: str, install: str) -> tuple[str, str]:
    """(interpreter, one-line message); interpreter "" when there is none."""
    if forced:
        return forced, describe(forced, f"PYTHON={forced} given")
    note = own_python_note()
    found = uv_find(uv)
    if found:
        where = "a uv-managed one" if is_uv_managed(uv, found) else "on the PATH"
        return found, describe(found, f"the first Python >= 3.11 uv finds, {where}{note}")
    found = pyenv_find()
    if found:
        return found, describe(found, f"the newest Python >= 3.11 pyenv installed{note}")
    found = uv_install(uv, install)
    if found:
        why = f"no Python >= 3.11 on this machine{note}, so uv installed one into its own store"
        return found, describe(found, why + " (no root)")
    message = (
        f"setup: no Python >= 3.11 on this machine{note} and uv could not download one "
        f"(offline?); {HOW_TO_INSTALL}"
    )
    return "", message


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uv", required=True, help="the uv executable")
    parser.add_argument("--python", default="", help="PYTHON knob: use exactly this one")
    parser.add_argument("--install", default="3.12", help="version uv installs when none found")
    args = parser.parse_args(argv)
    python, message = choose(args.uv, args.python.strip(), args.install.strip())
    print(message, file=sys.stderr)
    if not python:
        return 1
    print(python)
    return 0


if __name__ == "__main__":
    sys.exit(main())
