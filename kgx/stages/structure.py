"""The structure stage: the dump's own facts (infoboxes, categories, redirects, links, labels,
abstracts) into ``graph.nq``, the Oxigraph store and the alias table.

The work is :func:`kgx.structure.extract.extract`, chunked by multistream stream (or by batch of
pages for a plain dump) and resumed from its journal after a kill; this module gives it the
stage shape. A new structure graph means a new store, so whatever the merge stage had folded
into the old one is forgotten with it.
"""

from __future__ import annotations

from typing import Any

from kgx.outdir import ALIASES_FILE, DOCUMENTS_FILE, GRAPH_FILE, REPORT_FILE, STORE_DIR
from kgx.stages.runner import Run, Stage
from kgx.structure.extract import extract, structure_key


class StructureStage(Stage):
    name = "structure"

    def outputs(self, run: Run) -> list[str]:
        ex = run.opts.extract
        return [GRAPH_FILE, STORE_DIR, ALIASES_FILE, REPORT_FILE] + \
            ([DOCUMENTS_FILE] if ex.keep_documents else [])

    def key(self, run: Run) -> str:
        from kgx.dump.multistream import find_index

        ex = run.opts.extract
        if not run.dump.exists():
            return "missing dump"  # extract() says so, with the path
        return structure_key(run.dump, ex, str(ex.index or find_index(run.dump) or ""))

    def execute(self, run: Run) -> dict[str, Any]:
        rep = extract(run.dump, run.out, run.opts.extract)
        run.log(rep.summary())
        if not rep.finished:
            # A broken dump still gives its graph; later stages work on what was read.
            run.log("[structure] the dump broke off: later stages use the pages read before it")
        return {"finished": rep.finished, "error": rep.error, "pages": rep.pages.get("read", 0),
                "resumed_chunks": rep.resumed_chunks,
                "graph_bytes": (run.out / GRAPH_FILE).stat().st_size}
