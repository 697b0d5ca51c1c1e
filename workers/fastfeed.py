"""A fast path for plain, well-formed RSS 2.0 / 0.9x and Atom 1.0 documents.

feedparser reads a feed through Python SAX handlers, sanitises every piece of
HTML and resolves relative links: about 0.35 ms per entry, the largest cost of
a worker. For the common document, ElementTree (expat, in C) finds the same
few values `feeds.parse` uses — channel title and link; per entry its title,
guid, link, fullest body and date — in a tenth of that. Anything this reader
is not sure feedparser would read the same way (not well-formed, RSS 1.0,
xml:base, XHTML content, out-of-line content, an encoding the HTTP header and
the document disagree on) makes it return None, and the caller uses
feedparser. tests/test_fastfeed.py checks the two give the same articles on
every feed of the example, real-world and feedparser corpora the fast path takes.
"""

from __future__ import annotations

import calendar
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from feedparser.datetimes import _parse_date

ATOM = "{http://www.w3.org/2005/Atom}"
CONTENT_ENCODED = "{http://purl.org/rss/1.0/modules/content/}encoded"
DC_DATE = "{http://purl.org/dc/elements/1.1/}date"
RSS_VERSIONS = frozenset(("2.0", "0.91", "0.92", "0.93", "0.94"))
DC, SY, SLASH, WFW = (
    "{http://purl.org/dc/elements/1.1/}",
    "{http://purl.org/rss/1.0/modules/syndication/}",
    "{http://purl.org/rss/1.0/modules/slash/}",
    "{http://wellformedweb.org/CommentAPI/}",
)
#: Elements whose meaning for feedparser is known here; any other (itunes:summary, media:description, ...)
#: may become an entry's text or link in feedparser, so a document carrying one goes to feedparser.
RSS_CHANNEL = frozenset(
    [
        "title",
        "link",
        "description",
        "language",
        "copyright",
        "managingEditor",
        "webMaster",
        "pubDate",
        "lastBuildDate",
        "category",
        "generator",
        "docs",
        "cloud",
        "ttl",
        "image",
        "rating",
        "textInput",
        "skipHours",
        "skipDays",
        "item",
    ]
) | {SY + "updatePeriod", SY + "updateFrequency", SY + "updateBase", DC + "language", DC + "rights"}
RSS_ITEM = frozenset(
    ["title", "link", "guid", "description", "pubDate", "category", "comments", "author", "enclosure", "source"]
) | {
    CONTENT_ENCODED,
    DC_DATE,
    DC + "creator",
    SLASH + "comments",
    WFW + "commentRss",
}
ATOM_FEED = frozenset(
    ATOM + tag
    for tag in [
        "id",
        "title",
        "subtitle",
        "link",
        "updated",
        "author",
        "contributor",
        "category",
        "generator",
        "icon",
        "logo",
        "rights",
        "entry",
    ]
)
#: Children that may repeat (feedparser keeps them as lists; none of them is read here).
REPEATABLE = frozenset(
    (
        "item",
        "category",
        "enclosure",
        ATOM + "entry",
        ATOM + "category",
        ATOM + "author",
        ATOM + "contributor",
        ATOM + "link",
    )
)
ATOM_ENTRY = frozenset(
    ATOM + tag
    for tag in [
        "id",
        "title",
        "link",
        "summary",
        "content",
        "published",
        "updated",
        "author",
        "contributor",
        "category",
        "rights",
    ]
)
#: Markup feedparser's sanitiser rewrites (it keeps a script's text, drops an object's), and C1 control
#: characters it reads as cp1252: such documents go to feedparser.
#: Characters feedparser repairs as cp1252; a tag opening (lower-cased text) and the elements its sanitiser drops.
_CP1252 = re.compile(r"[\x80-\x9f]")
_TAG = re.compile(r"<\s*/?\s*([a-z]+)")
_ACTIVE = frozenset(
    ["script", "style", "object", "embed", "applet", "iframe", "frame", "noscript", "template", "form", "math", "svg"]
)
_DECLARED = re.compile(rb"""^\s*<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


@dataclass(frozen=True)
class Entry:
    """What `feeds.parse` reads of an entry, from either parser."""

    title: str
    guid: str
    link: str
    body: str
    #: Epoch seconds, when the reader already parsed it (feedparser); else `dates` are parsed when needed.
    published: float | None = None
    #: The entry's date strings, most authoritative first (published, then updated).
    dates: tuple[str, ...] = ()


@dataclass(frozen=True)
class Channel:
    title: str
    link: str
    entries: list[Entry]
    #: RSS <ttl>: minutes the feed may be cached ("" when absent).
    ttl: str = ""
    #: Read by the fast path: the entries feedparser would read differently are found by `plain`.
    fast: bool = False


class _Unsure(Exception):
    """Something feedparser might read differently: leave the document to it."""


def read(document: bytes, charset: str | None) -> Channel | None:
    """The document's channel and entries, or None when it is not for the fast path (the titles and bodies
    are not checked here: see `plain`)."""
    if not _same_encoding(document, charset) or b"xml:base" in document:
        return None
    try:
        root = ET.fromstring(document)
    except (ET.ParseError, ValueError):
        return None
    try:
        if root.tag == "rss" and root.get("version") in RSS_VERSIONS:
            return _rss(root)
        if root.tag == ATOM + "feed":
            return _atom(root)
    except _Unsure:
        return None
    return None


def _same_encoding(document: bytes, charset: str | None) -> bool:
    """True when the document's own declaration and the HTTP charset (if any) agree, and it is UTF-8 or ASCII based."""
    if document.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00", b"\xef\xbb\xbf")):
        return False
    found = _DECLARED.match(document[:200])
    declared = found.group(1).decode().lower() if found else "utf-8"
    if declared.replace("_", "-") not in ("utf-8", "utf8", "us-ascii", "ascii"):
        return False
    return charset is None or charset.lower().replace("_", "-") in ("utf-8", "utf8", "us-ascii", "ascii")


def _text(element: ET.Element | None) -> str:
    if element is None:
        return ""
    if len(element):
        raise _Unsure("markup inside a text element")
    return element.text or ""


def timestamp(entry: Entry) -> float | None:
    """An entry's date, epoch seconds: parsed by feedparser's own date parser, and only for the entries kept."""
    if entry.published is not None:
        return entry.published
    for value in entry.dates:
        if parsed := _parse_date(value):
            return float(calendar.timegm(parsed))
    return None


def _fields(
    element: ET.Element, allowed: frozenset[str], nested: frozenset[str] = frozenset()
) -> dict[str, ET.Element]:
    """The element's children by tag, in one pass; an unknown child, or one read here given twice, is unsure."""
    out: dict[str, ET.Element] = {}
    for child in element:
        tag = child.tag
        if tag == ATOM + "link" and child.get("rel") not in (None, "alternate"):
            continue  # a WordPress feed's rel="self" link, a hub: feedparser keeps them apart from the link
        if tag not in allowed or (len(child) and tag not in nested):
            raise _Unsure(f"<{tag}>")
        if tag in REPEATABLE:
            continue
        if tag in out:
            raise _Unsure(f"<{tag}> given twice")
        out[tag] = child
    return out


def _plain(value: str) -> bool:
    """Whether feedparser's sanitiser and its cp1252 repairs would leave `value` as our cleaning reads it."""
    if not value.isascii() and _CP1252.search(value):
        return False
    low = value.lower()  # one lower-cased copy and two plain scans: a third of one case-blind regex's time
    return "cdata" not in low and _ACTIVE.isdisjoint(_TAG.findall(low))


def plain(entry: Entry) -> bool:
    """Whether feedparser would read this fast-path entry's title and body as they are.

    Asked only of the entries a poll keeps: one dropped as already stored needs no answer, since its
    stored source hash came from values some reader accepted (see `feeds.parse`).
    """
    return _plain(entry.title) and _plain(entry.body)


def _rss(root: ET.Element) -> Channel:
    channel = root.find("channel")
    if channel is None:
        raise _Unsure("no channel")
    head = _fields(
        channel, RSS_CHANNEL, nested=frozenset(("image", "textInput", "cloud", "skipHours", "skipDays", "item"))
    )
    entries = []
    for item in channel.iter("item"):
        f = _fields(item, RSS_ITEM)
        guid_el = f.get("guid")
        guid = _text(guid_el).strip()
        link = _text(f.get("link")).strip()
        if not link and guid_el is not None and guid and guid_el.get("isPermaLink", "true") == "true":
            link = guid  # feedparser's reading: a guid that is a permalink is the link
        summary, content = _text(f.get("description")), _text(f.get(CONTENT_ENCODED))
        dates = (_text(f.get("pubDate")).strip(), _text(f.get(DC_DATE)).strip())
        entries.append(
            Entry(
                title=_text(f.get("title")),
                guid=guid,
                link=link,
                body=content if len(content) > len(summary) else summary,
                dates=tuple(d for d in dates if d),
            )
        )
    title, link, ttl = (_text(head.get(tag)) for tag in ("title", "link", "ttl"))
    return Channel(title, link.strip(), entries, ttl, fast=True)


def _atom_link(parent: ET.Element) -> str:
    """The alternate link; without one feedparser falls back on other values, so that is left to it."""
    for link in parent.findall(ATOM + "link"):
        if link.get("rel", "alternate") == "alternate" and (href := (link.get("href") or "").strip()):
            return href
    raise _Unsure("no alternate link")


def _atom_text(element: ET.Element | None) -> str:
    if element is None:
        return ""
    if element.get("type", "text") not in ("text", "html", "text/plain", "text/html") or element.get("src"):
        raise _Unsure("xhtml or out-of-line content")
    return _text(element)


def _atom(root: ET.Element) -> Channel:
    head = _fields(root, ATOM_FEED, nested=frozenset((ATOM + "entry", ATOM + "author", ATOM + "contributor")))
    entries = []
    for entry in root.iter(ATOM + "entry"):
        f = _fields(entry, ATOM_ENTRY, nested=frozenset((ATOM + "author", ATOM + "contributor")))
        summary, content = _atom_text(f.get(ATOM + "summary")), _atom_text(f.get(ATOM + "content"))
        dates = (_text(f.get(ATOM + "published")).strip(), _text(f.get(ATOM + "updated")).strip())
        entries.append(
            Entry(
                title=_atom_text(f.get(ATOM + "title")),
                guid=_text(f.get(ATOM + "id")).strip(),
                link=_atom_link(entry),
                body=content if len(content) > len(summary) else summary,
                dates=tuple(d for d in dates if d),
            )
        )
    return Channel(_atom_text(head.get(ATOM + "title")), _atom_link(root), entries, fast=True)
