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
from tests.support import SAMPLE

runner = CliRunner()


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    o = tmp_path_factory.mktemp("cli")
    res = runner.invoke(app, ["extract", str(SAMPLE), "-o", str(o), "--workers", "1",
                              "--no-model"])
    assert res.exit_code == 0, res.output
    assert "pages read 206" in res.output
    return o


@pytest.mark.parametrize("cmd", [[], ["extract"], ["query"], ["report"], ["update"]])
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


def test_update_says_what_it_did_and_why_it_refuses(out: Path, tmp_path: Path) -> None:
    import shutil

    g = tmp_path / "g"
    shutil.copytree(out, g)
    res = runner.invoke(app, ["update", str(g), str(SAMPLE), "--full", "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "206 pages unchanged, 0 changed, 0 added, 0 deleted" in res.output
    tiny = Path(__file__).resolve().parents[2] / "shared" / "data" / "dumps" / "tinywiki.xml"
    if tiny.exists():
        res = runner.invoke(app, ["update", str(g), str(tiny)])
        assert res.exit_code == 2 and "is a dump of another wiki" in res.output
    res = runner.invoke(app, ["update", str(tmp_path / "none"), str(SAMPLE)])
    assert res.exit_code == 2 and "no such folder" in res.output


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


# --------------------------------------------------------------------------- what a new user meets


def test_help_reads_as_usage_not_types() -> None:
    res = runner.invoke(app, ["extract", "--help"], prog_name="kgx")
    assert "Usage: kgx extract [OPTIONS] DUMP" in res.output
    assert "<bool>" not in res.output and "{dump}" not in res.output
    assert "--no-model" in res.output


def test_a_failed_extract_leaves_no_output_folder(tmp_path: Path) -> None:
    res = runner.invoke(app, ["extract", str(tmp_path / "missing.xml.bz2"), "-o",
                              str(tmp_path / "out"), "--no-model"])
    assert res.exit_code == 2 and "missing.xml.bz2" in res.output
    assert not (tmp_path / "out").exists()
    res = runner.invoke(app, ["extract", str(SAMPLE), "-o", str(tmp_path / "out"),
                              "--namespace", "not an iri"])
    assert res.exit_code == 2 and "namespace" in res.output
    assert not (tmp_path / "out").exists()


def test_extract_says_where_the_graph_is_and_what_next(out: Path) -> None:
    log = (out / "kgx.log").read_text(encoding="utf-8")
    assert "structure pass finished" in log and f"next: kgx query {out}" in log


def test_a_run_into_a_file_prints_progress_lines(tmp_path: Path) -> None:
    """stderr is a file (CI, nohup): periodic progress lines, there and in OUT/kgx.log."""
    err = tmp_path / "stderr.txt"
    env = {**__import__("os").environ, "KGX_PROGRESS_SECONDS": "0.05"}
    with open(err, "w") as f:
        subprocess.run([sys.executable, "-m", "kgx.cli", "extract", str(SAMPLE), "-o",
                        str(tmp_path / "out"), "--no-model", "--workers", "1"], stderr=f,
                       stdout=subprocess.DEVNULL, env=env, check=True, timeout=300)
    lines = err.read_text(encoding="utf-8").splitlines()
    progress = [ln for ln in lines if ln.startswith("[structure] ") and "elapsed" in ln
                or ln.startswith("pages ") or "MB/s" in ln]
    assert len(progress) >= 2, lines[:20]
    assert any("[merge] working" in ln or "[merge] done" in ln or "inferred" in ln
               for ln in lines)
    log = (tmp_path / "out" / "kgx.log").read_text(encoding="utf-8")
    assert "MB/s" in log and "next: kgx query" in log


def test_structure_pass_and_query_never_import_torch(out: Path, tmp_path: Path) -> None:
    code = ("import sys; from typer.testing import CliRunner; from kgx.cli import app; r = "
            f"CliRunner(); a = r.invoke(app, ['extract', {str(SAMPLE)!r}, '-o', "
            f"{str(tmp_path / 'o')!r}, '--no-model', '--limit', '20', '--workers', '0']); "
            f"b = r.invoke(app, ['query', {str(out)!r}, 'ASK {{ ?s ?p ?o }}']); "
            "assert a.exit_code == 0 and b.exit_code == 0, (a.output, b.output); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'transformers', 'faiss', 'spacy')))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_sparql_errors_say_where_and_what(out: Path) -> None:
    res = runner.invoke(app, ["query", str(out), "SELECT ?s WHERE {\n  ?s foo:bar ?o }"])
    assert res.exit_code == 2
    assert "SPARQL syntax error at line 2, column 6: undeclared prefix 'foo:'" in res.output
    assert "kgx:, " in res.output and "PREFIX foo: <...>" in res.output
    assert "  ?s foo:bar ?o }\n       ^" in res.output
    res = runner.invoke(app, ["query", str(out), "SELEC ?s WHERE { ?s ?p ?o }"])
    assert "line 1, column 1" in res.output and "not 'SELEC'" in res.output
    assert "\\u{" not in res.output
    from kgx.graph.errors import QueryError
    from kgx.graph.knowledge_graph import KnowledgeGraph

    with pytest.raises(QueryError, match=r"line 1, column \d+: expected one of ABS, AVG"):
        KnowledgeGraph.open(out).query("SELECT * WHERE { FILTER(?x = ) }")
