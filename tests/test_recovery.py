"""Recovery by liveness, on both brokers: what a dead worker held comes back within seconds; what a live
worker holds is never delivered again, however long its task runs."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

from feedsift.workers import liveness
from tests.brokers import messages_in
from tests.harness import job_finished, send_job, wait_for
from tests.test_faults import assert_stored_exactly_once, feeds, ingest_calls, stored

#: Seconds from a worker's kill -9 to every article stored, with the default settings (targets).
RECOVERY = {"redis": 30, "rabbitmq": 10}


def test_a_heartbeat_renews_what_is_held_and_revives_nothing(ctx, r):
    index = ctx.keys.unacked_index  # kombu's: delivery tag -> when taken, or last renewed
    r.zadd(index, {"held": 100.0, "someone-else's": 100.0})
    assert liveness.renew(r, ctx.keys, ["held", "acknowledged"], now=5000.0) == 1
    assert r.zscore(index, "held") == 5000.0
    assert r.zscore(index, "someone-else's") == 100.0
    assert r.zscore(index, "acknowledged") is None  # acknowledged meanwhile: not brought back
    assert liveness.renew(r, ctx.keys, [], now=6000.0) == 0


@pytest.mark.slow
def test_a_killed_worker_group_costs_seconds(ctx, r, broker, start_worker):
    """A worker group is killed with SIGKILL mid-load and a fresh one started at once."""
    docs = feeds(12, 100, seed=11)
    victim = start_worker(concurrency=2, env=broker.env)
    job = send_job(ctx, broker.app, ingest_calls(docs))
    unacked = ctx.keys.unacked  # with Redis as the broker: kombu's record of what workers hold

    def midway():
        return stored(r, ctx.keys) >= 700 and (broker.amqp or r.hlen(unacked))

    wait_for(midway, timeout=120, interval=0.01, message="most batches stored")
    held = set(r.hkeys(unacked))
    os.killpg(victim.proc.pid, signal.SIGKILL)  # the worker and its pool children, mid-batch
    killed = time.monotonic()
    victim.proc.wait()
    at_kill = stored(r, ctx.keys)
    assert at_kill < 1200, "the work was done before the kill"
    start_worker(concurrency=2, env=broker.env)
    limit = RECOVERY[broker.name]

    def given_back() -> bool:
        """Every message the victim held delivered again and acknowledged (RabbitMQ: nothing left queued)."""
        return messages_in(broker.url) == 0 if broker.amqp else not held & set(r.hkeys(unacked))

    if not broker.amqp:
        assert held  # messages it held, neither acknowledged nor lost
    wait_for(lambda: job_finished(ctx, job), timeout=limit + 30, interval=0.05, message="every article after the kill")
    took = time.monotonic() - killed
    wait_for(given_back, timeout=limit + 30, interval=0.2, message="what the victim held given back")
    back = time.monotonic() - killed
    assert_stored_exactly_once(r, ctx.keys, 1200)
    assert not ctx.store.errors(count=10) and r.llen(ctx.keys.deadletter) == 0
    print(
        f"\n{broker.name}: killed with {at_kill} of 1200 stored; all stored once {took:.1f} s after the kill, "
        f"what it held done {back:.1f} s after"
    )
    assert took <= limit
    if not broker.amqp:  # (RabbitMQ's count is read with rabbitmqctl, a second a look)
        assert back <= limit


def trickle(body: bytes, seconds: int):
    """A feed server that sends its answer a piece a second for `seconds` seconds: a long-running fetch."""

    def write(wfile):
        wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n")
        wfile.write(b"Content-Length: %d\r\n\r\n" % len(body))
        step = -(-len(body) // seconds)
        for start in range(0, len(body), step):
            wfile.write(body[start : start + step])
            wfile.flush()
            time.sleep(1)

    return write


@pytest.mark.slow
def test_a_long_task_on_a_live_worker_runs_once(ctx, r, broker, start_worker, feed_server):
    """Shortened timings, for this test only: a 2 s visibility timeout (a heartbeat every 0.4 s, a look for
    lapsed holds every second; RabbitMQ heartbeats of 1 s) against a fetch that runs 9 s: the task outlives
    four timeouts and nine looks while a second, idle worker waits for anything delivered again."""
    env = {**broker.env, "FEEDSIFT_VISIBILITY_TIMEOUT": "2", "FEEDSIFT_FETCH_DEADLINE": "120"}
    _, doc, guids = feeds(1, 5, seed=12)[0]
    path = f"/slow-{uuid.uuid4().hex[:8]}.xml"
    url = feed_server.add(path, b"", raw=trickle(doc, 9))
    start_worker(concurrency=1, env=env)
    start_worker(concurrency=1, env=env)
    started = time.monotonic()
    job = send_job(ctx, broker.app, [("feedsift.fetch_feed", [url], {})])
    wait_for(lambda: job_finished(ctx, job), timeout=120, message="the slow feed stored")
    took = time.monotonic() - started
    time.sleep(3)  # more timeouts: a late second delivery would show
    assert took > 4 * 2  # more than four visibility timeouts
    assert len(feed_server.hits(path)) == 1  # fetched once: never delivered to the other worker
    assert_stored_exactly_once(r, ctx.keys, len(guids))


@pytest.mark.slow
@pytest.mark.parametrize("broker", ["redis"], indirect=True)
def test_what_a_dead_worker_held_is_delivered_once_however_many_look(ctx, r, broker, start_worker, feed_server):
    """Redis broker, timings shortened for this test only (a 2 s visibility timeout, a look every second): a
    worker dies holding two slow fetches while three others look for lapsed holds at the same time; each
    fetch is put back once, so its feed is fetched twice in all (the dead worker's try and one more)."""
    env = {"FEEDSIFT_VISIBILITY_TIMEOUT": "2", "FEEDSIFT_FETCH_DEADLINE": "120"}
    docs = feeds(2, 5, seed=13)
    paths = [f"/held-{uuid.uuid4().hex[:8]}.xml" for _ in docs]
    urls = [feed_server.add(path, b"", raw=trickle(doc, 4)) for path, (_, doc, _) in zip(paths, docs)]
    for _ in range(3):  # they look, but take no fetch themselves
        start_worker(concurrency=1, queues="process", env=env)
    victim = start_worker(concurrency=2, queues="fetch", env=env)
    job = send_job(ctx, broker.app, [("feedsift.fetch_feed", [url], {}) for url in urls])
    wait_for(lambda: all(feed_server.hits(p) for p in paths), timeout=30, message="both fetches under way")
    os.killpg(victim.proc.pid, signal.SIGKILL)
    victim.proc.wait()
    start_worker(concurrency=2, queues="fetch", env=env)
    wait_for(lambda: job_finished(ctx, job), timeout=60, message="both feeds stored")
    time.sleep(3)  # a second putting back would have been fetched by now
    assert [len(feed_server.hits(p)) for p in paths] == [2, 2]
    assert_stored_exactly_once(r, ctx.keys, 10)
