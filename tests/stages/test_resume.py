"""A run killed with SIGKILL at any point continues where it stopped, and ends with the graph
an uninterrupted run writes."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from kgx.dump.multistream import find_index, read_index
from kgx.dump.reader import DumpReader
from kgx.engines.journal import count_committed
from kgx.structure.extract import ExtractOptions, _batches, extract
from tests.support import PIPELINE, SAMPLE, kill_when, pipeline_options, sorted_quads


@pytest.fixture(scope="module")
def small_streams(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample as a multistream dump of 10-page streams: enough chunks to kill between."""
    from kgx.dump.repack import repack

    dump = tmp_path_factory.mktemp("ms10") / "enwiki-2016-excerpt-multistream.xml.bz2"
    repack(SAMPLE, dump, 10)
    return dump






STRUCTURE = ("import sys; from kgx.structure.extract import ExtractOptions, extract; "
             "extract(sys.argv[1], sys.argv[2], ExtractOptions(workers=1, progress=False, "
             "keep_documents=True))")


@pytest.mark.parametrize("layout", ["multistream", "single stream"])
def test_structure_pass_resumes_after_kill_9(layout: str, small_streams: Path,
                                             tmp_path: Path, busy_core: None) -> None:
    dump = small_streams if layout == "multistream" else SAMPLE
    opts = ExtractOptions(workers=1, progress=False, keep_documents=True)
    ref = extract(dump, tmp_path / "ref", opts)
    out = tmp_path / "out"
    journal = out / ".work" / "structure" / "aliases.sqlite"
    if layout == "multistream":
        total = len(read_index(find_index(dump)))
    else:
        total = sum(1 for _ in _batches(DumpReader(dump), None))
    done = kill_when([sys.executable, "-c", STRUCTURE, str(dump), str(out)], journal,
                     max(1, total // 2))
    assert 0 < done < total, (done, total)
    assert not (out / "graph.nq").exists()
    rep = extract(dump, out, opts)
    assert rep.resumed_chunks == done > 0
    assert rep.finished and rep.pages == ref.pages and rep.triples == ref.triples
    assert sorted_quads(out / "graph.nq") == sorted_quads(tmp_path / "ref" / "graph.nq")
    assert sorted_quads(out / "documents.jsonl") == sorted_quads(tmp_path / "ref" /
                                                                 "documents.jsonl")
    a = sqlite3.connect(out / "aliases.sqlite")
    b = sqlite3.connect(tmp_path / "ref" / "aliases.sqlite")
    for table in ("titles", "redirects", "anchors"):
        q = f"SELECT * FROM {table} ORDER BY 1, 2"
        assert a.execute(q).fetchall() == b.execute(q).fetchall(), table
    assert not (out / ".work").exists()


def test_anchor_sums_by_part_are_redone_after_a_kill(tmp_path: Path) -> None:
    """Anchor rows go to tables by a hash of the anchor and are summed table by table; a
    finish that stops half way is done again from the same rows, without counting twice."""
    from kgx.structure.aliases import ANCHOR_PARTS, AliasStore, anchor_part

    names = [f"Place {i}" for i in range(60)]
    assert len({anchor_part(a) for a in names}) > ANCHOR_PARTS // 2  # the rows are spread
    store = AliasStore(tmp_path / "aliases.sqlite")
    for chunk in range(3):  # every chunk links each place once, and chunk 2 twice more
        with store.db:
            store.add_anchor_rows({(a, a.upper()): 1 + 2 * (chunk == 2) for a in names})
            store.add_anchor_rows({("the place", "Place 0"): 1})

    class Killed(Exception):
        pass

    def killed_half_way(fn, tasks):
        for i, t in enumerate(tasks):
            if i == ANCHOR_PARTS // 2:
                raise Killed
            yield fn(*t)

    with pytest.raises(Killed):
        store.finish(killed_half_way)
    store.close()
    store = AliasStore(tmp_path / "aliases.sqlite")
    store.finish()
    got = dict(((a, t), n) for a, t, n in store.db.execute("SELECT * FROM anchors"))
    assert got == {**{(a, a.upper()): 5 for a in names}, ("the place", "Place 0"): 3}
    left = store.db.execute("SELECT name FROM sqlite_master WHERE name LIKE 'anchor_rows%'")
    assert left.fetchall() == []
    store.finish()  # done: nothing summed again
    assert store.db.execute("SELECT sum(n) FROM anchors").fetchone()[0] == 5 * 60 + 3
    store.close()
    assert [p.name for p in tmp_path.iterdir()] == ["aliases.sqlite"]


def test_a_changed_dump_starts_the_structure_pass_over(small_streams: Path,
                                                       tmp_path: Path, busy_core: None) -> None:
    dump = tmp_path / small_streams.name
    dump.write_bytes(small_streams.read_bytes())
    index = small_streams.with_name(small_streams.name.replace(".xml.bz2", "-index.txt.bz2"))
    (tmp_path / index.name).write_bytes(index.read_bytes())
    out = tmp_path / "out"
    journal = out / ".work" / "structure" / "aliases.sqlite"
    done = kill_when([sys.executable, "-c", STRUCTURE, str(dump), str(out)], journal, 3)
    assert done >= 3
    os.utime(dump, ns=(time.time_ns(), time.time_ns() + 10**9))  # "a new dump, same name"
    rep = extract(dump, out, ExtractOptions(workers=1, progress=False, keep_documents=True))
    assert rep.resumed_chunks == 0 and rep.finished
    assert json.loads((out / "report.json").read_text())["resumed_chunks"] == 0


# --------------------------------------------------------------------------- read and merge







@pytest.fixture
def reference(short_articles: Path, readme_out: Path, tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict]:
    """An uninterrupted run, with the README fixture's (tiny) reader."""
    from kgx.stages.pipeline import run

    monkeypatch.setenv("KGX_THREADS", "1")  # the same arithmetic in every run
    ref = tmp_path / "ref"
    rep = run(short_articles, ref, pipeline_options(readme_out / "model"), log=lambda m: None)
    assert rep["pipeline"]["read"]["chunks"] >= 10
    return ref, rep


def test_read_stage_resumes_after_kill_9(reference: tuple[Path, dict], short_articles: Path,
                                         readme_out: Path, tmp_path: Path) -> None:
    from kgx.stages.pipeline import run

    ref, ref_rep = reference
    chunks = ref_rep["pipeline"]["read"]["chunks"]
    out = tmp_path / "out"
    journal = out / ".work" / "read" / "facts.sqlite"
    done = kill_when([sys.executable, "-c", PIPELINE, str(short_articles), str(out),
                      str(readme_out / "model")], journal, chunks // 2)
    assert chunks // 2 <= done < chunks
    log: list[str] = []
    rep = run(short_articles, out, pipeline_options(readme_out / "model"), log=log.append)
    assert any(f"[read] resuming: {done} chunks" in m for m in log), log
    assert sum("unchanged inputs" in m for m in log) == 3, log  # structure, model, entities
    def figures(rep: dict) -> dict:
        return {k: v for k, v in rep["pipeline"]["read"].items()
                if k not in ("seconds_reading", "seconds_by_step")}  # timings

    assert figures(rep) == figures(ref_rep)
    assert sorted_quads(out / "graph.nq") == sorted_quads(ref / "graph.nq")


class _DyingSplitter:
    """The read stage's first step, killing its process whenever its chunk holds the page
    ``poison`` (spawned workers import it from here)."""

    def __init__(self, poison: str, *args: object) -> None:
        from kgx.read.steps import SentenceSplitter

        self.poison = poison
        self.split = SentenceSplitter(*args)

    def __call__(self, *task: object) -> object:
        rc = self.split(*task)
        if any(d["title"] == self.poison for d in rc.docs):
            os._exit(1)
        return rc


def test_a_document_that_kills_its_reader_is_lost_alone(
        reference: tuple[Path, dict], short_articles: Path, readme_out: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Its chunk is read again document by document; the document that kills its process
    again is reported lost, and every other page's mentions are as in an uninterrupted run."""
    import kgx.read.steps
    from kgx.engines.pools import Step
    from kgx.stages.pipeline import run

    read_steps = kgx.read.steps.read_steps

    def poisoned(*a: object, **k: object) -> list[Step]:
        steps = read_steps(*a, **k)
        return [Step(_DyingSplitter, ("Town 7", *steps[0].args))] + steps[1:]

    import kgx.read.run
    monkeypatch.setattr(kgx.read.run, "read_steps", poisoned)
    ref, ref_rep = reference
    out = tmp_path / "out"
    log: list[str] = []
    rep = run(short_articles, out, pipeline_options(readme_out / "model"), log=log.append)
    read = rep["pipeline"]["read"]
    assert read["lost_documents"] == 1
    assert [(x["title"], x["page_id"], x["documents"]) for x in read["lost"]] == [
        ("Town 7", 8, 1)]
    assert read["documents"] == ref_rep["pipeline"]["read"]["documents"] - 1
    assert any("[read] lost 1 document(s) from 'Town 7' (page 8)" in m for m in log), log

    def mentions(path: Path) -> set[str]:
        return {q for q in sorted_quads(path) if "/mentions>" in q}

    lost = "/graph/page/8/mentions>"
    assert any(lost in q for q in mentions(ref / "graph.nq"))  # the test means something
    assert mentions(out / "graph.nq") == {q for q in mentions(ref / "graph.nq") if lost not in q}


def test_a_document_that_kills_its_corpus_worker_is_lost_alone(
        reference: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The corpus stage's chunk is labelled again document by document; the document that
    kills its process again is listed in ``stats.json``, and the other pages' rows are all
    there."""
    import shutil

    import kgx.engines.pools
    from kgx.corpus.build import build_corpus
    from kgx.corpus.labelling import CorpusBuilder

    ref, _ = reference
    sentences = CorpusBuilder.sentences

    def dies_on_town_7(self: CorpusBuilder, doc: dict) -> object:
        if doc["title"] == "Town 7":
            os._exit(1)  # in the forked worker
        return sentences(self, doc)

    def corpus(name: str) -> tuple[dict, list[str]]:
        graph = tmp_path / name
        shutil.copytree(ref, graph, ignore=shutil.ignore_patterns("corpus", ".work"))
        stats = build_corpus(graph, graph / "corpus", workers=1)
        rows = [line for split in ("train", "dev", "test")
                for line in (graph / "corpus" / f"{split}.jsonl").read_text().splitlines()]
        return stats, rows

    whole, rows = corpus("whole")
    monkeypatch.setattr(CorpusBuilder, "sentences", dies_on_town_7)
    import kgx.engines.local
    monkeypatch.setattr(kgx.engines.local, "STAGE_START_METHOD", "fork")  # so the stand-in is there
    lost, rows2 = corpus("lost")
    assert [(x["title"], x["page_id"], x["documents"]) for x in lost["lost_documents"]] == [
        ("Town 7", 8, 1)] and whole["lost_documents"] == []
    assert sum(lost["pages"].values()) == sum(whole["pages"].values()) - 1
    town_7 = [r for r in rows if '"page_id": 8,' in r]
    assert town_7 and sorted(rows2) == sorted(r for r in rows if r not in town_7)


def test_merge_continues_after_a_failure(reference: tuple[Path, dict], short_articles: Path,
                                         readme_out: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed in the entailments' chunks, then in the transitive chains (with half a line
    written), the merge continues each time where it was."""
    import pyoxigraph as ox

    import kgx.rdf.reasoning
    import kgx.stages.merge
    from kgx.engines.journal import Journal
    from kgx.stages.pipeline import run

    ref, _ = reference
    out = tmp_path / "out"
    infer_chunk = kgx.rdf.reasoning.infer_chunk
    close_transitive = kgx.rdf.reasoning.close_transitive
    import kgx.rdf.merge
    monkeypatch.setattr(kgx.rdf.merge, "INFER_CHUNK_BYTES", 64 << 10)
    chunks: list[int] = []

    def die_at_third(*a: object, **k: object):  # noqa: ANN202
        chunks.append(1)
        if len(chunks) == 3:  # once only
            raise RuntimeError("killed while reasoning")
        return infer_chunk(*a, **k)

    monkeypatch.setattr(kgx.rdf.reasoning, "infer_chunk", die_at_third)
    with pytest.raises(RuntimeError, match="killed while reasoning"):
        run(short_articles, out, pipeline_options(readme_out / "model"), log=lambda m: None)
    state = json.loads((out / "store" / "kgx-merge.json").read_text())
    assert state["done"] == ["model.nq", "mentions.nq"]
    journal = Journal(sqlite3.connect(out / ".work" / "merge" / "journal.sqlite"))
    assert journal.done() == {0, 1}
    journal.db.close()

    def die_in_chains(store: object, graph: str, rules: object, f: object) -> None:
        f.write("<https://kgx.dev/half")  # type: ignore[attr-defined]
        raise RuntimeError("killed in the chains")

    monkeypatch.setattr(kgx.rdf.reasoning, "close_transitive", die_in_chains)
    with pytest.raises(RuntimeError, match="killed in the chains"):
        run(short_articles, out, pipeline_options(readme_out / "model"), log=lambda m: None)
    parts = len(list((out / ".work" / "merge" / "parts").iterdir()))
    assert parts > 3 and len(chunks) == 3 + parts - 2  # the third chunk, and the rest
    state = json.loads((out / "store" / "kgx-merge.json").read_text())
    assert state["done"] == ["model.nq", "mentions.nq", "inferred-groups"]

    monkeypatch.setattr(kgx.rdf.reasoning, "close_transitive", close_transitive)
    log: list[str] = []
    run(short_articles, out, pipeline_options(readme_out / "model"), log=log.append)
    assert sum("unchanged inputs" in m for m in log) == 4, log  # all but merge
    assert sorted_quads(out / "graph.nq") == sorted_quads(ref / "graph.nq")
    a, b = ox.Store.read_only(str(out / "store")), ox.Store.read_only(str(ref / "store"))
    assert len(a) == len(b) and sorted(map(str, a)) == sorted(map(str, b))
    assert not (out / ".work" / "merge").exists()


def test_corpus_is_the_same_with_any_number_of_workers_and_resumes(
        readme_out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks labelled by 2 processes, or committed by a run that then died, join into the
    corpus one process writes."""
    import kgx.corpus.build
    import kgx.corpus.documents
    from kgx.corpus.build import build_corpus
    monkeypatch.setattr(kgx.corpus.documents, "DOCS_PER_CHUNK", 10)
    one = build_corpus(readme_out, tmp_path / "one", workers=0)
    two = build_corpus(readme_out, tmp_path / "two", workers=2)
    for split in ("train", "dev", "test"):
        a = (tmp_path / "one" / f"{split}.jsonl").read_bytes()
        assert a and a == (tmp_path / "two" / f"{split}.jsonl").read_bytes()
    assert {k: v for k, v in one.items() if k != "graph"} == \
        {k: v for k, v in two.items() if k != "graph"}
    # A run that dies after 3 chunks; the next one labels only the rest.
    real = kgx.corpus.build._label_chunk
    seen: list[int] = []

    def dies_after_three(chunk: int, docs: object, sub: int | None = None) -> dict:
        if len(seen) == 3:
            raise KeyboardInterrupt
        seen.append(chunk)
        return real(chunk, docs, sub)

    monkeypatch.setattr(kgx.corpus.build, "_label_chunk", dies_after_three)
    with pytest.raises(KeyboardInterrupt):
        build_corpus(readme_out, tmp_path / "three", workers=0)
    monkeypatch.setattr(kgx.corpus.build, "_label_chunk",
                        lambda c, d, s=None: (seen.append(c), real(c, d, s))[1])
    again = build_corpus(readme_out, tmp_path / "three", workers=0)
    assert seen[:3] == [0, 1, 2] and 0 not in seen[3:] and len(seen) == 11  # 106 documents
    assert {k: v for k, v in again.items() if k != "graph"} == \
        {k: v for k, v in one.items() if k != "graph"}
    assert (tmp_path / "three" / "train.jsonl").read_bytes() == \
        (tmp_path / "one" / "train.jsonl").read_bytes()


def test_a_full_disk_names_the_folder_and_stage_and_keeps_committed_work(tmp_path: Path) -> None:
    import errno

    from kgx.engines.journal import DiskFull, Journal
    from kgx.stages.runner import Run, Stage, run_stages

    class Filling(Stage):
        name = "filling"

        def outputs(self, run: Run) -> list[str]:
            return ["filled.txt"]

        def key(self, run: Run) -> str:
            return "k"

        def execute(self, run: Run) -> dict:
            journal = Journal(sqlite3.connect(run.work(self.name) / "j.sqlite"))
            journal.commit(0, {"rows": 1})
            raise OSError(errno.ENOSPC, "No space left on device", str(run.out / "x.nq"))

    out = tmp_path / "out"
    (out / ".work" / "filling").mkdir(parents=True)
    with pytest.raises(DiskFull) as err:
        run_stages([Filling()], Run(tmp_path / "d.xml", out, None, lambda m: None))
    msg = str(err.value)
    assert str(out) in msg and "filling stage" in msg and "x.nq" in msg
    assert "run the same command again" in msg
    assert count_committed(out / ".work" / "filling" / "j.sqlite") == 1
    assert not (out / "stages.json").exists() or "filling" not in (out / "stages.json").read_text()


# --------------------------------------------------------------------------- entities


def build_entities_from(ref: Path, out: Path, opts: object) -> tuple[dict, object, list[str]]:
    """The entities stage on a copy of ``ref`` (once: a second call goes on with the copy);
    its figures, the index's vectors and its log."""
    import shutil

    import faiss

    import kgx.linking.build as stage

    if not out.exists():
        shutil.copytree(ref, out, ignore=shutil.ignore_patterns("entities.*", ".work"))
    log: list[str] = []
    meta = stage.build_entities(out, out / ".work" / "entities", "key", opts, log.append)
    index = faiss.read_index(str(out / "entities.faiss"))
    return meta, index.reconstruct_n(0, index.ntotal), log


def test_entities_stage_embeds_in_chunks_and_resumes(
        reference: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Entity vectors embedded chunk by chunk by 2 worker processes, or by a run that died
    after 3 chunks and was run again, make the index one process makes; the re-run rebuilds
    neither the tables nor the committed chunks."""

    import numpy as np

    import kgx.linking.build as stage
    import kgx.linking.linker
    from kgx.stages.pipeline import PipelineOptions

    ref, _ = reference
    import kgx.linking.vectors
    monkeypatch.setattr(kgx.linking.vectors, "ENTITY_CHUNK", 8)
    opts = PipelineOptions(extract=ExtractOptions(workers=1, progress=False), progress=False)

    def build(name: str, **kw: object) -> tuple[dict, np.ndarray, list[str]]:
        return build_entities_from(ref, tmp_path / name, opts)

    one, vecs, _ = build("one")
    assert one["chunks"] >= 6 and one["embed_workers"] == 1
    assert vecs.shape == (one["entities"], one["dim"])
    monkeypatch.setattr(stage, "embed_workers", lambda o, n: 2)
    two, vecs2, _ = build("two")
    assert two["embed_workers"] == 2 and np.allclose(vecs, vecs2, atol=1e-5)
    monkeypatch.undo()
    monkeypatch.setattr(kgx.linking.vectors, "ENTITY_CHUNK", 8)

    real, seen = stage.embed_chunk, []

    def dies_after_three(chunk: int, *a: object) -> dict:
        if len(seen) == 3:
            raise KeyboardInterrupt
        seen.append(chunk)
        return real(chunk, *a)

    monkeypatch.setattr(stage, "embed_chunk", dies_after_three)
    with pytest.raises(KeyboardInterrupt):
        build("three")
    import kgx.linking.tables
    monkeypatch.setattr(kgx.linking.tables, "build_entity_table",
                        lambda *a: pytest.fail("the tables were built again"))
    monkeypatch.setattr(stage, "embed_chunk", lambda c, *a: (seen.append(c), real(c, *a))[1])
    again, vecs3, log = build("three")
    assert any("tables built, 3 chunks of vectors committed before" in m for m in log), log
    assert seen[:3] == [0, 1, 2] and sorted(seen[3:]) == list(range(3, one["chunks"]))
    assert np.allclose(vecs, vecs3, atol=1e-5) and again["entities"] == one["entities"]


def test_entities_whose_embedder_dies_every_time_get_no_vector_and_are_counted(
        reference: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk of entity vectors whose process died on every try is zeros in the index (the
    alias table still links its entities), said in the log and the stage's figures; the
    other chunks are as an undisturbed run makes them."""

    import numpy as np

    import kgx.engines.pools
    import kgx.linking.linker
    from kgx.engines.local import Crashed
    from kgx.stages.pipeline import PipelineOptions

    ref, _ = reference
    monkeypatch.setattr(kgx.linking.vectors, "ENTITY_CHUNK", 8)
    opts = PipelineOptions(extract=ExtractOptions(workers=1, progress=False), progress=False)
    new_pool = kgx.engines.pools.new_pool

    def build(name: str) -> tuple[dict, np.ndarray, list[str]]:
        return build_entities_from(ref, tmp_path / name, opts)

    whole, vecs, _ = build("whole")

    def losing_pool(ctx: object, workers: int, **kw: object) -> object:
        pool = new_pool(ctx, workers, **kw)
        real = pool.map

        def map_(fn, tasks, split=None):  # noqa: ANN001, ANN202
            for t in tasks:
                if t[0] == 1:
                    yield Crashed(t)
                else:
                    yield from real(fn, [t], split)

        pool.map = map_
        return pool

    monkeypatch.setattr(kgx.engines.pools, "new_pool", losing_pool)
    lost, vecs2, log = build("lost")
    assert lost["entities_without_vector"] == 8 and whole["entities_without_vector"] == 0
    assert any("entities 9..16 get no vector" in m for m in log), log  # ids from 1
    assert vecs2.shape == vecs.shape and not vecs2[8:16].any() and vecs[8:16].any()
    assert np.allclose(np.delete(vecs, range(8, 16), 0), np.delete(vecs2, range(8, 16), 0),
                       atol=1e-5)
