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
XML_BASE = "{http://www.w3.org/XML/1998/namespace}base"
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
_ACTIVE = re.compile(
    r"<\s*/?\s*(script|style|object|embed|applet|iframe|frame|noscript|template|form|math|svg)\b|CDATA", re.I
)
_C1 = re.compile("[\x80-\x9f]")
_DECLARED = re.compile(rb"""^\s*<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


@dataclass(frozen=True)
class Entry:
    """What `feeds.parse` reads of an entry, from either parser."""

    title: str
    guid: str
    link: str
    body: str
    published: float | None


@dataclass(frozen=True)
class Channel:
    title: str
    link: str
    entries: list[Entry]
    #: RSS <ttl>: minutes the feed may be cached ("" when absent).
    ttl: str = ""


class _Unsure(Exception):
    """Something feedparser might read differently: leave the document to it."""


def read(document: bytes, charset: str | None) -> Channel | None:
    """The document's channel and entries, or None when it is not for the fast path."""
    if not _same_encoding(document, charset):
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


def _one(parent: ET.Element, tag: str) -> ET.Element | None:
    found = parent.findall(tag)
    if len(found) > 1:
        raise _Unsure(f"{tag} given twice")
    return found[0] if found else None


def _date(*candidates: ET.Element | None) -> float | None:
    for element in candidates:
        if element is not None and (value := _text(element).strip()):
            parsed = _parse_date(value)
            if parsed:
                return float(calendar.timegm(parsed))
    return None


def _no_base(root: ET.Element) -> None:
    if any(XML_BASE in e.attrib for e in root.iter()):
        raise _Unsure("xml:base")


def _known(element: ET.Element, allowed: frozenset[str], nested: frozenset[str] = frozenset()) -> None:
    for child in element:
        if child.tag == ATOM + "link" and child.get("rel") not in (None, "alternate"):
            continue  # a WordPress feed's rel="self" link, a hub: feedparser keeps them apart from the link
        if child.tag not in allowed or (len(child) and child.tag not in nested):
            raise _Unsure(f"<{child.tag}>")


def _plain(value: str) -> str:
    """`value`, if feedparser's sanitiser and its cp1252 repairs would leave it as our cleaning reads it."""
    if _ACTIVE.search(value) or _C1.search(value):
        raise _Unsure("active markup or cp1252 characters")
    return value


def _rss(root: ET.Element) -> Channel:
    _no_base(root)
    channel = root.find("channel")
    if channel is None:
        raise _Unsure("no channel")
    _known(channel, RSS_CHANNEL, nested=frozenset(("image", "textInput", "cloud", "skipHours", "skipDays", "item")))
    entries = []
    for item in channel.findall("item"):
        _known(item, RSS_ITEM)
        guid_el = _one(item, "guid")
        guid = _text(guid_el).strip()
        link = _text(_one(item, "link")).strip()
        if not link and guid_el is not None and guid and guid_el.get("isPermaLink", "true") == "true":
            link = guid  # feedparser's reading: a guid that is a permalink is the link
        summary = _text(_one(item, "description"))
        content = _text(_one(item, CONTENT_ENCODED))
        published = _date(_one(item, "pubDate"))
        updated = _date(_one(item, DC_DATE), _one(item, ATOM + "updated"))
        entries.append(
            Entry(
                title=_plain(_text(_one(item, "title"))),
                guid=guid,
                link=link,
                body=_plain(content if len(content) > len(summary) else summary),
                published=published if published is not None else updated,
            )
        )
    title, link, ttl = (_text(_one(channel, tag)) for tag in ("title", "link", "ttl"))
    return Channel(title, link.strip(), entries, ttl)


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
    _no_base(root)
    _known(root, ATOM_FEED, nested=frozenset((ATOM + "entry", ATOM + "author", ATOM + "contributor")))
    entries = []
    for entry in root.findall(ATOM + "entry"):
        _known(entry, ATOM_ENTRY, nested=frozenset((ATOM + "author", ATOM + "contributor")))
        summary = _atom_text(_one(entry, ATOM + "summary"))
        content = _atom_text(_one(entry, ATOM + "content"))
        entries.append(
            Entry(
                title=_plain(_atom_text(_one(entry, ATOM + "title"))),
                guid=_text(_one(entry, ATOM + "id")).strip(),
                link=_atom_link(entry),
                body=_plain(content if len(content) > len(summary) else summary),
                published=_date(_one(entry, ATOM + "published")) or _date(_one(entry, ATOM + "updated")),
            )
        )
    return Channel(_atom_text(_one(root, ATOM + "title")), _atom_link(root), entries)
