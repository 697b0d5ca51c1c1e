"""The duplicate index on a real Redis (Lua scripts) and through real workers."""

from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
from dataclasses import replace

import pytest

from feedsift.models.minhash import MemoryIndex, text_hash
from feedsift.workers.app import app
from feedsift.workers.cli import main as cli
from feedsift.workers.index import LOAD, Item
from tests.harness import EXAMPLES, wait_for

PREFIX = "fstest:"
VOCAB = [f"w{i}" for i in range(5000)]
DAY = 86400.0


def story(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def th(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def corpus(seed: int, originals: int) -> list[tuple[str, str]]:
    """(id, text): originals, and for some of them a near copy, an excerpt or an exact copy, shuffled."""
    rng = random.Random(seed)
    out = []
    for i in range(originals):
        text = story(rng, rng.randint(120, 400))
        out.append((f"o{i}", text))
        w = text.split()
        r = i % 5
        if r == 0:
            for _ in range(rng.randint(1, max(1, len(w) // 60))):  # true Jaccard above about 0.85
                w[rng.randrange(len(w))] = rng.choice(VOCAB)
            out.append((f"n{i}", " ".join(w)))
        elif r == 1:
            out.append((f"e{i}", " ".join(w[: rng.randint(30, 70)]) + " ..."))
        elif r == 2:
            out.append((f"x{i}", text.upper()))
    rng.shuffle(out)
    return out


def index_all(ctx, docs, now: float, batch: int = 50, index=None):
    index = index or ctx.index
    h = ctx.hasher
    decisions = []
    for start in range(0, len(docs), batch):
        items = [Item(aid, text_hash(t), h.sketch(t), now) for aid, t in docs[start : start + batch]]
        decided = index.decide(items, now)
        pipe = ctx.redis.pipeline(transaction=False)
        pipe.zadd(ctx.keys.articles, {it.article_id: now for it in items}, nx=True)  # stored, as the store would
        ctx.store.apply_decisions(pipe, decided, {it.article_id: now for it in items})
        pipe.execute()
        decisions += decided
    return decisions


def test_lua_index_decides_like_the_reference(ctx, r):
    docs = corpus(1, 400)
    got = index_all(ctx, docs, time.time())
    ref = MemoryIndex(ctx.hasher, ctx.index.verdict)
    expected = [d for aid, t in docs for d in ref.add(aid, text_hash(t), ctx.hasher.sketch(t))]
    assert [(d.seq, d.duplicate_of, d.kind, d.cluster) for d in got] == [
        (e.seq, e.duplicate_of, e.kind, e.cluster) for e in expected
    ]
    assert all(abs(d.similarity - e.similarity) < 1e-4 for d, e in zip(got, expected) if d.kind)
    kinds = {d.kind for d in got}
    assert {"near", "excerpt", "exact"} <= kinds
    # every planted copy is flagged against its original (or the original against its excerpt, if later)
    flagged = {frozenset((d.article_id, d.duplicate_of)) for d in got if d.duplicate_of}
    planted = {frozenset((aid, "o" + aid[1:])) for aid, _ in docs if aid[0] in "nex"}
    assert planted <= flagged and len(flagged) == len(planted)

    # the same batches delivered again change nothing: same decisions, same numbers, no new entries
    entries = int(r.hget(PREFIX + "{dedup}:meta", "entries"))
    again = index_all(ctx, docs, time.time())
    assert again == [replace(d, new=False) for d in got] and [d.new for d in got if d.seq > 0].count(True) == len(docs)
    assert int(r.hget(PREFIX + "{dedup}:meta", "entries")) == entries and int(r.get(PREFIX + "{dedup}:seq")) == len(
        docs
    )
    # the article hashes carry the decision, clusters list their members
    some = next(d for d in got if d.kind == "excerpt")
    rec = {k.decode(): v.decode() for k, v in r.hgetall(PREFIX + "article:" + some.article_id).items()}
    assert rec["duplicate_kind"] == "excerpt" and rec["cluster"] == some.cluster
    assert r.zscore(PREFIX + "cluster:" + some.cluster, some.duplicate_of) is not None


def test_updated_article_keeps_its_number_and_is_judged_on_new_text(ctx, r):
    rng = random.Random(7)
    a, b = story(rng, 200), story(rng, 200)
    now = time.time()
    first = index_all(ctx, [("a", a), ("b", b)], now)
    assert [d.duplicate_of for d in first] == ["", ""]
    # "b" is re-published with a's text: same id, same number, now a duplicate of "a"
    second = index_all(ctx, [("b", a)], now)
    assert second[0].seq == first[1].seq and second[0].duplicate_of == "a" and second[0].kind == "exact"
    # and back: no longer a duplicate, and no longer in a's cluster
    third = index_all(ctx, [("b", b)], now)
    assert third[0].duplicate_of == "" and r.zscore(PREFIX + "cluster:a", "b") is None
    assert r.zscore(PREFIX + "duplicates", "b") is None


def test_a_teaser_seen_first_joins_the_cluster_of_its_story(ctx, r):
    rng = random.Random(21)
    text = story(rng, 300)
    teaser = " ".join(text.split()[:20]) + " [\u2026]"
    # a copy whose opening differs (a header line) matches the story, not the teaser
    docs = [("t", teaser), ("h", "by our staff reporter with more to follow later today\n" + text), ("s", text)]
    got = [d for doc in docs for d in index_all(ctx, [doc], time.time())]
    ref = MemoryIndex(ctx.hasher, ctx.index.verdict)
    assert got == [d for aid, t in docs for d in ref.add(aid, text_hash(t), ctx.hasher.sketch(t))]
    assert [(d.article_id, d.duplicate_of, d.kind, d.cluster) for d in got] == [
        ("t", "", "", ""),
        ("h", "", "", ""),
        ("s", "h", "near", "h"),
        ("t", "s", "excerpt", "h"),  # relabelled: the story it opens matched a better copy
    ]
    # the cluster lists its members in publication order, the teaser (published first) included
    assert ctx.store.article("t")["duplicate_kind"] == "excerpt" and ctx.store.cluster("h") == ["t", "h", "s"]
    # delivered again, each batch gives the verdicts as they stand and changes nothing
    seq = int(r.get(PREFIX + "{dedup}:seq"))
    again = [d for doc in docs for d in index_all(ctx, [doc], time.time())]
    assert again == [replace(d, new=False) for d in (got[3], got[1], got[2], got[3])]
    assert int(r.get(PREFIX + "{dedup}:seq")) == seq and ctx.store.cluster("h") == ["t", "h", "s"]


def test_index_memory_per_article_stays_under_a_kilobyte(ctx, r):
    docs = corpus(2, 2500)
    r.config_resetstat()
    before = r.info("memory")["used_memory"]
    index_all(ctx, docs, time.time())
    after = r.info("memory")["used_memory"]
    mem = ctx.index.memory()
    per_article = mem["bytes"] / len(docs)
    print(
        f"\nindex: {per_article:.0f} B/article (MEMORY USAGE), "
        f"{(after - before) / len(docs):.0f} B/article (used_memory delta)"
    )
    assert mem["articles"] == len(docs)
    assert per_article <= 1024
    # buckets stay short strings: linear hashing split them as the index grew
    sizes = [len(s) for s in r.hvals(PREFIX + "{dedup}:buckets")]
    assert max(sizes) <= 8 * 4 * LOAD and sum(sizes) == 8 * ctx.hasher.keys_per_article * len(docs)


def test_window_prunes_the_index_but_keeps_records(ctx, r):
    rng = random.Random(3)
    t0 = time.time() - 40 * DAY
    old = [(f"old{i}", story(rng, 150)) for i in range(8 * ctx.index.per_chunk)]  # whole chunks
    index_all(ctx, old, t0)
    for aid, _ in old:
        r.hset(PREFIX + "article:" + aid, "id", aid)
    used_old = ctx.index.memory()["bytes"]
    recent_time = time.time()
    recent = [(f"new{i}", story(rng, 150)) for i in range(100)]
    index_all(ctx, recent, recent_time)
    # prune until nothing is left to do
    for _ in range(1000):
        chunks, _dropped = ctx.index.prune(recent_time)
        if not chunks and int(r.hget(PREFIX + "{dedup}:meta", "sweep") or 0) == 0:
            break
    left = ctx.index.memory()["bytes"]
    assert left < used_old / 2
    # no entry of an old article is left in any bucket, the count agrees with what is stored
    total = 0
    old_seqs = set(range(1, len(old) + 1))
    for s in r.hvals(PREFIX + "{dedup}:buckets"):
        total += len(s) // 8
        assert not {int.from_bytes(s[i + 4 : i + 8], "big") for i in range(0, len(s), 8)} & old_seqs
    assert total == int(r.hget(PREFIX + "{dedup}:meta", "entries")) == ctx.hasher.keys_per_article * len(recent)
    # old article records stay; a copy of an old article is no longer flagged, a copy of a recent one is
    assert r.hget(PREFIX + "article:old0", "id") == b"old0"
    late = index_all(ctx, [("copy-old", old[0][1] + " extra"), ("copy-new", recent[0][1] + " extra")], recent_time)
    assert late[0].duplicate_of == "" and late[1].duplicate_of == "new0"


def test_the_window_setting_applies(r, service_env):
    from feedsift.workers.context import Context
    from feedsift.workers.settings import Settings

    ctx = Context(Settings.from_env({**service_env, "FEEDSIFT_DEDUP_WINDOW_DAYS": "2"}))
    assert ctx.index.window == 2 * DAY
    index_all(ctx, [("a", "one two three four five six seven")], time.time() - 3 * DAY)
    assert ctx.index.prune()[0] == 1 and not r.hlen(PREFIX + "{dedup}:docs")


# -- through the workers --------------------------------------------------------------
def _ids_by_guid():
    from feedsift.workers.feeds import parse

    out = {}
    for name in ("global-wire.atom", "pitchside.rdf", "steppe-herald.xml"):
        for a in parse(
            (EXAMPLES / name).read_bytes(), "x", "http://127.0.0.1/" + name, time.time(), 1000, 100_000
        ).articles:
            out[(name, a.guid)] = a.id
    return out


def _article(i: str, text: str, published: float) -> dict:
    return {
        "id": i,
        "feed": "f",
        "url": "",
        "guid": i,
        "title": i,
        "published": published,
        "text": text,
        "content_hash": th(text),
    }


def _wait_stored(ctx, ids):
    wait_for(lambda: all(ctx.store.article(i).get("processed_at") for i in ids), timeout=60, message="articles stored")


def test_example_feeds_duplicates_and_the_cli(ctx, r, worker, feed_server, capsys):
    tag = uuid.uuid4().hex[:8]
    urls = [
        feed_server.add(f"/{tag}/{n}", (EXAMPLES / n).read_bytes(), headers={"Content-Type": "application/xml"})
        for n in ("global-wire.atom", "pitchside.rdf", "steppe-herald.xml")
    ]
    for url in urls:
        app.send_task("feedsift.fetch_feed", args=[url])
    ids = _ids_by_guid()
    _wait_stored(ctx, ids.values())
    expected = json.loads((EXAMPLES / "EXPECTED.json").read_text())
    pairs = set()
    for d in expected["duplicates"]:
        a, b = ids[(d["copy"]["feed"], d["copy"]["guid"])], ids[(d["original"]["feed"], d["original"]["guid"])]
        ra, rb = ctx.store.article(a), ctx.store.article(b)
        dup, other = (ra, b) if ra["duplicate_of"] else (rb, a)
        assert dup["duplicate_of"] == other and dup["duplicate_kind"] == d["kind"], (d, dup["duplicate_kind"])
        pairs.add(frozenset((a, b)))
    flagged = {
        frozenset((m.decode(), ctx.store.article(m.decode())["duplicate_of"]))
        for m in r.zrange(PREFIX + "duplicates", 0, -1)
    }
    assert flagged == pairs

    assert cli(["duplicates", "--json"]) == 0
    clusters = json.loads(capsys.readouterr().out)
    assert {frozenset([c["canonical"], m["id"]]) for c in clusters for m in c["members"]} == pairs
    assert cli(["duplicates"]) == 0
    assert "excerpt" in capsys.readouterr().out


@pytest.mark.parametrize("excerpt_first", [True, False])
def test_excerpt_found_whichever_arrives_first(ctx, r, worker, excerpt_first):
    rng = random.Random(11)
    paragraphs = [story(rng, 45) for _ in range(6)]
    full = "\n".join(paragraphs)
    excerpt = paragraphs[0] + " [\u2026]"
    first, second = (("ex", excerpt), ("full", full)) if excerpt_first else (("full", full), ("ex", excerpt))
    now = time.time()
    app.send_task("feedsift.process_articles", args=[[_article(first[0], first[1], now)]])
    _wait_stored(ctx, [first[0]])
    app.send_task("feedsift.process_articles", args=[[_article(second[0], second[1], now)]])
    _wait_stored(ctx, [second[0]])
    later = ctx.store.article(second[0])
    assert (later["duplicate_of"], later["duplicate_kind"], later["cluster"]) == (first[0], "excerpt", first[0])
    assert float(later["similarity"]) >= 0.85
    assert ctx.store.article(first[0])["duplicate_of"] == ""
    assert ctx.store.cluster(first[0]) == sorted(["ex", "full"])


def test_an_index_keeps_the_chunk_size_it_was_made_with(ctx, r, monkeypatch):
    """A release that packs records into other chunks still reads an index made before it."""
    from feedsift.workers import index as index_module

    rng = random.Random(5)
    docs = [(f"a{i}", story(rng, 150)) for i in range(3 * ctx.index.per_chunk)]
    index_all(ctx, docs, time.time())
    monkeypatch.setattr(index_module, "CHUNK_BYTES", index_module.CHUNK_BYTES // 3)
    other = index_module.DuplicateIndex(ctx.redis, ctx.keys, ctx.hasher, ctx.index.verdict.near, 30)
    assert other.per_chunk != ctx.index.per_chunk
    late = index_all(ctx, [("copy", docs[-1][1] + " extra"), (docs[-1][0], docs[-1][1])], time.time(), index=other)
    assert (late[0].duplicate_of, late[1].duplicate_of, late[1].new) == (docs[-1][0], "", False)
    assert int(r.hget(PREFIX + "{dedup}:meta", "per_chunk")) == ctx.index.per_chunk
