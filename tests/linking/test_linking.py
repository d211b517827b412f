"""Entity linking and the Python API on a small hand-made wiki with the real MiniLM encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss")
pytest.importorskip("torch")

from kgx.graph.knowledge_graph import KnowledgeGraph  # noqa: E402
from kgx.linking.linker import Linker, name_similarity
from kgx.linking.tables import LinkingIndexError, alias_key, build_entity_table
from kgx.linking.vectors import VectorIndex, build_vector_index, make_index
from kgx.structure.extract import ExtractOptions, extract  # noqa: E402

PAGES = [
    ("Abraham Lincoln", "{{Infobox officeholder|name=Abraham Lincoln|birth_place=[[Hodgenville, "
     "Kentucky]]|spouse=[[Mary Todd Lincoln]]}}'''Abraham Lincoln''' was the 16th president of "
     "the [[United States]]. He was born in [[Hodgenville, Kentucky|Hodgenville]]. Lincoln "
     "led the [[Union (American Civil War)|Union]]."),
    ("Lincoln, Nebraska", "'''Lincoln''' is the capital of [[Nebraska]] in the [[United States]]."),
    ("Albert Einstein", "{{Infobox scientist|birth_place=[[Ulm]]}}'''Albert Einstein''' was a "
     "physicist born in [[Ulm]]. [[Albert Einstein|Einstein]] developed relativity."),
    ("Ulm", "'''Ulm''' is a city in [[Germany]]."),
    ("Mary Todd Lincoln", "'''Mary Todd Lincoln''' was the wife of [[Abraham Lincoln|Lincoln]]."),
    ("Honest Abe", "", {"redirect": "Abraham Lincoln"}),
    ("Lincoln (disambiguation)", "'''Lincoln''' may refer to:\n* [[Abraham Lincoln]]\n"
     "* [[Lincoln, Nebraska]]\n{{disambiguation}}"),
    ("United States", "The '''United States''' is a country. Its capital is [[Washington, D.C.]]"),
]


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kgx.linking.encoder import shared_encoder
    from tests.support import dump_xml, page_xml

    d = tmp_path_factory.mktemp("linking")
    dump = d / "wiki.xml"
    dump.write_text(dump_xml([page_xml(i, p[0], p[1], **(p[2] if len(p) > 2 else {}))
                              for i, p in enumerate(PAGES, 1)]), encoding="utf-8")
    o = d / "out"
    extract(dump, o, ExtractOptions(workers=0, progress=False))
    build_entity_table(o)
    build_vector_index(o, shared_encoder())
    return o


def test_alias_priors_from_titles_redirects_and_anchors(out: Path) -> None:
    kg = KnowledgeGraph.open(out)
    best = kg.lookup("Abraham Lincoln", k=3)[0]
    assert best.title == "Abraham Lincoln" and best.signals["alias_match"] == 1.0
    assert best.iri == "https://kgx.dev/enwiki/resource/Abraham_Lincoln"
    assert "https://kgx.dev/ontology/OfficeHolder" in best.types and "PER" in best.types
    assert kg.lookup("Honest Abe", k=1)[0].title == "Abraham Lincoln"  # a redirect
    assert kg.lookup("Einstein", k=1)[0].title == "Albert Einstein"  # an anchor text
    titles = [c.title for c in kg.lookup("Lincoln", k=5)]
    assert {"Abraham Lincoln", "Lincoln, Nebraska"} <= set(titles[:3])
    assert "Lincoln (disambiguation)" not in titles  # disambiguation pages are not entities


def test_typos_and_paraphrases_found_without_an_alias(out: Path) -> None:
    kg = KnowledgeGraph.open(out)
    typo = kg.lookup("Albert Einstien", k=3)
    assert typo[0].title == "Albert Einstein" and typo[0].signals["alias_match"] == 0.0
    assert kg.lookup("abraham lincon", k=1)[0].title == "Abraham Lincoln"


def test_context_and_type_pick_the_right_entity(out: Path) -> None:
    kg = KnowledgeGraph.open(out)
    linker = kg.linker
    enc = linker.encoder
    ctx = enc.encode(["The capital of Nebraska is a city in the Great Plains."])[0]
    city = linker.link("Lincoln", ctx, "LOC")
    ctx2 = enc.encode(["The president who led the Union in the American Civil War."])[0]
    person = linker.link("Lincoln", ctx2, "PER")
    assert city is not None and city.title == "Lincoln, Nebraska"
    assert person is not None and person.title == "Abraham Lincoln"
    assert linker.link("zzqx vrrp", None, None) is None  # NIL


def test_link_many_encodes_each_unknown_name_once_and_links_as_link_does(out: Path) -> None:
    kg = KnowledgeGraph.open(out)
    linker = kg.linker
    enc = linker.encoder
    ctx = enc.encode(["He was a physicist born in Ulm."])[0]
    mentions = [("Albert Einstien", "PER", ctx), ("Lincoln", "LOC", None),
                ("Albert Einstien", "PER", None), ("zzqx vrrp", None, None),
                ("Einstein", "PER", ctx), ("  ", None, None)]
    encoded: list[list[str]] = []

    class Counting:
        dim = enc.dim

        def encode(self, texts: list[str]) -> np.ndarray:
            encoded.append(list(texts))
            return enc.encode(texts)

    linker._encoder = Counting()
    try:
        many = linker.link_many(mentions)
        # one batch, each name the alias table lacks once, in order of first use
        assert encoded == [["Albert Einstien", "zzqx vrrp"]]
        one_by_one = [linker.link(t, c, typ) for t, typ, c in mentions]
    finally:
        linker._encoder = enc
    assert [c and (c.title, c.score) for c in many] == \
        [c and (c.title, c.score) for c in one_by_one]
    assert many[0] is not None and many[0].title == "Albert Einstein"
    assert many[3] is None and many[5] is None
    # the alias table's answers are cached copies: changing one changes nothing after
    first = linker.aliases.candidates("Lincoln")
    first.clear()
    assert linker.aliases.candidates("Lincoln") and linker.aliases.fuzzy("Abraham Lincon")


def test_a_name_the_wiki_lacks_is_nil(out: Path) -> None:
    """A lookup answers NIL (no candidate) below the threshold, rather than the nearest
    stranger; the same names with ``nil=False`` still rank what there is."""
    kg = KnowledgeGraph.open(out)
    for stranger in ("Nikola Tesla", "Marie Curie", "42", "Scientific pitch notation"):
        assert kg.lookup(stranger) == [], stranger
        assert kg.lookup(stranger, nil=False)  # candidates there are, all below it
    for name, title in (("Abraham Lincoln", "Abraham Lincoln"), ("Honest Abe", "Abraham Lincoln"),
                        ("Abraham Lincon", "Abraham Lincoln"), ("Einstein", "Albert Einstein")):
        assert kg.lookup(name, k=1)[0].title == title, name
    assert kg.sparql('SELECT ?e WHERE { BIND(kgx:lookup("Nikola Tesla") AS ?e) }') == [{}]


def test_lookup_bad_input(out: Path) -> None:
    kg = KnowledgeGraph.open(out)
    with pytest.raises(ValueError, match="non-empty"):
        kg.lookup("   ")
    with pytest.raises(ValueError, match="not looked up"):
        kg.lookup("x" * 5000)


def test_vector_index_checks_queries(out: Path) -> None:
    kg = KnowledgeGraph.open(out)
    vi = kg.linker.vectors
    with pytest.raises(ValueError, match=r"expects \(n, 384\)"):
        vi.search(np.zeros((1, 12), np.float32), 3)
    bad = np.zeros((1, 384), np.float32)
    bad[0, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        vi.search(bad, 3)


def test_missing_or_corrupted_index(out: Path, tmp_path: Path) -> None:
    import shutil

    o = tmp_path / "o"
    shutil.copytree(out, o)
    (o / "entities.faiss").write_bytes(b"not a faiss index")
    with pytest.raises(LinkingIndexError, match="unreadable entity index.*kgx index"):
        VectorIndex(o, 10)
    (o / "entities.faiss").unlink()
    with pytest.raises(LinkingIndexError, match="missing entity index.*kgx index"):
        Linker(o, "https://kgx.dev/enwiki/")


def test_index_type_follows_size() -> None:
    assert type(make_index(8, 1000)).__name__ == "IndexFlatIP"
    big = make_index(8, 2_000_000)
    assert type(big).__name__ == "IndexIVFFlat" and big.nprobe == 32 and not big.is_trained


def test_sparql_lookup_function_and_entity_api(out: Path) -> None:
    kg = KnowledgeGraph.open(out)
    rows = kg.sparql('SELECT ?place WHERE { BIND(kgx:lookup("Abraham Lincoln") AS ?e) '
                     "?e kgx:birthPlace ?place }")
    assert rows == [{"place": "https://kgx.dev/enwiki/resource/Hodgenville,_Kentucky"}]
    ent = kg.entity("res:Abraham_Lincoln")
    assert "Abraham Lincoln" in ent["labels"] and "Honest Abe" in ent["labels"]
    facts = {(f["predicate"].rsplit("/", 1)[-1], f["extractor"]) for f in ent["facts"]}
    assert ("birthPlace", "infobox") in facts and ("wikiLink", "link") in facts
    assert all(f["page_id"] == 1 for f in ent["facts"] if f["extractor"] == "infobox")


def test_neighbors_and_path(out: Path) -> None:
    kg = KnowledgeGraph.open(out)
    nb = kg.neighbors("res:Abraham_Lincoln")
    assert {"entity": "https://kgx.dev/enwiki/resource/Mary_Todd_Lincoln",
            "predicate": "https://kgx.dev/ontology/spouse", "direction": "out"} in nb
    path = kg.path("res:Mary_Todd_Lincoln", "res:Hodgenville,_Kentucky")
    assert [s["predicate"].rsplit("/", 1)[-1] for s in path] == ["spouse", "birthPlace"]
    # Joined only through wikilinks: no path among facts, two hops with links.
    assert kg.path("res:Mary_Todd_Lincoln", "res:United_States") is None
    steps = kg.path("res:Mary_Todd_Lincoln", "res:United_States", include_links=True)
    assert [s["to"].rsplit("/", 1)[-1] for s in steps] == ["Abraham_Lincoln", "United_States"]


def test_name_similarity_and_keys() -> None:
    assert alias_key("  Saint   PETERSBURG ") == "saint petersburg"
    assert name_similarity("Einstien", "Albert Einstein") > 0.7
    assert name_similarity("Paris", "Paris (Texas)") == 1.0


def _linked_wiki(n_people: int = 160) -> list[tuple[str, str]]:
    """People born in towns, each linked by surname or full name; some towns share a name
    with a person, so that the name alone is ambiguous."""
    pages = []
    for i in range(n_people):
        town = f"Town{i % 40}"
        pages.append((f"Anna Person{i}", f"'''Anna Person{i}''' was born in [[{town}]]. She "
                      f"met [[Anna Person{(i + 1) % n_people}|Person{(i + 1) % n_people}]] "
                      f"in [[{town}]] and [[Anna Person{(i + 7) % n_people}]]."))
    pages += [(f"Town{j}", f"'''Town{j}''' is a town in [[Land{j % 3}]].") for j in range(40)]
    return pages


def test_the_scorer_is_fitted_on_dev_pages_and_used(tmp_path: Path) -> None:
    from kgx.corpus.rows import split_of
    from kgx.linking.encoder import shared_encoder
    from kgx.linking.fit import fit_linker, split_links
    from kgx.linking.linker import LINKER_FILE, LinkScorer
    from kgx.linking.tables import LinkingIndexError
    from tests.support import dump_xml, page_xml

    dump = tmp_path / "wiki.xml"
    pages = _linked_wiki()
    dump.write_text(dump_xml([page_xml(i, t, x) for i, (t, x) in enumerate(pages, 1)]),
                    encoding="utf-8")
    o = tmp_path / "out"
    extract(dump, o, ExtractOptions(workers=0, progress=False, keep_documents=True))
    build_entity_table(o)
    enc = shared_encoder()
    build_vector_index(o, enc)
    import random

    links = split_links(o / "documents.jsonl", 10_000, random.Random(0))
    dev_titles = {t for i, (t, _) in enumerate(pages, 1) if split_of(i) == "dev"}
    assert links and len(links) == sum(x.count("[[") for t, x in pages if t in dev_titles)
    fit = fit_linker(o, "https://kgx.dev/x/", encoder=enc)
    assert fit["fitted"] and fit["links"] == len(links) >= 50
    assert 0.0 < fit["nil_threshold"] < 1.0 and fit["accuracy"] >= fit["hand_weights_accuracy"]
    # a lookup by name alone has its own NIL threshold, fitted on the same held-out links
    assert 0.0 < fit["lookup_nil_threshold"] < 1.0
    assert fit["lookup_accuracy"] >= fit["lookup_default_threshold_accuracy"]
    scorer = LinkScorer.load(o / LINKER_FILE)
    assert scorer.lookup_nil_threshold == fit["lookup_nil_threshold"]
    assert scorer.weights == fit["weights"] and scorer.fitted_on["split"] == "dev"
    fitted = Linker(o, "https://kgx.dev/x/", encoder=enc)
    hand = Linker(o, "https://kgx.dev/x/", encoder=enc, fitted=False)
    assert fitted.nil_threshold == fit["nil_threshold"] and hand.nil_threshold == 0.35
    ctx = enc.encode(["She was born in Town3, a town."])[0]
    best = fitted.link("Town3", ctx, "LOC")
    assert best is not None and best.title == "Town3" and 0.0 < best.score <= 1.0
    sig = best.signals
    assert best.score == pytest.approx(scorer.probability(sig), abs=1e-4)
    (o / LINKER_FILE).write_text("{not json")
    with pytest.raises(LinkingIndexError, match="linker.json: not a fitted linker scorer"):
        Linker(o, "https://kgx.dev/x/", encoder=enc)


def test_entity_tables_are_the_same_with_worker_processes(out: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """Alias rows made by 2 spawned workers, 3 rows of a table at a time, the articles' bold
    names 2 at a time, and the misspelt-name index's deletions, 5 keys at a time, give the
    tables one process gives in one chunk:
    the same entity ids, alias counts and misspelling index."""
    import shutil
    import sqlite3

    import kgx.linking.fuzzy
    import kgx.linking.tables

    o = tmp_path / "out"
    o.mkdir()
    for name in ("aliases.sqlite", "report.json"):
        shutil.copyfile(out / name, o / name)
    (o / "store").symlink_to(out / "store")
    monkeypatch.setattr(kgx.linking.tables, "ALIAS_CHUNK_ROWS", 3)
    # the bold names written 2 at a time
    monkeypatch.setattr(kgx.linking.tables, "LABEL_BATCH_ROWS", 2)
    monkeypatch.setattr(kgx.linking.fuzzy, "CHUNK_KEYS", 5)
    # ranges summed by the workers
    monkeypatch.setattr(kgx.linking.tables, "SUM_IN_WORKERS_FROM", 2)
    bounds = []
    key_bounds = kgx.linking.tables._key_bounds
    monkeypatch.setattr(kgx.linking.tables, "_key_bounds",
                        lambda db, n: bounds.extend(key_bounds(db, n)) or list(bounds))
    phases: dict[str, float] = {}
    phases_cpu: dict[str, float] = {}
    build_entity_table(o, workers=2, phases=phases, phases_cpu=phases_cpu)
    assert list(phases_cpu) == list(phases) and all(s >= 0 for s in phases_cpu.values())
    # the alias rows were summed in key ranges (up to 4 a worker; fewer where the titles'
    # keys repeat), the fixture's in one
    assert 2 <= len(bounds) < 2 * kgx.linking.tables.SUM_PARTS_PER_WORKER
    assert bounds == sorted(bounds)
    assert list(phases) == ["types", "abstracts", "titles_and_redirects", "anchors", "sums",
                            "misspelt_index"]
    assert all(s >= 0 for s in phases.values())
    keys = sqlite3.connect(o / "aliases.sqlite").execute("SELECT count(*) FROM alias_keys")
    assert keys.fetchone()[0] > 2 * 5  # the index was made in three tasks or more
    tables = {"entities": "id", "alias_index": "key, entity", "alias_keys": "id",
              "alias_deletes": "variant, len, key"}
    for t, order in tables.items():
        a, b = (sqlite3.connect(x / "aliases.sqlite").execute(
            f"SELECT * FROM {t} ORDER BY {order}").fetchall() for x in (out, o))
        assert a and a == b, t
    assert not (o / ".work" / "entity-tables").exists()


def test_a_retried_alias_task_writes_over_what_a_dead_worker_left(out: Path,
                                                                  tmp_path: Path) -> None:
    """A worker killed inside ``alias_rows`` or ``sum_alias_part`` leaves its ``.tmp`` file;
    the task run again on another worker still writes its rows, and only them."""
    import sqlite3

    from kgx.linking.tables import alias_rows, sum_alias_part

    def left_over(path: str, table: str) -> None:
        con = sqlite3.connect(path + ".tmp")
        con.execute(f"CREATE TABLE {table} (a, b, c)")
        con.execute(f"INSERT INTO {table} VALUES ('junk', 'junk', 99)")
        con.commit()
        con.close()

    clean, dirty = tmp_path / "clean", tmp_path / "dirty"
    clean.mkdir()
    dirty.mkdir()
    db = str(out / "aliases.sqlite")
    left_over(str(dirty / "titles-000000000001.sqlite"), "rows_0")
    rows = []
    for parts in (clean, dirty):
        titles, path = alias_rows("titles", 1, 1000, str(parts), db)
        rows.append((titles, sqlite3.connect(path).execute(
            "SELECT * FROM rows_0 ORDER BY key, title").fetchall()))
    assert rows[0][1] and rows[0] == rows[1]

    build = tmp_path / "build.sqlite"
    con = sqlite3.connect(build)
    con.executescript("CREATE TABLE entities (id INTEGER PRIMARY KEY, title TEXT);"
                      "INSERT INTO entities VALUES (1, 'Ulm');"
                      "CREATE TABLE alias_rows_0 (key TEXT, title TEXT, n REAL);"
                      "INSERT INTO alias_rows_0 VALUES ('ulm', 'Ulm', 1), ('ulm', 'Ulm', 2);")
    con.commit()
    con.close()
    summed = str(tmp_path / "0000.sqlite")
    left_over(summed, "summed")
    sum_alias_part(str(build), 0, summed)
    assert sqlite3.connect(summed).execute("SELECT * FROM summed").fetchall() == [("ulm", 1, 3.0)]


def test_key_ranges_order_keys_as_sqlite_compares_them() -> None:
    """A row goes to the range of its key by Python's string order (``_range_of``), and the
    sums are appended range after range into a table SQLite keeps in its own order: the two
    must agree, for keys in any script."""
    import sqlite3

    from kgx.linking.tables import _range_of

    keys = ["", "a", "a b", "ab", "z", "é", "ö", "ǆ", "ω", "я", "日本", "ﬀ", "\U0001f600x",
            "\U00010400", "\uffff", "\ue000", "0", " ", "~"]
    bounds = sorted(keys[1::3])
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE t (key TEXT PRIMARY KEY) WITHOUT ROWID")
    con.executemany("INSERT INTO t VALUES (?)", [(k,) for k in keys])
    in_sqlite_order = [k for (k,) in con.execute("SELECT key FROM t")]
    assert in_sqlite_order == sorted(keys)
    ranges = [_range_of(bounds, k) for k in in_sqlite_order]
    assert ranges == sorted(ranges) and set(ranges) == set(range(len(bounds) + 1))
    for k in keys:
        r = _range_of(bounds, k)
        assert (r == 0 or bounds[r - 1] <= k) and (r == len(bounds) or k < bounds[r])


@pytest.mark.parametrize("order", [1, -1])
def test_an_object_of_facts_with_different_ranges_takes_the_most_given(
        tmp_path: Path, order: int) -> None:
    """Springfield is a birth place twice and a party once: a Place (LOC), in either page
    order; Grand Party, a party once, is an Organisation; a type the page states wins."""
    from kgx.structure.entity_types import load_entities
    from tests.support import dump_xml, page_xml

    pages = [
        ("Ann Smith", "{{Infobox officeholder|birth_place=[[Springfield]]|party=[[Grand Party]]}}"
         "'''Ann Smith''' was a mayor."),
        ("Bob Smith", "{{Infobox officeholder|birth_place=[[Springfield]]}}'''Bob''' was one."),
        ("Cal Smith", "{{Infobox officeholder|party=[[Springfield]]|birth_place=[[Ulm]]}}"
         "'''Cal''' was one."),
        ("Ulm", "{{Infobox officeholder|party=[[Grand Party]]}}'''Ulm''' is a man here."),
    ][::order]
    dump = tmp_path / "wiki.xml"
    dump.write_text(dump_xml([page_xml(i, t, x) for i, (t, x) in enumerate(pages, 1)]),
                    encoding="utf-8")
    extract(dump, tmp_path / "out", ExtractOptions(workers=0, progress=False))
    types = load_entities(tmp_path / "out")
    try:
        got = {t: (types.get(t).coarse, types.get(t).source)
               for t in ("Springfield", "Grand Party", "Ulm")}
    finally:
        types.close()
    # Ulm's own infobox makes it a person, whatever Cal's birth_place says of it
    assert got == {"Springfield": ("LOC", "range"), "Grand Party": ("ORG", "range"),
                   "Ulm": ("PER", "class")}
