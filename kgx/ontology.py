"""The kgx ontology and the infobox mappings onto it.

Takes ``ontologies/kgx.ttl`` and ``ontologies/mappings/infoboxes.yaml``; gives an
:class:`Ontology` (classes, properties with their ranges and Wikidata ids) and
:class:`Mappings` (infobox template -> class, parameter -> property, category typing rules).
Both are plain picklable values so worker processes get them once.
"""

from __future__ import annotations

import os
import re
import site
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any


def _ontology_dir() -> Path:
    """``$KGX_ONTOLOGY_DIR``, else the checkout's ``ontologies/``, else the installed copy."""
    env = os.environ.get("KGX_ONTOLOGY_DIR")
    candidates = [Path(env)] if env else []
    candidates += [Path(__file__).resolve().parent.parent / "ontologies",
                   Path(sys.prefix) / "share" / "kgx" / "ontologies",
                   # pip install --user puts the wheel's data files under the user base
                   Path(site.getuserbase()) / "share" / "kgx" / "ontologies"]
    for c in candidates:
        if (c / "kgx.ttl").exists():
            return c
    raise FileNotFoundError("kgx's ontology (kgx.ttl) is not found in "
                            + ", ".join(str(c) for c in candidates)
                            + "; set KGX_ONTOLOGY_DIR to the directory that holds it")


ONTOLOGY_DIR = _ontology_dir()
KGX = "https://kgx.dev/ontology/"
ONTOLOGY_GRAPH = "https://kgx.dev/ontology/"
WDT = "http://www.wikidata.org/prop/direct/"
WD = "http://www.wikidata.org/entity/"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
RDFS = "http://www.w3.org/2000/01/rdf-schema#"
OWL = "http://www.w3.org/2002/07/owl#"
XSD = "http://www.w3.org/2001/XMLSchema#"
SKOS = "http://www.w3.org/2004/02/skos/core#"
FOAF = "http://xmlns.com/foaf/0.1/"
DCT = "http://purl.org/dc/terms/"
PROV = "http://www.w3.org/ns/prov#"

RDF_TYPE = RDF + "type"
RDFS_LABEL = RDFS + "label"
SKOS_BROADER = SKOS + "broader"
FOAF_PRIMARY_TOPIC_OF = FOAF + "isPrimaryTopicOf"

_NAME_FOLD = re.compile(r"[\s_]+")
_WIKIDATA_PROPERTY = re.compile(r"P[1-9][0-9]*")


def is_wikidata_property(label: str) -> bool:
    """Whether a relation label is a bare Wikidata property id (``P361``): a gold set taught
    it and kgx's ontology aligns no property to it."""
    return _WIKIDATA_PROPERTY.fullmatch(label) is not None


def relation_iri(label: str) -> str:
    """The predicate for a model's relation label: kgx's property, or Wikidata's own
    (``wdt:P361``) for an id the ontology does not align."""
    return (WDT if is_wikidata_property(label) else KGX) + label


def fold_name(name: str) -> str:
    """Fold a template or parameter name for matching: lower case, spaces and '_' as '_'."""
    return _NAME_FOLD.sub("_", name.strip().lower())


class MappingError(ValueError):
    """A mapping file that names something the ontology lacks, or is malformed."""


@dataclass(frozen=True, slots=True)
class PropertyInfo:
    """An ontology property: IRI, object or datatype property, range, Wikidata id."""

    iri: str
    object: bool
    range: str | None = None
    wikidata: str | None = None
    label: str = ""
    domain: str | None = None


@dataclass(frozen=True, slots=True)
class Ontology:
    """Classes and properties of ``kgx.ttl`` with what extraction needs to know of them."""

    path: str
    version: str
    properties: dict[str, PropertyInfo]
    classes: dict[str, str]  # local name -> IRI
    superclasses: dict[str, tuple[str, ...]]  # class IRI -> direct superclass IRIs
    class_wikidata: dict[str, str]  # class IRI -> Wikidata IRI

    def prop(self, local: str) -> PropertyInfo:
        return self.properties[local]

    def ancestors(self, cls: str) -> list[str]:
        """``cls`` and all its superclasses, nearest first."""
        out, todo = [], [cls]
        while todo:
            c = todo.pop(0)
            if c not in out:
                out.append(c)
                todo.extend(self.superclasses.get(c, ()))
        return out


@lru_cache(maxsize=4)
def load_ontology(path: str | None = None) -> Ontology:
    """Read the ontology Turtle file (default: the one shipped with kgx)."""
    import pyoxigraph as ox

    p = Path(path) if path else ONTOLOGY_DIR / "kgx.ttl"
    with open(p, "rb") as f:
        triples = list(ox.parse(f, format=ox.RdfFormat.TURTLE, base_iri=KGX))
    by_subject: dict[str, dict[str, list[str]]] = {}
    for t in triples:
        s = t.subject.value
        by_subject.setdefault(s, {}).setdefault(t.predicate.value, []).append(t.object.value)
    props: dict[str, PropertyInfo] = {}
    classes: dict[str, str] = {}
    supers: dict[str, tuple[str, ...]] = {}
    class_wd: dict[str, str] = {}
    version = "0"
    for s, po in by_subject.items():
        types = po.get(RDF_TYPE, [])
        if OWL + "Ontology" in types:
            version = (po.get(OWL + "versionInfo") or ["0"])[0]
        if not s.startswith(KGX):
            continue
        local = s[len(KGX):]
        label = (po.get(RDFS_LABEL) or [""])[0]
        if OWL + "Class" in types:
            classes[local] = s
            supers[s] = tuple(po.get(RDFS + "subClassOf", []))
            for eq in po.get(OWL + "equivalentClass", []):
                if eq.startswith(WD):
                    class_wd[s] = eq
        elif OWL + "ObjectProperty" in types or OWL + "DatatypeProperty" in types:
            wd = next((e for e in po.get(OWL + "equivalentProperty", []) if e.startswith(WDT)),
                      None)
            rng = next(iter(po.get(RDFS + "range") or []), None)
            dom = next(iter(po.get(RDFS + "domain") or []), None)
            props[local] = PropertyInfo(s, OWL + "ObjectProperty" in types, rng,
                                        wd[len(WDT):] if wd else None, label, dom)
    return Ontology(str(p), version, props, classes, supers, class_wd)


@dataclass(frozen=True, slots=True)
class Qualified:
    """A parameter whose property its label parameter decides: ``leader_nameN`` is a head of
    state or of government by what ``leader_titleN`` says.

    Attributes:
        label: The label parameter's folded name (its number follows the value's).
        rules: (pattern over the label's text, property local name), the first that matches
            wins; a label no rule matches leaves the value unmapped (a raw property).
        first: Map only the first value a rule matches (a country has one founding date).
        unlabelled: The property of a value whose label parameter is absent (None: unmapped).
    """

    label: str
    rules: tuple[tuple[re.Pattern[str], str], ...]
    first: bool = False
    unlabelled: str | None = None

    def property_for(self, label: str | None) -> str | None:
        if label is None:
            return self.unlabelled
        return next((local for pat, local in self.rules if pat.search(label)), None)


@dataclass(frozen=True, slots=True)
class Family:
    """One infobox family: its class, parameter map (folded names -> property local), and
    the parameters whose property a label parameter decides."""

    name: str
    cls: str | None
    properties: dict[str, str]
    qualified: dict[str, Qualified] = field(default_factory=dict)
    foreign_text: frozenset[str] = frozenset()  # properties whose text is not the wiki's


@dataclass(frozen=True, slots=True)
class Mappings:
    """Infobox and category mappings, resolved against an ontology."""

    ontology: Ontology
    templates: dict[str, Family]  # folded template name -> family
    category_types: dict[str, list[tuple[re.Pattern[str], str]]] = field(default_factory=dict)
    disambiguation_templates: dict[str, frozenset[str]] = field(default_factory=dict)
    disambiguation_categories: dict[str, frozenset[str]] = field(default_factory=dict)
    list_titles: dict[str, re.Pattern[str]] = field(default_factory=dict)
    title_types: dict[str, list[tuple[re.Pattern[str], str]]] = field(default_factory=dict)

    def disambiguation_markers(self, lang: str) -> tuple[frozenset[str], frozenset[str]]:
        """The templates and categories that mark a disambiguation page on a wiki in
        ``lang`` (``zh-yue`` takes ``zh``'s where it has none of its own)."""
        return (_by_language(self.disambiguation_templates, lang, frozenset()),
                _by_language(self.disambiguation_categories, lang, frozenset()))

    def is_list_page(self, lang: str) -> Callable[[str], bool]:
        """Whether a title (spaces, not underscores) is one of a wiki's list pages (``List
        of``, ``Liste der``...): a list is no place, person or organisation, whatever a
        sentence makes of it."""
        pattern = _by_language(self.list_titles, lang, None)
        return (lambda title: False) if pattern is None else \
            (lambda title: pattern.search(title) is not None)

    def title_class(self, lang: str) -> Callable[[str], str | None]:
        """The class a title (spaces, not underscores) names on a wiki in ``lang``, by its
        shape alone (``French language``, ``Lingua francese``: a language), or None. It types
        what the reader links to where the graph cannot: a page the dump lacks."""
        rules = _by_language(self.title_types, lang, [])

        def of(title: str) -> str | None:
            return next((cls for pattern, cls in rules if pattern.search(title)), None)
        return of

    def family(self, template: str) -> Family | None:
        return self.templates.get(fold_name(template))

    def infobox_names(self) -> frozenset[str]:
        """Mapped template names that do not start with 'infobox' (e.g. 'taxobox')."""
        return frozenset(n.replace("_", " ") for n in self.templates if not n.startswith("infobox"))

    def property_for(self, family: Family, param: str) -> str | None:
        key = fold_name(param)
        prop = family.properties.get(key)
        if prop is None:
            stripped = key.rstrip("0123456789").rstrip("_")
            if stripped != key:
                prop = family.properties.get(stripped)
        return prop

    def category_classes(self, lang: str, categories: tuple[str, ...]) -> list[str]:
        out: list[str] = []
        for pattern, cls in self.category_types.get(lang, []):
            if cls not in out and any(pattern.search(c) for c in categories):
                out.append(cls)
        return out


@lru_cache(maxsize=4)
def load_mappings(path: str | None = None, ontology_path: str | None = None) -> Mappings:
    """Read and check the infobox mapping file against the ontology.

    Raises:
        MappingError: The file is malformed or names a class or property the ontology lacks.
    """
    import yaml

    onto = load_ontology(ontology_path)
    p = Path(path) if path else ONTOLOGY_DIR / "mappings" / "infoboxes.yaml"
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise MappingError(f"{p}: cannot read mappings ({exc})") from exc
    fams_raw = data.get("families") if isinstance(data, dict) else None
    if not isinstance(fams_raw, dict):
        raise MappingError(f"{p}: expected a top-level 'families' mapping")

    def resolved(name: str, seen: tuple[str, ...] = ()) -> dict[str, str]:
        spec = fams_raw.get(name)
        if not isinstance(spec, dict):
            raise MappingError(f"{p}: family {name!r} is not defined (known: "
                               f"{', '.join(sorted(fams_raw))})")
        if name in seen:
            raise MappingError(f"{p}: family {name!r} extends itself")
        base = resolved(spec["extends"], seen + (name,)) if spec.get("extends") else {}
        own = {fold_name(k): v for k, v in (spec.get("properties") or {}).items()}
        return {**base, **own}

    def qualified(name: str) -> dict[str, Qualified]:
        spec = fams_raw[name]
        base = qualified(spec["extends"]) if spec.get("extends") else {}
        own: dict[str, Qualified] = {}
        for param, q in (spec.get("qualified") or {}).items():
            if not isinstance(q, dict) or "label" not in q:
                raise MappingError(f"{p}: family {name!r}: qualified.{param} needs a 'label' "
                                   "parameter and 'rules'")
            rules = []
            for rule in q.get("rules") or []:
                if not (isinstance(rule, list) and len(rule) == 2):
                    raise MappingError(f"{p}: family {name!r}: qualified.{param}: a rule is "
                                       f"[pattern, property], not {rule!r}")
                rules.append((re.compile(str(rule[0]), re.I), str(rule[1])))
            for local in [r[1] for r in rules] + ([q["unlabelled"]] if q.get("unlabelled")
                                                  else []):
                if local not in onto.properties:
                    raise MappingError(f"{p}: family {name!r}: qualified.{param} names "
                                       f"unknown property kgx:{local}")
            own[fold_name(param)] = Qualified(fold_name(q["label"]), tuple(rules),
                                              bool(q.get("first")), q.get("unlabelled"))
        return {**base, **own}

    templates: dict[str, Family] = {}
    for name, spec in fams_raw.items():
        props = resolved(name)
        for param, local in props.items():
            if local not in onto.properties:
                raise MappingError(f"{p}: family {name!r} maps {param!r} to unknown property "
                                   f"kgx:{local}; declare it in {onto.path}")
        cls = spec.get("class")
        if cls is not None and cls not in onto.classes:
            raise MappingError(f"{p}: family {name!r} names unknown class kgx:{cls}; known: "
                               f"{', '.join(sorted(onto.classes))}")
        foreign = frozenset(str(x) for x in data.get("foreign_text") or [])
        fam = Family(name, onto.classes[cls] if cls else None, props, qualified(name), foreign)
        for t in spec.get("templates") or []:
            templates[fold_name(t)] = fam
    def class_patterns(key: str, flags: int) -> dict[str, list[tuple[re.Pattern[str], str]]]:
        out: dict[str, list[tuple[re.Pattern[str], str]]] = {}
        for lang, rules in (data.get(key) or {}).items():
            for cls, patterns in rules.items():
                if cls not in onto.classes:
                    raise MappingError(f"{p}: {key}.{lang} names unknown class kgx:{cls}")
                for pat in patterns:
                    out.setdefault(lang, []).append((re.compile(pat, flags), onto.classes[cls]))
        return out

    cats = class_patterns("category_types", re.I)
    dab = {lang: frozenset(str(t).lower() for t in names)
           for lang, names in (data.get("disambiguation_templates") or {}).items()}
    dab_cats = {lang: frozenset(str(c).casefold() for c in names)
                for lang, names in (data.get("disambiguation_categories") or {}).items()}
    lists = {lang: re.compile("|".join(f"(?:{x})" for x in patterns))
             for lang, patterns in (data.get("list_titles") or {}).items() if patterns}
    return Mappings(onto, templates, cats, dab, dab_cats, lists, class_patterns("title_types", 0))


def _by_language(table: dict[str, Any], lang: str, empty: Any) -> Any:
    """A per-language entry: ``lang``'s, else its base language's (``zh-yue`` -> ``zh``)."""
    return table.get(lang) or table.get(lang.split("-")[0]) or empty
