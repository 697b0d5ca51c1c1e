"""The example feeds served over HTTP on 127.0.0.1, submitted through the task API, read back from Redis."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from feedsift.workers.article import FIELDS
from feedsift.workers.client import Client
from feedsift.workers.feeds import feed_id, parse
from tests.harness import EXAMPLES

EXPECTED = json.loads((EXAMPLES / "EXPECTED.json").read_text())
FILES = sorted({a["feed"] for a in EXPECTED["articles"]})


def assert_near_pairs_clustered(ctx, ids: dict[tuple[str, str], str]) -> None:
    """Each expected syndicated copy points to its original, and the two make one cluster; the canonical is
    whichever of the two was seen first (feeds are fetched concurrently)."""
    for pair in EXPECTED["duplicates"]:
        if pair["kind"] != "near":
            continue
        a = ctx.store.article(ids[(pair["copy"]["feed"], pair["copy"]["guid"])])
        b = ctx.store.article(ids[(pair["original"]["feed"], pair["original"]["guid"])])
        copy, original = (a, b) if a["duplicate_of"] else (b, a)
        assert copy["duplicate_of"] == copy["cluster"] == original["id"] == original["cluster"], copy["title"]
        assert original["duplicate_of"] == "" and float(copy["similarity"]) >= ctx.settings.dedup_threshold
        assert set(ctx.store.cluster(original["id"])) == {copy["id"], original["id"]}


def ids_by_guid() -> dict[tuple[str, str], str]:
    """(feed file, guid) -> article id, computed the way the service computes it."""
    out = {}
    for name in FILES:
        parsed = parse((EXAMPLES / name).read_bytes(), "x", "http://127.0.0.1/" + name, time.time(), 1000, 100_000)
        for a in parsed.articles:
            out[(name, a.guid)] = a.id
    return out


@pytest.fixture
def served(feed_server):
    tag = uuid.uuid4().hex[:8]
    return [
        feed_server.add(
            f"/{tag}/{name}",
            (EXAMPLES / name).read_bytes(),
            etag=f'"{tag}-{name}"',
            headers={"Content-Type": "application/xml"},
        )
        for name in FILES
    ]


def test_example_feeds_tagged_and_deduplicated(ctx, r, worker, served, feed_server):
    client = Client(ctx)
    job, _ = client.submit(served)
    progress = client.wait(job, timeout=120)
    ids = ids_by_guid()
    assert progress.articles == len(EXPECTED["articles"]) == len(ids)
    assert progress.errors == 0

    # every article stored once, with the documented flat fields
    for (name, guid), aid in ids.items():
        record = ctx.store.article(aid)
        assert record["guid"] == guid
        assert record["feed"] == feed_id(served[FILES.index(name)])
        for field in (
            "id",
            "url",
            "title",
            "published",
            "topics",
            "scores",
            "duplicate_of",
            "similarity",
            "model",
            "processed_at",
        ):
            assert field in record, field
        assert record["published"].endswith("Z") and "summary" not in record  # derived on reading, not stored
        assert 0 < len(Client(ctx).article(aid).summary) <= 300
        assert set(json.loads(record["scores"])) == {"diplomacy", "sport", "politics"}
        # the hash holds the documented fields only: its id is the key's, its source hash is in `seen`
        assert {k.decode() for k in r.hkeys(ctx.keys.article(aid))} <= set(FIELDS)
        assert len(r.hget(ctx.keys.seen, aid)) == 12
    assert r.zcard("fstest:articles") == len(ids)

    # topics of the clear-cut articles
    wrong = []
    for a in EXPECTED["articles"]:
        if a["clear_cut"]:
            got = ctx.store.article(ids[(a["feed"], a["guid"])])["topics"]
            if sorted(filter(None, got.split(","))) != sorted(a["topics"]):
                wrong.append((a["title"], a["topics"], got))
    clear = sum(a["clear_cut"] for a in EXPECTED["articles"])
    assert len(wrong) <= clear // 10, wrong  # at least 90% of clear-cut articles exactly right
    for topic in ("diplomacy", "sport", "politics"):
        members = {m.decode() for m in r.zrange(f"fstest:topic:{topic}", 0, -1)}
        tagged = {aid for aid in ids.values() if topic in ctx.store.article(aid)["topics"].split(",")}
        assert members == tagged

    # syndicated copies point to their originals; same-subject different stories do not
    assert_near_pairs_clustered(ctx, ids)
    a, b = (ids[(d["feed"], d["guid"])] for d in EXPECTED["distinct_same_subject"])
    assert ctx.store.article(a)["duplicate_of"] not in (b,) and ctx.store.article(b)["duplicate_of"] not in (a,)
    flagged = {m.decode() for m in r.zrange("fstest:duplicates", 0, -1)}
    in_pairs = {
        ids[(p[side]["feed"], p[side]["guid"])] for p in EXPECTED["duplicates"] for side in ("copy", "original")
    }
    assert flagged <= in_pairs and len(flagged) >= 3

    # feed state
    for url in served:
        state = ctx.store.feed(feed_id(url))
        assert state["last_status"] == "200" and state["etag"] and state["url"] == url and state["title"]

    # second poll: the server answers 304 and nothing is parsed or processed again
    before = {aid: ctx.store.article(aid)["processed_at"] for aid in ids.values()}
    requests_before = len(feed_server.requests)
    time.sleep(1.1)
    job2, _ = client.submit(served)
    p2 = client.wait(job2, timeout=60)
    assert p2.articles == 0 and p2.stored == 0
    new_requests = feed_server.requests[requests_before:]
    assert len(new_requests) == len(served)
    assert all(h.get("If-None-Match") for _, h in new_requests)
    for url in served:
        assert ctx.store.feed(feed_id(url))["last_status"] == "304"
    assert {aid: ctx.store.article(aid)["processed_at"] for aid in ids.values()} == before


def test_changed_feed_without_etag_processes_only_new_articles(ctx, r, worker, feed_server):
    """A server without validators: the document is parsed again, but known articles are dropped."""
    body = (EXAMPLES / "steppe-herald.xml").read_bytes()
    url = feed_server.add(f"/{uuid.uuid4().hex}/plain.xml", body)
    client = Client(ctx)
    first = client.wait(client.submit([url])[0], timeout=60)
    assert first.articles == 12
    second = client.wait(client.submit([url])[0], timeout=60)
    assert second.articles == 0
    assert ctx.store.feed(feed_id(url))["last_status"] == "200"


def test_repoll_with_new_markup_but_same_text_is_not_processed_again(ctx, r, worker, feed_server):
    """A source that changed only in markup (a tracking parameter in a link) keeps its article as it is."""
    body = (EXAMPLES / "steppe-herald.xml").read_bytes()
    path = f"/{uuid.uuid4().hex}/plain.xml"
    url = feed_server.add(path, body)
    client = Client(ctx)
    assert client.wait(client.submit([url])[0], timeout=60).articles == 12
    before = {a.id: a.processed_at for a in client.articles(limit=100)}
    sources = {k.decode(): v.decode() for k, v in r.hgetall(ctx.keys.seen).items()}
    feed_server.add(path, body.replace(b"<p>", b"<p class='x'>"))
    second = client.wait(client.submit([url])[0], timeout=60)
    assert second.articles == 0
    assert {a.id: a.processed_at for a in client.articles(limit=100)} == before  # not processed again
    # the new source hashes are remembered, so the next poll drops these entries before cleaning
    seen = {k.decode(): v.decode() for k, v in r.hgetall(ctx.keys.seen).items()}
    assert set(seen) == set(sources) == set(before) and all(seen[i] != sources[i] for i in before)


def test_repoll_with_an_edited_title_stores_that_article_again_as_updated(ctx, r, worker, feed_server):
    """A source whose clean content changed is processed again and marked updated; the others are dropped."""
    body = (EXAMPLES / "steppe-herald.xml").read_bytes()
    old, new = b"Police break up counterfeit banknote ring", b"Police arrest nine in counterfeit banknote ring"
    path = f"/{uuid.uuid4().hex}/plain.xml"
    url = feed_server.add(path, body)
    client = Client(ctx)
    assert client.wait(client.submit([url])[0], timeout=60).articles == 12
    before = {a.id: a for a in client.articles(limit=100)}
    (edited,) = [i for i, a in before.items() if a.title.startswith(old.decode())]
    sources = {k.decode(): v.decode() for k, v in r.hgetall(ctx.keys.seen).items()}
    time.sleep(1.1)  # processed_at has one-second resolution
    feed_server.add(path, body.replace(old, new))
    second = client.wait(client.submit([url])[0], timeout=60)
    assert second.articles == 1 and second.stored == 1
    after = {a.id: a for a in client.articles(limit=100)}
    assert set(after) == set(before)
    assert after[edited].title.startswith(new.decode()) and after[edited].updated
    assert after[edited].processed_at > before[edited].processed_at
    assert r.hget(ctx.keys.seen, edited).decode() != sources[edited]
    unchanged = [i for i in before if i != edited]
    assert all(after[i] == before[i] and not after[i].updated for i in unchanged)
