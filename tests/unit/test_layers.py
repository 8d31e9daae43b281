"""The package's layers (docs/layout.md): each imports only the layers below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "src" / "fhvlab"
# A layer may import the top-level modules (settings, knobs, errors, files) and these.
ALLOWED = {
    "data": set(),
    "model": {"data"},
    "local": set(),  # processes on this machine: the server, the worker, PostgreSQL
    "orchestration": {"data", "model", "local"},  # what the lab sets up in that server
    "cli": {"data", "model", "orchestration", "local"},
}
TOP = {"settings", "knobs", "errors", "files", "__version__"}


def _lab_imports(path: Path) -> set[str]:
    """The first component under fhvlab of every fhvlab import in `path`."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] != "fhvlab":
                continue
            if len(parts) > 1:
                found.add(parts[1])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "fhvlab" and len(parts) > 1:
                    found.add(parts[1])
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_the_layers_below_it(layer):
    wrong = {}
    for path in sorted((PACKAGE / layer).glob("*.py")):
        bad = _lab_imports(path) - TOP - ALLOWED[layer] - {layer}
        if bad:
            wrong[path.name] = sorted(bad)
    assert not wrong, f"{layer} imports above itself: {wrong}"


def test_top_level_modules_import_no_layer():
    for name in TOP - {"__version__"}:
        assert _lab_imports(PACKAGE / f"{name}.py") <= TOP, name


def test_no_module_is_much_over_400_lines():
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 420
    }
    assert not long, long
