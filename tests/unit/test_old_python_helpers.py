"""The helpers that run before .venv exists work on the python3 a student's machine has.

scripts/doctor.py and scripts/pick_python.py run under whatever `python3` is: macOS's own
is 3.9, Ubuntu 22.04's 3.10. ruff targets 3.11 and rewrites code to 3.11 idioms, so a
change there could break them on an older Python without anyone noticing: these tests do.
"""

from __future__ import annotations

import ast
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

HELPERS = [ROOT / "scripts" / "doctor.py", ROOT / "scripts" / "pick_python.py"]
OLDEST = (3, 8)
PYENV_ROOT = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")


def _old_pythons() -> list[Path]:
    """The newest pyenv interpreter of each of 3.8, 3.9, 3.10 present."""
    found = []
    for minor in ("3.8", "3.9", "3.10"):
        versions = sorted(PYENV_ROOT.glob(f"versions/{minor}.*/bin/python{minor}"))
        if versions:
            found.append(versions[-1])
    return found


@pytest.mark.parametrize("helper", HELPERS, ids=lambda p: p.name)
def test_the_helper_is_python_38_syntax(helper):
    ast.parse(helper.read_text(), filename=str(helper), feature_version=OLDEST)


@pytest.mark.parametrize("helper", HELPERS, ids=lambda p: p.name)
def test_the_helper_loads_under_each_older_python_present(helper):
    pythons = _old_pythons()
    if not pythons:
        pytest.skip(f"no Python 3.8-3.10 under {PYENV_ROOT}/versions to try it with")
    # Runs the module's top level (imports, definitions, annotations), not its main().
    code = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='loaded')"
    for python in pythons:
        done = subprocess.run(
            [str(python), "-c", code, str(helper)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"{helper.name} under {python}:\n{done.stderr}"


def test_pick_python_answers_under_an_older_python(tmp_path):
    pythons = _old_pythons()
    if not pythons:
        pytest.skip(f"no Python 3.8-3.10 under {PYENV_ROOT}/versions to try it with")
    forced = pythons[-1]  # PYTHON given: no uv needed, the line says which one and why
    done = subprocess.run(
        [str(pythons[0]), str(HELPERS[1]), "--uv", str(tmp_path / "uv"), "--python", str(forced)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(forced)
    version = forced.parent.parent.name  # pyenv's folder: 3.10.13
    assert done.stderr.strip() == f"setup: using Python {version} ({forced}): PYTHON={forced} given"
