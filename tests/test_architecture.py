"""Imports point one way, from the edges to the pure core (see the README's architecture table)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "sensor"
PURE = ["errors.py", "types.py", "config.py", "protocols", "dsp", "analysis", "pipeline.py", "simulate.py"]
EDGE_MODULES = {"bleak", "rich", "typer", "dbus_fast", "sqlite3", "matplotlib", "socket", "sensor.cli",
                "sensor.ble", "sensor.live", "sensor.emulate", "sensor.recording", "sensor.report",
                "sensor.history"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def files(entry: str) -> list[Path]:
    path = PACKAGE / entry
    return sorted(path.rglob("*.py")) if path.is_dir() else [path]


@pytest.mark.parametrize("entry", PURE)
def test_pure_core_does_no_io(entry):
    for path in files(entry):
        bad = {m for m in imported_modules(path) for edge in EDGE_MODULES if m == edge or m.startswith(edge + ".")}
        assert not bad, f"{path.relative_to(REPO_ROOT)} imports {sorted(bad)}"


def test_only_the_ble_module_imports_bleak():
    importers = {path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")
                 if any(m == "bleak" or m.startswith("bleak.") for m in imported_modules(path))}
    assert importers == {"ble.py"}


def test_bluezoo_is_never_imported_by_the_package():
    assert not [p for p in PACKAGE.rglob("*.py") if any(m.startswith("bluezoo") for m in imported_modules(p))]
