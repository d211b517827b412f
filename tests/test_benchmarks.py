"""The benchmarks a contributor can place: each runs as ``python -m benchmarks.NAME`` (no edit of
``sys.path``, no import of a sibling by its bare name) and is listed in benchmarks/README.md."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = sorted(BENCHMARKS.glob("bench_*.py"))


def test_there_are_benchmarks() -> None:
    assert len(SCRIPTS) >= 10


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_a_benchmark_runs_as_a_module_of_the_package(script: Path) -> None:
    tree = ast.parse(script.read_text(encoding="utf-8"))
    siblings = {p.stem for p in BENCHMARKS.glob("*.py")}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "path" and \
                isinstance(node.value, ast.Name) and node.value.id == "sys":
            pytest.fail(f"{script.name}:{node.lineno}: edits sys.path")
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in siblings:
            pytest.fail(f"{script.name}:{node.lineno}: imports {node.module!r} by its bare "
                        f"name; import benchmarks.{node.module}")
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name not in siblings, f"{script.name}:{node.lineno}"


def test_the_readme_lists_every_benchmark() -> None:
    readme = (BENCHMARKS / "README.md").read_text(encoding="utf-8")
    missing = [p.stem for p in SCRIPTS if f"python -m benchmarks.{p.stem}" not in readme]
    assert not missing, f"benchmarks/README.md does not list {missing}"
