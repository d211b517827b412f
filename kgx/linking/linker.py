"""The linker: a mention's candidates from the alias table, the misspelling index and the vector
index, scored by a fitted logistic regression, NIL below its threshold.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from kgx.linking import fuzzy
from kgx.linking.tables import _QUALIFIER, LinkingIndexError, alias_key
from kgx.linking.vectors import VectorIndex
from kgx.outdir import ALIASES_FILE, LINKER_FILE

MAX_QUERY_CHARS = 1000


# Digits a candidate's score and signals keep; rank sorts by the score so rounded, then title.
SCORE_DIGITS = 4


@dataclass(frozen=True, slots=True)
class Candidate:
    """A candidate entity for a mention, with the signals that scored it."""

    iri: str
    title: str
    label: str
    types: tuple[str, ...]
    score: float
    signals: dict[str, float] = field(default_factory=dict)


def priors(counts: Sequence[tuple[int, float]]) -> list[tuple[int, float]]:
    """P(entity | alias) from (entity, link count) rows, smoothed: an alias seen once as a
    title still has a prior below certainty."""
    total = sum(n for _, n in counts) + 1e-9
    return [(e, (n + 0.1) / (total + 0.1 * len(counts))) for e, n in counts]


class AliasTable:
    """Candidates by alias with their prior P(entity | alias)."""

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise LinkingIndexError(f"{path}: missing alias table; run `kgx extract` again")
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        # an entity's row is read for each of its candidacies: the frequent ones stay at hand
        self.entity = lru_cache(maxsize=1 << 16)(self._entity)
        # so is a name's: the same names recur from sentence to sentence (the table is
        # read-only, so a cached answer is the table's answer)
        self._counts_of_key = lru_cache(maxsize=1 << 16)(self._counts_of_key_uncached)
        self._fuzzy_of_key = lru_cache(maxsize=1 << 14)(self._fuzzy_of_key_uncached)
        try:
            self.db.execute("SELECT 1 FROM alias_index LIMIT 1")
        except sqlite3.DatabaseError as exc:
            raise LinkingIndexError(f"{path}: no entity tables ({exc}); rebuild with "
                                    "`kgx index OUT`") from exc

    def counts(self, text: str, k: int = 20) -> list[tuple[int, float]]:
        """(entity id, link count) for an alias, most linked first."""
        return list(self._counts_of_key(alias_key(text), k))

    def _counts_of_key_uncached(self, key: str, k: int) -> tuple[tuple[int, float], ...]:
        return tuple(self.db.execute("SELECT entity, n FROM alias_index WHERE key = ? "
                                     "ORDER BY n DESC LIMIT ?", (key, k)).fetchall())

    def candidates(self, text: str, k: int = 20) -> list[tuple[int, float]]:
        """(entity id, prior) for an alias, best first."""
        return priors(self.counts(text, k))

    def fuzzy(self, text: str, k: int = 10) -> list[tuple[int, float]]:
        """(entity id, prior of the matched alias) for aliases within two edits of ``text``.

        A symmetric-delete lookup (:mod:`kgx.linking.fuzzy`): a handful of indexed reads, whatever
        the number of aliases.
        """
        return list(self._fuzzy_of_key(alias_key(text), k))

    def _fuzzy_of_key_uncached(self, key: str, k: int) -> tuple[tuple[int, float], ...]:
        try:
            near = fuzzy.search(self.db, key, k=k)
        except sqlite3.OperationalError:
            return ()  # an index built before kgx.linking.fuzzy: `kgx index OUT` rebuilds it
        out: dict[int, float] = {}
        for a, _ in near:
            for eid, prior in self.candidates(a, k=3):
                out.setdefault(eid, prior)
        return tuple(out.items())

    def _entity(self, eid: int) -> tuple[str, str | None, str | None, str]:
        row = self.db.execute("SELECT title, coarse, fine, description FROM entities "
                              "WHERE id = ?", (eid,)).fetchone()
        if row is None:
            raise LinkingIndexError(f"entity id {eid} is not in the entity table; the index "
                                    "and the table disagree: rebuild with `kgx index OUT`")
        return row

    def entity_id(self, title: str) -> int | None:
        row = self.db.execute("SELECT id FROM entities WHERE title = ?", (title,)).fetchone()
        return row[0] if row else None

    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM entities").fetchone()[0]


_TYPE_OK = {None: 0.5}


class Linker:
    """Alias table + vector index + scorer.

    Args:
        out: An output directory with the entity tables and index.
        namespace: Resource namespace for IRIs.
        encoder: A :class:`~kgx.linking.encoder.SentenceEncoder` (loaded lazily when omitted).
        nil_threshold: Best scores below this link to NIL.
    """

    # Hand-set weights, used when the output has no fitted scorer (LINKER_FILE).
    WEIGHTS = {"prior": 0.45, "context": 0.25, "type": 0.15, "name": 0.15}
    NIL_THRESHOLD = 0.35
    LOOKUP_WEIGHTS = {"prior": 0.6, "vector": 0.25, "name": 0.15}
    # A lookup's NIL threshold where none was fitted: a name that is some entity's alias
    # scores 0.6 and more from its prior alone; one that only resembles names scores on
    # vector and name similarity (at most 0.4).
    LOOKUP_NIL_THRESHOLD = 0.4

    def __init__(self, out: Path, namespace: str, encoder: Any = None,
                 nil_threshold: float | None = None, fitted: bool = True) -> None:
        from kgx.text.site import iri_escape

        self.out = Path(out)
        self.aliases = AliasTable(self.out / ALIASES_FILE)
        self.vectors = VectorIndex(self.out, self.aliases.count())
        self.resource = namespace + "resource/"
        self._escape = iri_escape
        self._encoder = encoder
        path = self.out / LINKER_FILE
        self.scorer = LinkScorer.load(path) if fitted and path.exists() else None
        self.nil_threshold = nil_threshold if nil_threshold is not None else \
            self.scorer.nil_threshold if self.scorer else self.NIL_THRESHOLD
        self._vec_cache: dict[int, Any] = {}

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            from kgx.linking.encoder import shared_encoder

            self._encoder = shared_encoder(self.vectors.meta.get("encoder", "minilm"))
        if self._encoder.dim != self.vectors.dim:
            raise LinkingIndexError(f"the encoder gives {self._encoder.dim}-d vectors, the index "
                                    f"holds {self.vectors.dim}-d ones; rebuild with `kgx index`")
        return self._encoder

    def iri(self, title: str) -> str:
        return self.resource + self._escape(title.replace(" ", "_"))

    def _candidate(self, eid: int, score: float, signals: dict[str, float]) -> Candidate:
        title, coarse, fine, _ = self.aliases.entity(eid)
        types = tuple(t for t in (fine, coarse) if t)
        label = _QUALIFIER.sub("", title)
        return Candidate(self.iri(title), title, label, types, round(score, SCORE_DIGITS),
                         {k: round(v, SCORE_DIGITS) for k, v in signals.items()})

    def entity_vector(self, eid: int) -> Any:
        v = self._vec_cache.get(eid)
        if v is None:
            v = self.vectors.index.reconstruct(eid - 1)
            if len(self._vec_cache) < 100_000:
                self._vec_cache[eid] = v
        return v

    @property
    def lookup_threshold(self) -> float:
        """The score below which :meth:`lookup` answers NIL: fitted on held-out wikilinks
        (:func:`kgx.linking.fit.fit_linker`), else :attr:`LOOKUP_NIL_THRESHOLD`."""
        fitted = self.scorer.lookup_nil_threshold if self.scorer is not None else None
        return fitted if fitted is not None else self.LOOKUP_NIL_THRESHOLD

    def lookup(self, text: str, k: int = 10, use_vectors: bool = True, nil: bool = True
               ) -> list[Candidate]:
        """Ranked candidates for a name (no context), best first.

        Args:
            nil: Leave out candidates below :attr:`lookup_threshold`, so that a name this
                wiki has no entity for gets none (NIL) rather than the nearest stranger.

        Raises:
            ValueError: Empty text, or longer than 1,000 characters.
        """
        text = (text or "").strip()
        if not text:
            raise ValueError("lookup needs a non-empty name")
        if len(text) > MAX_QUERY_CHARS:
            raise ValueError(f"lookup text is {len(text):,} characters; names longer than "
                             f"{MAX_QUERY_CHARS:,} are not looked up")
        q = self.encoder.encode([text]) if use_vectors else None
        scored = self.lookup_scores(text, dict(self.aliases.candidates(text, k=max(k, 20))),
                                    q[0] if q is not None else None, k)
        floor = self.lookup_threshold if nil else -math.inf
        out = [self._candidate(eid, score, sig) for eid, score, sig in scored if score >= floor]
        out.sort(key=lambda c: (-c.score, c.title))
        return out[:k]

    def lookup_scores(self, text: str, prior: dict[int, float], vector: np.ndarray | None,
                      k: int = 10, exclude: int | None = None
                      ) -> list[tuple[int, float, dict[str, float]]]:
        """(entity, score, signals) of each candidate for a name looked up without context:
        those its alias prior names (or, with none, its misspellings), and its nearest
        vectors; ``exclude`` left out (a fit's stand-in for a name the wiki lacks)."""
        fuzzy = {} if prior else dict(self.aliases.fuzzy(text, k))
        vec: dict[int, float] = {}
        if vector is not None:
            scores, ids = self.vectors.search(vector[None], max(k, 10))
            vec = {int(i): float(s) for s, i in zip(scores[0], ids[0], strict=True) if i > 0}
        out = []
        for eid in set(prior) | set(vec) | set(fuzzy):
            if eid == exclude:
                continue
            title = self.aliases.entity(eid)[0]
            # A misspelt name keeps half the prior of the alias it resembles.
            sig = {"prior": prior.get(eid, 0.5 * fuzzy.get(eid, 0.0)),
                   "name": name_similarity(text, title)}
            if vector is not None:
                sig["vector"] = vec.get(eid, float(self.entity_vector(eid) @ vector))
            w = self.LOOKUP_WEIGHTS
            score = sum(w[s] * max(0.0, v) for s, v in sig.items())
            sig["alias_match"] = 1.0 if eid in prior else 0.0
            out.append((eid, score, sig))
        return out

    def link(self, mention: str, context: np.ndarray | None = None,
             mention_type: str | None = None, k: int = 10) -> Candidate | None:
        """The best entity for a mention in context, or None (NIL).

        Args:
            mention: The mention's text.
            context: A unit vector of the mention's context (sentence, page), if any.
            mention_type: Coarse type the reader gave it (PER/ORG/LOC/MISC).
        """
        ranked = self.rank(mention, context, mention_type, k)
        return ranked[0] if ranked and ranked[0].score >= self.nil_threshold else None

    def link_many(self, mentions: Sequence[tuple[str, str | None, np.ndarray | None]],
                  k: int = 10) -> list[Candidate | None]:
        """:meth:`link` for many (text, type, context) mentions, with one batched encoding
        of the mentions that the alias table does not know."""
        # each name once, in order of first use; asked as rank asks, so rank finds the
        # answer in the alias table's cache
        need = list(dict.fromkeys(t for t, _, _ in mentions
                                  if t.strip() and not self.aliases.candidates(t.strip(),
                                                                               k=max(k, 20))))
        vec_ids: dict[str, set[int]] = {}
        if need:
            q = self.encoder.encode(need)
            _, ids = self.vectors.search(q, k)
            vec_ids = {t: {int(x) for x in row if x > 0} for t, row in zip(need, ids, strict=True)}
        out: list[Candidate | None] = []
        for text, typ, ctx in mentions:
            ranked = self.rank(text, ctx, typ, k, vector_candidates=vec_ids.get(text, set()))
            out.append(ranked[0] if ranked and ranked[0].score >= self.nil_threshold else None)
        return out

    def rank(self, mention: str, context: np.ndarray | None = None,
             mention_type: str | None = None, k: int = 10, use_vectors: bool = True,
             vector_candidates: set[int] | None = None) -> list[Candidate]:
        """Candidates for a mention in context, scored (see :attr:`WEIGHTS`)."""
        mention = mention.strip()
        if not mention or len(mention) > MAX_QUERY_CHARS:
            return []
        prior = dict(self.aliases.candidates(mention, k=max(k, 20)))
        cands = set(prior)
        if not prior:
            # No prior for trigram candidates here: in context, a misspelt-looking mention is
            # as often a plain word ("novelist" ~ "Novelists"), and context must decide.
            # Giving them half a prior cut held-out accuracy@1 from 0.343 to 0.180.
            cands |= {e for e, _ in self.aliases.fuzzy(mention, k)}
        if vector_candidates is not None:
            cands |= vector_candidates
        elif use_vectors and len(prior) < k:
            q = self.encoder.encode([mention])
            _, ids = self.vectors.search(q, k)
            cands |= {int(i) for i in ids[0] if i > 0}
        scored = []
        for eid in cands:
            sig = self.signals(eid, mention, mention_type, context, prior.get(eid, 0.0))
            score = self.score(sig)
            # ordered as the Candidates would be (their score is rounded), and only the k
            # kept are made
            scored.append((-round(score, SCORE_DIGITS), self.aliases.entity(eid)[0], eid,
                           score, sig))
        scored.sort(key=lambda x: (x[0], x[1]))
        return [self._candidate(eid, score, sig) for _, _, eid, score, sig in scored[:k]]

    def signals(self, eid: int, mention: str, mention_type: str | None,
                context: np.ndarray | None, prior: float) -> dict[str, float]:
        """What scores a candidate: its prior for the mention's text, name similarity, type
        agreement with the mention, similarity of its embedding to the context's."""
        title, coarse, _, _ = self.aliases.entity(eid)
        return {"prior": prior, "name": name_similarity(mention, title),
                "type": _type_score(mention_type, coarse),
                "context": float(self.entity_vector(eid) @ context) if context is not None
                else 0.0}

    def score(self, signals: dict[str, float]) -> float:
        """A candidate's score: the fitted scorer's probability, or the hand-set weights'
        sum."""
        if self.scorer is not None:
            return self.scorer.probability(signals)
        return sum(self.WEIGHTS[s] * max(0.0, v) for s, v in signals.items())




@dataclass(frozen=True, slots=True)
class LinkScorer:
    """A logistic regression over a candidate's signals (see :meth:`Linker.signals`), fitted
    on wikilinks by :func:`kgx.linking.fit.fit_linker`, with the NIL threshold fitted with it,
    and the NIL threshold of a lookup without context (None: not fitted)."""

    weights: dict[str, float]
    bias: float
    nil_threshold: float
    fitted_on: dict[str, Any] = field(default_factory=dict)
    lookup_nil_threshold: float | None = None

    def probability(self, signals: dict[str, float]) -> float:
        z = self.bias + sum(w * signals.get(s, 0.0) for s, w in self.weights.items())
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    @classmethod
    def load(cls, path: Path) -> LinkScorer:
        try:
            d = json.loads(path.read_text("utf-8"))
            lookup = d.get("lookup_nil_threshold")
            return cls({k: float(v) for k, v in d["weights"].items()}, float(d["bias"]),
                       float(d["nil_threshold"]), d.get("fitted_on", {}),
                       None if lookup is None else float(lookup))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LinkingIndexError(f"{path}: not a fitted linker scorer ({exc}); delete it "
                                    "to use the default weights, or run `kgx index` again"
                                    ) from exc

    def save(self, path: Path) -> None:
        from kgx.engines.journal import write_atomic

        write_atomic(path, json.dumps({"weights": self.weights, "bias": self.bias,
                                       "nil_threshold": self.nil_threshold,
                                       "lookup_nil_threshold": self.lookup_nil_threshold,
                                       "fitted_on": self.fitted_on}, indent=2))


def _type_score(mention_type: str | None, entity_type: str | None) -> float:
    if mention_type is None or entity_type is None:
        return 0.5
    return 1.0 if mention_type == entity_type else 0.0


@lru_cache(maxsize=1 << 16)  # a name recurs, with the same candidates
def name_similarity(mention: str, title: str) -> float:
    """Character similarity of a mention and an entity label, case-insensitive: the share of
    their characters in a longest common subsequence (rapidfuzz's normalised Indel
    similarity, ``2 * LCS / (len(a) + len(b))``)."""
    from rapidfuzz.distance import Indel  # the model extra's, as kgx.linking.fuzzy's

    a, b = alias_key(mention), alias_key(_QUALIFIER.sub("", title))
    if a == b:
        return 1.0
    whole = Indel.normalized_similarity(a, b)
    if " " in a or " " not in b:
        return whole
    # A one-word mention against a longer name ("Einstien" / "Albert Einstein"): best word,
    # discounted so that the full name still wins over a partial match.
    part = max(Indel.normalized_similarity(a, w) for w in b.split())
    return max(whole, 0.9 * part)


def rank_percentiles(values: Sequence[float], qs: Sequence[float]) -> list[float]:
    """Percentiles (0-100) of a sample, nearest rank."""
    s = sorted(values)
    if not s:
        return [math.nan for _ in qs]
    return [s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))] for q in qs]
