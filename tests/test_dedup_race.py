"""No missed duplicate under concurrency: four worker processes racing give the single-worker answer."""

from __future__ import annotations

import hashlib
import random
import time
import uuid

import pytest

from feedsift.workers.app import app
from tests.harness import clean, wait_for

PREFIX = "fstest:"
VOCAB = [f"w{i}" for i in range(20000)]
PAIRS, SINGLES, BATCH = 1000, 3000, 50


def article(aid: str, text: str, published: float) -> dict:
    return {
        "id": aid,
        "feed": "race",
        "url": "",
        "guid": aid,
        "title": aid,
        "published": published,
        "text": text,
        "content_hash": hashlib.blake2b(text.encode(), digest_size=8).hexdigest(),
    }


def batches() -> tuple[list[list[dict]], set[frozenset]]:
    """Batches to send in order; pair k's members are in batches 2i and 2i+1, sent one after the other."""
    rng = random.Random(2026)
    now = time.time()

    def story() -> str:
        return " ".join(rng.choice(VOCAB) for _ in range(rng.randint(80, 200)))

    firsts, seconds, pairs = [], [], set()
    for k in range(PAIRS):
        text = story()
        w = text.split()
        w[rng.randrange(len(w))] = "changed"  # one word: true Jaccard about 0.95 or more
        firsts.append(article(f"p{k}a", text, now))
        seconds.append(article(f"p{k}b", " ".join(w), now))
        pairs.add(frozenset((f"p{k}a", f"p{k}b")))
    singles = [article(f"s{k}", story(), now) for k in range(SINGLES)]
    half = BATCH // 2
    out = []
    for i in range(0, PAIRS, half):
        fill = [singles.pop() for _ in range(2 * half)]
        a, b = firsts[i : i + half] + fill[:half], seconds[i : i + half] + fill[half:]
        rng.shuffle(a)
        rng.shuffle(b)
        out += [a, b]
    out += [singles[i : i + BATCH] for i in range(0, len(singles), BATCH)]
    assert sum(map(len, out)) == 2 * PAIRS + SINGLES == 5000
    return out, pairs


def ingest(r, work: list[list[dict]]) -> tuple[set[frozenset], dict]:
    job = uuid.uuid4().hex[:12]
    for batch in work:  # all at once: the workers take them as fast as they can
        app.send_task("feedsift.process_articles", args=[batch], kwargs={"job": job})
    total = sum(map(len, work))
    stored = f"{PREFIX}job:{job}:done"  # batch -> articles stored
    wait_for(lambda: sum(map(int, r.hvals(stored))) >= total, timeout=240, interval=0.5, message="5,000 articles")
    ids = [a["id"] for batch in work for a in batch]
    pipe = r.pipeline(transaction=False)
    for aid in ids:
        pipe.hmget(f"{PREFIX}article:{aid}", "duplicate_of", "cluster")
    flagged, canon = set(), {}
    for aid, (dup, cluster) in zip(ids, pipe.execute()):
        if dup:
            flagged.add(frozenset((aid, dup.decode())))
            canon[aid] = cluster.decode()
    return flagged, canon


def check_clusters(r) -> int:
    """Every cluster has exactly one canonical: its id, the only member not pointing elsewhere."""
    n = 0
    for key in r.scan_iter(match=PREFIX + "cluster:*", count=1000):
        root = key.decode()[len(PREFIX + "cluster:") :]
        members = [m.decode() for m in r.zrange(key, 0, -1)]
        heads = [m for m in members if not r.hget(f"{PREFIX}article:{m}", "duplicate_of")]
        assert heads == [root], (root, members, heads)
        assert all(r.hget(f"{PREFIX}article:{m}", "cluster").decode() == root for m in members)
        n += 1
    return n


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_racing_workers_miss_no_duplicate(r, start_worker):
    work, planted = batches()

    single = start_worker(concurrency=1, queues="process")
    alone, _ = ingest(r, work)
    assert alone == planted  # the reference run finds every pair and nothing else
    assert check_clusters(r) == PAIRS
    single.stop()
    clean(r, PREFIX)

    racers = [start_worker(concurrency=2, queues="process") for _ in range(2)]
    raced, canonical = ingest(r, work)
    assert raced == alone, f"missed {len(alone - raced)}, extra {len(raced - alone)}"
    assert check_clusters(r) == PAIRS
    won_by_b = sum(1 for aid, root in canonical.items() if root.endswith("b"))
    print(f"\nraced: {len(raced)} pairs flagged; {won_by_b} pairs where the second-sent member was indexed first")
    # both workers did part of the work
    for w in racers:
        assert "succeeded" in w.log_path.read_text()
