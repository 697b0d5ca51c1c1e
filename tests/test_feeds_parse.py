"""Feed documents into articles (feedparser is pure; no Redis needed)."""

import calendar
import time

import pytest

from feedsift.workers.errors import FeedError
from feedsift.workers.feeds import article_id, canonical_link, parse
from tests.harness import EXAMPLES

RSS = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>T</title><link>https://news.example/</link>
<item><title>One</title><link>https://news.example/a?utm_source=x&amp;id=3#top</link><guid>g-1</guid>
<pubDate>Tue, 03 Nov 2026 10:00:00 GMT</pubDate><description>&lt;p&gt;Body one.&lt;/p&gt;</description></item>
<item><title>Two</title><link>https://news.example/b</link><description>Body two.</description></item>
<item><title>One again</title><link>https://news.example/a</link><guid>g-1</guid><description>dup guid</description></item>
</channel></rss>"""


def p(doc: bytes, **kw):
    return parse(
        doc,
        "feed1",
        "https://news.example/feed",
        1_700_000_000.0,
        kw.get("max_entries", 1000),
        kw.get("max_chars", 100_000),
    )


def test_articles_normalised():
    feed = p(RSS)
    assert feed.title == "T" and [a.title for a in feed.articles] == ["One", "Two"]  # repeated guid kept once
    one, two = feed.articles
    assert one.url == "https://news.example/a?id=3"
    assert (
        one.published == calendar.timegm((2026, 11, 3, 10, 0, 0)) and two.published == 1_700_000_000.0
    )  # no date: fetch time
    assert one.text == "Body one." and one.guid == "g-1"
    assert one.id == article_id("news.example", "g-1", "", "", "")


def test_ids_are_stable_and_scoped_to_the_site():
    assert article_id("a.example", "1", "", "", "") == article_id("a.example", "1", "https://x", "t", "b")
    assert article_id("a.example", "1", "", "", "") != article_id("b.example", "1", "", "", "")
    assert article_id("", "", "https://a.example/x?utm_medium=rss#c", "", "") == article_id(
        "", "", "https://A.example/x", "", ""
    )


def test_canonical_link_drops_tracking_only():
    assert canonical_link("https://a.example/p?id=2&utm_campaign=z&fbclid=q#frag") == "https://a.example/p?id=2"


def test_entry_cap_reads_first_entries_and_warns():
    feed = p(RSS, max_entries=1)
    assert len(feed.articles) == 1 and "only the first 1 read" in feed.warning


def test_article_text_is_capped():
    doc = RSS.replace(b"Body two.", b"x" * 5000)
    assert max(len(a.text) for a in p(doc, max_chars=1000).articles) <= 1000


@pytest.mark.parametrize(
    "doc, message",
    [
        (b"", "empty document"),
        (b"   \n", "empty document"),
        (b"<!DOCTYPE html><html><body><p>Hello</p></body></html>", "HTML page"),
        (
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]><rss><channel><title>&b;</title></channel></rss>',
            "entities",
        ),
    ],
)
def test_unusable_documents_give_clear_errors(doc, message):
    with pytest.raises(FeedError, match=message):
        p(doc)


@pytest.mark.parametrize("name, count", [("steppe-herald.xml", 12), ("global-wire.atom", 12), ("pitchside.rdf", 8)])
def test_example_feeds_parse(name, count):
    feed = parse((EXAMPLES / name).read_bytes(), "f", "https://x.example/" + name, time.time(), 1000, 100_000)
    assert len(feed.articles) == count and not feed.warning
    assert not any("appeared first on" in a.text for a in feed.articles)


def test_entries_stored_unchanged_are_dropped_before_cleaning():
    first = p(RSS)
    asked = []

    def known(sources: dict[str, str]) -> set[str]:
        asked.append(dict(sources))
        return {first.articles[0].id} if sources.get(first.articles[0].id) == first.articles[0].source_hash else set()

    again = parse(RSS, "feed1", "https://news.example/feed", 1_700_000_000.0, 1000, 100_000, known=known)
    assert [a.title for a in again.articles] == ["Two"] and again.unchanged == 2  # "One" and its repeat
    assert set(asked[0]) == {a.id for a in first.articles}  # every entry with a guid or link is asked about
    edited = RSS.replace(b"Body one.", b"Body one, edited.")
    changed = parse(edited, "feed1", "https://news.example/feed", 1_700_000_000.0, 1000, 100_000, known=known)
    assert changed.unchanged == 0 and changed.articles[0].text == "Body one, edited."
