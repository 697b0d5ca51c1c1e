"""Feed documents into articles: feedparser on bytes, then normalisation.

An article's id is a stable hash of its identity, so every worker and every
poll agree on it: the entry's guid scoped to the site, else its canonical
link, else its title and text.
"""

from __future__ import annotations

import calendar
import hashlib
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import feedparser

from feedsift.models.text import html_to_text, recurring_lines, strip_furniture
from feedsift.workers import fastfeed
from feedsift.workers.article import Article
from feedsift.workers.errors import FeedError
from feedsift.workers.fastfeed import Channel, Entry

_TRACKING = re.compile(r"^(utm_\w+|fbclid|gclid|dclid|mc_cid|mc_eid|igshid|_hsenc|_hsmi|ref|ref_src|cmpid|ito)$", re.I)
_ENTITY_DECL = re.compile(rb"<!DOCTYPE[^>\[]*\[[^\]]*<!ENTITY", re.I | re.S)
#: Characters kept of an entry's title, guid and link (its text has its own setting).
MAX_FIELD_CHARS = 2000


@dataclass
class ParsedFeed:
    title: str
    link: str
    articles: list[Article]
    warning: str = ""
    boilerplate: list[str] = field(default_factory=list)
    #: Entries dropped before cleaning: stored before, unchanged since.
    unchanged: int = 0
    #: Minutes the feed says it may be cached (RSS `<ttl>`; 0 when it does not say).
    ttl: int = 0


def feed_id(locator: str) -> str:
    """Id of a feed: a hash of its URL (or of the client's name for an upload)."""
    return hashlib.blake2b(locator.strip().encode(), digest_size=6).hexdigest()


def canonical_link(url: str) -> str:
    """The link with its fragment and tracking parameters dropped."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return url.strip()
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _TRACKING.match(k)]
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path or "/", urlencode(query), ""))


def article_id(site: str, guid: str, link: str, title: str, text: str) -> str:
    if guid:
        identity = f"guid\0{site}\0{guid.strip()}"
    elif link:
        identity = f"link\0{canonical_link(link)}"
    else:
        identity = f"text\0{title}\0{text}"
    return hashlib.blake2b(identity.encode(), digest_size=8).hexdigest()


def content_hash(title: str, text: str) -> str:
    return hashlib.blake2b(f"{title}\0{text}".encode(), digest_size=8).hexdigest()


def source_hash(entry: Entry) -> str:
    """Hash of an entry as the feed sent it: equal on a re-poll that changed nothing in it. It is only ever
    compared with the same entry's previous hash, so 48 bits miss a change once in 2**48 changes; 12
    characters fit jemalloc's 16-byte class in `seen` where 16 take 24."""
    data = f"{entry.title}\0{entry.body}\0{entry.link}".encode()
    return hashlib.blake2b(data, digest_size=6).hexdigest()


#: Given {article id: source hash} of a document's entries, the ids already stored from the same source.
Known = Callable[[dict[str, str]], set[str]]


def parse(
    document: bytes,
    feed: str,
    locator: str,
    fetched_at: float,
    max_entries: int,
    max_chars: int,
    charset: str | None = None,
    known_boilerplate: frozenset[str] = frozenset(),
    fast: bool = True,
    known: Known | None = None,
) -> ParsedFeed:
    """Parses a feed document (bytes only: feedparser never sees a path or a URL).

    Lines recurring across this document's entries, and the feed's boilerplate
    learned from earlier polls (`known_boilerplate`, line keys), are removed
    from every entry's text; `ParsedFeed.boilerplate` lists what this document taught.
    Entries `known` says are stored as they are now are dropped before cleaning (`ParsedFeed.unchanged`).
    """
    if not document or not document.strip():
        raise FeedError("empty document")
    if _ENTITY_DECL.search(document[:65536]):
        raise FeedError("document declares XML entities in its DTD; refused")
    channel, warning = _read(document, charset, fast)
    site, entries, sources, unchanged, warning = _kept(channel, warning, locator, max_entries, known)
    if channel.fast and not all(map(fastfeed.plain, entries)):
        channel, warning = _read(document, charset, fast=False)
        site, entries, sources, unchanged, warning = _kept(channel, warning, locator, max_entries, known)
    raw = [(e, h, html_to_text(e.body)[:max_chars]) for e, h in zip(entries, sources)]
    learned = recurring_lines([text for _, _, text in raw])
    boilerplate = learned | known_boilerplate
    articles = []
    for entry, source, text in raw:
        title = html_to_text(entry.title)[:MAX_FIELD_CHARS]
        clean = strip_furniture(text, boilerplate)
        if not title and not clean:
            continue
        guid = entry.guid[:MAX_FIELD_CHARS]
        url = entry.link[:MAX_FIELD_CHARS]
        published = fastfeed.timestamp(entry) or fetched_at
        articles.append(
            Article(
                id=article_id(site, guid, url, title, clean),
                feed=feed,
                url=canonical_link(url) if url else "",
                guid=guid,
                title=title,
                published=published,
                text=clean,
                content_hash=content_hash(title, clean),
                source_hash=source,
            )
        )
    return ParsedFeed(
        title=html_to_text(channel.title)[:MAX_FIELD_CHARS],
        link=channel.link[:MAX_FIELD_CHARS],
        articles=_unique(articles),
        warning=warning,
        boilerplate=sorted(learned),
        unchanged=unchanged,
        ttl=int(ttl) if (ttl := channel.ttl.strip()).isdigit() else 0,
    )


def _kept(
    channel: Channel, warning: str, locator: str, max_entries: int, known: Known | None
) -> tuple[str, list[Entry], list[str], int, str]:
    """The site, the entries to clean with their source hashes, how many were dropped as stored, the warning."""
    entries = channel.entries
    total = len(entries)
    if total > max_entries:
        warning = (warning + "; " if warning else "") + f"{total} entries, only the first {max_entries} read"
        entries = entries[:max_entries]
    site = urlsplit(channel.link).netloc.lower() or urlsplit(locator).netloc.lower() or locator
    sources = [source_hash(e) for e in entries]
    unchanged = 0
    if known is not None:
        # an entry with a guid or a link has its id before cleaning (one without is identified by its text)
        ids = [
            article_id(site, e.guid[:MAX_FIELD_CHARS], e.link[:MAX_FIELD_CHARS], "", "") if e.guid or e.link else ""
            for e in entries
        ]
        first: dict[str, str] = {}
        for i, h in zip(ids, sources):
            if i:
                first.setdefault(i, h)  # an entry listed twice is read once, the first (`_unique`)
        stored = known(first)
        if stored:
            keep = [k for k, i in enumerate(ids) if i not in stored]
            unchanged = len(entries) - len(keep)
            entries, sources = [entries[k] for k in keep], [sources[k] for k in keep]
    return site, entries, sources, unchanged, warning


def _read(document: bytes, charset: str | None, fast: bool) -> tuple[Channel, str]:
    """The document's channel and entries (the fast path when it can, else feedparser), and a warning."""
    if fast and (channel := fastfeed.read(document, charset)) is not None:
        return channel, ""
    content_type = "application/xml" + (f"; charset={charset}" if charset else "")
    parsed = feedparser.parse(io.BytesIO(document), response_headers={"content-type": content_type})
    if not parsed.entries:
        if not parsed.version:
            raise FeedError(_not_a_feed_reason(document, parsed))
        if parsed.bozo:
            raise FeedError(f"malformed feed: {parsed.bozo_exception}")
    warning = ""
    if parsed.bozo and parsed.entries:
        warning = f"malformed feed, {len(parsed.entries)} entries recovered: {parsed.bozo_exception}"
    entries = [
        Entry(
            title=e.get("title", "") or "",
            guid=e.get("id", "") or "",
            link=e.get("link", "") or "",
            body=_body(e),
            published=_timestamp(e),
        )
        for e in parsed.entries
    ]
    feed = parsed.feed
    channel = Channel(feed.get("title", "") or "", feed.get("link", "") or "", entries, str(feed.get("ttl", "") or ""))
    return channel, warning


def _body(entry) -> str:
    """The fullest text an entry carries: content:encoded / atom content, else the summary."""
    best = entry.get("summary", "") or ""
    for content in entry.get("content", []) or []:
        value = content.get("value", "") or ""
        if len(value) > len(best):
            best = value
    return best


def _timestamp(entry) -> float | None:
    for name in ("published_parsed", "updated_parsed", "created_parsed"):
        value = dict.get(entry, name)  # not feedparser's deprecated updated -> published fallback
        if value:
            try:
                return float(calendar.timegm(value))
            except (TypeError, ValueError, OverflowError):
                continue
    return None


def _unique(articles: list[Article]) -> list[Article]:
    """A feed listing the same entry twice yields it once (the first)."""
    seen: set[str] = set()
    out = []
    for a in articles:
        if a.id not in seen:
            seen.add(a.id)
            out.append(a)
    return out


def _not_a_feed_reason(document: bytes, parsed) -> str:
    head = document[:2048].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<head", b"<body")) or b"<html" in head or b"<body" in head:
        return "not a feed: the document is an HTML page"
    if head[:1] in (b"{", b"["):
        return "not a feed: the document is JSON (JSON Feed is not supported; RSS and Atom are)"
    if sum(b < 9 or 13 < b < 32 for b in head[:512]) > 8 and not head.startswith(
        (b"\xff\xfe", b"\xfe\xff", b"<\x00", b"\x00<")
    ):
        return "not a feed: the document is binary data, not XML"
    if parsed.bozo:
        return f"not a feed: {parsed.bozo_exception}"
    return "not a feed: no RSS or Atom elements found"
