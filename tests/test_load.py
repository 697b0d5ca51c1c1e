"""Load: 20,000 articles in 200 feeds, fetched over HTTP and processed by one worker with 2 processes."""

from __future__ import annotations

import time
import uuid

import pytest

from feedsift.workers.app import app
from tests.harness import job_finished, send_job, wait_for
from tests.test_faults import assert_stored_exactly_once, feeds


@pytest.mark.slow
def test_20000_articles_200_feeds_2_processes(ctx, r, start_worker, feed_server):
    docs = feeds(200, 100, seed=20_000)
    tag = uuid.uuid4().hex[:8]
    urls = [
        feed_server.add(f"/{tag}/feed{i}.xml", doc, headers={"Content-Type": "application/rss+xml"})
        for i, (_, doc, _) in enumerate(docs)
    ]
    start_worker(concurrency=2)
    start = time.monotonic()
    job = send_job(ctx, app, [("feedsift.fetch_feed", [u], {}) for u in urls])
    progress = wait_for(lambda: job_finished(ctx, job), timeout=600, interval=0.5, message="20,000 articles")
    took = time.monotonic() - start
    print(
        f"\n20,000 articles from 200 feeds stored by 2 worker processes in {took:.1f} s ({20_000 / took:.0f} articles/s)"
    )
    assert progress.articles == progress.stored == 20_000 and progress.errors == 0
    assert ctx.store.errors(count=10) == []
    assert r.llen(ctx.keys.deadletter) == 0
    assert_stored_exactly_once(r, ctx.keys, 20_000)
    assert all(f["last_status"] == "200" and f["articles"] == "100" for f in ctx.store.feeds())
