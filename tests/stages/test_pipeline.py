"""kgx extract end to end: stages, caching, model facts, mentions, reasoning."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

pytest.importorskip("torch")

from kgx.graph.knowledge_graph import KnowledgeGraph  # noqa: E402
from kgx.read.facts import write_model_facts  # noqa: E402
from kgx.read.steps import _FACTS, _NER  # noqa: E402


def test_every_stage_ran_and_was_recorded(readme_out: Path) -> None:
    stages = json.loads((readme_out / "stages.json").read_text())
    assert set(stages) == {"structure", "corpus", "model", "entities", "read", "merge"}
    for f in ("graph.nq", "store", "entities.faiss", "model/model.safetensors",
              "corpus/train.jsonl", "documents.jsonl", "aliases.sqlite"):
        assert (readme_out / f).exists(), f
    # One copy of each thing: graph.nq holds the model facts and mentions now.
    for f in ("structure.nq", "model.nq", "mentions.nq", "inferred.nq", ".work"):
        assert not (readme_out / f).exists(), f
    assert stages["read"]["consumed_by"] == "merge"
    rep = json.loads((readme_out / "report.json").read_text())
    assert rep["finished"] and rep["pipeline"]["read"]["sentences"] == 300
    # the read stage times its steps (in this process: capped); they add up to no more than
    # its reading loop
    steps = stages["read"]["seconds_by_step"]
    assert set(steps) == {"split", "predict", "link"} and all(v > 0 for v in steps.values())
    assert sum(steps.values()) <= stages["read"]["seconds_reading"] + 0.05
    # the entity tables' and the anchor sums' CPU in this process, by step (the projection's
    # part that more workers do not shorten)
    ent = stages["entities"]
    assert set(ent["cpu_tables_by_step"]) == set(ent["seconds_tables_by_step"])
    assert all(v >= 0 for v in ent["cpu_tables_by_step"].values())
    assert ent["cpu_tables"] == round(sum(ent["cpu_tables_by_step"].values()), 2)
    assert set(rep["cpu_seconds"]) == {"anchors"} and rep["cpu_seconds"]["anchors"] >= 0
    # the store load by step: the bulk loads and the optimize after them, within its seconds
    load = rep["store_steps"]
    assert set(load["seconds"]) == set(load["cpu_seconds"]) == {"bulk_loads", "optimize"}
    assert all(v > 0 for v in load["seconds"].values())
    assert sum(load["seconds"].values()) <= rep["seconds"]["store"]
    assert rep["disk_bytes"]["graph.nq"] == (readme_out / "graph.nq").stat().st_blocks * 512
    assert rep["disk_bytes_total"] >= sum(rep["disk_bytes"].values()) > 0
    assert rep["triples"]["mentions"] > 0 and rep["triples"]["inferred"] > 0
    assert set(rep["pipeline"]["stages_seconds"]) >= {"structure", "model", "read", "merge"}


def test_rerun_reuses_finished_stages(readme_out: Path, tiny_bert: Path) -> None:
    from kgx.stages.pipeline import PipelineOptions, run
    from kgx.structure.extract import ExtractOptions
    from tests.support import SAMPLE

    log: list[str] = []
    before = (readme_out / "model" / "model.safetensors").stat().st_mtime_ns
    run(SAMPLE, readme_out, PipelineOptions(
        extract=ExtractOptions(workers=2, progress=False), base_model=str(tiny_bert),
        train_sentences=200, train_epochs=1, read_sentences=300, progress=False),
        log=log.append)
    reused = [m for m in log if "unchanged inputs" in m]
    assert len(reused) == 6, log
    assert (readme_out / "model" / "model.safetensors").stat().st_mtime_ns == before


def test_linked_mentions_are_in_the_graph(readme_out: Path) -> None:
    kg = KnowledgeGraph.open(readme_out)
    rows = kg.sparql("""SELECT ?e ?how WHERE { ?m kgx:mentionOf ?e ; kgx:linkedBy ?how ;
        kgx:inPage res:Anarchism ; kgx:anchor ?a ; kgx:start ?s ; kgx:end ?end }""")
    assert rows and {r["how"] for r in rows} <= {"wikilink", "page", "linker"}


def test_reasoning_materialises_into_its_own_graph(readme_out: Path) -> None:
    kg = KnowledgeGraph.open(readme_out)
    g = "<https://kgx.dev/enwiki/graph/inferred>"
    # Writer -> Person (subclass), and the Wikidata class and property (equivalence).
    assert kg.sparql(f"ASK {{ GRAPH {g} {{ res:Ayn_Rand a kgx:Person , wd:Q5 }} }}")
    assert kg.sparql(f"ASK {{ GRAPH {g} {{ res:Ayn_Rand wdt:P19 res:Saint_Petersburg }} }}")
    assert not kg.sparql(f"ASK {{ GRAPH {g} {{ res:Ayn_Rand a kgx:Writer }} }}")  # stated
    # property paths work
    assert kg.sparql("ASK { kgx:Writer rdfs:subClassOf+ kgx:Agent }")


def test_inverse_symmetric_and_transitive_rules(tmp_path: Path) -> None:
    import pyoxigraph as ox

    from kgx.rdf.reasoning import materialise

    store = ox.Store()
    K = "https://kgx.dev/ontology/"
    r = "http://x/"
    g = ox.NamedNode("http://x/g")
    for s, p, o in [("a", "child", "b"), ("a", "spouse", "c"), ("t1", "locatedIn", "t2"),
                    ("t2", "locatedIn", "t3"), ("t3", "locatedIn", "t4")]:
        store.add(ox.Quad(ox.NamedNode(r + s), ox.NamedNode(K + p), ox.NamedNode(r + o), g))
    lines = list(materialise(store, "http://x/inferred"))
    text = "".join(lines)
    assert f"<{r}b> <{K}parent> <{r}a>" in text  # inverseOf
    assert f"<{r}c> <{K}spouse> <{r}a>" in text  # symmetric
    assert f"<{r}t1> <{K}locatedIn> <{r}t4>" in text  # transitive
    assert f"<{r}a> <http://www.wikidata.org/prop/direct/P40> <{r}b>" in text
    assert len(lines) == len(set(lines))


def test_model_facts_aggregate_their_evidence(tmp_path: Path) -> None:
    from kgx.structure.entity_types import EntityInfo

    db = sqlite3.connect(":memory:")
    db.execute(_FACTS)
    # (h, p, t, page, rev, s0, s1, e0, e1, sentence, conf, title, h0, h1, t0, t1): offsets in
    # the page's text; sentence 2 starts at 5 in page "Q".
    rows = [("A", "birthPlace", "B", 1, 10, 0, 16, 0, 15, "A was born in B.", 0.6, "P",
             0, 1, 14, 15),
            ("A", "birthPlace", "B", 2, 20, 5, 27, 5, 25, "B is where A was born.", 0.5, "Q",
             16, 17, 5, 6),
            ("A", "author", "C", 1, 10, 40, 50, 40, 49, "A wrote C.", 0.9, "P", 40, 41, 48, 49)]
    db.execute(_NER)
    db.executemany("INSERT INTO f VALUES (" + ",".join("?" * 20) + ")",
                   [r + (("PER", "LOC") if r[1] == "birthPlace" else ("PER", "MISC"))
                    + (0.9, 0.9) for r in rows])
    info = {"A": EntityInfo(facts=[("birthPlace", "B")])}
    (tmp_path / "report.json").write_text(json.dumps({"site": {"lang": "en"}}))
    # --min-precision 0: every fact its types allow is asserted. A, B, C have no graph type:
    # their mentions' NER types say A is a person, B a place, so A cannot be a Work (author's
    # domain).
    stats = write_model_facts(tmp_path, db, "http://x/", "test-model", info, {}, 0.0,
                              lambda m: None)
    assert stats["model_facts"] == 1 and stats["agreeing_with_infobox"] == 1
    assert stats["refused_facts"] == 1
    assert stats["assertion"]["refused"]["author"] == {"subject is a Person, not a Work": 1}
    import pyoxigraph as ox

    store = ox.Store()
    store.load(path=str(tmp_path / "model.nq"), format=ox.RdfFormat.N_QUADS)
    res = list(store.query("""PREFIX kgx: <https://kgx.dev/ontology/>
        SELECT ?conf ?n ?agree (COUNT(?e) AS ?ev) WHERE {
          GRAPH ?g { <http://x/resource/A> kgx:birthPlace <http://x/resource/B> }
          ?g kgx:confidence ?conf ; kgx:supportCount ?n ; kgx:agreesWithInfobox ?agree ;
             kgx:evidence ?e . ?e kgx:sentence ?s ; kgx:evidenceStart ?es ; kgx:pageId ?p }
        GROUP BY ?conf ?n ?agree""", use_default_graph_as_union=True))
    assert len(res) == 1
    # Nothing to calibrate on: the confidence is the best sentence's score, not a noisy-or.
    assert float(res[0]["conf"].value) == pytest.approx(0.6)
    assert res[0]["n"].value == "2" and res[0]["agree"].value == "true"
    assert res[0]["ev"].value == "2"
    # Each sentence names its page, and the subject's and the object's offsets pick them out.
    ev = store.query("""PREFIX kgx: <https://kgx.dev/ontology/>
        SELECT ?page ?s ?ss ?h0 ?h1 ?t0 ?t1 WHERE {
          ?g kgx:evidence ?e . GRAPH ?x { <http://x/resource/A> kgx:birthPlace ?o }
          FILTER(?x = ?g)
          ?e kgx:sourcePage ?page ; kgx:sentence ?s ; kgx:sentenceStart ?ss ;
             kgx:subjectStart ?h0 ; kgx:subjectEnd ?h1 ; kgx:objectStart ?t0 ;
             kgx:objectEnd ?t1 } ORDER BY ?page""", use_default_graph_as_union=True)
    got = []
    for sol in ev:
        text, ss = sol["s"].value, int(sol["ss"].value)
        got.append((sol["page"].value.rsplit("/", 1)[-1],
                    text[int(sol["h0"].value) - ss:int(sol["h1"].value) - ss],
                    text[int(sol["t0"].value) - ss:int(sol["t1"].value) - ss]))
    assert got == [("P", "A", "B"), ("Q", "A", "B")]


def test_link_free_text(readme_out: Path) -> None:
    kg = KnowledgeGraph.open(readme_out)
    text = "Ayn Rand was born in Saint Petersburg and wrote Atlas Shrugged."
    found = kg.link(text)
    for m in found:
        assert text[m["start"]:m["end"]] == m["text"] and m["type"] in ("PER", "ORG", "LOC",
                                                                         "MISC")
        assert m["entity"] is None or m["entity"].iri.startswith("https://kgx.dev/enwiki/")
    assert kg.link("") == []


def test_sparql_rows_and_dataframe(readme_out: Path) -> None:
    kg = KnowledgeGraph.open(readme_out)
    rows = kg.sparql("SELECT ?c WHERE { res:Afghanistan kgx:capital ?c }")
    assert {"c": "https://kgx.dev/enwiki/resource/Kabul"} in rows
    pd = pytest.importorskip("pandas")
    df = kg.sparql("SELECT ?c WHERE { res:Afghanistan kgx:capital ?c }", dataframe=True)
    assert isinstance(df, pd.DataFrame) and list(df.columns) == ["c"]


def test_covering_link_matches_a_linear_scan() -> None:
    """Bisection over sorted, non-overlapping links gives the scan's answer on every span."""
    import random

    from kgx.linking.mentions import _covering_span

    def scan(doc: dict, s: int, e: int) -> str | None:
        for ls, le, t in doc["links"]:
            if ls <= s and e <= le or s <= ls and le <= e:
                return t
        return None

    rng = random.Random(0)
    for _ in range(200):
        pos, links = 0, []
        for k in range(rng.randint(0, 6)):
            a = pos + rng.randint(0, 4)
            pos = a + rng.randint(1, 5)
            links.append([a, pos, f"T{k}"])
        doc = {"links": links}
        for s in range(pos + 2):
            for e in range(s + 1, pos + 3):
                hit = _covering_span(doc, s, e)
                assert (hit[2] if hit else None) == scan(doc, s, e)
                assert hit is None or hit[0] < hit[1] and (hit[0] <= s and e <= hit[1]
                                                           or s <= hit[0] and hit[1] <= e)


def test_a_mention_inside_a_link_takes_its_target_only_when_it_names_it() -> None:
    from kgx.linking.mentions import _wikilink_of
    from kgx.linking.tables import alias_key

    text = "Launched from Merritt Island, Florida and the United States bankruptcy court."
    doc = {"links": [[14, 37, "Merritt Island, Florida"],
                     [46, 76, "United States bankruptcy court"]]}

    def link(mention: str) -> str | None:
        s = text.index(mention)
        return _wikilink_of(doc, s, s + len(mention), mention, alias_key)

    assert link("Merritt Island, Florida") == "Merritt Island, Florida"
    assert link("Merritt Island") == "Merritt Island, Florida"  # its name, qualifier dropped
    assert link("Florida") is None  # a part of the link is not the link's target
    assert link("United States") is None
    assert link("United States bankruptcy court.") == "United States bankruptcy court"
    assert link("Launched") is None
