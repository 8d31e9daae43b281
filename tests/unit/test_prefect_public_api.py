"""flows/ and src/ use Prefect's public API only: what a student copies must survive upgrades."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

# Modules no lab file may import: Prefect's private and engine-internal code.
FORBIDDEN_MODULES = (
    "prefect._internal",
    "prefect.events.worker",
    "prefect.logging.handlers",
    "prefect.engine",
    "prefect.flow_engine",
    "prefect.task_engine",
)


def _sources() -> list[Path]:
    return sorted([*(ROOT / "flows").rglob("*.py"), *(ROOT / "src").rglob("*.py")])


def _violations(path: Path, root: Path = ROOT) -> list[str]:
    """Each forbidden import, context class, `os._exit` call or `.fn =` swap in `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            names = []
        for name in names:
            if any(name == m or name.startswith(m + ".") for m in FORBIDDEN_MODULES):
                found.append(f"{where}: imports {name}")
                break
            if name.startswith("prefect.context.") and name.endswith("Context"):
                found.append(f"{where}: imports {name} (a context class)")
                break
        is_name = isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        if is_name and node.attr == "_exit" and node.value.id == "os":
            found.append(f"{where}: os._exit")
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Attribute) and target.attr == "fn":
                    found.append(f"{where}: assigns .fn (a swapped flow or task function)")
    return found


def test_there_are_sources_to_check():
    names = {p.name for p in _sources()}
    assert {"train.py", "download.py", "duration.py"} <= names


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_prefect_imports_or_exit_tricks(path):
    assert _violations(path) == []


def test_the_check_finds_what_it_forbids(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import os\n"
        "from prefect.context import TagsContext\n"
        "from prefect.events.worker import EventsWorker\n"
        "import prefect._internal.concurrency\n"
        "f.fn = g\n"
        "os._exit(0)\n"
    )
    found = _violations(bad, root=tmp_path)
    assert [line.split(": ", 1)[0] for line in found] == [f"bad.py:{n}" for n in (2, 3, 4, 5, 6)]
