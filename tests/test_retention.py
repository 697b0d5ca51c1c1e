"""Retention: with real Redis, memory stays flat while articles stream past the retention."""

from __future__ import annotations

import time

from feedsift.models.minhash import Decision
from feedsift.workers import retention
from feedsift.workers.article import Article
from feedsift.workers.client import Client
from tests.harness import PREFIX, wait_for

DAY = 86400
TOPICS = ("diplomacy", "sport", "politics")


def articles(day: int, n: int, base: float) -> tuple[list[Article], list[Decision]]:
    """`n` articles published on `day`, every fifth a duplicate of the one before it."""
    out, decisions = [], []
    for i in range(n):
        aid = f"{day:06x}{i:010x}"
        title = f"story {i} of day {day}"
        out.append(
            Article(
                id=aid,
                feed=f"feed{i % 7}",
                url=f"https://news.example/{day}/{i}",
                title=title,
                published=base + day * DAY + i * (DAY / n),
                text=(title + " ") * 40,
                content_hash=aid,
                topics=(TOPICS[i % 3],),
                model="test",
            )
        )
        if i % 5 == 4:
            canonical = out[-2].id
            decisions.append(Decision(aid, i, duplicate_of=canonical, kind="near", similarity=0.9, cluster=canonical))
    return out, decisions


def memory(r) -> int:
    """Bytes Redis holds for feedsift's keys (MEMORY USAGE summed over the prefix)."""
    return sum(r.memory_usage(key, samples=0) or 0 for key in r.scan_iter(match=PREFIX + "*", count=1000))


def test_memory_stays_flat_while_articles_stream_past_the_retention(ctx, r):
    base = 1_700_000_000.0
    figures = []
    for day in range(14):
        batch, decisions = articles(day, 300, base)
        ctx.store.save_batch(batch, decisions=decisions)
        removed = retention.expire(ctx.store, days=3, now=base + (day + 1) * DAY)
        held = ctx.store.article_count()
        figures.append((day, removed, held, memory(r), r.info("memory")["used_memory"]))
    for day, removed, held, used, total in figures:
        print(
            f"day {day:2d}: removed {removed:4d}, held {held:4d}, feedsift keys {used:8,d} B, used_memory {total:,d} B"
        )
    held = [f[2] for f in figures[4:]]
    assert held == [900] * len(held)  # three days of 300, whatever has streamed through
    steady = [f[3] for f in figures[4:]]
    assert max(steady) <= 1.05 * min(steady), steady  # 14 days written, 3 kept: flat, not growing
    # nothing of an expired article is left: its hash, memberships, cluster or seen entry
    gone = articles(0, 300, base)[0]
    pipe = r.pipeline()
    for a in gone:
        pipe.exists(ctx.keys.article(a.id))
        pipe.hexists(ctx.keys.seen, a.id)
        pipe.zscore(ctx.keys.feed_articles(a.feed), a.id)
        pipe.zscore(ctx.keys.topic(a.topics[0]), a.id)
    assert not any(pipe.execute())
    assert r.zcard(ctx.keys.duplicates) == 900 // 5
    clusters = list(r.scan_iter(match=ctx.keys.cluster("*")))
    assert len(clusters) == 900 // 5 and all(r.zcard(c) == 2 for c in clusters)


def test_retention_off_keeps_everything(ctx):
    batch, _ = articles(0, 50, 0.0)
    ctx.store.save_batch(batch)
    assert retention.expire(ctx.store, days=0, now=10**10) == 0 and ctx.store.article_count() == 50


def test_expired_by_the_beat_task_on_a_worker(ctx, r, start_worker):
    start_worker(concurrency=1, env={"FEEDSIFT_RETENTION_DAYS": "2"})
    now = time.time()
    old, _ = articles(0, 40, now - 5 * DAY)
    fresh, _ = articles(0, 40, now - DAY / 2)
    fresh = [a.with_(id="f" + a.id[1:]) for a in fresh]
    ctx.store.save_batch(old + fresh)
    Client(ctx).app.send_task("feedsift.expire_articles")
    wait_for(lambda: ctx.store.article_count() == 40, timeout=60, message="old articles removed")
    assert all(r.exists(ctx.keys.article(a.id)) for a in fresh)
