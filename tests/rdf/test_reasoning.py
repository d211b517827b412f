"""The merge's entailments: found group by group in chunks of graph.nq (in worker processes),
they must be exactly what the SPARQL fixpoint (:func:`kgx.rdf.reasoning.materialise`) finds."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

K = "https://kgx.dev/ontology/"
X = "http://x/"
XSD = "http://www.w3.org/2001/XMLSchema#"
INFERRED = X + "graph/inferred"


def stated_lines() -> list[str]:
    """Triples that every rule family applies to, spread over graphs, with repeats, a
    non-canonical literal, a self-loop and a line the store refuses."""
    def q(s: str, p: str, o: str, g: str = "p1") -> str:
        return f"{s} {p} {o} <{X}{g}> .\n"

    def n(x: str) -> str:
        return f"<{X}{x}>"

    def k(x: str) -> str:
        return f"<{K}{x}>"

    t = "<http://www.w3.org/1999/02/22-rdf-syntax-ns#type>"
    padding = [q(n(f"pad{i}"), k("linksTo"), n(f"pad{i + 1}"), "pad") for i in range(40)]
    lines = [
        q(n("ann"), t, k("Writer")), q(n("ann"), t, k("Scientist"), "p2"),
        q(n("ann"), t, k("Person"), "p3"),  # stated: not inferred again
        *padding[:10],
        q(n("ann"), k("child"), n("bob")), q(n("bob"), k("parent"), n("ann"), "p2"),
        q(n("cat"), k("spouse"), n("dan")), q(n("eve"), k("spouse"), n("eve")),
        *padding[10:20],
        q(n("t1"), k("locatedIn"), n("t2")),
        q(n("t2"), "<http://www.wikidata.org/prop/direct/P131>", n("t3"), "p2"),
        q(n("t3"), k("locatedIn"), n("t4")),
        q(n("ann"), k("birthDate"), f'"1900-01-31"^^<{XSD}date>'),
        q(n("ann"), k("birthDate"), f'"01"^^<{XSD}integer>'),
        q(n("ann"), "<http://www.wikidata.org/prop/direct/P569>", f'"1"^^<{XSD}integer>', "p2"),
        q(n("ann"), k("alias"), '"Annie"@en'), q(n("ann"), k("alias"), '"Annie"@en'),
        *padding[20:30],
        q(n("ann"), k("category"), n("Category:Writers")),
        q(n("ann"), k("influencedBy"), n("bob"), "p2"),
        f"<{X}bad iri> {k('child')} {n('x')} <{X}p1> .\n",
        q(n("bob"), t, k("Writer"), "p4"), q(n("bob"), t, k("Writer"), "p4"),
        *padding[30:],
    ]
    return lines


def sparql_fixpoint(lines: list[str], graph: str = INFERRED) -> set[str]:
    """What the SPARQL rules infer from ``lines`` (a line the store refuses is skipped)."""
    import pyoxigraph as ox

    from kgx.rdf.reasoning import materialise

    store = ox.Store()
    try:
        store.bulk_load(input="".join(lines).encode(), format=ox.RdfFormat.N_QUADS)
    except SyntaxError:
        for line in lines:
            with contextlib.suppress(SyntaxError):
                store.extend(ox.parse(input=line.encode(), format=ox.RdfFormat.N_QUADS))
    return set(materialise(store, graph))


def merged(out: Path, lines: list[str], workers: int) -> list[str]:
    """``lines`` as a structure graph, merged with reasoning; the inferred lines."""
    from kgx.rdf.merge import merge
    from kgx.rdf.store import load_store

    out.mkdir()
    (out / "graph.nq").write_text("".join(lines), "utf-8")
    (out / "report.json").write_text(json.dumps({"site": {"namespace": X}}), "utf-8")
    load_store(out / "graph.nq", out / "store")
    size = (out / "graph.nq").stat().st_size
    merge(out, [], True, size, "key", workers=workers, log=lambda m: None)
    with open(out / "graph.nq", "rb") as f:
        f.seek(size)
        return f.read().decode("utf-8").splitlines(keepends=True)


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("repeats", [True, False])
def test_groups_in_chunks_give_the_sparql_fixpoint(tmp_path: Path, workers: int, repeats: bool,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import kgx.rdf.merge
    import kgx.stages.merge
    monkeypatch.setattr(kgx.rdf.merge, "INFER_CHUNK_BYTES", 300)  # groups cross chunks
    lines = stated_lines()
    if not repeats:
        lines = list(dict.fromkeys(lines))
    want = sparql_fixpoint(lines)
    got = merged(tmp_path / "out", lines, workers)
    assert set(got) == want
    if not repeats:  # each group is closed by one chunk only (a repeated line, in two
        assert len(got) == len(want)  # chunks, may repeat what its group entails)
    # what the fixture is there to exercise, as the reference has it
    for fact in [f"<{X}ann> <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> <{K}Agent>",
                 f"<{X}dan> <{K}spouse> <{X}cat>", f"<{X}bob> <{K}influenced> <{X}ann>",
                 f"<{X}t1> <{K}locatedIn> <{X}t4>",
                 f"<{X}t1> <http://www.wikidata.org/prop/direct/P131> <{X}t3>",
                 f'<{X}ann> <http://www.w3.org/2004/02/skos/core#altLabel> "Annie"@en']:
        assert f"{fact} <{INFERRED}> .\n" in want
    assert not any(f"<{X}ann> <http://www.wikidata.org/prop/direct/P569> \"1\"" in x
                   for x in want)  # "01" is "1", which is stated


def test_a_store_with_a_killed_runs_entailments_is_closed_alike(tmp_path: Path) -> None:
    """Group entailments a killed merge left in the store count as not stated. (Chains of a
    transitive property are written to a file before the store takes them: a resumed run
    loads that file.)"""
    import pyoxigraph as ox

    from kgx.rdf.merge import merge
    from kgx.rdf.store import load_store

    lines = stated_lines()
    want = sparql_fixpoint(lines)
    out = tmp_path / "out"
    out.mkdir()
    (out / "graph.nq").write_text("".join(lines), "utf-8")
    (out / "report.json").write_text(json.dumps({"site": {"namespace": X}}), "utf-8")
    load_store(out / "graph.nq", out / "store")
    store = ox.Store(str(out / "store"))
    left = sorted(x for x in want if f"<{X}t" not in x)[::2]
    store.extend(ox.parse(input="".join(left).encode(),
                          format=ox.RdfFormat.N_QUADS))
    store = None
    size = (out / "graph.nq").stat().st_size
    merge(out, [], True, size, "key", log=lambda m: None)
    with open(out / "graph.nq", "rb") as f:
        f.seek(size)
        assert set(f.read().decode("utf-8").splitlines(keepends=True)) == want


def test_the_samples_entailments_are_the_sparql_fixpoints(readme_out: Path) -> None:
    graph = "https://kgx.dev/enwiki/graph/inferred"
    lines = (readme_out / "graph.nq").read_text("utf-8").splitlines(keepends=True)
    got = [x for x in lines if x.endswith(f"<{graph}> .\n")]
    stated = [x for x in lines if not x.endswith(f"<{graph}> .\n")]
    assert got and set(got) == sparql_fixpoint(stated, graph)
    assert len(got) == len(set(got))


@pytest.mark.parametrize("way", ["groups", "sparql"])
def test_kept_entailments_are_the_appended_ones(tmp_path: Path, way: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``--keep-intermediate`` writes ``inferred.nq``: the lines appended to graph.nq, both
    by the groups and by the SPARQL fixpoint the merge falls back to (rules that groups
    cannot take)."""
    from kgx.rdf.merge import merge
    from kgx.rdf.reasoning import GroupRules
    from kgx.rdf.store import load_store

    if way == "sparql":
        monkeypatch.setattr(GroupRules, "of", classmethod(lambda cls, r: None))
    lines = list(dict.fromkeys(stated_lines()))
    out = tmp_path / "out"
    out.mkdir()
    (out / "graph.nq").write_text("".join(lines), "utf-8")
    (out / "report.json").write_text(json.dumps({"site": {"namespace": X}}), "utf-8")
    load_store(out / "graph.nq", out / "store")
    size = (out / "graph.nq").stat().st_size
    got = merge(out, [], True, size, "key", keep_inferred=True, log=lambda m: None)
    with open(out / "graph.nq", "rb") as f:
        f.seek(size)
        appended = f.read().decode("utf-8")
    assert set(appended.splitlines(keepends=True)) == sparql_fixpoint(lines)
    assert (out / "inferred.nq").read_text("utf-8") == appended
    assert got["inferred_triples"] == appended.count("\n")
