"""Subscriptions on a schedule: real Redis, a real worker, feeds served by a local HTTP server.

The scheduler is driven by calling it with an explicit `now`, not by waiting.
"""

from __future__ import annotations

import threading
import time

import pytest

from feedsift.workers.client import Client
from feedsift.workers.feeds import feed_id
from feedsift.workers.schedule import Schedule, hints, parse_every
from feedsift.workers.settings import Settings
from tests.harness import EXAMPLES, wait_for

DAY = 86400


def test_intervals_and_server_hints():
    assert [parse_every(s) for s in ("15m", "2h", "1d", "90s", "600")] == [900, 7200, 86400, 90, 600]
    for bad in ("", "0m", "soon", "-5m"):
        with pytest.raises(ValueError, match="not like 15m"):
            parse_every(bad)
    now = 1_800_000_000.0
    assert hints({"cache-control": "public, max-age=600"}, 0, now) == 600
    assert hints({"cache-control": "no-cache"}, 30, now) == 1800  # <ttl> is in minutes
    assert hints({"retry-after": "3600"}, 0, now) == 3600
    assert hints({"retry-after": "Fri, 15 Jan 2027 10:00:00 GMT"}, 0, now) == 7200  # an HTTP date
    assert hints({"retry-after": "garbage"}, 0, now) == 0


def test_polls_adapt_within_bounds_and_back_off_then_pause(ctx):
    settings = Settings(poll_min_interval=60, poll_max_interval=DAY, pause_after_failures=5)
    schedule = Schedule(ctx.redis, ctx.keys, settings)
    now = 1_800_000_000.0
    schedule.subscribe("f1", "https://example.org/a.xml", 900, now=now)
    assert schedule.next_due("f1") == now

    intervals = []
    for _ in range(12):  # never changes: slower, up to eight times the asked interval
        due = schedule.after_fetch("f1", {"status": 304, "new": 0}, now=now)
        intervals.append(due - now)
    assert intervals == sorted(intervals) and intervals[-1] == 900 * 8
    for _ in range(20):  # changes at every poll: faster, down to a quarter
        due = schedule.after_fetch("f1", {"status": 200, "new": 3}, now=now)
    assert due - now == 225

    asked = schedule.after_fetch("f1", {"status": 200, "new": 3, "headers": {"cache-control": "max-age=5000"}}, now=now)
    assert asked - now == 5000  # no sooner than the server allows
    assert schedule.after_fetch("f1", {"status": 200, "new": 0, "ttl": 120}, now=now) - now == 7200

    interval = int(ctx.redis.hget(ctx.keys.feed("f1"), "interval"))
    waits = [schedule.after_fetch("f1", {"status": "transient", "error": "HTTP 503"}, now=now) - now for _ in range(4)]
    for n, wait in enumerate(waits, start=1):  # doubling, with up to a fifth more at random
        assert interval * 2**n <= wait <= min(DAY, interval * 2**n * 1.2)
    assert schedule.after_fetch("f1", {"status": "permanent", "error": "HTTP 404 from x"}, now=now) is None
    state = ctx.store.feed("f1")
    assert state["failures"] == "5" and "5 failed fetches in a row; last: HTTP 404 from x" in state["paused"]
    assert schedule.next_due("f1") is None

    assert schedule.after_fetch("f1", {"status": 200, "new": 1}, now=now) is None  # a one-off fetch: still paused
    assert ctx.store.feed("f1")["paused"] and schedule.next_due("f1") is None
    assert schedule.resume("f1", now=now + 10) and schedule.next_due("f1") == now + 10
    assert ctx.store.feed("f1")["failures"] == "0" and not ctx.store.feed("f1")["paused"]
    assert not schedule.resume("nope")


def test_backoff_is_capped_at_a_day(ctx):
    schedule = Schedule(ctx.redis, ctx.keys, Settings(pause_after_failures=50))
    schedule.subscribe("f2", "https://example.org/b.xml", 6 * 3600, now=0)
    waits = [schedule.after_fetch("f2", {"status": "transient", "error": "x"}, now=0) for _ in range(8)]
    assert max(waits) == DAY and waits[-1] == DAY


def test_one_scheduler_at_a_time(ctx):
    schedule = Schedule(ctx.redis, ctx.keys, Settings())
    for n in range(200):
        schedule.subscribe(f"f{n}", f"https://example.org/{n}.xml", 900, now=0)
    sent: list[str] = []
    barrier = threading.Barrier(4)

    def beat():
        barrier.wait()
        for _ in range(5):
            Schedule(ctx.redis, ctx.keys, Settings()).poll(sent.append, now=100)

    threads = [threading.Thread(target=beat) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(sent) == sorted(f"https://example.org/{n}.xml" for n in range(200))  # each once
    ctx.redis.set(ctx.keys.schedule_lock, "someone else")
    assert schedule.poll(sent.append, now=10**10) == {"polled": 0, "busy": True}
    assert ctx.redis.ttl(ctx.keys.schedule_lock) == -1  # not ours: left alone


def _failures(ctx, fid: str) -> int:
    return int(ctx.store.feed(fid).get("failures") or 0)


def test_a_feed_failing_five_times_in_a_row_is_paused_with_its_reason(ctx, worker, feed_server):
    url = feed_server.add("/sched/gone.xml", b"gone", status=404)
    client = Client(ctx)
    fid = client.subscribe(url, 900)[1]
    wait_for(lambda: _failures(ctx, fid) == 1, timeout=60, message="the first fetch")
    for n in range(2, 6):
        assert client.poll(now=time.time() + n * 2 * DAY)["polled"] == 1
        wait_for(lambda n=n: _failures(ctx, fid) == n, timeout=60, message=f"fetch {n}")
    feed = client.feed(fid)
    assert feed["paused"].startswith("5 failed fetches in a row; last: HTTP 404 from " + url)
    assert feed["next_due"] == "" and len(feed_server.hits("/sched/gone.xml")) == 5
    assert client.poll(now=time.time() + 365 * DAY)["polled"] == 0

    feed_server.add("/sched/gone.xml", (EXAMPLES / "pitchside.rdf").read_bytes())
    assert client.resume(fid)
    assert client.poll()["polled"] == 1
    wait_for(lambda: client.feed(fid)["last_status"] == "200", timeout=60, message="the fetch after resuming")
    assert _failures(ctx, fid) == 0 and not client.feed(fid)["paused"]


def test_retry_after_is_honoured(ctx, worker, feed_server):
    url = feed_server.add("/sched/busy.xml", b"busy", status=503, headers={"Retry-After": "3600"})
    client = Client(ctx)
    t0 = time.time()
    fid = client.subscribe(url, 900)[1]
    wait_for(lambda: _failures(ctx, fid) == 1, timeout=60, message="the first fetch")
    assert len(feed_server.hits("/sched/busy.xml")) == 1  # no quick retries of the task either
    due = Schedule.of(ctx).next_due(fid)
    assert due >= t0 + 3600
    for later in (60, 1800, 3590):
        assert client.poll(now=t0 + later)["polled"] == 0
    time.sleep(1)
    assert len(feed_server.hits("/sched/busy.xml")) == 1
    assert client.poll(now=due + 1)["polled"] == 1
    wait_for(lambda: len(feed_server.hits("/sched/busy.xml")) == 2, timeout=60, message="the fetch after an hour")


def test_cache_control_on_success_sets_the_next_poll(ctx, worker, feed_server):
    body = (EXAMPLES / "pitchside.rdf").read_bytes()
    url = feed_server.add("/sched/cached.xml", body, headers={"Cache-Control": "max-age=7200"})
    client = Client(ctx)
    t0 = time.time()
    job, fid = client.subscribe(url, 600)
    client.wait(job, timeout=60)
    wait_for(lambda: Schedule.of(ctx).next_due(fid) >= t0 + 7200, timeout=30, message="the next poll")
    assert client.poll(now=t0 + 3600)["polled"] == 0
    assert feed_id(url) == fid and client.feed(fid)["last_status"] == "200"


def test_cli_subscribe_feeds_unsubscribe(service_env, ctx, worker, feed_server):
    from tests.test_cli import feedsift

    url = feed_server.add("/sched/cli.rdf", (EXAMPLES / "pitchside.rdf").read_bytes())
    fid = feed_id(url)
    done = feedsift(service_env, "subscribe", url, "--every", "15m")
    assert done.returncode == 0 and f"subscribed feed {fid}" in done.stdout, done.stderr
    wait_for(lambda: ctx.store.feed(fid).get("last_status") == "200", timeout=60, message="the first fetch")
    table = feedsift(service_env, "feeds").stdout
    lines = table.splitlines()
    at = next(n for n, line in enumerate(lines) if line.strip().startswith(fid))
    row = "\n".join(lines[at : at + 3])
    assert (
        "every 15m" in row and "ok" in row and "next " + ctx.store.feed(fid)["next_due"][:16].replace("T", " ") in row
    )
    assert feedsift(service_env, "resume", fid).returncode == 0
    assert feedsift(service_env, "unsubscribe", url).returncode == 0
    again = feedsift(service_env, "unsubscribe", url)
    assert again.returncode == 1 and f"no feed {url}" in again.stderr
    refused = feedsift(service_env, "subscribe", "ftp://example.org/feed.xml")
    assert refused.returncode == 2 and "only http and https" in refused.stderr
    assert feedsift(service_env, "subscribe", url, "--every", "soon").returncode == 2
