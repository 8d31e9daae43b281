"""The Makefile itself: help, path anchoring, and setup's failure modes."""

from __future__ import annotations

import re
import shutil
import stat
from pathlib import Path

import pytest

from tests.conftest import ROOT, copy_project, run_make

pytestmark = pytest.mark.integration


def _help_targets(text: str) -> list[str]:
    return [line.split()[0] for line in text.splitlines() if line.startswith("  ")]


def test_help_is_the_default_goal_and_lists_every_documented_target():
    result = run_make()
    assert result.returncode == 0, result.stderr
    listed = set(_help_targets(result.stdout))
    makefile = (ROOT / "Makefile").read_text()
    documented = set(re.findall(r"^([a-zA-Z0-9_.-]+):.*## ", makefile, flags=re.MULTILINE))
    assert {"help", "setup", "test", "lint", "format", "clean", "distclean"} <= listed
    assert listed == documented


def test_every_help_target_is_phony():
    makefile = (ROOT / "Makefile").read_text()
    phony = {
        word
        for line in makefile.splitlines()
        if line.startswith(".PHONY:")
        for word in line.split()[1:]
    }
    listed = set(_help_targets(run_make("help").stdout))
    assert listed <= phony


def test_make_from_another_directory_uses_the_checkout_paths(tmp_path):
    # `make -f /path/to/Makefile` from elsewhere must still anchor paths at the checkout.
    result = run_make("-f", str(ROOT / "Makefile"), "help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"PREFECT_HOME={ROOT}/env/prefect" in result.stdout
    assert not any(tmp_path.iterdir())


def _copy_project(dest: Path) -> Path:
    return copy_project(dest)


def test_setup_refuses_a_python_that_is_too_old(tmp_path):
    project = _copy_project(tmp_path / "lab")
    fake = tmp_path / "python3.9"
    fake.write_text(
        '#!/bin/sh\ncase "$*" in *version_info*) exit 1;; *platform*) echo 3.9.18;; esac\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    result = run_make("setup", f"PYTHON={fake}", cwd=project)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("setup:")]
    assert errors == [
        f"setup: {fake} is Python 3.9.18; the lab needs >= 3.11 (Prefect 3.9 does): "
        "pass PYTHON=python3.11 or newer"
    ]
    assert not (project / ".venv").exists()


def test_setup_without_the_registry_says_so_and_writes_no_stamp(tmp_path):
    project = _copy_project(tmp_path / "lab")
    uv = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    env = {"UV_OFFLINE": "1", "UV_CACHE_DIR": str(tmp_path / "empty-cache"), "UV_NO_CONFIG": "1"}
    result = run_make("setup", f"UV={uv}", env=env, cwd=project)
    assert result.returncode != 0
    assert "setup: could not install the locked packages (is the package registry reachable?" in (
        result.stderr
    )
    assert not (project / ".venv" / ".lab-stamp").exists()
    # A second attempt does the work again instead of trusting a half-built .venv.
    again = run_make("setup", f"UV={uv}", env=env, cwd=project)
    assert again.returncode != 0
    assert "syncing" in again.stdout


def test_docs_show_the_current_help():
    help_lines = [line for line in run_make("help").stdout.splitlines() if line.startswith("  ")]
    page = (ROOT / "docs" / "targets.md").read_text()
    missing = [line for line in help_lines if line not in page]
    assert not missing, "docs/targets.md's `make help` block is out of date: " + "; ".join(missing)
