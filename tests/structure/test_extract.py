"""The structure pass end to end: real dumps, parallel = sequential, and every failure mode."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

import kgx.structure.pages
from kgx.graph.knowledge_graph import KnowledgeGraph
from kgx.structure.extract import ExtractOptions, extract
from kgx.structure.pages import Limits
from tests.support import SAMPLE, corrupt_middle_stream, real_dump


def run(dump: Path, out: Path, **kw) -> dict:
    extract(dump, out, ExtractOptions(progress=False, **kw))
    assert (out / "report.json").exists()
    assert not list(out.glob("*.tmp"))
    return json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def sample_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample")
    run(SAMPLE, out, workers=2)
    return out


def test_sample_report(sample_out: Path) -> None:
    rep = json.loads((sample_out / "report.json").read_text())
    assert rep["finished"] is True
    assert rep["pages"]["read"] == 206
    assert rep["pages"]["redirect"] == 99  # one of the 100 redirect pages is outside ns 0
    assert rep["pages"]["article"] + rep["pages"]["disambiguation"] == 106
    assert rep["triples"]["infobox"] > 1000 and rep["triples"]["link"] > 10000
    assert rep["site"]["namespace"] == "https://kgx.dev/enwiki/"


def test_parallel_multistream_and_sequential_outputs_are_identical(
        sample_out: Path, tmp_path: Path, multistream_sample: Path) -> None:
    expected = (sample_out / "graph.nq").read_bytes()
    run(SAMPLE, tmp_path / "w0", workers=0)
    assert (tmp_path / "w0" / "graph.nq").read_bytes() == expected
    multi = multistream_sample
    for w in (1, 2):
        run(multi, tmp_path / f"m{w}", workers=w)
        assert (tmp_path / f"m{w}" / "graph.nq").read_bytes() == expected


def q(kg: KnowledgeGraph, sparql: str) -> list[dict]:
    return kg.sparql(sparql)


def test_limit_is_the_same_for_multistream_and_sequential(tmp_path: Path,
                                                         multistream_sample: Path) -> None:
    """--limit ending inside a stream: the worker stops there, the graph holds no later page."""
    multi = multistream_sample
    rep_m = run(multi, tmp_path / "m", workers=2, limit=150)
    rep_s = run(SAMPLE, tmp_path / "s", workers=1, limit=150)
    assert rep_m["pages"]["read"] == rep_s["pages"]["read"] == 150
    assert (tmp_path / "m" / "graph.nq").read_bytes() == (tmp_path / "s" / "graph.nq").read_bytes()


def test_wikidata_aligned_infobox_facts(sample_out: Path) -> None:
    kg = KnowledgeGraph.open(sample_out)
    rows = q(kg, """SELECT ?place ?date WHERE {
        ?pb owl:equivalentProperty wdt:P19 . ?pd owl:equivalentProperty wdt:P569 .
        res:Abraham_Lincoln ?pb ?place ; ?pd ?date }""")
    assert rows == [{"place": "https://kgx.dev/enwiki/resource/Hodgenville,_Kentucky",
                     "date": "1809-02-12"}]
    rows = q(kg, """SELECT ?author WHERE { ?p owl:equivalentProperty wdt:P50 .
                    res:Animal_Farm ?p ?author }""")
    assert rows == [{"author": "https://kgx.dev/enwiki/resource/George_Orwell"}]
    rows = q(kg, """SELECT ?capital WHERE { ?p owl:equivalentProperty wdt:P36 .
                    res:Afghanistan ?p ?capital }""")
    assert rows == [{"capital": "https://kgx.dev/enwiki/resource/Kabul"}]
    assert q(kg, "ASK { res:Aristotle a kgx:Philosopher ; kgx:birthDate ?d }") is True


def test_bc_dates_and_typed_literals(sample_out: Path) -> None:
    kg = KnowledgeGraph.open(sample_out)
    rows = q(kg, "SELECT ?d (DATATYPE(?d) AS ?t) WHERE { res:Aristotle kgx:birthDate ?d }")
    # 384 BC is year -0383 in XSD 1.1 (1 BC is year 0000).
    assert rows == [{"d": "-0383", "t": "http://www.w3.org/2001/XMLSchema#gYear"}]
    pop = q(kg, "SELECT ?p WHERE { res:Alabama kgx:population ?p }")
    assert pop and all(isinstance(r["p"], int) for r in pop)


def test_provenance_is_queryable(sample_out: Path) -> None:
    kg = KnowledgeGraph.open(sample_out)
    rows = q(kg, """SELECT ?pid ?rev ?ex WHERE {
        GRAPH ?g { res:Ayn_Rand kgx:birthDate ?d }
        ?g kgx:pageId ?pid ; kgx:revisionId ?rev ; kgx:extractor ?ex }""")
    assert rows == [{"pid": 339, "rev": 715955336, "ex": "infobox"}]


def test_redirects_aliases_categories_disambiguation(sample_out: Path) -> None:
    kg = KnowledgeGraph.open(sample_out)
    # "AccessibleComputing" redirects to "Computer accessibility": alias on the target.
    assert q(kg, 'ASK { res:AccessibleComputing kgx:redirectsTo res:Computer_accessibility . '
                 'res:Computer_accessibility kgx:alias "AccessibleComputing"@en }')
    # No link in the graph points at a redirect: they were resolved to their targets.
    assert q(kg, "ASK { ?s kgx:wikiLink ?r . ?r kgx:redirectsTo ?t }") is False
    assert q(kg, 'ASK { res:Ayn_Rand kgx:category <https://kgx.dev/enwiki/resource/'
                 'Category:1905_births> ; rdfs:label "Ayn Rand"@en ; kgx:abstract ?a ; '
                 'foaf:isPrimaryTopicOf <https://en.wikipedia.org/wiki/Ayn_Rand> }')
    assert q(kg, "ASK { <https://kgx.dev/enwiki/resource/Austin_(disambiguation)> "
                 "a kgx:DisambiguationPage ; kgx:disambiguates ?x }")


def test_unmapped_parameters_are_raw_properties(sample_out: Path) -> None:
    kg = KnowledgeGraph.open(sample_out)
    rows = q(kg, "SELECT ?c WHERE { res:Ayn_Rand prop:caption ?c }")
    assert rows == [{"c": "Ayn Rand in 1925"}]


def test_every_sample_infobox_family_is_typed(sample_out: Path) -> None:
    kg = KnowledgeGraph.open(sample_out)
    untyped = q(kg, """SELECT DISTINCT ?t WHERE { ?s kgx:infoboxTemplate ?t
        FILTER NOT EXISTS { ?s a ?c . ?c rdfs:subClassOf* kgx:Entity } }""")
    # Sub-templates used inside other infoboxes are the only untyped ones.
    assert {r["t"] for r in untyped} <= {"infobox spaceflight/dock", "infobox spaceflight/ip",
                                        "infobox u.s. state symbols"}


@pytest.mark.parametrize("name", ["enwiki-tables-excerpt.xml.bz2",
                                  "bgwiki-utf16-excerpt.xml.bz2", "tinywiki.xml"])
def test_other_real_dumps(name: str, tmp_path: Path) -> None:
    rep = run(real_dump(name), tmp_path, workers=1)
    assert rep["finished"] and rep["pages"]["skipped"] == 0
    kg = KnowledgeGraph.open(tmp_path)
    n = q(kg, "SELECT (COUNT(*) AS ?n) WHERE { ?s rdfs:label ?l }")[0]["n"]
    assert n >= rep["pages"]["article"]
    if name.startswith("bgwiki"):
        assert q(kg, 'ASK { ?s rdfs:label "Григориански календар"@bg }')


def test_truncated_dump_keeps_what_was_read(tmp_path: Path) -> None:
    data = SAMPLE.read_bytes()
    dump = tmp_path / "t.xml.bz2"
    dump.write_bytes(data[: len(data) // 2])
    rep = run(dump, tmp_path / "out", workers=1)
    assert rep["finished"] is False
    assert "truncated" in rep["error"] and "at byte" in rep["error"]
    assert 50 < rep["pages"]["read"] < 206
    kg = KnowledgeGraph.open(tmp_path / "out")
    assert q(kg, "ASK { res:Anarchism rdfs:label ?l }")


def test_corrupted_stream_with_index_goes_on(tmp_path: Path, multistream_sample: Path) -> None:
    src = multistream_sample
    dump, off = corrupt_middle_stream(src, tmp_path)
    rep = run(dump, tmp_path / "out", workers=2)
    assert rep["pages"]["lost"] == 100
    assert rep["pages"]["read"] == 106
    assert len(rep["lost"]) == 100 and f"at byte {off:,}" in rep["lost"][0]["reason"]
    assert rep["stream_errors"]
    kg = KnowledgeGraph.open(tmp_path / "out")
    assert q(kg, "ASK { res:Algorithm rdfs:label ?l }")  # from the stream after the bad one


def test_empty_dump_gives_an_empty_valid_graph(write_dump, tmp_path: Path) -> None:
    rep = run(write_dump([]), tmp_path / "out", workers=1)
    assert rep["finished"] and set(rep["pages"].values()) == {0}
    kg = KnowledgeGraph.open(tmp_path / "out")
    assert q(kg, "SELECT (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } "
                 "FILTER(?g != <https://kgx.dev/ontology/>) }") == [{"n": 0}]


def test_non_articles_skipped_and_limit(write_dump, tmp_path: Path) -> None:
    dump = write_dump([("Talk:A", "talk", {"ns": 1}), ("A", "A [[B]]."), ("B", "B."),
                       ("C", "C.")])
    rep = run(dump, tmp_path / "out", workers=0, limit=3)
    assert rep["pages"] == {"read": 3, "other-namespace": 1, "article": 2, "redirect": 0,
                            "disambiguation": 0, "category": 0, "skipped": 0, "lost": 0,
                            "duplicate-id": 0}


def _hang(*a, **k):
    while True:
        pass


def test_slow_page_is_stopped_and_listed(write_dump, tmp_path: Path, monkeypatch) -> None:
    dump = write_dump([("Good", "fine [[Link]]."), ("Slow", "loops forever"), ("After", "ok.")])
    real = kgx.text.wikitext.parse_page
    monkeypatch.setattr(kgx.structure.pages, "parse_page",
                        lambda p, *a: _hang() if p.title == "Slow" else real(p, *a))
    rep = run(dump, tmp_path / "out", workers=0, limits=Limits(page_timeout=0.5))
    assert rep["pages"]["article"] == 2 and rep["pages"]["skipped"] == 1
    assert rep["skipped"] == [{"id": 2, "title": "Slow", "reason": "timed out after 0.5 s"}]


def test_page_over_memory_limit_is_skipped(write_dump, tmp_path: Path, monkeypatch) -> None:
    dump = write_dump([("Good", "fine."), ("Hungry", "x"), ("After", "ok.")])
    real = kgx.text.wikitext.parse_page

    def hungry(p, *a):
        if p.title == "Hungry":
            return bytearray(3 << 30)  # 3 GiB, over the 300 MB limit
        return real(p, *a)

    monkeypatch.setattr(kgx.structure.pages, "parse_page", hungry)
    rep = run(dump, tmp_path / "out", workers=1, limits=Limits(page_memory_mb=300))
    assert rep["pages"]["article"] == 2
    assert rep["skipped"] == [{"id": 2, "title": "Hungry",
                               "reason": "over the memory limit (300 MB)"}]


def test_worker_crash_loses_only_its_page(write_dump, tmp_path: Path, monkeypatch) -> None:
    dump = write_dump([(f"P{i}", f"page {i} [[P{i + 1}]].") for i in range(20)])
    real = kgx.text.wikitext.parse_page

    def crash(p, *a):
        if p.title == "P7":
            os.kill(os.getpid(), signal.SIGKILL)
        return real(p, *a)

    monkeypatch.setattr(kgx.structure.pages, "parse_page", crash)
    rep = run(dump, tmp_path / "out", workers=2)
    assert rep["pages"]["article"] == 19
    assert rep["skipped"] == [{"id": 8, "title": "P7", "reason": "worker process died"}]
    assert rep["worker_crashes"] >= 1


def test_pathological_pages_do_not_stop_the_run(write_dump, tmp_path: Path) -> None:
    units = ["{{a|", "[http://x ", "<ref>", "<!--", "{|\n", "[[a|"]
    pages = [(f"Bad {i}", u * (32_000 // len(u))) for i, u in enumerate(units)]
    dump = write_dump([("Good", "A [[good]] page.")] + pages + [("Last", "Fine.")])
    rep = run(dump, tmp_path / "out", workers=1, limits=Limits(page_timeout=30))
    assert rep["finished"] and rep["pages"]["article"] == len(units) + 2


def test_output_dir_rerun_replaces_store(sample_out: Path, tmp_path: Path,
                                         write_dump) -> None:
    out = tmp_path / "out"
    shutil.copytree(sample_out, out)
    run(write_dump([("Only", "one page.")]), out, workers=0)
    kg = KnowledgeGraph.open(out)
    assert q(kg, "ASK { res:Anarchism ?p ?o }") is False
    assert q(kg, "ASK { res:Only rdfs:label ?l }") is True


def test_a_second_run_on_the_same_output_refuses(tmp_path: Path) -> None:
    """Two runs must never write one folder; a killed run's lock dies with it."""
    import subprocess
    import sys
    import time

    from kgx.outdir import LOCK_FILE, OutputInUse, output_lock

    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time; from pathlib import Path; from kgx.outdir import output_lock\n"
        f"with output_lock(Path({str(out)!r})):\n    print('held', flush=True); "
        "time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputInUse, match=f"pid {holder.pid}"):
            extract(SAMPLE, out, ExtractOptions(workers=0, progress=False, limit=5))
        holder.kill()  # kill -9: the lock goes with the process
        holder.wait(10)
        time.sleep(0.1)
        rep = run(SAMPLE, out, workers=0, limit=5)
        assert rep["finished"] is True and (out / LOCK_FILE).exists()
        with output_lock(out), output_lock(out):  # re-entrant in one process
            pass
    finally:
        holder.kill()


def test_an_edited_mapping_or_ontology_starts_the_structure_stage_over(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import kgx.structure.extract as ex
    from kgx.ontology import ONTOLOGY_DIR

    onto = tmp_path / "ontologies"
    shutil.copytree(ONTOLOGY_DIR, onto)
    monkeypatch.setattr(ex, "ONTOLOGY_DIR", onto)
    opts = ex.ExtractOptions()
    before = ex.structure_key(SAMPLE, opts, None)
    assert ex.structure_key(SAMPLE, opts, None) == before
    mapping = onto / "mappings" / "infoboxes.yaml"
    mapping.write_text(mapping.read_text() + "\n# edited\n")
    edited = ex.structure_key(SAMPLE, opts, None)
    assert edited != before
    (onto / "kgx.ttl").write_text((onto / "kgx.ttl").read_text() + "\n# edited\n")
    assert ex.structure_key(SAMPLE, opts, None) not in (before, edited)


# --------------------------------------------------------------------------- infobox mappings


def _facts(out: Path, subject: str) -> set[tuple[str, str]]:
    kg = KnowledgeGraph.open(out)
    rows = kg.sparql(f"""SELECT ?p ?o WHERE {{ GRAPH ?g {{ res:{subject} ?p ?o }}
                         ?g kgx:extractor "infobox" }}""")
    # kgx's properties by local name; a raw parameter as raw:NAME
    return {(r["p"].rsplit("/", 1)[1] if "/ontology/" in r["p"] else
             "raw:" + r["p"].rsplit("/", 1)[1], str(r["o"]).rsplit("/", 1)[-1]) for r in rows}


def test_an_infobox_value_is_its_own_link_not_an_aside(write_dump, tmp_path: Path) -> None:
    dump = write_dump([("Albert Einstein", "{{Infobox scientist|name=Albert Einstein"
                        "|workplaces=[[Swiss Patent Office]] ([[Bern]])\n"
                        "|residence=[[Germany]], [[Italy]] (today: [[Czech Republic]])\n"
                        "|religion=See: [[Albert Einstein and religion]]"
                        "|birth_place=[[Ulm]], [[Kingdom of Württemberg]]}}\nA physicist.")])
    extract(dump, tmp_path / "out", ExtractOptions(workers=0, progress=False))
    facts = _facts(tmp_path / "out", "Albert_Einstein")
    assert ("employer", "Swiss_Patent_Office") in facts and ("employer", "Bern") not in facts
    assert {o for p, o in facts if p == "residence"} == {"Germany", "Italy"}
    assert not any(p == "religion" for p, _ in facts)
    assert {o for p, o in facts if p == "birthPlace"} == {"Ulm", "Kingdom_of_Württemberg"}


def test_leader_titles_and_establishment_events_decide_the_property(write_dump,
                                                                    tmp_path: Path) -> None:
    dump = write_dump([("Andorra", "{{Infobox country|conventional_long_name=Andorra"
                        "|leader_title1=[[Co-Princes of Andorra|Co-Princes]]"
                        "|leader_name1=[[Joan Enric Vives Sicília]]"
                        "|leader_title2=[[Head of Government of Andorra|Prime Minister]]"
                        "|leader_name2=[[Antoni Martí]]"
                        "|leader_title3=[[General Council (Andorra)|Speaker]]"
                        "|leader_name3=[[Vicenç Mateu Zamora]]"
                        "|established_event1=Paréage|established_date1=1278"
                        "|established_event2=Independence|established_date2=1993"
                        "|established_event3=Constitution|established_date3=1994}}\nA state.")])
    extract(dump, tmp_path / "out", ExtractOptions(workers=0, progress=False))
    facts = _facts(tmp_path / "out", "Andorra")
    assert ("headOfState", "Joan_Enric_Vives_Sicília") in facts
    assert ("headOfGovernment", "Antoni_Martí") in facts
    assert not any(o == "Vicenç_Mateu_Zamora" for p, o in facts if not p.startswith("raw:"))
    assert [o for p, o in facts if p == "foundingDate"] == ["1993"]


def test_only_the_lead_infobox_describes_the_page(write_dump, tmp_path: Path) -> None:
    dump = write_dump([("Abraham Lincoln", "{{Infobox officeholder|name=Abraham Lincoln"
                        "|birth_place=[[Hodgenville, Kentucky]]}}\nThe 16th president.\n"
                        "== Administration ==\n{{Infobox U.S. Cabinet|President=[[Abraham "
                        "Lincoln]]|Secretary of State=[[William H. Seward]]}}\nHis cabinet.")])
    extract(dump, tmp_path / "out", ExtractOptions(workers=0, progress=False))
    kg = KnowledgeGraph.open(tmp_path / "out")
    types = {r["t"].rsplit("/", 1)[1] for r in kg.sparql(
        "SELECT ?t WHERE { GRAPH ?g { res:Abraham_Lincoln a ?t } }")}
    assert "OfficeHolder" in types and "GovernmentCabinet" not in types
    assert not any("Seward" in o for _, o in _facts(tmp_path / "out", "Abraham_Lincoln"))


def test_a_language_tag_only_where_the_language_is_known(write_dump, tmp_path: Path) -> None:
    dump = write_dump([("Albania", "{{Infobox country|conventional_long_name=Republic of "
                        "Albania|national_motto=Ti Shqipëri, më jep nder|"
                        "demonym=Albanian}}\nA state."),
                       ("Oman", "{{Infobox country|conventional_long_name=Sultanate of Oman"
                        "|national_motto={{lang|ar|الله أكبر}}|demonym={{transl|ar|ALA|Umānī}}}}"
                        "\nA state.")])
    extract(dump, tmp_path / "out", ExtractOptions(workers=0, progress=False))
    kg = KnowledgeGraph.open(tmp_path / "out")
    rows = {(r["s"].rsplit("/", 1)[1], r["v"], r.get("l", "")) for r in kg.sparql(
        "SELECT ?s ?v (LANG(?x) AS ?l) WHERE { VALUES ?p { kgx:motto kgx:demonym } "
        "?s ?p ?x BIND(STR(?x) AS ?v) }")}
    assert ("Albania", "Ti Shqipëri, më jep nder", "") in rows  # a motto: not the wiki's
    assert ("Albania", "Albanian", "en") in rows
    assert ("Oman", "الله أكبر", "ar") in rows
    assert ("Oman", "Umānī", "ar") in rows  # the transliteration's text, not its code
