"""`make setup` on a student's machine: an older python3 is no dead end; a .venv whose Python
is gone is rebuilt. Real interpreters (pyenv's when present), a real uv, offline (uv's cache)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, copy_project, free_port, run_make

pytestmark = pytest.mark.integration

PYENV_ROOT = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
SYSTEM_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


def _old_python() -> Path:
    """A real Python 3.10 (the python3 of Ubuntu 22.04), or skip."""
    found = sorted(PYENV_ROOT.glob("versions/3.10.*/bin/python3.10"))
    if not found:
        pytest.skip(f"no Python 3.10 under {PYENV_ROOT}/versions (pyenv install 3.10 to run this)")
    return found[-1]


def _new_python() -> Path:
    """The Python >= 3.11 this .venv was built from: uv's cache has its wheels (offline)."""
    name = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    python = Path(sys.base_prefix) / "bin" / name
    if not python.exists():
        pytest.skip(f"the base interpreter {python} of the running .venv is not there")
    return python


def _uv() -> str:
    uv = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    if not os.access(uv, os.X_OK):
        pytest.skip("no uv (run make setup first)")
    return uv


def _bin(folder: Path, **links: Path) -> Path:
    """A folder of symlinks name -> target (a PATH entry)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, target in links.items():
        (folder / name).symlink_to(target)
    return folder


def _system_bin(folder: Path) -> Path:
    """The system's commands without any Python or uv: a machine whose only Pythons we choose."""
    folder.mkdir()
    for tool in ("make", "bash"):  # the ones the tests run (e.g. macOS's versions first on PATH)
        found = shutil.which(tool)
        if found:
            (folder / tool).symlink_to(found)
    for directory in SYSTEM_DIRS:
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            name = entry.name
            if name.startswith(("python", "pip", "uv", "pyenv")) or (folder / name).exists():
                continue
            (folder / name).symlink_to(entry.path)
    return folder


def _sandbox(tmp_path: Path, *path: Path) -> dict[str, str]:
    """PATH as given, no pyenv, no uv-managed Pythons, offline (uv's warm cache only)."""
    return {
        "PATH": os.pathsep.join(str(p) for p in path),
        "PYENV_ROOT": str(tmp_path / "no-pyenv"),
        "UV_PYTHON_INSTALL_DIR": str(tmp_path / "no-uv-pythons"),
        "UV_OFFLINE": "1",
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_PORT": str(free_port()),
    }


def _setup_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("setup:")]


def test_an_old_python3_first_on_the_path_and_a_newer_python_elsewhere(tmp_path):
    """python3 is 3.10: setup picks the 3.11+ further down the PATH, the unit tests pass on it;
    that Python then disappears: doctor says so, and setup rebuilds .venv with another one."""
    old, new, uv = _old_python(), _new_python(), _uv()
    project = copy_project(tmp_path / "lab")
    shutil.copytree(ROOT / "tests", project / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    system = _system_bin(tmp_path / "system")
    old_bin = _bin(tmp_path / "old", python3=old)
    new_bin = _bin(tmp_path / "new", **{new.name: new})
    env = _sandbox(tmp_path, old_bin, new_bin, system)
    # Bytecode compilation is the slow half of a sync and not what is tested here.
    knobs = (f"UV={uv}", "UV_COMPILE_BYTECODE=0")

    result = run_make("setup", *knobs, env=env, cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    chose = [line for line in _setup_lines(result.stderr) if line.startswith("setup: using")]
    old_version = ".".join(old.parent.parent.name.split(".")[:3])
    assert chose == [
        f"setup: using Python {'.'.join(map(str, sys.version_info[:3]))} ({new_bin / new.name}): "
        f"the first Python >= 3.11 uv finds, on the PATH (python3 is {old_version}, "
        "too old for the lab)"
    ]
    venv_python = project / ".venv" / "bin" / "python"
    assert os.readlink(venv_python) == str(new_bin / new.name)
    assert (project / ".venv" / ".lab-stamp").exists()

    tests = run_make(
        "test-fast", *knobs, "PYTEST_ARGS=tests/unit/test_months.py -q", env=env, cwd=project
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert re.search(r"^\d+ passed", tests.stdout, re.MULTILINE), tests.stdout

    # The interpreter is removed (an upgrade, an uninstall): .venv/bin/python is a broken link.
    (new_bin / new.name).unlink()
    doctor = run_make("doctor", f"UV={uv}", env=env, cwd=project)  # runs on the old python3
    assert "Traceback" not in doctor.stdout + doctor.stderr
    broken = [line for line in doctor.stdout.splitlines() if line.startswith("[FAIL] venv python")]
    assert len(broken) == 1, doctor.stdout
    assert "which is gone" in broken[0]
    assert broken[0].endswith("->  make setup")

    moved_bin = _bin(tmp_path / "moved", **{new.name: new})  # ... and is found elsewhere now
    env["PATH"] = os.pathsep.join(map(str, (old_bin, moved_bin, system)))
    rebuilt = run_make("setup", *knobs, env=env, cwd=project)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "does not run (the Python that built .venv was removed or upgraded)" in rebuilt.stdout
    assert "syncing" in rebuilt.stdout
    assert os.readlink(venv_python) == str(moved_bin / new.name)
    done = subprocess.run([str(venv_python), "-c", "import prefect"], check=False)
    assert done.returncode == 0

    again = run_make("setup", *knobs, env=env, cwd=project)
    assert again.returncode == 0
    assert "syncing" not in again.stdout
    assert not _setup_lines(again.stderr)


def test_only_an_old_python_and_no_network_says_what_to_install(tmp_path):
    """Python 3.10 alone, offline: one line with what to install and how; no .venv.

    `.SHELLFLAGS=-c` runs the recipes as GNU Make 3.81 (macOS) does: without `-e`/pipefail.
    """
    old, uv = _old_python(), _uv()
    project = copy_project(tmp_path / "lab")
    env = _sandbox(tmp_path, _bin(tmp_path / "old", python3=old), _system_bin(tmp_path / "sys"))
    result = run_make("setup", f"UV={uv}", ".SHELLFLAGS=-c", env=env, cwd=project)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if not line.startswith("make")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("setup: no Python >= 3.11 on this machine (python3 is 3.10.")
    for how in ("sudo apt install python3.12", "brew install python@3.12", "pyenv install 3.12"):
        assert how in lines[0]
    assert "uv python install 3.12" in lines[0]
    assert not (project / ".venv").exists()


def test_uv_is_installed_into_tools_by_an_old_python3(tmp_path):
    """No uv on the PATH and python3 is 3.10: setup makes .tools with it and runs pip there.

    Offline, pip cannot reach the registry: the one line says so and no .tools is left.
    """
    old = _old_python()
    project = copy_project(tmp_path / "lab")
    env = _sandbox(tmp_path, _bin(tmp_path / "old", python3=old), _system_bin(tmp_path / "sys"))
    env.update({"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path / "no-wheels")})
    result = run_make("setup", ".SHELLFLAGS=-c", env=env, cwd=project)
    assert result.returncode != 0
    assert "setup: uv not on PATH; installing uv" in result.stdout
    assert f"into {project / '.tools'} with python3" in result.stdout
    assert _setup_lines(result.stderr) == [
        "setup: could not install uv from PyPI (is the package registry reachable?)"
    ]
    assert not (project / ".tools").exists()
    assert not (project / ".venv").exists()
