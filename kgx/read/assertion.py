"""Which model facts the graph asserts, and how sure it is of each.

Takes the read stage's evidence (one row per fact and sentence) and gives every distinct fact
its evidence, a type verdict, a calibrated confidence and a status: asserted, kept as a
candidate, or refused. Four steps:

1. **One sentence counts once.** A sentence that joins the same two entities through several
mention pairs is one piece of evidence (its best pair's score). 2. **Types that can say no.** A
fact is refused when its subject or object cannot be of the property's domain or range: by the
entity's class in the graph where it has one, else by the majority NER type of its mentions over
the whole run (PER: a person, ORG: an organisation, LOC: a place, MISC: none of the three). An
entity typed that way gets the type in the graph, with its own provenance (:class:`NerTypes`).
3. **Confidence from held-out facts.** The corpus kept the infobox facts of a seeded share of
subjects out of the labels (:func:`kgx.corpus.labelling.held_out_subject`). What the reader says
of those subjects is scored against them, under the local closed-world assumption of
knowledge-base evaluation (Dong et al., Knowledge Vault, 2014): a fact is wrong when the infobox
states the property with other values, right when it states this one, unknown when it does not
state the property. A logistic regression (Platt scaling) over the fact's features (best
sentence score, sentences, pages, how its types are known, NER scores) is fitted on the scored
facts: the fact's confidence is its probability of being right. 4. **A precision target per
property.** A property's facts are asserted from the lowest confidence at which its scored
held-out facts are right at least ``min_precision`` of the time; a property without enough
scored facts to tell, or whose facts never reach the target, asserts nothing: its facts are kept
as candidates, outside the default graph.

The held-out figures are estimates on this dump: the strict one (every fact the infobox does not
state counts as wrong) is a lower bound, the closed-world one its usual estimate.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from kgx.ontology import KGX, Ontology
from kgx.records import FactRow

NER_CLASSES = {"PER": KGX + "Person", "ORG": KGX + "Organisation", "LOC": KGX + "Place"}
MISC = "MISC"  # a NER type that is none of the three: what it is not is known
LIST = "list page"  # a list is no entity of any class
MIN_SCORED = 20  # scored facts a property needs for its precision to be estimated
MIN_ABOVE = 10  # scored facts at or above a property's threshold, at least
MIN_FIT = 50  # scored facts the calibration needs, at least MIN_EACH of them right and wrong
MIN_EACH = 10
NER_MIN_MENTIONS = 2  # mentions an entity needs to be typed by their majority
NER_MIN_SHARE = 0.6
# The language of the gold dev relations bars may come from: Re-DocRED's, which kgx ships
GOLD_DEV_LANGUAGE = "en"
# The properties that place a thing in a larger place: followed up for "coarse but true"
PLACE_UP = frozenset({"locatedIn", "country"})
FEATURES = ("best_score", "log_sentences", "log_pages", "types_from_graph", "types_from_ner",
            "ner_score")
BANDS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0001)


@dataclass(frozen=True, slots=True)
class Evidence:
    """One sentence's support for a fact: where it is, and the mention pair that scored best
    in it (character offsets in the page's text)."""

    page_id: int
    revision_id: int | None
    page: str
    sentence_start: int
    sentence_end: int
    start: int
    end: int
    sentence: str
    score: float
    subject_start: int
    subject_end: int
    object_start: int
    object_end: int
    subject_label: str | None = None
    object_label: str | None = None
    subject_score: float | None = None
    object_score: float | None = None


@dataclass(frozen=True, slots=True)
class ModelFact:
    """A distinct fact the reader read, with everything that decides its fate (each step
    that decides gives a new record: :meth:`TypeSystem.check`, then the bar)."""

    subject: str
    prop: str
    object: str
    evidence: tuple[Evidence, ...]
    refused: str | None = None  # why its types say no
    types_known: tuple[str, str] = ("none", "none")  # graph | ner | none, subject and object
    confidence: float = 0.0
    status: str = "candidate"  # asserted | candidate | refused
    why: str = ""  # what kept a candidate out of the default graph

    @property
    def digest(self) -> str:
        return hashlib.sha1(f"{self.subject}\t{self.prop}\t{self.object}".encode()
                            ).hexdigest()[:16]

    @property
    def best_score(self) -> float:
        return max(e.score for e in self.evidence)

    def features(self) -> list[float]:
        best = self.best_score
        ner = [s for e in self.evidence for s in (e.subject_score, e.object_score)
               if s is not None]
        return [_logit(best), math.log1p(len(self.evidence)),
                math.log1p(len({e.page_id for e in self.evidence})),
                sum(k == "graph" for k in self.types_known) / 2,
                sum(k == "ner" for k in self.types_known) / 2,
                sum(ner) / len(ner) if ner else 0.5]


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def group_evidence(rows: Iterable[Sequence[Any]]) -> Iterator[tuple[str, str, str,
                                                                   list[Evidence]]]:
    """Distinct facts from evidence rows sorted by (subject, property, object): each with one
    :class:`Evidence` per sentence, its best-scoring mention pair's.

    A row is a :class:`kgx.records.FactRow`, or a tuple of its fields in its order (the last
    four may be missing)."""
    cur: tuple[str, str, str] | None = None
    by_sentence: dict[tuple[int, int], Evidence] = {}
    for row in rows:
        r = row if isinstance(row, FactRow) else FactRow(*row)
        key = (r.subject, r.prop, r.object)
        if key != cur:
            if cur is not None:
                yield (*cur, sorted(by_sentence.values(), key=_evidence_order))
            cur, by_sentence = key, {}
        ev = Evidence(r.page_id, r.revision_id, r.page, r.sentence_start, r.sentence_end,
                      r.start, r.end, r.sentence, r.score, r.subject_start, r.subject_end,
                      r.object_start, r.object_end, r.subject_label, r.object_label,
                      r.subject_score, r.object_score)
        where = (ev.page_id, ev.sentence_start)
        if where not in by_sentence or ev.score > by_sentence[where].score:
            by_sentence[where] = ev
    if cur is not None:
        yield (*cur, sorted(by_sentence.values(), key=_evidence_order))


def _evidence_order(e: Evidence) -> tuple[int, int]:
    return (e.page_id, e.sentence_start)


# --------------------------------------------------------------------------- types


class TypeSystem:
    """What an entity can be, and whether a property can join two entities.

    Args:
        onto: The ontology (domains, ranges, the class tree).
        graph_type: Title -> its class in the graph (the deepest one), or None.
        ner_type: Title -> its majority NER type over the run (PER/ORG/LOC/MISC), or None.
        is_list: Whether a title is a list page (``List of ...``), which is of no class.
    """

    def __init__(self, onto: Ontology, graph_type: Callable[[str], str | None],
                 ner_type: Callable[[str], str | None],
                 is_list: Callable[[str], bool] = lambda title: False,
                 title_type: Callable[[str], str | None] = lambda title: None) -> None:
        self.onto = onto
        self.graph_type = graph_type
        self.ner_type = ner_type
        self.is_list = is_list
        self.title_type = title_type
        self._ancestors: dict[str, frozenset[str]] = {}
        self._classes = frozenset(onto.classes.values())

    def ancestors(self, cls: str) -> frozenset[str]:
        hit = self._ancestors.get(cls)
        if hit is None:
            hit = self._ancestors[cls] = frozenset(self.onto.ancestors(cls)) | {cls}
        return hit

    def type_of(self, title: str, mention_labels: Sequence[str | None] = ()
                ) -> tuple[str | None, str]:
        """(class IRI, :data:`MISC`, :data:`LIST` or None; "graph", "ner", "title" or
        "none"): by the graph, else by the title's shape (a list page, a language), else by
        the majority NER type of the entity's mentions over the run, else by that of
        ``mention_labels`` (the fact's own mentions)."""
        if self.is_list(title):
            return LIST, "title"
        cls = self.graph_type(title)
        if cls:
            return cls, "graph"
        cls = self.title_type(title)
        if cls:
            return cls, "title"
        ner = self.ner_type(title)
        if ner is None:
            labels = Counter(x for x in mention_labels if x)
            ner = labels.most_common(1)[0][0] if labels else None
        if ner in NER_CLASSES:
            return NER_CLASSES[ner], "ner"
        if ner == MISC:
            return MISC, "ner"
        return None, "none"

    def can_be(self, cls: str | None, wanted: str | None) -> bool:
        """Whether an entity of class ``cls`` can be a ``wanted`` (unknown: it can)."""
        if cls is None or wanted is None or wanted not in self._classes:
            return True
        if cls == LIST:
            return False
        if cls == MISC:  # not a person, an organisation or a place
            return not any(NER_CLASSES[k] in self.ancestors(wanted) for k in NER_CLASSES) \
                and KGX + "Agent" not in self.ancestors(wanted)
        return wanted in self.ancestors(cls) or cls in self.ancestors(wanted)

    def check(self, fact: ModelFact) -> ModelFact:
        """``fact`` with how its ends' types are known, and ``refused`` (the reason) where
        they say no (its status then ``refused``)."""
        prop = self.onto.properties.get(fact.prop)
        (s_cls, s_how) = self.type_of(fact.subject, [e.subject_label for e in fact.evidence])
        (o_cls, o_how) = self.type_of(fact.object, [e.object_label for e in fact.evidence])
        refused = None
        if prop is not None and not self.can_be(s_cls, prop.domain):
            refused = f"subject is {_a(_local(s_cls))}, not {_a(_local(prop.domain))}"
        elif prop is not None and not self.can_be(o_cls, prop.range):
            refused = f"object is {_a(_local(o_cls))}, not {_a(_local(prop.range))}"
        return replace(fact, types_known=(s_how, o_how), refused=refused,
                       status="refused" if refused else fact.status)


def _a(noun: str) -> str:
    return ("an " if noun[:1] in "AEIOUaeiou" else "a ") + noun


def _local(iri: str | None) -> str:
    if iri is None:
        return "?"
    if iri == LIST:
        return iri
    return iri[len(KGX):] if iri.startswith(KGX) else iri


class NerTypes:
    """Majority NER types of the entities the run linked mentions to.

    Args:
        counts: (entity, NER label, mentions) rows, summed over the run.
    """

    def __init__(self, counts: Iterable[tuple[str, str, int]]) -> None:
        by: dict[str, Counter[str]] = {}
        for entity, label, n in counts:
            if label:
                by.setdefault(entity, Counter())[label] += n
        self.types: dict[str, tuple[str, int, float]] = {}
        for entity, c in by.items():
            label, n = c.most_common(1)[0]
            total = sum(c.values())
            if total >= NER_MIN_MENTIONS and n / total >= NER_MIN_SHARE:
                self.types[entity] = (label, total, round(n / total, 3))

    def __call__(self, title: str) -> str | None:
        hit = self.types.get(title)
        return hit[0] if hit else None


# --------------------------------------------------------------------------- held-out facts


class HeldOut:
    """The infobox facts of the held-out subjects, and what they say of a fact.

    Args:
        is_held_out: Whether a subject's facts were kept out of the labels.
        facts_of: Title -> its infobox (property, object) facts.
    """

    def __init__(self, is_held_out: Callable[[str], bool],
                 facts_of: Callable[[str], list[tuple[str, str]]]) -> None:
        self.is_held_out = is_held_out
        self.facts_of = facts_of

    def covers(self, subject: str) -> bool:
        return self.is_held_out(subject) and bool(self.facts_of(subject))

    def label(self, fact: ModelFact) -> bool | None:
        """True: the infobox states it, or, for a place's :data:`PLACE_UP` properties, names
        a place that lies in the fact's object (coarse but true: a town in Alabama is located
        in the United States); False: it states the property with other values; None: it says
        nothing of the property (unknown under the local closed world)."""
        facts = self.facts_of(fact.subject)
        if (fact.prop, fact.object) in facts:
            return True
        if fact.prop in PLACE_UP and fact.object in self.places_above(fact.subject):
            return True
        if any(p == fact.prop for p, _ in facts):
            return False
        return None

    def places_above(self, subject: str, depth: int = 4) -> set[str]:
        """The places ``subject`` lies in, by the infoboxes' :data:`PLACE_UP` facts, followed
        ``depth`` steps up."""
        seen: set[str] = set()
        frontier = [subject]
        for _ in range(depth):
            frontier = [o for t in frontier for p, o in self.facts_of(t)
                        if p in PLACE_UP and o not in seen]
            seen.update(frontier)
            if not frontier:
                break
        return seen


# --------------------------------------------------------------------------- calibration


@dataclass(slots=True)
class Calibration:
    """A fact's probability of being right: Platt scaling (a logistic regression,
    scikit-learn) of its :meth:`ModelFact.features`, fitted on the held-out facts of the dump
    (``source`` "held-out"); with too few of them, of its best sentence score alone, fitted
    on the reader's relations in the gold dev sentences ("gold dev"); with neither, the best
    sentence score as it is ("none")."""

    weights: list[float] = field(default_factory=list)
    bias: float = 0.0
    mean: list[float] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)
    source: str = "none"
    examples: int = 0

    @property
    def fitted(self) -> bool:
        return self.source != "none"

    @staticmethod
    def enough(y: Sequence[bool]) -> bool:
        """Whether outcomes ``y`` can fit a calibration: :data:`MIN_FIT` of them, at least
        :data:`MIN_EACH` right and as many wrong."""
        return len(y) >= MIN_FIT and sum(y) >= MIN_EACH and len(y) - sum(y) >= MIN_EACH

    @classmethod
    def fit(cls, x: list[list[float]], y: list[bool], source: str = "held-out") -> Calibration:
        if not cls.enough(y):
            return cls(examples=len(y))
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        a = np.asarray(x, dtype=float)
        mean, scale = a.mean(0), a.std(0)
        scale[scale == 0] = 1.0
        model = LogisticRegression(C=1.0, max_iter=1000).fit((a - mean) / scale, y)
        return cls([float(w) for w in model.coef_[0]], float(model.intercept_[0]),
                   [float(m) for m in mean], [float(s) for s in scale], source, len(y))

    @classmethod
    def on_gold_dev(cls, gold_outcomes: dict[str, list[list[Any]]]) -> Calibration:
        """Fitted on the gold dev relations (label -> [[score, right], ...]) over the best
        sentence score alone."""
        scores = [(float(sc), bool(r)) for v in gold_outcomes.values() for sc, r in v]
        return cls.fit([[_logit(sc)] for sc, _ in scores], [r for _, r in scores], "gold dev")

    @classmethod
    def choose(cls, x: list[list[float]], y: list[bool],
               gold_outcomes: dict[str, list[list[Any]]]) -> Calibration:
        """Fitted on the held-out facts ``x, y`` where there are enough, else on the gold dev
        relations over the best sentence score alone."""
        if cls.enough(y):
            return cls.fit(x, y)
        gold = cls.on_gold_dev(gold_outcomes)
        return gold if gold.fitted else cls(examples=len(y))

    def __call__(self, features: list[float]) -> float:
        if not self.fitted:
            return 1.0 / (1.0 + math.exp(-features[0]))  # the best sentence score
        z = self.bias + sum(w * (f - m) / s for w, f, m, s in
                            zip(self.weights, features, self.mean, self.scale, strict=False))
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    def to_json(self) -> dict[str, Any]:
        return {"fitted": self.fitted, "source": self.source, "examples": self.examples,
                "features": list(FEATURES[:len(self.weights)]) or ["best_score"],
                "weights": [round(w, 4) for w in self.weights], "bias": round(self.bias, 4)}


@dataclass(slots=True)
class Confidence:
    """A fact's confidence, measured by what measured its property's bar.

    A property whose bar came from the gold dev relations (its dump had too few held-out facts)
    has its facts scored by the calibration fitted on those relations; every other property by
    ``main`` (:meth:`Calibration.choose`). One scale for the bar and the confidence: on the
    797 real English pages, the held-out calibration (fitted on 94 facts whose infobox, under
    the closed world, counts "located in the United States" wrong when it names the state)
    gave the facts that gold dev bars asserted a median confidence of 0.0004, where 81% of a
    judged sample of them were right."""

    main: Calibration
    gold: Calibration
    gold_props: frozenset[str] = frozenset()

    def __call__(self, prop: str, features: list[float]) -> float:
        if prop in self.gold_props and self.gold.fitted:
            return self.gold(features[:1])
        return self.main(features)

    @property
    def split(self) -> bool:
        """Whether some properties' confidence comes from another calibration than ``main``."""
        return bool(self.gold_props) and self.gold.fitted and self.main.source != "gold dev"

    def to_json(self) -> dict[str, Any]:
        out = self.main.to_json()
        if self.split:
            out["gold_dev"] = {**self.gold.to_json(), "properties": sorted(self.gold_props)}
        return out


def reliability(conf: Sequence[float], right: Sequence[bool]) -> list[dict[str, Any]]:
    """Mean confidence against observed precision, per band of :data:`BANDS`."""
    out = []
    for lo, hi in zip(BANDS, BANDS[1:], strict=False):
        idx = [i for i, c in enumerate(conf) if lo <= c < hi]
        out.append({"from": lo, "to": min(hi, 1.0), "facts": len(idx),
                    "mean_confidence": round(sum(conf[i] for i in idx) / len(idx), 3)
                    if idx else None,
                    "precision": round(sum(right[i] for i in idx) / len(idx), 3)
                    if idx else None})
    return out


@dataclass(slots=True)
class Gate:
    """A property's bar: its facts are asserted from ``threshold`` on (None: never).

    ``source`` says what measured it: ``held-out`` (this dump's held-out infobox facts; the
    threshold is on the fact's calibrated confidence) or ``gold dev`` (the relations the
    reader read in the gold dev sentences it was not trained on, for a property the dump has
    too few held-out facts of; the threshold is on the fact's best sentence score)."""

    prop: str
    scored: int  # facts of the property that could be judged
    threshold: float | None
    precision: float | None  # of the scored facts at or above the threshold
    above: int = 0
    why: str = ""
    source: str = "held-out"

    def passes(self, confidence: float, best_score: float) -> bool:
        """Whether a fact of this confidence and best sentence score clears the bar."""
        if self.threshold is None:
            return False
        return (confidence if self.source == "held-out" else best_score) >= self.threshold


def why_not_asserted(gate: Gate | None, target: float, confidence: float, best_score: float,
                     types_known: tuple[str, str]) -> str | None:
    """Why a fact that its types do not refuse stays a candidate (None: it is asserted).

    Above a zero ``target``, a fact needs its property's bar cleared, and both its ends'
    types known (from the graph, their mentions or their titles): a fact whose subject or
    object is of no known kind cannot be checked against the property's domain and range."""
    if target <= 0:
        return None
    if gate is None:
        return "nothing to estimate this property's precision on"
    if gate.threshold is None:
        return gate.why
    if not gate.passes(confidence, best_score):
        return f"below this property's bar ({gate.threshold:.2f}, {gate.source})"
    unknown = [end for end, how in zip(("subject", "object"), types_known, strict=True)
               if how == "none"]
    if unknown:
        return f"its {' and '.join(unknown)}'s type is unknown, so its types cannot be checked"
    return None


def choose_gates(scored: Sequence[tuple[str, float, bool]], target: float,
                 props: Iterable[str]) -> dict[str, Gate]:
    """Each property's threshold: the lowest confidence from which its scored held-out facts
    are right at least ``target`` of the time (at least :data:`MIN_ABOVE` of them), given
    (property, confidence, right) of every scored fact. ``target`` 0 asserts everything."""
    by: dict[str, list[tuple[float, bool]]] = {}
    for prop, conf, is_right in scored:
        by.setdefault(prop, []).append((conf, is_right))
    gates: dict[str, Gate] = {}
    for prop in sorted(set(props) | set(by)):
        facts = sorted(by.get(prop, []), key=lambda x: -x[0])
        if target <= 0:
            gates[prop] = Gate(prop, len(facts), 0.0, None, len(facts), "no target")
            continue
        if len(facts) < MIN_SCORED:
            gates[prop] = Gate(prop, len(facts), None, None, 0,
                               f"too few held-out facts to estimate ({len(facts)} < "
                               f"{MIN_SCORED})")
            continue
        best: Gate | None = None
        right = 0
        for k, (conf, ok) in enumerate(facts, 1):
            right += ok
            if k >= MIN_ABOVE and right / k >= target and (k == len(facts) or
                                                           facts[k][0] < conf):
                best = Gate(prop, len(facts), conf, round(right / k, 3), k, "")
        gates[prop] = best or Gate(prop, len(facts), None,
                                   round(sum(ok for _, ok in facts) / len(facts), 3), 0,
                                   f"held-out precision never reaches {target:g}")
    return gates


def combine_gates(held_out: dict[str, Gate], gold: dict[str, Gate]) -> dict[str, Gate]:
    """Each property's bar from the dump's held-out facts where there are enough of them
    (:data:`MIN_SCORED`), else from the gold dev relations where there are enough of those."""
    out: dict[str, Gate] = {}
    for prop in set(held_out) | set(gold):
        h, g = held_out.get(prop), gold.get(prop)
        if h is not None and h.scored >= MIN_SCORED:
            out[prop] = h
        elif g is not None and g.scored >= MIN_SCORED:
            g.source = "gold dev"
            out[prop] = g
        else:
            out[prop] = h or g  # type: ignore[assignment]
            if out[prop].threshold is None:
                out[prop].why = (f"too few held-out facts ({h.scored if h else 0}) and gold dev "
                                 f"relations ({g.scored if g else 0}) to estimate its "
                                 f"precision (fewer than {MIN_SCORED})")
    return out


def gold_gates(outcomes: dict[str, list[list[Any]]], target: float) -> dict[str, Gate]:
    """Each property's bar from the reader's relations in the gold dev sentences
    (``gold_dev_relations`` of its ``kgx.json``: label -> [[score, right], ...])."""
    return choose_gates([(p, float(s), bool(r)) for p, v in outcomes.items() for s, r in v],
                        target, outcomes)


def decide_bars(judged: Sequence[tuple[str, list[float], bool]], props: Iterable[str],
                gold_outcomes: dict[str, list[list[Any]]], target: float,
                typed: Callable[[str], bool], no_gold_bars: str | None = None
                ) -> tuple[Confidence, dict[str, Gate]]:
    """The confidence and each property's bar, from the judged held-out facts ((property,
    features, right)), the properties read and the gold dev relations. A property the
    ontology gives no domain and range (``typed`` False: an unaligned Wikidata id) asserts
    nothing: its types cannot be checked. ``no_gold_bars``: why the gold dev relations may set
    no bar (they were read in another language than the wiki's): only held-out facts do."""
    calib = Calibration.choose([x for _, x, _ in judged], [y for *_, y in judged],
                               gold_outcomes)
    gates = combine_gates(choose_gates([(p, calib(x), y) for p, x, y in judged], target,
                                       props),
                          {} if no_gold_bars else gold_gates(gold_outcomes, target))
    if target > 0:
        for p, g in gates.items():
            if not typed(p):
                gates[p] = Gate(p, g.scored, None, g.precision, 0, "the ontology gives it no "
                                "domain and range, so its types cannot be checked", g.source)
            elif no_gold_bars and g.threshold is None and g.scored < MIN_SCORED:
                g.why = (f"too few held-out facts ({g.scored}) to estimate its precision "
                         f"(fewer than {MIN_SCORED}); {no_gold_bars}")
        for p in gold_outcomes if no_gold_bars else ():
            gates.setdefault(p, Gate(p, 0, None, None, 0, "no held-out facts to estimate its "
                                     f"precision; {no_gold_bars}"))
    gold_props = frozenset(p for p, g in gates.items() if g.source == "gold dev")
    gold = calib if calib.source == "gold dev" else Calibration.on_gold_dev(gold_outcomes)
    return Confidence(calib, gold, gold_props), gates


def precision_at(conf: Sequence[float], right: Sequence[bool],
                 ns: Sequence[int] = (10, 20, 50, 100, 200)) -> dict[str, float]:
    """Precision of the ``n`` most confident facts, for each ``n`` there are enough for."""
    order = sorted(range(len(conf)), key=lambda i: -conf[i])
    return {str(n): round(sum(right[i] for i in order[:n]) / n, 3) for n in ns
            if n <= len(order)}


def fold_of(subject: str) -> int:
    """Which of two folds a held-out subject falls in (cross-fitting)."""
    return int(hashlib.blake2b(subject.encode(), digest_size=1).hexdigest(), 16) % 2
