"""The graph as a Python object: SPARQL over the store, entity lookup, neighbours and paths."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from kgx.graph.errors import GraphNotFound, QueryError, ServiceRefused
from kgx.ontology import DCT, FOAF, KGX, OWL, PROV, RDF, RDFS, SKOS, WD, WDT, XSD
from kgx.outdir import MODEL_DIR, REPORT_FILE, STORE_DIR

_QID = re.compile(r"Q[1-9][0-9]*")  # a Wikidata item id


def base_prefixes(namespace: str | None) -> dict[str, str]:
    p = {"kgx": KGX, "rdf": RDF, "rdfs": RDFS, "owl": OWL, "xsd": XSD, "skos": SKOS, "wd": WD,
         "wdt": WDT, "foaf": FOAF, "dct": DCT, "prov": PROV}
    if namespace:
        p.update({"res": namespace + "resource/", "prop": namespace + "property/",
                  "graph": namespace + "graph/"})
    return p


def to_python(term: Any) -> Any:
    """A pyoxigraph term as a Python value: IRIs as strings, typed literals converted."""
    import pyoxigraph as ox

    if term is None:
        return None
    if isinstance(term, ox.Literal):
        dt = term.datatype.value if term.datatype is not None else ""
        v = term.value
        try:
            if dt in (XSD + "integer", XSD + "int", XSD + "long"):
                return int(v)
            if dt in (XSD + "double", XSD + "float", XSD + "decimal"):
                return float(v)
            if dt == XSD + "boolean":
                return v == "true"
        except ValueError:
            return v
        return v
    if isinstance(term, ox.BlankNode):
        return "_:" + term.value
    return term.value


class KnowledgeGraph:
    """A kgx output directory: the store, the report, and (later stages) the entity index.

    Example (the README's examples run as tests)::

        kg = KnowledgeGraph.open("out/")
        kg.sparql("SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }")   # [{'n': ...}]
    """

    def __init__(self, path: Path, store: Any, report: dict[str, Any]) -> None:
        self.root = path
        self.store = store
        self.report = report
        self.namespace: str | None = report.get("site", {}).get("namespace")
        self.prefixes = base_prefixes(self.namespace)
        self._linker: Any = None
        self._nx: Any = None
        # Where kgx:lookup() inside a query looks names up: this graph's own linker unless
        # set (the endpoint's query workers ask the server process, which holds the index).
        self.lookup_function: Any = None

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, warm_up: bool = False,
             store: str | os.PathLike[str] | None = None) -> KnowledgeGraph:
        """Open an output directory written by ``kgx extract``.

        Args:
            path: The output directory.
            warm_up: Load the entity index and its encoder now (seconds), so that the first
                :meth:`lookup` answers at once; otherwise the first lookup loads them.
            store: Another copy of the store to open instead of ``path/store`` (``kgx serve``
                opens the version it pinned).

        Raises:
            GraphNotFound: ``path`` holds no kgx store.
        """
        import pyoxigraph as ox

        p = Path(path)
        store_dir = Path(store) if store is not None else p / STORE_DIR
        if not store_dir.is_dir():
            raise GraphNotFound(f"{p}: no kgx graph here (expected {store_dir}); "
                                f"run `kgx extract DUMP -o {p}` first")
        report_path = p / REPORT_FILE
        try:
            report = json.loads(report_path.read_text(encoding="utf-8")) \
                if report_path.exists() else {}
        except ValueError:
            report = {}  # being rewritten: the namespace is read again below if need be
        try:
            handle = ox.Store.read_only(str(store_dir))
        except OSError as exc:
            raise GraphNotFound(f"{store_dir}: the store cannot be opened ({exc}); if a kgx "
                                "extract is writing it, wait for it to finish") from exc
        kg = cls(p, handle, report)
        if warm_up:
            kg.lookup("warm up", k=1)
        return kg

    # ------------------------------------------------------------ querying

    def query(self, query: str, *, allow_service: bool = False, **kwargs: Any) -> Any:
        """Run SPARQL and return pyoxigraph's result object.

        The default graph is the union of all graphs unless the query has ``FROM`` /
        ``FROM NAMED`` clauses or ``default_graph`` / ``named_graphs`` are given: then the
        dataset is what they name, as SPARQL 1.1 says.

        Args:
            query: The query text.
            allow_service: Let ``SERVICE`` send HTTP requests to the IRIs it names (off: a
                query that names SERVICE is refused before it runs).
            **kwargs: Passed to ``pyoxigraph.Store.query`` (``default_graph``,
                ``named_graphs``...).

        Raises:
            ServiceRefused: The query names SERVICE and ``allow_service`` is False.
            QueryError: The query does not parse or fails; the message gives line and column.
        """
        from kgx.graph.sparql import explain_syntax_error, inspect_query

        shape = inspect_query(query, self.prefixes)
        if shape.names_service and not allow_service:
            raise ServiceRefused("SERVICE is refused: kgx makes no outbound requests for a "
                                 "query (kgx query --allow-service lets a trusted query do so)")
        if "default_graph" in kwargs and "named_graphs" not in kwargs:
            kwargs["named_graphs"] = []  # the protocol's dataset replaces the query's whole
        union = not shape.has_dataset and "default_graph" not in kwargs \
            and "named_graphs" not in kwargs
        try:
            if "lookup" in query and "custom_functions" not in kwargs:
                kwargs["custom_functions"] = self._functions()
            return self.store.query(query, prefixes=self.prefixes,
                                    use_default_graph_as_union=union, **kwargs)
        except SyntaxError as exc:
            raise QueryError(explain_syntax_error(query, str(exc), self.prefixes)) from exc
        except (OSError, RuntimeError, ValueError) as exc:
            raise QueryError(f"SPARQL error: {exc}") from exc

    def sparql(self, query: str, *, dataframe: bool = False) -> Any:
        """Run a SPARQL query.

        Args:
            query: SELECT, ASK, CONSTRUCT or DESCRIBE.
            dataframe: Return a pandas DataFrame for SELECT (pandas must be installed).

        Returns:
            SELECT: a list of dicts (variable -> Python value; unbound variables absent).
            ASK: a bool. CONSTRUCT/DESCRIBE: a list of ``(s, p, o)`` tuples of strings.
        """
        import pyoxigraph as ox

        res = self.query(query)
        if isinstance(res, ox.QueryBoolean):
            return bool(res)
        if isinstance(res, ox.QueryTriples):
            return [(to_python(t.subject), to_python(t.predicate), to_python(t.object))
                    for t in res]
        names = [v.value for v in res.variables]
        rows = []
        for sol in res:
            row = {}
            for n in names:
                v = sol[n]
                if v is not None:
                    row[n] = to_python(v)
            rows.append(row)
        if dataframe:
            import pandas as pd

            return pd.DataFrame(rows, columns=names)
        return rows

    def close(self) -> None:
        self.store = None

    # ------------------------------------------------------------ entities

    @property
    def linker(self) -> Any:
        """The entity linker (alias table + FAISS index), loaded on first use.

        Raises:
            LinkingIndexError: No index in this directory (``kgx index OUT`` builds one).
        """
        if self._linker is None:
            from kgx.linking.linker import Linker
            from kgx.runtime.logs import info

            info(f"kgx: loading the entity index of {self.root} (once; "
                 "KnowledgeGraph.open(..., warm_up=True) does it up front)")
            self._linker = Linker(self.root, self.namespace or "")
        return self._linker

    def _functions(self) -> dict[Any, Any]:
        import pyoxigraph as ox

        def lookup(term: Any) -> Any:
            text = getattr(term, "value", None)
            if not isinstance(text, str) or not text.strip():
                return None
            if self.lookup_function is not None:
                iri = self.lookup_function(text)
                return ox.NamedNode(iri) if iri else None
            try:
                best = self.lookup(text, k=1)
            except ValueError:
                return None
            return ox.NamedNode(best[0].iri) if best else None

        return {ox.NamedNode(KGX + "lookup"): lookup}

    def lookup(self, text: str, k: int = 10, nil: bool = True) -> list[Any]:
        """Entities a name may refer to, best first; none (NIL) for a name this wiki has no
        entity for.

        Each :class:`~kgx.linking.linker.Candidate` has the IRI, title, label, types, a score
        and the signals that matched (alias prior, vector similarity, name similarity). A candidate
        scoring below the NIL threshold fitted on the dump's own held-out links
        (:attr:`kgx.linking.linker.Linker.lookup_threshold`) is left out unless ``nil`` is False.

        A Wikidata id (``"Q91"``) finds the entity whose page its item links, when the graph
        was built with ``--wikidata``.

        Raises:
            ValueError: Empty text, or a text too long to be a name.
        """
        qid = text.strip()
        if _QID.fullmatch(qid):
            return self._by_wikidata_id(qid)
        return self.linker.lookup(text, k=k, nil=nil)

    def _by_wikidata_id(self, qid: str) -> list[Any]:
        from kgx.linking.linker import Candidate

        rows = self.sparql(f"""SELECT ?e (SAMPLE(?l) AS ?label) WHERE {{
            ?e kgx:wikidataId "{qid}" OPTIONAL {{ ?e rdfs:label ?l }} }} GROUP BY ?e""")
        out = []
        for r in rows:
            types = tuple(t["t"] for t in self.sparql(f"SELECT DISTINCT ?t WHERE {{ <{r['e']}> "
                                                      "a ?t }"))
            title = unquote(r["e"].rsplit("/", 1)[-1]).replace("_", " ")
            out.append(Candidate(r["e"], title, r.get("label") or title, types, 1.0,
                                 {"wikidata": 1.0}))
        return out

    def link(self, text: str) -> list[dict[str, Any]]:
        """Find and link the entity mentions in free text (needs a model in ``OUT/model``).

        Returns:
            One dict per mention: ``start``, ``end``, ``text``, ``type``, ``score`` and
            ``entity`` (a :class:`~kgx.linking.linker.Candidate`, or None for NIL).
        """
        from kgx.model.predictor import Predictor

        model_dir = Path(self.report.get("pipeline", {}).get("model") or self.root / MODEL_DIR)
        if not hasattr(self, "_predictor"):
            self._predictor = Predictor.load(model_dir)
        pred = self._predictor.predict([text], relations=False)[0]
        if not pred.mentions:
            return []
        ctx = self.linker.encoder.encode([text])[0]
        linked = self.linker.link_many([(m.text, m.label, ctx) for m in pred.mentions])
        return [{"start": m.start, "end": m.end, "text": m.text, "type": m.label,
                 "score": m.score, "entity": c} for m, c in zip(pred.mentions, linked,
                                                                  strict=True)]

    def entity(self, iri: str) -> dict[str, Any]:
        """Labels, types and facts of an entity, each fact with its provenance.

        Returns:
            ``{"iri", "labels", "types", "facts": [{"predicate", "object", "graph",
            "extractor", "page_id", "revision_id", "confidence"}...]}``.
        """
        iri = self._expand(iri)
        labels = [r["l"] for r in self.sparql(f"SELECT DISTINCT ?l WHERE {{ <{iri}> "
                                              "rdfs:label|kgx:alias ?l }")]
        types = [r["t"] for r in self.sparql(f"SELECT DISTINCT ?t WHERE {{ <{iri}> a ?t }}")]
        facts = self.sparql(f"""SELECT ?p ?o ?g ?ex ?page ?rev ?conf WHERE {{
            GRAPH ?g {{ <{iri}> ?p ?o }}
            OPTIONAL {{ ?g kgx:extractor ?ex }} OPTIONAL {{ ?g kgx:pageId ?page }}
            OPTIONAL {{ ?g kgx:revisionId ?rev }} OPTIONAL {{ ?g kgx:confidence ?conf }}
        }} ORDER BY ?p ?o""")
        return {"iri": iri, "labels": labels, "types": types, "facts": [
            {"predicate": f["p"], "object": f["o"], "graph": f["g"],
             "extractor": f.get("ex"), "page_id": f.get("page"), "revision_id": f.get("rev"),
             "confidence": f.get("conf")} for f in facts]}

    def _expand(self, iri: str) -> str:
        if ":" in iri and not iri.startswith(("http://", "https://", "urn:")):
            prefix, local = iri.split(":", 1)
            if prefix in self.prefixes:
                return self.prefixes[prefix] + local
        return iri

    def entity_graph(self, include_links: bool = False) -> Any:
        """A networkx MultiDiGraph of every entity-to-entity fact (infobox, model, inferred;
        ``kgx:wikiLink`` too when asked), edges keyed by predicate.

        It holds the whole graph in memory: for analysis of a small wiki. :meth:`neighbors`
        and :meth:`path` read the store instead and work at any size.
        """
        import networkx as nx

        if self._nx is not None and self._nx[0] == include_links:
            return self._nx[1]
        res = (self.namespace or "") + "resource/"
        skip = "" if include_links else "FILTER(?p != kgx:wikiLink)"
        g = nx.MultiDiGraph()
        q = (f"SELECT ?s ?p ?o WHERE {{ ?s ?p ?o FILTER(isIRI(?o) && STRSTARTS(STR(?s), "
             f"\"{res}\") && STRSTARTS(STR(?o), \"{res}\")) "
             f"FILTER(?p NOT IN (kgx:redirectsTo, kgx:category, kgx:disambiguates)) {skip} }}")
        for sol in self.query(q):
            g.add_edge(sol["s"].value, sol["o"].value, key=sol["p"].value)
        self._nx = (include_links, g)
        return g

    def _edges(self, iri: str, include_links: bool, limit: int) -> list[tuple[str, str, str]]:
        """Entity-to-entity facts at ``iri``, either direction, as ``(from, predicate, to)``.

        At most ``limit`` each way, in a fixed order.
        """
        res = (self.namespace or "") + "resource/"
        keep = (f'FILTER(isIRI(?x) && STRSTARTS(STR(?x), "{res}")) FILTER(?p NOT IN '
                "(kgx:redirectsTo, kgx:category, kgx:disambiguates"
                + (")" if include_links else ", kgx:wikiLink)") + ")")
        facts: set[tuple[str, str, str]] = set()
        for direction in ("out", "in"):
            pattern = f"<{iri}> ?p ?x" if direction == "out" else f"?x ?p <{iri}>"
            for sol in self.query(f"SELECT ?p ?x WHERE {{ {pattern} {keep} }} "
                                  f"ORDER BY ?x ?p LIMIT {int(limit)}"):
                x, p = sol["x"].value, sol["p"].value
                facts.add((iri, p, x) if direction == "out" else (x, p, iri))
        return sorted(facts)

    def neighbors(self, iri: str, include_links: bool = False, limit: int = 1000
                  ) -> list[dict[str, str]]:
        """Entities one fact away, in either direction, with the predicate and direction.

        Read from the store around ``iri`` (at most ``limit`` facts each way), so memory does
        not grow with the graph.
        """
        iri = self._expand(iri)
        out = [{"entity": t if f == iri else f, "predicate": p,
                "direction": "out" if f == iri else "in"}
               for f, p, t in self._edges(iri, include_links, limit)]
        return sorted(out, key=lambda d: (d["predicate"], d["entity"]))

    def path(self, a: str, b: str, include_links: bool = False, max_hops: int = 4,
             fan_out: int = 500) -> list[dict[str, str]] | None:
        """The shortest chain of facts between two entities (either direction), or None.

        A breadth-first search from both ends through the store, at most ``max_hops`` facts
        long and following at most ``fan_out`` facts each way from any one entity, so that it
        stays bounded on a graph of any size (a hub's facts beyond ``fan_out`` are not tried).

        Returns:
            Steps ``{"from", "predicate", "to"}`` as the facts are stated.
        """
        a, b = self._expand(a), self._expand(b)
        if a == b:
            return []
        # node -> (parent node, the fact joining them) for each side; depth of each node
        seen: tuple[dict[str, Any], dict[str, Any]] = ({a: None}, {b: None})
        depth: tuple[dict[str, int], dict[str, int]] = ({a: 0}, {b: 0})
        frontiers: tuple[list[str], list[str]] = ([a], [b])
        for _ in range(max_hops):
            side = 0 if len(frontiers[0]) <= len(frontiers[1]) else 1
            here, there = seen[side], seen[1 - side]
            nxt: list[str] = []
            meets: list[str] = []
            for node in frontiers[side]:
                # One fact per neighbour: the one that reads in the path's direction (from a
                # towards b) where both directions are stated, as a symmetric property is.
                # kgx's own property before its inferred Wikidata twin.
                step: dict[str, tuple[str, str, str]] = {}
                for fact in self._edges(node, include_links, fan_out):
                    other = fact[2] if fact[0] == node else fact[0]
                    rank = (not _reads_forward(fact, node, side), _prefer(fact[1]))
                    if other not in step or rank < (
                            not _reads_forward(step[other], node, side), _prefer(step[other][1])):
                        step[other] = fact
                for other, fact in step.items():
                    if other in here:
                        continue
                    here[other] = (node, fact)
                    depth[side][other] = depth[side][node] + 1
                    (meets if other in there else nxt).append(other)
            if meets:  # the whole level is read: the shortest of its meetings wins
                return self._join(seen, min(meets, key=lambda m: depth[1 - side][m]))
            if not nxt:
                return None
            frontiers = (nxt, frontiers[1]) if side == 0 else (frontiers[0], nxt)
        return None

    @staticmethod
    def _join(seen: tuple[dict[str, Any], dict[str, Any]], meet: str) -> list[dict[str, str]]:
        left, node = [], meet
        while seen[0][node] is not None:
            node, fact = seen[0][node]
            left.append(fact)
        right, node = [], meet
        while seen[1][node] is not None:
            node, fact = seen[1][node]
            right.append(fact)
        return [{"from": f, "predicate": p, "to": t} for f, p, t in left[::-1] + right]


def _reads_forward(fact: tuple[str, str, str], node: str, side: int) -> bool:
    """Whether a fact met at ``node`` is stated in the path's direction (from a towards b)."""
    return (fact[0] == node) == (side == 0)


def _prefer(predicate: str) -> tuple[bool, str]:
    """Sort key: kgx's own property before its inferred Wikidata twin."""
    return (not predicate.startswith(KGX), predicate)
