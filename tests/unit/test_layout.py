"""Imports point one way, down the pipeline: sources -> model; registry -> model + zone store; DNS code knows no source.

Read from the source text (ast), so a forbidden import fails here before it
can tangle the layout.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "server"

# For each part of the package, the parts it must not import (TYPE_CHECKING imports included).
FORBIDDEN = {
    "server.model": {"server.*"},
    "server.errors": {"server.*"},
    "server.sources": {
        "server.registry",
        "server.zone",
        "server.serve",
        "server.ops",
        "server.transfer",
        "server.app",
        "server.cli",
        "server.config",
    },
    "server.zone": {
        "server.sources",
        "server.registry",
        "server.serve",
        "server.ops",
        "server.transfer",
        "server.app",
        "server.cli",
        "server.config",
        "server.model",
    },
    "server.registry": {"server.sources", "server.serve", "server.ops", "server.transfer", "server.app", "server.cli", "server.config"},
    "server.serve": {"server.sources", "server.registry", "server.zone", "server.ops", "server.transfer", "server.app", "server.cli"},
    "server.ops": {
        "server.sources",
        "server.registry",
        "server.zone.store",
        "server.transfer",
        "server.app",
        "server.cli",
        "server.config",
    },
    "server.transfer": {"server.sources", "server.registry", "server.serve", "server.ops", "server.app", "server.cli", "server.config"},
    "server.options": {"server.sources", "server.registry", "server.serve", "server.ops", "server.transfer", "server.app", "server.cli"},
    "server.config": {"server.sources", "server.registry", "server.serve", "server.ops", "server.transfer", "server.app", "server.cli"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "server" or name.startswith("server.")}


def _matches(name: str, pattern: str) -> bool:
    if pattern.endswith(".*"):
        return name.startswith(pattern[:-1])
    return name == pattern or name.startswith(pattern + ".")


def _rules_for(module: str) -> set[str]:
    rules: set[str] = set()
    for part, forbidden in FORBIDDEN.items():
        if module == part or module.startswith(part + "."):
            rules |= forbidden
    return rules


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(REPO)))
def test_imports_point_down_the_pipeline(path: Path) -> None:
    module = _module_name(path)
    rules = _rules_for(module)
    wrong = sorted(name for name in _imports(path) if any(_matches(name, rule) for rule in rules) and not name.startswith(module))
    # `from .. import __version__` names the package itself, which is allowed everywhere.
    wrong = [name for name in wrong if name not in ("server", "server.__version__")]
    assert not wrong, f"{module} imports {wrong}, against the direction of the pipeline"


def test_every_module_is_covered_by_a_rule() -> None:
    top_level = {"server", "server.__main__", "server.app", "server.cli", "server.appstatus"}
    uncovered = [_module_name(p) for p in MODULES if _module_name(p) not in top_level and not _rules_for(_module_name(p))]
    assert not uncovered, f"no import rule for {uncovered}"


def test_the_rules_see_a_forbidden_import(tmp_path: Path) -> None:
    source = PACKAGE / "sources" / "pods.py"
    assert "server.model" in _imports(source)
    assert not any(_matches("server.model.PodRecord", rule) for rule in _rules_for("server.sources.pods"))
    assert any(_matches("server.registry.ownership", rule) for rule in _rules_for("server.sources.pods"))


def test_no_module_is_over_about_450_lines() -> None:
    long = {str(p.relative_to(REPO)): n for p in MODULES if (n := len(p.read_text(encoding="utf-8").splitlines())) > 460}
    assert not long, f"modules over ~450 lines: {long}"
