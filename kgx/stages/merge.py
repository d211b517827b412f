"""The merge stage: model facts, mentions and the ontology's entailments folded into the one
``graph.nq`` and the one store the structure stage built.

Nothing is loaded twice and nothing is copied whole: the structure stage's ``graph.nq`` is
extended in place (the structure part ends at the byte the structure stage recorded, so a
re-run cuts back to it first), and the store, a set of quads, takes each part with one bulk
load. Entailments (:mod:`kgx.reasoning`) are computed in the store in bounded batches and
appended. Each step is recorded in ``store/kgx-merge.json`` once done: a killed merge
continues with the step in flight. Only when the read stage's output changed after an earlier
merge is the store rebuilt from the structure part of ``graph.nq``, since the old model
facts must go.

Once the merge is recorded, ``model.nq`` and ``mentions.nq`` (now inside ``graph.nq``) are
deleted, unless ``--keep-intermediate``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from kgx.extract import GRAPH_FILE, REPORT_FILE, STORE_DIR, add_to_store, load_store
from kgx.stages.runner import Run, Stage, stage_key, write_atomic

INFERRED_FILE = "inferred.nq"
# Kept inside the store's folder: a store built afresh (by the structure stage, or rebuilt
# here) has none, which is exactly right, since it holds nothing merged. RocksDB leaves files
# it did not name alone.
STATE_FILE = "kgx-merge.json"


class MergeStage(Stage):
    name = "merge"

    def outputs(self, run: Run) -> list[str]:
        return [GRAPH_FILE, STORE_DIR]

    def key(self, run: Run) -> str:
        return stage_key(run.keys["structure"], run.keys.get("read"), run.opts.reasoning,
                         "merge-2")

    def parts(self, run: Run) -> list[str]:
        from kgx.stages.read import ReadStage

        return ReadStage().outputs(run) if "read" in run.keys else []

    def consumes(self, run: Run) -> dict[str, list[str]]:
        parts = self.parts(run)
        return {"read": parts} if parts else {}

    def execute(self, run: Run) -> dict[str, Any]:
        what = (["model facts and mentions"] if self.parts(run) else []) + \
            (["RDFS/OWL-RL entailments"] if run.opts.reasoning else [])
        if what:
            run.log(f"[merge] {' and '.join(what)} into graph.nq and the store")
        return merge(run.out, self.parts(run), run.opts.reasoning,
                     run.info["structure"]["graph_bytes"], run.keys[self.name],
                     keep_inferred=bool(getattr(run.opts, "keep_intermediate", False)))


def merge(out: Path, parts: list[str], reasoning: bool, structure_bytes: int,
          key: str, keep_inferred: bool = False) -> dict[str, int]:
    """Fold ``parts`` (files in ``out``) and, with ``reasoning``, the entailments into
    ``graph.nq`` and the store; returns the inferred triples and the quads the store refused.

    Args:
        structure_bytes: Where the structure stage's part of ``graph.nq`` ends.
        key: What is being merged; a state with another key is not continued.
        keep_inferred: Also write the entailments to ``inferred.nq``.
    """
    import pyoxigraph as ox

    from kgx.reasoning import materialise

    state_path = out / STORE_DIR / STATE_FILE
    state: dict[str, Any] = json.loads(state_path.read_text("utf-8")) \
        if state_path.exists() else {}
    graph = out / GRAPH_FILE
    if state.get("key") != key:
        if state:  # the store holds an earlier merge: back to the structure graph alone
            _truncate(graph, structure_bytes)
            load_store(graph, out / STORE_DIR)
        state = {"key": key, "done": [], "bytes": structure_bytes, "inferred": 0}
        write_atomic(state_path, json.dumps(state))

    def step_done(name: str) -> None:
        state["done"].append(name)
        state["bytes"] = graph.stat().st_size
        write_atomic(state_path, json.dumps(state))

    # Whatever a killed step appended to graph.nq goes; the store keeps what it loaded, and
    # loading it again changes nothing (a store is a set of quads).
    _truncate(graph, state["bytes"])
    store = ox.Store(str(out / STORE_DIR))
    refused = 0
    try:
        for p in parts:
            if p in state["done"]:
                continue
            loaded = add_to_store(store, out / p)
            refused += loaded.refused
            with open(graph, "ab") as g, open(out / p, "rb") as src:
                shutil.copyfileobj(src, g, 1 << 20)
            step_done(p)
        if reasoning and "inferred" not in state["done"]:
            report = json.loads((out / REPORT_FILE).read_text("utf-8"))
            ns = report.get("site", {}).get("namespace", "https://kgx.dev/wiki/")
            n = 0
            side = open(out / INFERRED_FILE, "w", encoding="utf-8") if keep_inferred \
                else None  # noqa: SIM115
            with open(graph, "a", encoding="utf-8") as g:
                for line in materialise(store, ns + "graph/inferred"):
                    g.write(line)
                    if side is not None:
                        side.write(line)
                    n += 1
            if side is not None:
                side.close()
            state["inferred"] = n
            step_done("inferred")
        store.flush()
    finally:
        del store
    return {"inferred_triples": int(state["inferred"]), "refused_quads": refused}


def _truncate(path: Path, size: int) -> None:
    if path.stat().st_size > size:
        with open(path, "r+b") as f:
            f.truncate(size)
            os.fsync(f.fileno())
