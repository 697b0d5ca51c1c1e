"""The fast path reads feeds exactly as feedparser does, on every document it takes; the rest go to feedparser."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from feedsift.workers import fastfeed
from feedsift.workers.errors import FeedError
from feedsift.workers.feeds import parse
from tests.harness import EXAMPLES

NOW = 1_767_225_600.0


def documents(shared_data: Path | None, cache: Path | None) -> list[Path]:
    found = sorted(EXAMPLES.glob("*.xml")) + sorted(EXAMPLES.glob("*.atom")) + sorted(EXAMPLES.glob("*.rdf"))
    if shared_data is not None:
        found += sorted(
            p for p in (shared_data / "real-feeds").rglob("*") if p.suffix in (".xml", ".rss", ".atom", ".rdf")
        )
    if cache is not None:
        found += sorted(cache.rglob("*.xml"))
    return found


def both(doc: bytes, charset: str | None = None):
    """(fast path result or None, feedparser's result); errors compare by message."""

    def run(fast: bool):
        try:
            parsed = parse(doc, "f", "https://feed.example/x", NOW, 1000, 100_000, charset=charset, fast=fast)
        except FeedError as exc:
            return f"error: {exc}"
        # the source hash is of what each parser hands over (feedparser's markup is sanitised): not compared
        return replace(parsed, articles=[a.with_(source_hash="") for a in parsed.articles])

    return (run(True) if taken(doc, charset) else None), run(False)


def taken(doc: bytes, charset: str | None = None) -> bool:
    """Whether the fast path reads the document (with nothing known, every entry must be plain)."""
    channel = fastfeed.read(doc, charset)
    return channel is not None and all(map(fastfeed.plain, channel.entries))


def check(paths: list[Path]) -> tuple[int, list[str]]:
    taken, differ = 0, []
    for path in paths:
        doc = path.read_bytes()
        fast, slow = both(doc)
        if fast is None:
            continue
        taken += 1
        if fast != slow:
            differ.append(str(path))
    return taken, differ


def test_example_feeds_read_the_same_both_ways():
    paths = documents(None, None)
    taken, differ = check(paths)
    assert differ == []
    assert taken >= 2, "the fast path takes the plain RSS 2.0 and Atom examples"


def test_real_feeds_read_the_same_both_ways(shared_data):
    paths = documents(shared_data, None)
    taken, differ = check(paths)
    print(f"\nfast path took {taken} of {len(paths)} real and example feeds")
    assert differ == [] and taken >= 10


@pytest.mark.slow
def test_feedparser_corpus_reads_the_same_both_ways(request):
    from tests.test_feedparser_corpus import corpus_dir

    root = corpus_dir(Path(request.config.cache.mkdir("feedparser-sdist")))
    paths = sorted(root.rglob("*.xml"))
    taken, differ = check(paths)
    print(f"\nfast path took {taken} of {len(paths)} documents of feedparser's corpus")
    assert differ == [], differ[:20]
    assert taken >= 100


@pytest.mark.parametrize(
    "doc",
    [
        b"<rss version='2.0'><channel><title>t</title><item><title>a</title></item>",  # not well-formed
        b"<?xml version='1.0' encoding='iso-8859-1'?><rss version='2.0'><channel></channel></rss>",
        b"<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'/>",
        b"<rss version='2.0' xml:base='http://a/'><channel><title>t</title></channel></rss>",
        b"<feed xmlns='http://www.w3.org/2005/Atom'><entry><content type='xhtml'><div>x</div></content></entry></feed>",
        b"<rss version='2.0'><channel><item><title>a</title><title>b</title></item></channel></rss>",
    ],
)
def test_documents_left_to_feedparser(doc):
    assert fastfeed.read(doc, None) is None


def test_http_charset_that_disagrees_goes_to_feedparser():
    doc = b"<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>t</title></channel></rss>"
    assert fastfeed.read(doc, None) is not None and fastfeed.read(doc, "utf-8") is not None
    assert fastfeed.read(doc, "iso-8859-1") is None


def test_fast_path_is_faster_on_plain_rss():
    """Not a timing assertion on wall time: the fast path must not call feedparser at all for plain RSS."""
    import feedparser

    doc = (EXAMPLES / "steppe-herald.xml").read_bytes()
    calls = []
    original = feedparser.parse
    feedparser.parse = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        t = time.process_time()
        parse(doc, "f", "https://feed.example/x", NOW, 1000, 100_000)
        assert time.process_time() - t < 5
    finally:
        feedparser.parse = original
    assert calls == []


RISKY = (
    b"<rss version='2.0'><channel><title>t</title><link>https://s.example/</link>"
    b"<item><guid>a</guid><title>Calm</title><description>plain words here</description></item>"
    b"<item><guid>b</guid><title>Loud</title><description>&lt;script&gt;alert(1)&lt;/script&gt;"
    b"&lt;p&gt;kept words&lt;/p&gt;</description></item></channel></rss>"
)


def test_an_entry_with_active_markup_sends_the_document_to_feedparser():
    fast, slow = both(RISKY)
    assert fast is None and not taken(RISKY)
    parsed = parse(RISKY, "f", "https://s.example/feed", NOW, 1000, 100_000)
    assert [a.text for a in parsed.articles] == [a.text for a in slow.articles]
    assert "alert" not in parsed.articles[1].text


def test_a_repoll_reads_an_entry_with_active_markup_as_feedparser_does():
    """Entries are checked for markup only once the stored ones are dropped: a kept entry that is not plain
    still sends the document to feedparser, and an entry stored from feedparser's reading is dropped."""
    first = parse(RISKY, "f", "https://s.example/feed", NOW, 1000, 100_000)
    calm, loud = first.articles

    def known(ids):
        def stored_ones(sources):
            return {i for i, h in sources.items() if i in ids and {calm.id: calm, loud.id: loud}[i].source_hash == h}

        return stored_ones

    again = parse(RISKY, "f", "https://s.example/feed", NOW, 1000, 100_000, known=known({calm.id, loud.id}))
    assert again.articles == [] and again.unchanged == 2
    only_loud = parse(RISKY, "f", "https://s.example/feed", NOW, 1000, 100_000, known=known({calm.id}))
    assert only_loud.articles == [loud] and only_loud.unchanged == 1
    only_calm = parse(RISKY, "f", "https://s.example/feed", NOW, 1000, 100_000, known=known({loud.id}))
    assert only_calm.articles == [calm] and only_calm.unchanged == 1
