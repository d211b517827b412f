"""The ``kgx`` command line: each command parses its arguments and calls a library function."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from kgx import __version__

app = typer.Typer(help="kgx: a knowledge graph from a MediaWiki dump.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"kgx: error: {message}", err=True)
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kgx {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_version,
                                                is_eager=True, help="Show the version.")] = False
         ) -> None:
    """kgx: a knowledge graph from a MediaWiki dump."""


@app.command()
def extract(
    dump: Annotated[Path, typer.Argument(help="Dump: .xml, .xml.bz2 (multistream too), .xml.gz")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output directory.")],
    workers: Annotated[int, typer.Option(help="Worker processes (0: none). Default: all cores."
                                         )] = os.cpu_count() or 1,
    limit: Annotated[int | None, typer.Option(help="Stop after N pages.")] = None,
    namespace: Annotated[str | None, typer.Option(
        help="IRI namespace (default https://kgx.dev/{dbname}/).")] = None,
    index: Annotated[Path | None, typer.Option(
        help="Multistream index (default: found next to the dump).")] = None,
    page_timeout: Annotated[float, typer.Option(help="Seconds a page may take.")] = 60.0,
    page_memory_mb: Annotated[int, typer.Option(help="Memory a worker may add per page.")] = 4096,
    max_page_bytes: Annotated[int, typer.Option(help="Larger pages are skipped.")] = 16_000_000,
    documents: Annotated[bool, typer.Option(
        help="Also write documents.jsonl (text with link spans).")] = False,
    progress: Annotated[bool | None, typer.Option(
        help="Progress bar (default: on a terminal).")] = None,
) -> None:
    """Turn a dump into a knowledge graph of its structured facts in OUT."""
    from kgx.dump import DumpError
    from kgx.extract import ExtractOptions
    from kgx.extract import extract as run
    from kgx.ontology import MappingError
    from kgx.workers import Limits

    opts = ExtractOptions(workers=workers, limit=limit, namespace=namespace,
                          limits=Limits(page_timeout, page_memory_mb, max_page_bytes),
                          index=str(index) if index else None, keep_documents=documents,
                          progress=progress)
    try:
        report = run(dump, out, opts)
    except (DumpError, MappingError) as exc:
        _fail(str(exc))
        return
    typer.echo(report.summary(), err=True)
    if not report.finished:
        raise typer.Exit(1)


@app.command()
def query(
    out: Annotated[Path, typer.Argument(help="Output directory of `kgx extract`.")],
    sparql: Annotated[str, typer.Argument(help="SPARQL query, or @FILE, or - for stdin.")],
    format: Annotated[str, typer.Option(
        "--format", "-f", help="table, json, csv, tsv, xml; turtle, ntriples, nquads for "
        "CONSTRUCT/DESCRIBE.")] = "table",
) -> None:
    """Run a SPARQL query over a graph."""
    from kgx.graph import GraphNotFound, KnowledgeGraph, QueryError, format_result

    if sparql == "-":
        sparql = sys.stdin.read()
    elif sparql.startswith("@"):
        try:
            sparql = Path(sparql[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            _fail(f"cannot read query file: {exc}")
    try:
        kg = KnowledgeGraph.open(out)
        text = format_result(kg, sparql, format)
    except (GraphNotFound, QueryError) as exc:
        _fail(str(exc))
        return
    sys.stdout.write(text)


@app.command()
def report(out: Annotated[Path, typer.Argument(help="Output directory.")]) -> None:
    """Print the JSON report of the last run in OUT."""
    p = out / "report.json"
    if not p.exists():
        _fail(f"{p}: no report; run `kgx extract` first")
    typer.echo(json.dumps(json.loads(p.read_text(encoding="utf-8")), indent=2))


if __name__ == "__main__":
    app()
