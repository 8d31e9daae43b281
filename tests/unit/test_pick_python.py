"""scripts/pick_python.py: the order in which `make setup` takes a Python, without network."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

_spec = importlib.util.spec_from_file_location("pick_python", ROOT / "scripts" / "pick_python.py")
pick = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pick)

BASE = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"


def _pyenv(root: Path, **versions: Path | None) -> Path:
    """A pyenv root whose versions/<name>/bin/python3 links to a target (None: a dangling link)."""
    for name, target in versions.items():
        folder = root / "versions" / name / "bin"
        folder.mkdir(parents=True)
        (folder / "python3").symlink_to(target or root / "gone" / "python3")
    return root


def test_pyenv_versions_are_plain_cpython_newest_first(tmp_path):
    root = _pyenv(
        tmp_path,
        **{"3.10.13": BASE, "3.12.1": BASE, "3.9.18": BASE, "3.13.0t": BASE, "pypy3.10-7.3": BASE},
    )
    found = pick.pyenv_versions(str(root))
    assert [version for version, _ in found] == [(3, 12, 1), (3, 10, 13), (3, 9, 18)]


def test_pyenv_find_skips_an_interpreter_that_does_not_run(tmp_path, monkeypatch):
    if not BASE.exists():
        pytest.skip(f"{BASE} (the running .venv's base interpreter) is not there")
    root = _pyenv(tmp_path, **{"3.13.0": None, "3.12.1": BASE, "3.10.13": BASE})
    monkeypatch.setenv("PYENV_ROOT", str(root))
    assert pick.pyenv_find() == str(root / "versions" / "3.12.1" / "bin" / "python3")


def test_pyenv_find_ignores_versions_older_than_311(tmp_path, monkeypatch):
    monkeypatch.setenv("PYENV_ROOT", str(_pyenv(tmp_path, **{"3.10.13": BASE})))
    assert pick.pyenv_find() == ""


def test_forced_python_is_taken_as_given():
    python, line = pick.choose("no-uv-needed", str(BASE), "3.12")
    assert python == str(BASE)
    version = ".".join(map(str, sys.version_info[:3]))
    assert line == f"setup: using Python {version} ({BASE}): PYTHON={BASE} given"


def test_nothing_found_and_no_uv_is_one_line_with_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))
    status = pick.main(["--uv", str(tmp_path / "no-uv"), "--install", "3.12"])
    out, err = capsys.readouterr()
    assert status == 1
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("setup: no Python >= 3.11 on this machine and uv could not download")
    assert "sudo apt install python3.12" in err
