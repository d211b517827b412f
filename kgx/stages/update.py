"""``kgx update``: a newer dump of the graph's wiki applied to it.

The structure graph is updated page by page (:mod:`kgx.update`); then the stages after the
structure pass run as ``kgx extract`` would, with the settings the graph was built with and its
model (never trained again): the entity index, the reading of every document and the merge
take the updated structure. With nothing changed, nothing of the graph is written (only
``report.json`` and the log).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from kgx.outdir import GRAPH_FILE, MODEL_DIR, PAGES_DIR, REPORT_FILE, output_lock
from kgx.stages.entities import EntitiesStage
from kgx.stages.merge import MergeStage
from kgx.stages.pipeline import PipelineOptions, final_report
from kgx.stages.read import ReadStage
from kgx.stages.runner import Manifest, Run, Stage, run_stages
from kgx.structure.extract import ExtractOptions
from kgx.structure.pages import Limits
from kgx.update.run import UpdateOptions, finish, update_structure
from kgx.update.scan import UpdateError


class Recorded(Stage):
    """A stage the update does not run again: the structure (updated by :mod:`kgx.update`)
    and the model (the graph's own, reused), with the key ``stages.json`` records."""

    def __init__(self, record: dict[str, Any] | None) -> None:
        self.record = record or {}

    def outputs(self, run: Run) -> list[str]:
        return []

    def key(self, run: Run) -> str:
        return str(self.record.get("key"))

    def execute(self, run: Run) -> dict[str, Any]:
        raise UpdateError(f"{run.out}: its {self.name} stage never finished; run kgx "
                          "extract to finish the graph before updating it")


def recorded(name: str, manifest: Manifest) -> Stage:
    """The stage ``name`` as ``stages.json`` records it (:class:`Recorded`)."""
    cls = type(f"Recorded{name.title()}", (Recorded,), {"name": name})
    stage: Stage = cls(manifest.data.get(name))
    return stage


def options_of(out: Path, report: dict[str, Any], workers: int, progress: bool | None
               ) -> PipelineOptions:
    """The settings ``out`` was built with (as ``report.json`` records them)."""
    s = report.get("settings", {})
    ex = ExtractOptions(workers=workers, namespace=s.get("namespace"),
                        limits=Limits(**s.get("limits", {})), index=None,
                        keep_documents=(out / "documents.jsonl").exists(), progress=progress)
    known = {f.name for f in fields(PipelineOptions)} - {"extract"}
    recorded = {k: v for k, v in report.get("pipeline", {}).get("settings", {}).items()
                if k in known}
    opts = PipelineOptions(extract=ex, **recorded)
    opts.progress = progress
    if opts.use_model and not opts.model:
        opts.model = str(out / MODEL_DIR)  # the graph's own reader: reused, never retrained
    return opts


def update(out: str | os.PathLike[str], dump: str | os.PathLike[str],
           opts: UpdateOptions | None = None, log: Callable[[str], None] = print
           ) -> dict[str, Any]:
    """Apply ``dump`` (a newer dump of the same wiki) to the graph in ``out``; return its
    report (with an ``update`` section).

    Raises:
        UpdateError: Another wiki, an older dump, or a graph kgx update cannot update; the
            graph is untouched.
        DumpError: The dump cannot be opened.
        OutputInUse: Another kgx process is writing ``out``.
    """
    out_p, dump_p = Path(out).absolute(), Path(dump).absolute()
    with output_lock(out_p):
        return _update(out_p, dump_p, opts or UpdateOptions(), log)


def _update(out: Path, dump: Path, opts: UpdateOptions, log: Callable[[str], None]
            ) -> dict[str, Any]:
    from kgx.dump.sources import detect_format
    from kgx.engines.ray import use_engine
    from kgx.rdf.merge import forget_inferred

    detect_format(dump)
    if not (out / REPORT_FILE).exists() or not (out / PAGES_DIR).is_dir():
        raise UpdateError(f"{out} holds no graph kgx update can update (no {REPORT_FILE} or "
                          f"{PAGES_DIR}/): make it with kgx extract")
    report = json.loads((out / REPORT_FILE).read_text("utf-8"))
    popts = options_of(out, report, opts.workers, opts.progress)
    # A graph with model facts: every document is read again, over a store of the structure
    # graph alone (loaded afresh); without, the store is patched where the pages changed.
    opts.patch_store = not popts.use_model
    rep = update_structure(out, dump, opts, log)
    log(f"[update] {rep.summary()}")
    manifest = Manifest(out)
    if rep.changes and manifest.data.get("structure", {}).get("key") != rep.key:
        if opts.patch_store:  # the entailments are computed again by the merge
            forget_inferred(out, report["site"]["namespace"])
        _record(out, manifest, rep, report)
    finish(out)
    r = Run(dump, out, popts, log)
    stages: list[Stage] = [recorded("structure", manifest)]
    if popts.use_model:
        stages.append(recorded("model", manifest))
    stages += [EntitiesStage(), ReadStage(), MergeStage()]
    with use_engine("local", None, opts.workers, log) as engine:
        run_stages(stages, r)
    update = rep.to_json()
    history = report.get("updates", [])
    final = final_report(r, engine, update)
    final["updates"] = [*history, update] if rep.changes else history
    from kgx.engines.journal import write_atomic

    write_atomic(out / REPORT_FILE, json.dumps(final, indent=2, ensure_ascii=False))
    return final


def _record(out: Path, manifest: Manifest, rep: Any, report: dict[str, Any]) -> None:
    """The structure stage's new key and figures in ``stages.json`` and ``report.json``."""
    import sqlite3

    from kgx.engines.journal import write_atomic
    from kgx.outdir import ALIASES_FILE

    con = sqlite3.connect(f"file:{out / ALIASES_FILE}?mode=ro", uri=True)
    kinds = dict(con.execute("SELECT kind, count(*) FROM pages GROUP BY kind").fetchall())
    con.close()
    report["pages"] = {**report.get("pages", {}), **kinds, "read": sum(kinds.values())}
    report["triples"] = {k: v for k, v in rep.triples.items()}
    report["finished"] = rep.broke_off is None
    report["error"] = rep.broke_off
    report["dump"] = str(rep.dump)
    report["site"] = {**report["site"], **rep.site}
    if rep.wikidata is not None:
        report["wikidata"] = rep.wikidata
    write_atomic(out / REPORT_FILE, json.dumps(report, indent=2, ensure_ascii=False))
    rec = manifest.data.setdefault("structure", {})
    rec.update({"key": rep.key, "finished": rep.broke_off is None, "error": rep.broke_off,
                "pages": report["pages"]["read"],
                "graph_bytes": (out / GRAPH_FILE).stat().st_size})
    manifest.save()
