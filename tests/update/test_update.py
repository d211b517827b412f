"""kgx update on real dumps of the same articles in 2014, 2016 and 2022: every update equals a
fresh extraction of what the wiki then holds, in graph.nq and in the store; bad input leaves the
graph untouched; a crash at any step, then the same command, gives the same graph."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kgx.stages.pipeline import PipelineOptions, run
from kgx.stages.update import update
from kgx.structure.extract import ExtractOptions
from kgx.update.run import UpdateOptions
from kgx.update.scan import UpdateError
from tests.support import SAMPLE, SHARED_DUMPS, merged_dump, whole_dump

OLD = SHARED_DUMPS / "enwiki-2014-head-excerpt.xml.bz2"  # 361 pages, cut off after a page
NEW = SHARED_DUMPS / "enwiki-2022-head-excerpt.xml.bz2"  # 251 pages, 248 of them in OLD

pytestmark = pytest.mark.skipif(not OLD.exists(), reason="../shared/data is not beside the "
                                "checkout")


def extract(dump: Path, out: Path) -> Path:
    run(dump, out, PipelineOptions(extract=ExtractOptions(workers=2, progress=False),
                                   use_model=False, index=False, progress=False),
        log=lambda m: None)
    return out


def apply(out: Path, dump: Path, log: list[str] | None = None, **kw: object) -> dict:
    return update(out, dump, UpdateOptions(workers=2, progress=False, **kw),  # type: ignore[arg-type]
                  log=(log.append if log is not None else lambda m: None))


def graph_lines(out: Path) -> list[str]:
    return sorted((out / "graph.nq").read_text("utf-8").splitlines())


def store_quads(out: Path) -> list[str]:
    import pyoxigraph as ox

    store = ox.Store.read_only(str(out / "store"))
    return sorted(f"{q.subject} {q.predicate} {q.object} {q.graph_name}" for q in store)


def alias_rows(out: Path) -> dict[str, list[tuple]]:
    import sqlite3

    con = sqlite3.connect(out / "aliases.sqlite")
    try:
        return {t: sorted(con.execute(f"SELECT * FROM {t}"))
                for t in ("titles", "redirects", "anchors")}
    finally:
        con.close()


def assert_same_graph(updated: Path, fresh: Path) -> None:
    assert graph_lines(updated) == graph_lines(fresh)
    assert store_quads(updated) == store_quads(fresh)
    assert alias_rows(updated) == alias_rows(fresh)
    u, f = (json.loads((p / "report.json").read_text()) for p in (updated, fresh))
    assert u["triples"] == f["triples"]
    assert {k: u["pages"][k] for k in ("article", "redirect", "disambiguation", "category")} \
        == {k: f["pages"][k] for k in ("article", "redirect", "disambiguation", "category")}


@pytest.fixture(scope="module")
def dumps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("dumps")
    return {"2022": whole_dump(NEW, d / "enwiki-2022.xml"),
            "2014+2022": merged_dump(OLD, NEW, d / "enwiki-2014-then-2022.xml")}


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory, dumps: dict[str, Path]
          ) -> dict[str, Path]:
    """Fresh extractions of the wiki at each point an update brings a graph to."""
    d = tmp_path_factory.mktemp("fresh")
    return {"2016": extract(SAMPLE, d / "2016"), "2022": extract(dumps["2022"], d / "2022"),
            "2014+2022": extract(dumps["2014+2022"], d / "2014+2022")}


@pytest.fixture(scope="module")
def graph_2014(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return extract(OLD, tmp_path_factory.mktemp("g2014") / "out")


def copy_of(graph: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "updated"
    shutil.copytree(graph, dst)
    return dst


def test_2014_then_2016_then_2022_each_equal_a_fresh_extraction(
        graph_2014: Path, dumps: dict[str, Path], fresh: dict[str, Path], tmp_path: Path
        ) -> None:
    g = copy_of(graph_2014, tmp_path)
    rep = apply(g, SAMPLE, full=True)
    u = rep["update"]
    # the sample's 206 pages are all in the 2014 file; the 155 others are gone from it
    assert u["pages"]["deleted"] == 155
    assert u["pages"]["unchanged"] + u["pages"]["changed"] == 206 and u["pages"]["added"] == 0
    assert u["quads_retracted"] > 0 and u["quads_added"] > 0
    assert_same_graph(g, fresh["2016"])
    rep = apply(g, dumps["2022"], full=True)
    assert rep["update"]["pages"]["added"] > 0 and len(rep["updates"]) == 2
    assert_same_graph(g, fresh["2022"])


def test_a_dump_of_changes_keeps_the_pages_it_lacks(graph_2014: Path, fresh: dict[str, Path],
                                                    tmp_path: Path) -> None:
    g = copy_of(graph_2014, tmp_path)
    log: list[str] = []
    rep = apply(g, NEW, log)  # cut off after its last page: every page of it is applied
    u = rep["update"]
    assert u["pages"]["deleted"] == 0 and u["pages"]["changed"] > 200
    # 2022's dump names the wiki https://, 2014's http://: every page's URL follows
    assert any("every page's URL is written again" in m for m in log)
    assert_same_graph(g, fresh["2014+2022"])


@pytest.mark.slow
def test_a_dump_that_broke_off_deletes_nothing_even_with_full(graph_2014: Path,
                                                              tmp_path: Path) -> None:
    g = copy_of(graph_2014, tmp_path)
    log: list[str] = []
    rep = apply(g, NEW, log, full=True)
    assert rep["update"]["broke_off"] and rep["update"]["pages"]["deleted"] == 0
    assert any("kept, not deleted" in m for m in log)


def test_nothing_changed_writes_nothing(graph_2014: Path, tmp_path: Path) -> None:
    g = copy_of(graph_2014, tmp_path)
    files = [g / "graph.nq", g / "aliases.sqlite", *sorted((g / "store").iterdir()),
             *sorted((g / "pages").rglob("*"))]
    before = {f: f.stat().st_mtime_ns for f in files}
    rep = apply(g, OLD, full=True)
    assert rep["update"]["pages"]["unchanged"] == 361
    assert rep["update"]["quads_added"] == rep["update"]["quads_retracted"] == 0
    assert {f: f.stat().st_mtime_ns for f in files} == before
    assert "updates" not in rep or rep["updates"] == []
    assert not (g / ".work").exists()


def test_another_wiki_is_refused_and_the_graph_untouched(graph_2014: Path,
                                                         tmp_path: Path) -> None:
    g = copy_of(graph_2014, tmp_path)
    before = graph_lines(g)
    with pytest.raises(UpdateError, match="another wiki.*'itwiki'"):
        apply(g, SHARED_DUMPS / "itwiki-2013-747-pages.xml.gz")
    assert graph_lines(g) == before


def test_an_older_dump_is_refused_unless_allowed(graph_2014: Path, dumps: dict[str, Path],
                                                  tmp_path: Path) -> None:
    g = copy_of(graph_2014, tmp_path)
    apply(g, dumps["2022"], full=True)
    before = graph_lines(g), store_quads(g)
    with pytest.raises(UpdateError, match=r"page 10 \('AccessibleComputing'\) is at revision "
                       r"\d+ in this dump and at \d+ in the graph \(240 pages are older here\): "
                       r"the dump is older.*--allow-older"):
        apply(g, OLD, full=True)
    assert (graph_lines(g), store_quads(g)) == before
    assert not (g / ".work").exists()
    apply(g, OLD, full=True, allow_older=True)
    assert graph_lines(g) == graph_lines(graph_2014)


SLOW = pytest.mark.slow


@pytest.mark.parametrize("step", [
    "kgx.update.run._commit", pytest.param("kgx.update.apply.plan", marks=SLOW),
    "kgx.update.apply.apply_to_aliases", pytest.param("kgx.update.run._write_graph", marks=SLOW),
    "kgx.update.apply.patch_store", pytest.param("kgx.rdf.merge.forget_inferred", marks=SLOW),
    pytest.param("kgx.stages.update._record", marks=SLOW)])
def test_an_update_that_died_at_any_step_finishes_the_same(
        step: str, graph_2014: Path, fresh: dict[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    g = copy_of(graph_2014, tmp_path)
    module, name = step.rsplit(".", 1)
    mod = importlib.import_module(module)
    real = getattr(mod, name)
    calls = {"n": 0}

    def dies(*a: object, **k: object) -> object:
        calls["n"] += 1
        if calls["n"] == 2 or name not in ("_commit",):  # the second chunk, or the step
            raise SystemExit("killed")
        return real(*a, **k)

    # Patched where it is looked up: the module that calls it imported the name.
    for where in ("kgx.update.run", "kgx.stages.update", module):
        if hasattr(importlib.import_module(where), name):
            monkeypatch.setattr(importlib.import_module(where), name, dies)
    with pytest.raises(SystemExit):
        apply(g, NEW)
    monkeypatch.undo()
    apply(g, NEW)
    assert_same_graph(g, fresh["2014+2022"])


def _wikidata(path: Path) -> Path:
    """A Wikidata JSON dump (the real format) of items that link pages of both years, a page
    only the 2014 file has, and a redirect."""
    import bz2

    def item(qid: str, title: str, aliases: list[str]) -> dict:
        return {"id": qid, "type": "item", "labels": {"en": {"language": "en", "value": title}},
                "aliases": {"en": [{"language": "en", "value": a} for a in aliases]},
                "sitelinks": {"enwiki": {"site": "enwiki", "title": title}}}

    items = [item("Q6199", "Anarchism", ["anarchist movement"]),
             item("Q91", "Abraham Lincoln", ["Honest Abe"]), item("Q868", "Aristotle", []),
             item("Q181488", "A. A. Milne", ["Alan Alexander Milne"]),
             item("Q103", "AccessibleComputing", [])]
    with bz2.open(path, "wt", encoding="utf-8") as f:
        f.write("[\n" + ",\n".join(json.dumps(i) for i in items) + "\n]\n")
    return path


@pytest.mark.slow
def test_wikidata_ids_follow_the_pages(dumps: dict[str, Path], tmp_path: Path) -> None:
    from kgx.graph.knowledge_graph import KnowledgeGraph

    wd = _wikidata(tmp_path / "wikidata.json.bz2")

    def extract_wd(dump: Path, out: Path) -> Path:
        run(dump, out, PipelineOptions(extract=ExtractOptions(workers=2, progress=False,
                                                              wikidata=str(wd)),
                                       use_model=False, index=False, progress=False),
            log=lambda m: None)
        return out

    g = extract_wd(OLD, tmp_path / "g")
    assert KnowledgeGraph.open(g).lookup("Q181488")  # A. A. Milne: in 2014 only
    rep = apply(g, dumps["2022"], full=True)
    assert rep["wikidata"]["matched"] == 3  # A. A. Milne is gone, and his id with him
    assert_same_graph(g, extract_wd(dumps["2022"], tmp_path / "fresh"))
    wd.unlink()
    with pytest.raises(UpdateError, match="--wikidata FILE"):
        apply(g, dumps["2022"], full=True)


@pytest.mark.slow
def test_model_facts_after_an_update_equal_a_fresh_extraction_with_its_reader(
        tiny_bert: Path, dumps: dict[str, Path], tmp_path: Path) -> None:
    def options(model: str | None = None) -> PipelineOptions:
        # every fact its types allow asserted: the most model facts to compare
        return PipelineOptions(extract=ExtractOptions(workers=2, progress=False),
                               base_model=str(tiny_bert), model=model, train_sentences=200,
                               train_epochs=1, read_sentences=4000, gold=[], min_precision=0.0,
                               progress=False)

    g = tmp_path / "g"
    run(SAMPLE, g, options(), log=lambda m: None)
    rep = apply(g, dumps["2022"], full=True)
    assert rep["pipeline"]["model"] == str(g / "model")  # its own reader, not trained again
    assert rep["triples"]["model"] > 1000 and rep["triples"]["mentions"] > 1000
    fresh = tmp_path / "fresh"
    run(dumps["2022"], fresh, options(model=str(g / "model")), log=lambda m: None)
    assert graph_lines(g) == graph_lines(fresh)
    assert store_quads(g) == store_quads(fresh)
