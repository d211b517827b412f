"""The ``kgx`` command line: each command parses its arguments and calls a library function."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
import typer.core

from kgx.outdir import REPORT_FILE, STORE_DIR
from kgx.version import DISTRIBUTION, __version__

app = typer.Typer(help="kgx: a knowledge graph from a MediaWiki dump.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


def _usage_name(self: typer.core.TyperArgument) -> str:
    """``DUMP`` rather than typer 0.29's ``{DUMP}`` on the usage line (POSIX/click style)."""
    name = self.display_name_raw + ("..." if self.nargs != 1 else "")
    return name if self.required else f"[{name}]"


if hasattr(typer.core.TyperArgument, "_usage_display_name"):
    typer.core.TyperArgument._usage_display_name = _usage_name  # type: ignore[method-assign]


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"kgx: error: {message}", err=True)
    raise typer.Exit(code)


TUNING_HELP = ("How much of the encoder learns: full, top:K (its top K layers) or lora[:R] "
               "(low-rank adapters of rank R, default 8; the model saves the adapter alone).")


def _tuning_option(value: str) -> str:
    """``--tuning``, checked as it is parsed (before any work)."""
    from kgx.model.tuning import TuningError, parse_tuning

    try:
        return str(parse_tuning(value))
    except TuningError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kgx {__version__} ({DISTRIBUTION})")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_version,
                                                is_eager=True, help="Show the version.")] = False
         ) -> None:
    """kgx: a knowledge graph from a MediaWiki dump."""


@app.command()
def extract(
    dump: Annotated[Path, typer.Argument(metavar="DUMP",
        help="Dump: .xml, .xml.bz2 (multistream too), .xml.gz")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output directory.")],
    model: Annotated[Path | None, typer.Option(
        help="A trained model directory (default: train one on this dump's corpus).")] = None,
    no_model: Annotated[bool, typer.Option(
        "--no-model", help="The structure pass alone: no corpus, model, reading or index.")
    ] = False,
    base_model: Annotated[str, typer.Option(help="Encoder to fine-tune when training.")
                          ] = "minilm",
    tuning: Annotated[str, typer.Option(callback=_tuning_option, help=TUNING_HELP)] = "full",
    train_sentences: Annotated[int | None, typer.Option(
        help="Training sentences at most (default, with no --train-minutes: 1,500 on a CPU, "
             "every one on a GPU).", min=1)] = None,
    train_minutes: Annotated[float | None, typer.Option(
        help="Stop training after N minutes, keeping the best epoch so far (default: 60 on a "
             "GPU when --train-sentences is not given, else no bound).", min=0.1)] = None,
    train_epochs: Annotated[int, typer.Option(help="Training epochs at most.")] = 3,
    read_sentences: Annotated[int | None, typer.Option(
        help="Read at most N sentences (default: every sentence of every article).")] = None,
    relation_threshold: Annotated[float, typer.Option(
        help="Lowest sentence score at which the reader reads a relation at all.")] = 0.5,
    gold: Annotated[list[str] | None, typer.Option(
        help="A gold training set mixed with the silver corpus, PATH or PATH:WEIGHT "
             "(repeatable; default: the Re-DocRED documents kgx ships).")] = None,
    no_gold: Annotated[bool, typer.Option(
        "--no-gold", help="Train the reader on the silver corpus alone.")] = False,
    held_out_share: Annotated[float | None, typer.Option(
        help="Share of the subjects whose infobox facts are kept out of the reader's labels, "
             "to measure it on (default: all with gold data, a quarter without).")] = None,
    min_precision: Annotated[float, typer.Option(
        help="Assert a property's model facts only from the confidence at which they are "
             "right this often on held-out infobox facts (the rest are kept as candidates); "
             "0 asserts every fact its types allow.")] = 0.9,
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
    wikidata: Annotated[Path | None, typer.Option(
        help="A Wikidata JSON dump (latest-all.json.bz2 or .gz): every entity one of its items "
             "links gets owl:sameAs wd:Q..., kgx:wikidataId and the item's labels as aliases."
    )] = None,
    documents: Annotated[bool, typer.Option(
        help="With --no-model: also write documents.jsonl (text with link spans).")] = False,
    reasoning: Annotated[bool, typer.Option(help="Materialise RDFS/OWL-RL entailments.")
                         ] = True,
    device: Annotated[str | None, typer.Option(help="cpu, cuda (default: auto).")] = None,
    read_chunk_documents: Annotated[int, typer.Option(
        help="Documents per committed chunk of the read stage (what a kill costs at most).")
    ] = 200,
    keep_intermediate: Annotated[bool, typer.Option(
        help="Keep model.nq and mentions.nq (and write inferred.nq) once graph.nq holds them."
    )] = False,
    progress: Annotated[bool | None, typer.Option(
        help="A bar on a terminal and a line every 20 s in logs (--no-progress: neither).")
    ] = None,
    engine: Annotated[str, typer.Option(
        help="Where chunks run: local (this machine's processes) or ray (pip install "
             "'kgx[cluster]').")] = "local",
    ray_address: Annotated[str | None, typer.Option(
        help="Ray cluster to join (auto: the running one); default: start Ray here.")] = None,
) -> None:
    """Turn a dump into a knowledge graph in OUT: structure, model facts, linked entities."""
    from kgx.dump.reader import check_dump
    from kgx.dump.sources import DumpError
    from kgx.engines.journal import DiskFull
    from kgx.engines.ray import ENGINES, ray_available
    from kgx.ontology import MappingError
    from kgx.outdir import OutputInUse, check_output, remove_if_unused
    from kgx.runtime import logs
    from kgx.stages.pipeline import DEFAULT_GOLD, PipelineOptions, run
    from kgx.structure.extract import ExtractOptions
    from kgx.structure.pages import Limits
    from kgx.structure.wikidata import WikidataError
    from kgx.text.site import check_namespace

    try:  # refuse bad input before OUT is created
        check_output(out)
        check_dump(dump)
        if namespace:
            check_namespace(namespace)
        if engine not in ENGINES:
            raise ValueError(f"--engine {engine!r}: expected one of {', '.join(ENGINES)}")
        if engine == "ray" and not ray_available():
            raise ValueError("--engine ray needs Ray: pip install 'kgx[cluster]'")
        for spec in gold or []:
            from kgx.corpus.datasets import parse_source

            if not parse_source(spec).path.is_file():
                raise ValueError(f"--gold {spec}: no such file (a DocRED / Re-DocRED JSON or "
                                 "a CoNLL file, PATH or PATH:WEIGHT)")
        if held_out_share is not None and not 0.0 <= held_out_share <= 1.0:
            raise ValueError(f"--held-out-share must be between 0 and 1, not "
                             f"{held_out_share}")
        if not 0.0 <= min_precision <= 1.0:
            raise ValueError(f"--min-precision must be between 0 and 1 (a share of facts "
                             f"right), not {min_precision}")
    except (DumpError, ValueError) as exc:  # DataError is a ValueError
        _fail(str(exc))
    existed = out.exists()
    try:
        log_file = logs.setup(out)
    except OSError as exc:
        _fail(f"{out}: cannot be written ({exc.strerror or exc})")
        return
    ex = ExtractOptions(workers=workers, limit=limit, namespace=namespace,
                        limits=Limits(page_timeout, page_memory_mb, max_page_bytes),
                        index=str(index) if index else None, keep_documents=documents,
                        wikidata=str(wikidata) if wikidata else None,
                        progress=progress)
    if no_model:  # the structure graph alone (no torch needed), with its entailments
        opts = PipelineOptions(extract=ex, use_model=False, index=False, reasoning=reasoning,
                               progress=progress, keep_intermediate=keep_intermediate,
                               engine=engine, ray_address=ray_address)
    else:
        opts = PipelineOptions(extract=ex, model=str(model) if model else None,
                               base_model=base_model, tuning=tuning,
                               train_sentences=train_sentences, train_minutes=train_minutes,
                               train_epochs=train_epochs, read_sentences=read_sentences,
                               relation_threshold=relation_threshold,
                               min_precision=min_precision, reasoning=reasoning,
                               gold=[] if no_gold else list(gold) if gold else
                               [str(DEFAULT_GOLD)], held_out_share=held_out_share,
                               device=device, progress=progress,
                               read_chunk_documents=read_chunk_documents,
                               keep_intermediate=keep_intermediate, engine=engine,
                               ray_address=ray_address)
        if tuning != "full" and not model:  # top:K within the encoder, peft for LoRA
            from kgx.model.train import base_layers
            from kgx.model.tuning import TuningError, check_tuning, parse_tuning

            try:
                check_tuning(parse_tuning(tuning), base_layers(base_model), base_model)
            except (TuningError, OSError) as exc:
                remove_if_unused(out, existed)
                _fail(str(exc))
                return
    try:
        rep = run(dump, out, opts, log=logs.info)
    except KeyboardInterrupt:
        logs.info(f"kgx: interrupted. What was committed is kept in {out}; run the same "
                  "command again to continue from it.")
        remove_if_unused(out, existed)
        raise typer.Exit(130) from None
    except (DumpError, MappingError, WikidataError, FileNotFoundError, OutputInUse,
            DiskFull) as exc:
        remove_if_unused(out, existed)
        _fail(str(exc))
        return
    except OSError as exc:  # a folder that cannot be written, a device that fails
        remove_if_unused(out, existed)
        _fail(f"{out}: {exc.strerror or exc}")
        return
    if no_model:
        logs.info(f"[merge] inferred {rep['triples']['inferred']:,} triples into graph/inferred")
    else:
        secs = rep["pipeline"]["stages_seconds"]
        logs.info("stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in secs.items()))
        logs.info("triples: " + ", ".join(f"{k} {v:,}" for k, v in sorted(rep["triples"].items()))
                  + f" (total {rep['triples_total']:,})")
    _next_steps(out, log_file)
    if not rep.get("finished") or rep.get("pages", {}).get("lost"):
        raise typer.Exit(1)


def _next_steps(out: Path, log_file: Path | None) -> None:
    from kgx.runtime import logs

    logs.info(f"graph: {out / 'graph.nq'} (N-Quads) and {out / 'store'} (Oxigraph); report: "
              f"{out / 'report.json'}" + (f"; log: {log_file}" if log_file else ""))
    logs.info(f"next: kgx query {out} 'SELECT ?s ?p ?o WHERE {{ ?s ?p ?o }} LIMIT 10'   or   "
              f"kgx serve {out}")


@app.command()
def update(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="A graph kgx extract made.")],
    dump: Annotated[Path, typer.Argument(metavar="DUMP", help="A newer dump of the same wiki: "
                                         "a whole pages-articles dump (with --full) or a dump "
                                         "of changed pages.")],
    full: Annotated[bool, typer.Option(
        "--full", help="DUMP is a whole dump: pages the graph has and DUMP lacks are "
        "deleted. Without it, pages DUMP lacks are kept.")] = False,
    allow_older: Annotated[bool, typer.Option(
        "--allow-older", help="Apply DUMP even where its pages are older than the graph's.")
        ] = False,
    workers: Annotated[int, typer.Option("-j", "--workers",
                                         help="Worker processes (default: all cores).")
                       ] = os.cpu_count() or 1,
    wikidata: Annotated[Path | None, typer.Option(
        help="A Wikidata JSON dump to take the entities' Wikidata ids from (default: the one "
        "OUT was made with, if any).")] = None,
    progress: Annotated[bool | None, typer.Option(
        "--progress/--no-progress", help="Progress bar (default: on a terminal).")] = None,
) -> None:
    """Apply a newer dump to OUT: unchanged pages are skipped, changed ones replaced (no
    retraining), then the index, the reading and the entailments brought up to date."""
    from kgx.dump.sources import DumpError
    from kgx.outdir import OutputInUse
    from kgx.runtime import logs
    from kgx.stages.update import update as run
    from kgx.structure.wikidata import WikidataError
    from kgx.update.run import UpdateOptions
    from kgx.update.scan import UpdateError

    if not out.is_dir():
        _fail(f"{out}: no such folder; kgx update takes a folder kgx extract made")
    try:
        log_file = logs.setup(out)
    except OSError as exc:
        _fail(f"{out}: cannot be written ({exc.strerror or exc})")
        return
    try:
        rep = run(out, dump, UpdateOptions(full=full, allow_older=allow_older,
                                           workers=workers, progress=progress,
                                           wikidata=str(wikidata) if wikidata else None),
                  log=logs.info)
    except KeyboardInterrupt:
        logs.info(f"kgx: interrupted. What was committed is kept in {out}; run the same "
                  "command again to continue from it.")
        raise typer.Exit(130) from None
    except (DumpError, UpdateError, WikidataError, FileNotFoundError, OutputInUse) as exc:
        _fail(str(exc))
        return
    u = rep.get("update", {})
    logs.info(f"update: {u.get('seconds', {}).get('total', 0):.1f} s for the structure; "
              f"quads retracted {u.get('quads_retracted', 0):,}, added "
              f"{u.get('quads_added', 0):,}")
    _next_steps(out, log_file)


@app.command()
def repack(
    dump: Annotated[Path, typer.Argument(metavar="DUMP", help="A dump kgx reads.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="NAME-multistream.xml.bz2 to write "
                                      "(its index is written beside it).")],
    pages_per_stream: Annotated[int, typer.Option(help="Pages per bz2 stream.")] = 100,
) -> None:
    """Repack a dump into Wikimedia's multistream layout, so every worker reads its own part."""
    from kgx.dump.repack import repack as run
    from kgx.dump.sources import DumpError

    try:
        index, n = run(dump, out, pages_per_stream)
    except (DumpError, ValueError) as exc:
        _fail(str(exc))
        return
    typer.echo(f"{n:,} pages in {out} (index {index}); kgx extract {out} now splits the work "
               "between workers by stream", err=True)


@app.command(name="index")
def build_index(out: Annotated[Path, typer.Argument(metavar="OUT",
    help="Output directory.")]) -> None:
    """(Re)build the alias table and the FAISS entity index of OUT, and refit the linker's
    scorer on its wikilinks (when OUT kept documents.jsonl)."""
    from kgx.linking.build import fit_scorer
    from kgx.linking.encoder import shared_encoder
    from kgx.linking.tables import build_entity_table
    from kgx.linking.vectors import build_vector_index

    if not (out / STORE_DIR).is_dir():
        _fail(f"{out}: no kgx graph here; run `kgx extract` first")
    n = build_entity_table(out, workers=os.cpu_count() or 1)
    meta = build_vector_index(out, shared_encoder())
    fit = fit_scorer(out, lambda m: typer.echo(m, err=True))
    typer.echo(f"{n:,} entities indexed ({meta['index']}, {meta['dim']} dimensions); linker "
               f"scorer {'fitted' if fit['fitted'] else 'not fitted (hand-set weights)'}")


@app.command()
def query(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Output directory of `kgx extract`.")],
    sparql: Annotated[str, typer.Argument(metavar="SPARQL",
        help="SPARQL query, or @FILE, or - for stdin.")],
    format: Annotated[str, typer.Option(
        "--format", "-f", help="table, json, csv, tsv, xml; turtle, ntriples, nquads for "
        "CONSTRUCT/DESCRIBE.")] = "table",
    allow_service: Annotated[bool, typer.Option(
        "--allow-service", help="Let SERVICE send HTTP requests to the endpoints it names "
        "(refused by default).")] = False,
    timeout: Annotated[float | None, typer.Option(
        help="Stop the query after this many seconds (exit status 3).")] = None,
) -> None:
    """Run a SPARQL query over a graph."""
    from kgx.graph.errors import GraphNotFound
    from kgx.graph.knowledge_graph import KnowledgeGraph
    from kgx.graph.results import format_result
    from kgx.outdir import run_state

    if timeout is not None and not timeout > 0:
        _fail(f"--timeout must be a positive number of seconds, not {timeout}")
    if sparql == "-":
        sparql = sys.stdin.read()
    elif sparql.startswith("@"):
        try:
            sparql = Path(sparql[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            _fail(f"cannot read query file: {exc}")
        except UnicodeDecodeError as exc:
            _fail(f"{sparql[1:]}: the query file is not UTF-8 text (byte {exc.start}: "
                  f"{exc.reason}); save it as UTF-8")
    warning = run_state(out) if (out / STORE_DIR).is_dir() else None
    if warning:
        typer.echo(f"kgx: warning: {warning}", err=True)
    try:
        kg = KnowledgeGraph.open(out)
    except GraphNotFound as exc:
        _fail(str(exc))
        return
    text = _interruptible(lambda: format_result(kg, sparql, format, allow_service=allow_service),
                          timeout)
    sys.stdout.write(text)


def _interruptible(work: Callable[[], str], timeout: float | None) -> str:
    """Run ``work`` (a query: pyoxigraph's loop cannot be interrupted where it runs) in a
    thread, so that Ctrl-C and ``--timeout`` end the command at once; the thread ends with
    the process."""
    import threading
    import time

    from kgx.graph.errors import QueryError

    box: dict[str, str] = {}

    def target() -> None:
        # Only text leaves this thread: pyoxigraph's objects must be dropped where they
        # were made, so no exception (and no traceback holding one) is handed over.
        try:
            box["text"] = work()
        except QueryError as exc:
            box["query_error"] = str(exc)
        except BaseException as exc:
            box["error"] = f"{type(exc).__name__}: {exc}"

    th = threading.Thread(target=target, daemon=True, name="kgx-query")
    th.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while th.is_alive():
            th.join(0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic())))
            if deadline is not None and time.monotonic() >= deadline and th.is_alive():
                typer.echo(f"kgx: error: the query ran past --timeout {timeout:g} s", err=True)
                sys.stderr.flush()
                os._exit(3)
    except KeyboardInterrupt:
        typer.echo("kgx: interrupted", err=True)
        sys.stderr.flush()
        os._exit(130)
    if "query_error" in box:
        _fail(box["query_error"])
    if "error" in box:
        _fail(box["error"], 1)
    return box["text"]


@app.command()
def corpus(
    dump: Annotated[Path, typer.Argument(metavar="DUMP",
        help="Dump, or an output directory of `kgx extract "
                                                "--documents`.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Corpus directory.")],
    workers: Annotated[int, typer.Option(help="Worker processes for the structure pass."
                                         )] = os.cpu_count() or 1,
    limit: Annotated[int | None, typer.Option(help="Stop after N pages.")] = None,
    keep_unlabelled_caps: Annotated[bool, typer.Option(
        help="Keep sentences with unlabelled capitalised words (skip the WikiNER filter).")
    ] = False,
) -> None:
    """Build a silver NER + relation corpus from a dump (train/dev/test.jsonl, stats.json)."""
    from kgx.corpus.build import build_corpus
    from kgx.dump.sources import DumpError
    from kgx.structure.extract import ExtractOptions
    from kgx.structure.extract import extract as run

    try:
        if dump.is_dir():
            graph_dir = dump
        else:
            graph_dir = out / "graph"
            rep = run(dump, graph_dir, ExtractOptions(workers=workers, limit=limit,
                                                      keep_documents=True))
            if not rep.finished:
                typer.echo(rep.summary(), err=True)
        stats = build_corpus(graph_dir, out, drop_unlabelled_caps=not keep_unlabelled_caps,
                             workers=workers)
    except (DumpError, FileNotFoundError) as exc:
        _fail(str(exc))
        return
    typer.echo(f"corpus written to {out}/: train.jsonl, dev.jsonl, test.jsonl (and "
               "train.links.jsonl, sentences read only to type links); every count in "
               f"{out / 'stats.json'}. Headline counts:", err=True)
    typer.echo(json.dumps({k: stats[k] for k in ("sentences", "mentions", "relations",
                                                 "kept_share")}, indent=2))


@app.command()
def train(
    data: Annotated[list[str], typer.Argument(metavar="DATA...",
        help="Corpus directories (kgx corpus), CoNLL files or DocRED / Re-DocRED JSON files, "
             "each PATH or PATH:WEIGHT (WEIGHT: how many times its rows an epoch draws; "
             "default 1).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Model directory.")],
    base_model: Annotated[str, typer.Option(
        help="Encoder: 'minilm' (bundled all-MiniLM-L6-v2), a local Hugging Face directory, "
             "or a hub id.")] = "minilm",
    tuning: Annotated[str, typer.Option(callback=_tuning_option, help=TUNING_HELP)] = "full",
    epochs: Annotated[int, typer.Option(help="Epochs at most (early stopping on dev).")] = 6,
    batch_size: Annotated[int, typer.Option(
        help="Windows per batch (a sentence is one, a document several).")] = 16,
    learning_rate: Annotated[float, typer.Option(help="Encoder learning rate.")] = 5e-5,
    max_length: Annotated[int, typer.Option(help="Encoder window in tokens.")] = 128,
    max_train_sentences: Annotated[int | None, typer.Option(
        help="Train on at most N sentences (all with a relation kept first).")] = None,
    max_minutes: Annotated[float | None, typer.Option(help="Stop training after M minutes."
                                                      )] = None,
    dev: Annotated[Path | None, typer.Option(
        help="Dev file of the first source, a CoNLL file (default: its last tenth).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 13,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 (default: auto).")
                      ] = None,
    checkpoint_minutes: Annotated[float, typer.Option(
        help="Write a checkpoint whenever this much training has passed (and at each epoch's "
             "end): what a kill costs at most; the same command resumes from it.")] = 4.0,
    casing: Annotated[bool, typer.Option(
        help="Give the tagger each word's shape (Capitalised, UPPER, lower, digit...) beside "
             "the encoder: what an uncased encoder cannot see.")] = True,
    link_typing_rows: Annotated[int, typer.Option(
        help="After the first epoch, type the silver corpus's links to pages of no known type "
             "by the tagger's reading of them, in the training rows and N more (0: off).")
    ] = 8000,
) -> None:
    """Fine-tune the encoder for entities and relations; save a Hugging Face model directory.

    Several sources are mixed: the silver corpus plus gold sets, e.g. `kgx train out/corpus
    conll/train.txt:2 redocred.json:0.5 -o model`. The labels are the union of theirs, Wikidata
    relation ids mapped onto kgx's properties; each source is scored on its own dev set.

    The defaults train on every sentence for up to 6 epochs, which is what a gold set or a GPU
    wants. `kgx extract` trains a quicker model (1,500 sentences x 3 epochs, to fit the sample
    into 10 minutes on 2 cores): `--max-train-sentences 1500 --epochs 3` gives the same.
    """
    from kgx.corpus.datasets import DataError
    from kgx.model.evaluate import headline_scores
    from kgx.model.train import TrainOptions
    from kgx.model.train import train as run
    from kgx.model.tuning import TuningError

    opts = TrainOptions(base_model=base_model, tuning=tuning, epochs=epochs,
                        batch_size=batch_size,
                        learning_rate=learning_rate, max_length=max_length, seed=seed,
                        max_train_sentences=max_train_sentences, max_minutes=max_minutes,
                        device=device, dev_path=str(dev) if dev else None, casing=casing,
                        link_typing_rows=link_typing_rows,
                        checkpoint_minutes=checkpoint_minutes)
    try:
        from kgx.runtime import logs

        logs.setup(None)
        res = run(data, out, opts, log=logs.info)
    except (DataError, TuningError, OSError, RuntimeError) as exc:
        _fail(str(exc))
        return
    by_source = {k: headline_scores(v) for k, v in res.dev_by_source.items()}
    typer.echo(json.dumps({"model": str(out), "best_epoch": res.best_epoch,
                           "dev": headline_scores(res.dev), "test": headline_scores(res.test),
                           **({"dev_by_source": by_source} if len(data) > 1 else {}),
                           "train_sentences_per_second": res.sentences_per_second}, indent=2))


@app.command()
def evaluate(
    model: Annotated[Path, typer.Argument(metavar="MODEL", help="Model directory.")],
    data: Annotated[Path, typer.Argument(metavar="DATA",
        help="Corpus split .jsonl, CoNLL file, or DocRED "
                                              "JSON.")],
    format: Annotated[str | None, typer.Option(
        "--format", help="corpus, conll or docred (default: sniffed).")] = None,
    limit: Annotated[int | None, typer.Option(help="First N sentences/documents.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Score a model: entity P/R/F1 per type (seqeval), relation P/R/F1 per label."""
    from kgx.corpus.datasets import DataError
    from kgx.model.evaluate import evaluate as run
    from kgx.model.evaluate import format_scores

    try:
        res = run(model, data, format, limit)
    except (DataError, FileNotFoundError) as exc:
        _fail(str(exc))
        return
    if res.get("note"):
        typer.echo(f"kgx: warning: {res['note']}", err=True)
    if as_json:
        typer.echo(json.dumps(res, indent=2))
        return
    typer.echo(format_scores(res))


@app.command()
def serve(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Output directory of `kgx extract`.")],
    host: Annotated[str, typer.Option(help="Address to bind (default: this machine only).")
                    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 7878,
    workers: Annotated[int, typer.Option(
        help="Queries that may run at once for as long as --timeout allows (one more light "
             "query runs beside them).")] = 2,
    timeout: Annotated[float, typer.Option(help="Seconds a query may run.")] = 10.0,
    max_rows: Annotated[int, typer.Option(help="Rows (or triples) per answer.")] = 10_000,
    memory_mb: Annotated[int, typer.Option(help="Memory per query worker.")] = 2048,
    cors: Annotated[str | None, typer.Option(help="Allow this origin (e.g. '*').")] = None,
    max_response_mb: Annotated[int, typer.Option(help="Largest answer, in MB.")] = 32,
    allow_host: Annotated[list[str] | None, typer.Option(
        help="Also answer requests whose Host header names this (repeatable); by default a "
             "server bound to 127.0.0.1 answers only loopback names.")] = None,
    follow: Annotated[bool, typer.Option(
        help="Move to a new version of the graph once a run that rewrote OUT has finished "
             "(--no-follow: keep the version pinned at start).")] = True,
) -> None:
    """Serve OUT over HTTP: pages at /, SPARQL at /query and /sparql, lookup at /lookup."""
    from kgx.graph.errors import GraphNotFound
    from kgx.serve import ServeOptions
    from kgx.serve import serve as run

    try:
        opts = ServeOptions(host=host, port=port, workers=workers, timeout=timeout,
                            max_rows=max_rows, memory_mb=memory_mb, cors=cors,
                            max_response_bytes=max_response_mb << 20,
                            allowed_hosts=tuple(allow_host or ()), follow=follow).check()
        run(out, opts)
    except (GraphNotFound, OSError, ValueError, RuntimeError) as exc:
        _fail(str(exc))


@app.command()
def report(out: Annotated[Path, typer.Argument(metavar="OUT", help="Output directory.")]) -> None:
    """Print the JSON report of the last run in OUT."""
    p = out / REPORT_FILE
    if not p.exists():
        _fail(f"{p}: no report; run `kgx extract` first")
    typer.echo(json.dumps(json.loads(p.read_text(encoding="utf-8")), indent=2))


@app.command()
def info(as_json: Annotated[bool, typer.Option("--json", help="Print it as JSON.")] = False
         ) -> None:
    """Print what a bug report needs: kgx's version, Python, torch and its device, the optional
    libraries (with the extra that brings each), and the default encoder."""
    from kgx.environment import describe, render

    facts = describe()
    typer.echo(json.dumps(facts, indent=2) if as_json else render(facts))


if __name__ == "__main__":
    app()
