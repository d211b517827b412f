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


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_every_benchmark_writes_its_results_page(script: Path) -> None:
    text = script.read_text(encoding="utf-8")
    assert "write_page(" in text or "with printed_page(__file__, __doc__):" in text, \
        f"{script.name} prints its figures but writes no page in docs/benchmarks/"


def test_a_printed_benchmark_becomes_its_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import common

    monkeypatch.setattr(common, "PAGES", tmp_path)
    doc = "Speed of a thing.\n\nIt times the thing against the other thing.\n"
    with common.printed_page("/x/benchmarks/bench_thing.py", doc):
        print("| way | seconds |\n|---|---|\n| kgx | 1.5 |")
    assert "| kgx | 1.5 |" in capsys.readouterr().out  # the terminal still gets it
    page = (tmp_path / "bench_thing.md").read_text()
    assert page.startswith("# Speed of a thing\n")
    assert "It times the thing against the other thing." in page
    assert "\n    | way | seconds |\n    |---|---|\n    | kgx | 1.5 |\n" in page
    # A run that fails writes no page: the last good one stays.
    with pytest.raises(RuntimeError), common.printed_page("bench_broken.py", doc):
        print("half a table")
        raise RuntimeError("died")
    assert not (tmp_path / "bench_broken.md").exists()
