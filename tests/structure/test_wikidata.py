"""``kgx extract --wikidata``: entities get their Wikidata ids, labels and aliases from a
Wikidata JSON dump, with provenance; lookups and SPARQL join on them; bad files are told."""

from __future__ import annotations

import bz2
import json
from pathlib import Path

import pytest

from kgx.graph.knowledge_graph import KnowledgeGraph
from kgx.structure.extract import ExtractOptions, extract
from kgx.structure.wikidata import WikidataError, WikidataReport, read_items
from tests.support import SAMPLE

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "wikidata" / \
    "wikidata-400-items.json.bz2"


def item(qid: str, title: str | None, label: str, aliases: list[str] = (), site="enwiki"
         ) -> dict:
    return {"id": qid, "type": "item",
            "labels": {"en": {"language": "en", "value": label},
                       "de": {"language": "de", "value": label + " (de)"}},
            "aliases": {"en": [{"language": "en", "value": a} for a in aliases],
                        "fr": [{"language": "fr", "value": "ignoré"}]},
            "sitelinks": {site: {"site": site, "title": title}} if title else {}}


ITEMS = [
    item("Q889", "Afghanistan", "Afghanistan", ["Islamic Republic of Afghanistan", "AFG"]),
    item("Q872", "AynRand", "Ayn Rand"),  # a sitelink to a redirect (of Ayn Rand)
    item("Q5838", "Kabul", "Kabul"),  # a page the sample does not have
    item("Q1", "Afghanistan", "Afghanistan", site="dewiki"),  # another wiki's sitelink
    {"id": "P31", "type": "property", "labels": {}},
]


def write_dump(path: Path, entities: list[dict], tail: str = "]\n") -> Path:
    lines = ",\n".join(json.dumps(e) for e in entities)
    with bz2.open(path, "wt", encoding="utf-8") as f:
        f.write("[\n" + lines + "\n" + tail)
    return path


@pytest.fixture(scope="module")
def graph(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wikidata")
    dump = write_dump(tmp / "wikidata.json.bz2", ITEMS)
    out = tmp / "out"
    rep = extract(SAMPLE, out, ExtractOptions(workers=1, progress=False, wikidata=str(dump)))
    assert rep.finished
    return out


def test_entities_get_their_wikidata_id_label_and_aliases_with_provenance(graph: Path) -> None:
    kg = KnowledgeGraph.open(graph)
    rows = kg.sparql("""SELECT ?g ?p ?o ?ex ?page WHERE { GRAPH ?g { res:Afghanistan ?p ?o }
        ?g kgx:extractor "wikidata" ; kgx:extractor ?ex ; kgx:pageId ?page }""")
    facts = {(r["p"], r["o"]) for r in rows}
    assert ("http://www.w3.org/2002/07/owl#sameAs",
            "http://www.wikidata.org/entity/Q889") in facts
    assert ("https://kgx.dev/ontology/wikidataId", "Q889") in facts
    aliases = {o for p, o in facts if p.endswith("/alias")}
    assert aliases == {"Islamic Republic of Afghanistan", "AFG"}  # the title is not repeated
    assert {r["ex"] for r in rows} == {"wikidata"}
    assert len({r["page"] for r in rows}) == 1
    # the redirect's item reaches its target; the other wiki's sitelink is not this wiki's
    assert kg.sparql("ASK { res:Ayn_Rand kgx:wikidataId \"Q872\" }")
    assert not kg.sparql("ASK { ?e kgx:wikidataId \"Q1\" }")


def test_sparql_joins_and_lookups_on_wikidata_ids(graph: Path) -> None:
    kg = KnowledgeGraph.open(graph)
    assert kg.sparql("SELECT ?e WHERE { ?e owl:sameAs wd:Q889 }") == [
        {"e": "https://kgx.dev/enwiki/resource/Afghanistan"}]
    [c] = kg.lookup("Q889")
    assert c.title == "Afghanistan" and c.iri.endswith("/resource/Afghanistan")
    assert c.signals == {"wikidata": 1.0}
    assert kg.lookup("Q5838") == []  # an item whose page the dump lacks


def test_the_report_counts_what_was_matched(graph: Path) -> None:
    rep = json.loads((graph / "report.json").read_text())["wikidata"]
    assert rep["site"] == "enwiki" and rep["entities"] == 5
    assert rep["items_with_sitelink"] == 3
    assert (rep["matched"], rep["missing"]) == (2, 1)
    assert rep["examples_missing"] == ["Q5838 Kabul"] and rep["cut"] is None


def test_a_file_that_is_not_a_wikidata_dump_stops_before_any_work(tmp_path: Path) -> None:
    bad = tmp_path / "not.json"
    bad.write_text('{"id": "Q1"}\n')
    with pytest.raises(WikidataError, match=r"not.json: line 1: expected '\['"):
        extract(SAMPLE, tmp_path / "out", ExtractOptions(workers=1, progress=False,
                                                          wikidata=str(bad)))
    assert not (tmp_path / "out").exists()


def test_a_damaged_line_is_named_and_a_cut_file_keeps_every_whole_entity(
        tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.json"
    damaged.write_text("[\n" + json.dumps(ITEMS[0]) + ",\n{\"id\": \"Q2\", \n"
                       + json.dumps(ITEMS[1]) + "\n]\n")
    with pytest.raises(WikidataError, match="damaged.json: line 3: not a JSON entity"):
        list(read_items(damaged, "enwiki", "en", WikidataReport(str(damaged), "enwiki")))
    cut = tmp_path / "cut.json"
    cut.write_text("[\n" + json.dumps(ITEMS[0]) + ",\n" + json.dumps(ITEMS[1])[:50])
    rep = WikidataReport(str(cut), "enwiki")
    assert [i.id for i in read_items(cut, "enwiki", "en", rep)] == ["Q889"]
    assert rep.cut and "line 3 is cut off" in rep.cut
    open_array = tmp_path / "open.json"
    open_array.write_text("[\n" + json.dumps(ITEMS[0]) + ",\n")
    rep = WikidataReport(str(open_array), "enwiki")
    assert [i.id for i in read_items(open_array, "enwiki", "en", rep)] == ["Q889"]
    assert rep.cut and "without the closing ']'" in rep.cut


@pytest.mark.skipif(not REAL.exists(), reason="the real Wikidata sample is not here")
def test_the_real_wikidata_dump_format_reads() -> None:
    rep = WikidataReport(str(REAL), "enwiki")
    items = list(read_items(REAL, "enwiki", "en", rep))
    assert rep.cut is None and rep.entities >= 400
    assert len(items) == rep.items_with_sitelink > 300
    douglas = next(i for i in items if i.id == "Q42")
    assert douglas.title == "Douglas Adams" and douglas.label == "Douglas Adams"
    assert douglas.aliases  # his English aliases


def test_the_entity_page_links_the_wikidata_item(graph: Path) -> None:
    import urllib.request

    from tests.support import serving

    with serving(graph, workers=1) as (base, _):
        req = urllib.request.Request(base + "/entity/Afghanistan",
                                     headers={"Accept": "text/html"})
        body = urllib.request.urlopen(req, timeout=30).read().decode()
    assert ('<a class="iri" href="https://www.wikidata.org/wiki/Q889" '
            'title="http://www.wikidata.org/entity/Q889" rel="noopener noreferrer">wd:Q889</a>'
            ) in body
