"""The CLI, through typer's CliRunner and one real subprocess."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kgx.cli import app

from .conftest import SAMPLE

runner = CliRunner()


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    o = tmp_path_factory.mktemp("cli")
    res = runner.invoke(app, ["extract", str(SAMPLE), "-o", str(o), "--workers", "1",
                              "--no-model"])
    assert res.exit_code == 0, res.output
    assert "pages read 206" in res.output
    return o


@pytest.mark.parametrize("cmd", [[], ["extract"], ["query"], ["report"]])
def test_help(cmd: list[str]) -> None:
    res = runner.invoke(app, cmd + ["--help"])
    assert res.exit_code == 0 and "Usage" in res.output


def test_query_formats(out: Path) -> None:
    q = "SELECT ?c WHERE { res:Afghanistan kgx:capital ?c }"
    res = runner.invoke(app, ["query", str(out), q])
    assert res.exit_code == 0 and "res:Kabul" in res.output and "(1 row)" in res.output
    res = runner.invoke(app, ["query", str(out), q, "--format", "json"])
    data = json.loads(res.output)
    assert data["results"]["bindings"][0]["c"]["value"].endswith("/Kabul")
    res = runner.invoke(app, ["query", str(out), q, "-f", "csv"])
    assert list(csv.reader(io.StringIO(res.output)))[1][0].endswith("/Kabul")
    res = runner.invoke(app, ["query", str(out), q, "-f", "tsv"])
    assert res.output.splitlines()[1].endswith("/Kabul>")
    res = runner.invoke(app, ["query", str(out), q, "-f", "xml"])
    assert "<sparql" in res.output and "Kabul" in res.output


def test_construct_and_describe(out: Path) -> None:
    q = "CONSTRUCT { res:Afghanistan kgx:capital ?c } WHERE { res:Afghanistan kgx:capital ?c }"
    res = runner.invoke(app, ["query", str(out), q, "-f", "turtle"])
    assert res.exit_code == 0 and "kgx:capital res:Kabul" in res.output
    res = runner.invoke(app, ["query", str(out), q, "-f", "ntriples"])
    assert "<https://kgx.dev/enwiki/resource/Kabul> ." in res.output
    res = runner.invoke(app, ["query", str(out), "DESCRIBE res:Kabul", "-f", "ntriples"])
    assert res.exit_code == 0
    res = runner.invoke(app, ["query", str(out), q, "-f", "csv"])
    assert res.exit_code == 2 and "CONSTRUCT/DESCRIBE" in res.output


def test_bad_query_and_missing_graph(out: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["query", str(out), "SELEC ?x WHERE {}"])
    assert res.exit_code == 2 and "kgx: error:" in res.output
    res = runner.invoke(app, ["query", str(tmp_path), "SELECT * {}"])
    assert res.exit_code == 2 and "no kgx graph here" in res.output


def test_extract_errors(tmp_path: Path) -> None:
    res = runner.invoke(app, ["extract", str(tmp_path / "nope.xml.bz2"), "-o", str(tmp_path),
                              "--no-model"])
    assert res.exit_code == 2 and "no such file" in res.output
    bad = tmp_path / "bad.txt"
    bad.write_text("hello")
    res = runner.invoke(app, ["extract", str(bad), "-o", str(tmp_path / "o"), "--no-model"])
    assert res.exit_code == 2 and "unknown format" in res.output
    res = runner.invoke(app, ["extract", str(bad), "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and "unknown format" in res.output


def test_truncated_dump_exits_nonzero(tmp_path: Path) -> None:
    data = SAMPLE.read_bytes()
    dump = tmp_path / "t.xml.bz2"
    dump.write_bytes(data[: len(data) // 3])
    res = runner.invoke(app, ["extract", str(dump), "-o", str(tmp_path / "o"), "--workers", "0",
                              "--no-model"])
    assert res.exit_code == 1 and "NOT FINISHED" in res.output and "truncated" in res.output


def test_console_script_runs_without_torch(out: Path) -> None:
    """`kgx query` in a fresh interpreter never imports torch."""
    code = (f"import sys; from kgx.cli import app; sys.argv=['kgx','query',{str(out)!r},"
            "'ASK { ?s ?p ?o }']\ntry: app()\nexcept SystemExit: pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "true"
