"""Titles and IRIs: MediaWiki title normalisation driven by a dump's siteinfo.

Takes a :class:`~kgx.records.SiteInfo`; gives normalised titles, namespace lookups, entity IRIs
and source-page URLs. Every stage that names a page goes through :class:`Site`, so a title is
spelled one way everywhere.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from kgx.records import Namespace, SiteInfo

# Canonical English names MediaWiki accepts on every wiki, and the usual aliases.
_CANONICAL = {
    "media": -2, "special": -1, "talk": 1, "user": 2, "user talk": 3, "project": 4,
    "project talk": 5, "file": 6, "image": 6, "file talk": 7, "image talk": 7, "mediawiki": 8,
    "mediawiki talk": 9, "template": 10, "template talk": 11, "help": 12, "help talk": 13,
    "category": 14, "category talk": 15, "wp": 4, "module": 828, "portal": 100, "draft": 118,
}
# Interwiki prefixes common to Wikimedia wikis; language codes are matched by shape.
_INTERWIKI = {
    "wikt", "wiktionary", "commons", "c", "s", "wikisource", "q", "wikiquote", "n", "wikinews",
    "b", "wikibooks", "v", "wikiversity", "voy", "wikivoyage", "meta", "m", "species", "d",
    "wikidata", "mw", "mediawikiwiki", "phab", "w", "wikipedia", "foundation", "wmf", "outreach",
    "incubator", "doi", "google", "imdbname", "imdbtitle",
}
_LANGCODE = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]{2,8})*\Z")
_SPACES = re.compile(r"[\s_\u00a0\u200e\u200f]+")
# Characters that may not stand raw in an IRI path segment (RFC 3987), plus '?' and '#'.
_IRI_UNSAFE = {c: f"%{c:02X}" for c in b'<>"{}|\\^`%?# '}
_IRI_UNSAFE.update({c: f"%{c:02X}" for c in range(0x21)})
_IRI_TABLE = str.maketrans({chr(k): v for k, v in _IRI_UNSAFE.items()})
# URL path of an article: like the IRI, but MediaWiki's own percent-encoding of a few more.
_URL_TABLE = str.maketrans({**{chr(k): v for k, v in _IRI_UNSAFE.items()}, "&": "%26", "+": "%2B"})

KGX_BASE = "https://kgx.dev/"


def default_namespace(site: SiteInfo) -> str:
    """The IRI namespace kgx uses for a wiki unless told otherwise: ``https://kgx.dev/{db}/``."""
    db = site.dbname or _host_label(site.base) or "wiki"
    return f"{KGX_BASE}{db}/"


def _host_label(base: str) -> str:
    host = urlsplit(base).hostname or ""
    return host.replace(".", "-")


_IRI_NEEDS_ESCAPE = re.compile(r'[<>"{}|\\^`%?#\x00-\x20]')


def iri_escape(text: str) -> str:
    """Percent-encode what may not stand raw in an IRI path segment (unicode stays)."""
    return text.translate(_IRI_TABLE) if _IRI_NEEDS_ESCAPE.search(text) else text


@dataclass(frozen=True, slots=True)
class ParsedTitle:
    """A link target split into namespace, title and kind."""

    ns: int
    title: str  # full normalised title, namespace prefix included
    interwiki: bool = False
    leading_colon: bool = False


class Site:
    """Title normalisation and IRI minting for one wiki.

    Args:
        info: The dump's siteinfo.
        namespace: IRI namespace for resources, properties and graphs; defaults to
            :func:`default_namespace`.
    """

    def __init__(self, info: SiteInfo, namespace: str | None = None) -> None:
        self.info = info
        base = namespace or default_namespace(info)
        if not base.endswith(("/", "#")):
            base += "/"
        self.base = base
        self.resource = base + "resource/"
        self.property = base + "property/"
        self.graph = base + "graph/"
        self.lang = info.lang or "en"
        self._ns_by_name: dict[str, Namespace] = {}
        self._ns_by_key: dict[int, Namespace] = {}
        for ns in info.namespaces:
            self._ns_by_key[ns.key] = ns
            if ns.name:
                self._ns_by_name[ns.name.lower()] = ns
        for name, key in _CANONICAL.items():
            if name not in self._ns_by_name and key in self._ns_by_key:
                self._ns_by_name[name] = self._ns_by_key[key]
            elif name not in self._ns_by_name and not info.namespaces:
                self._ns_by_name[name] = Namespace(key, name.title())
        if 0 not in self._ns_by_key:
            self._ns_by_key[0] = Namespace(0, "", info.case)
        page_url = info.base.rsplit("/", 1)[0] + "/" if info.base else "https://example.org/wiki/"
        self.page_url_prefix = page_url

    # ---------------------------------------------------------------- titles

    def namespace_name(self, key: int) -> str:
        """The local name of namespace ``key`` ("" for articles)."""
        ns = self._ns_by_key.get(key)
        return ns.name if ns else ""

    def _case(self, text: str, ns: Namespace | None) -> str:
        case = ns.case if ns else self.info.case
        if case == "first-letter" and text:
            return text[0].upper() + text[1:]
        return text

    def parse(self, raw: str) -> ParsedTitle | None:
        """Normalise a link target or title as MediaWiki does.

        Decodes entities and percent-escapes, folds underscores and runs of spaces, drops the
        fragment, resolves the namespace prefix (case-insensitively, with canonical aliases)
        and applies the namespace's case rule.

        Returns:
            The parsed title, or ``None`` for an empty target or a same-page fragment.
        """
        t = raw
        if "&" in t:
            t = html.unescape(t)
        if "%" in t:
            t = unquote(t)
        t = t.split("#", 1)[0]
        t = _SPACES.sub(" ", t).strip()
        colon = t.startswith(":")
        if colon:
            t = t[1:].lstrip()
        if not t:
            return None
        ns_key = 0
        if ":" in t:
            prefix, rest = t.split(":", 1)
            p = prefix.strip().lower()
            ns = self._ns_by_name.get(p)
            if ns is not None and ns.key != 0:
                rest = rest.strip()
                if not rest:
                    return None
                return ParsedTitle(ns.key, f"{ns.name}:{self._case(rest, ns)}", False, colon)
            if p in _INTERWIKI or _LANGCODE.match(p):
                return ParsedTitle(0, t, True, colon)
        return ParsedTitle(ns_key, self._case(t, self._ns_by_key.get(0)), False, colon)

    def normalize(self, raw: str) -> str | None:
        """The normalised title of ``raw``, or ``None`` when it names no page here."""
        p = self.parse(raw)
        return None if p is None or p.interwiki else p.title

    # ---------------------------------------------------------------- IRIs

    def entity_iri(self, title: str) -> str:
        """The IRI of the entity described by page ``title`` (already normalised)."""
        return self.resource + iri_escape(title.replace(" ", "_"))

    def property_iri(self, name: str) -> str:
        """The IRI of a raw (unmapped) infobox parameter."""
        name = _SPACES.sub("_", name.strip())
        return self.property + iri_escape(name)

    def page_url(self, title: str) -> str:
        """The URL of the source page on the wiki."""
        return self.page_url_prefix + title.replace(" ", "_").translate(_URL_TABLE)
