"""Titles and IRIs: MediaWiki title normalisation driven by a dump's siteinfo.

Takes a :class:`~kgx.records.SiteInfo`; gives normalised titles, namespace lookups, entity IRIs
and source-page URLs. Every stage that names a page goes through :class:`Site`, so a title is
spelled one way everywhere.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from kgx.records import Namespace, SiteInfo

# Canonical English names MediaWiki accepts on every wiki, and the usual aliases.
_CANONICAL = {
    "media": -2, "special": -1, "talk": 1, "user": 2, "user talk": 3, "project": 4,
    "project talk": 5, "file": 6, "image": 6, "file talk": 7, "image talk": 7, "mediawiki": 8,
    "mediawiki talk": 9, "template": 10, "template talk": 11, "help": 12, "help talk": 13,
    "category": 14, "category talk": 15, "wp": 4, "module": 828, "portal": 100, "draft": 118,
}
# Namespace aliases of MediaWiki's language files that a dump's siteinfo does not list (it
# lists each namespace's one local name): [[画像:X.jpg]] on a Japanese wiki is a file, not an
# article named "画像:X.jpg". By the wiki's language; a name the siteinfo gives another
# namespace keeps it.
_LANGUAGE_ALIASES: dict[str, dict[str, int]] = {
    "ja": {"画像": 6, "ファイル": 6, "カテゴリ": 14, "分類": 14, "テンプレート": 10},
    "zh": {"图像": 6, "圖像": 6, "文件": 6, "檔案": 6, "分类": 14, "分類": 14, "模板": 10,
           "样板": 10, "模版": 10},
    "ko": {"그림": 6, "파일": 6, "분류": 14, "틀": 10},
    "de": {"bild": 6, "datei": 6, "kategorie": 14, "vorlage": 10},
    "fr": {"image": 6, "fichier": 6, "catégorie": 14, "modèle": 10},
    "es": {"imagen": 6, "archivo": 6, "categoría": 14, "plantilla": 10},
    "it": {"immagine": 6, "categoria": 14},
    "pt": {"imagem": 6, "ficheiro": 6, "arquivo": 6, "categoria": 14, "predefinição": 10},
    "nl": {"afbeelding": 6, "bestand": 6, "categorie": 14, "sjabloon": 10},
    "pl": {"grafika": 6, "plik": 6, "kategoria": 14, "szablon": 10},
    "ru": {"изображение": 6, "файл": 6, "категория": 14, "шаблон": 10},
    "uk": {"зображення": 6, "файл": 6, "категорія": 14, "шаблон": 10},
    "sv": {"bild": 6, "fil": 6, "kategori": 14, "mall": 10},
    "bg": {"картинка": 6, "файл": 6, "категория": 14, "шаблон": 10},
}
# Interwiki prefixes common to Wikimedia wikis; language codes are matched by shape.
_INTERWIKI = {
    "wikt", "wiktionary", "commons", "c", "s", "wikisource", "q", "wikiquote", "n", "wikinews",
    "b", "wikibooks", "v", "wikiversity", "voy", "wikivoyage", "meta", "m", "species", "d",
    "wikidata", "mw", "mediawikiwiki", "phab", "w", "wikipedia", "foundation", "wmf", "outreach",
    "incubator", "doi", "google", "imdbname", "imdbtitle",
}
# Characters MediaWiki never allows in a title ($wgLegalTitleChars leaves them out).
_ILLEGAL_TITLE = re.compile(r"[<>\[\]{}|\x00-\x1f\x7f]")
_LANGCODE = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]{2,8})*\Z")
_SPACES = re.compile(r"[\s_\u00a0\u200e\u200f]+")
# Characters that may not stand raw in an IRI path (RFC 3987 ``ipchar``), plus '?' and '#',
# which would end the path: ASCII controls, space and ``"%<>[\\]^`{|}``, DEL and the C1 controls,
# surrogates, private use (U+E000-F8FF, planes 15-16), the noncharacters (U+FDD0-FDEF,
# U+FFF0-FFFF, the last two code points of every plane) and U+E0000-E0FFF. This is exactly the
# set Oxigraph refuses in an IRI (every code point was tried; tests/test_fuzz.py keeps checking).
_IRI_FORBIDDEN = re.compile(
    "[\x00-\x20\"#%<>?\\[\\\\\\]^`{|}\x7f-\x9f\ud800-\udfff\ue000-\uf8ff\ufdd0-\ufdef\ufff0-\uffff"
    + "".join(f"\\U{p:04x}fffe-\\U{p:04x}ffff" for p in range(1, 14))
    + "\\U000dfffe-\\U000e0fff\\U000efffe-\\U0010ffff]")
# The URL of a page on the wiki: MediaWiki also percent-encodes '&' and '+' there.
_URL_FORBIDDEN = re.compile(_IRI_FORBIDDEN.pattern[:-1] + "&+]")


def _percent(m: re.Match[str]) -> str:
    c = m.group()
    if "\ud800" <= c <= "\udfff":
        c = "\ufffd"  # a lone surrogate (undecodable input) has no UTF-8 form
    return "".join(f"%{b:02X}" for b in c.encode("utf-8"))


KGX_BASE = "https://kgx.dev/"


def default_namespace(site: SiteInfo) -> str:
    """The IRI namespace kgx uses for a wiki unless told otherwise: ``https://kgx.dev/{db}/``."""
    db = site.dbname or _host_label(site.base) or "wiki"
    return f"{KGX_BASE}{db}/"


def page_url_prefix(base: str) -> str:
    """Where a wiki's page URLs begin, from its main page's URL (``base``)."""
    return base.rsplit("/", 1)[0] + "/" if base else "https://example.org/wiki/"


def _host_label(base: str) -> str:
    host = urlsplit(base).hostname or ""
    return host.replace(".", "-")


def iri_escape(text: str) -> str:
    """Percent-encode what may not stand raw in an IRI path (RFC 3987); other unicode stays.

    >>> iri_escape("Foo bar?#%")
    'Foo%20bar%3F%23%25'
    >>> iri_escape("Zürich\ufffd\x85")
    'Zürich%EF%BF%BD%C2%85'
    """
    return _IRI_FORBIDDEN.sub(_percent, text)


def check_namespace(namespace: str) -> str:
    """A namespace IRI as given by a user, checked.

    Raises:
        ValueError: It is not an absolute http(s) IRI, or holds a character an IRI may not.
    """
    m = _IRI_FORBIDDEN.search(namespace.replace("#", "").replace("%", ""))
    if not re.match(r"https?://[^/]", namespace) or m:
        bad = f" (character {m.group()!r} at {m.start()})" if m else ""
        raise ValueError(f"namespace {namespace!r} is not an absolute http(s) IRI{bad}; "
                         "expected e.g. https://example.org/wiki/")
    return namespace


# Link targets parse() remembers (emptied when full, so its memory stays bounded).
PARSE_MEMO = 1 << 16
_MISSING = object()


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
        base = check_namespace(namespace) if namespace else default_namespace(info)
        if not base.endswith(("/", "#")):
            base += "/"
        self.base = base
        self.resource = base + "resource/"
        self.property = base + "property/"
        self.graph = base + "graph/"
        self.lang = info.lang or "en"
        self._ns_by_name: dict[str, Namespace] = {}
        self._ns_by_key: dict[int, Namespace] = {}
        self._parsed: dict[str, ParsedTitle | None] = {}  # parse's memo
        for ns in info.namespaces:
            self._ns_by_key[ns.key] = ns
            if ns.name:
                self._ns_by_name[ns.name.lower()] = ns
        local = _LANGUAGE_ALIASES.get(self.lang.split("-")[0], {})
        for name, key in (*_CANONICAL.items(), *local.items()):
            if name not in self._ns_by_name and key in self._ns_by_key:
                self._ns_by_name[name] = self._ns_by_key[key]
            elif name not in self._ns_by_name and not info.namespaces:
                self._ns_by_name[name] = Namespace(key, name.title())
        if 0 not in self._ns_by_key:
            self._ns_by_key[0] = Namespace(0, "", info.case)
        self.page_url_prefix = page_url_prefix(info.base)

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

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_parsed"] = {}  # a worker gets the site, not this process's memo
        return state

    def parse(self, raw: str) -> ParsedTitle | None:
        """:meth:`parse_uncached`, remembered for the last :data:`PARSE_MEMO` distinct
        targets or so (link targets repeat: a page links the same few thousand titles
        that every other page links)."""
        if raw in self._parsed:
            return self._parsed[raw]
        parsed = self.parse_uncached(raw)
        if len(self._parsed) >= PARSE_MEMO:
            self._parsed.clear()
        self._parsed[raw] = parsed
        return parsed

    def parse_uncached(self, raw: str) -> ParsedTitle | None:
        """Normalise a link target or title as MediaWiki does.

        Decodes entities and percent-escapes, folds underscores and runs of spaces, drops the
        fragment, resolves the namespace prefix (case-insensitively, with canonical aliases)
        and applies the namespace's case rule.

        Returns:
            The parsed title, or ``None`` for an empty target, a same-page fragment, or a
            title with a character MediaWiki forbids (``<>[]{}|``, ASCII controls, DEL).
        """
        t = raw
        if "&" in t:
            t = html.unescape(t)
        if "%" in t:
            t = unquote(t)
        t = t.split("#", 1)[0]
        if _ILLEGAL_TITLE.search(t):
            return None  # [[a<b]], [[foo[[bar]]]]: MediaWiki makes no link of these either
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
        return self.page_url_prefix + _URL_FORBIDDEN.sub(_percent, title.replace(" ", "_"))
