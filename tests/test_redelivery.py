"""Lost messages: a task message that no queue and no worker holds any more is sent again.

kombu's Redis transport can lose a message taken by a worker killed between
BRPOP and recording it as unacknowledged. These tests lose messages on purpose,
the way that window does (off the queue, nowhere else), and show they come back.
"""

from __future__ import annotations

import base64
import json
import os
import signal

import pytest

from feedsift.workers import redelivery
from feedsift.workers.app import app
from tests.harness import PREFIX, job_finished, send_job, wait_for
from tests.test_faults import assert_stored_exactly_once, feeds, ingest_calls

FETCH = PREFIX + "queue:fetch"
PROCESS = PREFIX + "queue:process"
UNACKED = PREFIX + "queue:unacked"


def _queued(r, queue: str, job: str) -> list[str]:
    """Task ids of the job's messages on a queue, next to be taken first."""
    ids = []
    for raw in reversed(r.lrange(queue, 0, -1)):
        message = json.loads(raw)
        _, kwargs, _ = json.loads(base64.b64decode(message["body"]))
        if kwargs.get("job") == job:
            ids.append(message["headers"]["id"])
    return ids


def _take(r, queue: str, task_id: str) -> bytes:
    """Removes one message from a queue, as a worker's BRPOP would, and returns it."""
    for raw in r.lrange(queue, 0, -1):
        if json.loads(raw)["headers"]["id"] == task_id:
            assert r.lrem(queue, 1, raw) == 1
            return raw
    raise AssertionError(f"{task_id} is not queued on {queue}")


def test_sweep_sends_again_only_what_no_queue_or_worker_holds(ctx, r):
    result = app.send_task("feedsift.ingest_feed", args=["<rss/>", "upload:sweep"], kwargs={"job": "j1"})
    tid = result.id
    call = json.loads(r.hget(ctx.keys.pending, tid))
    assert call == {"task": "feedsift.ingest_feed", "args": ["<rss/>", "upload:sweep"], "kwargs": {"job": "j1"}}
    sent = []

    def send(task_id, c):
        sent.append((task_id, c))

    # queued: left alone, and not looked at again for another timeout
    t = 1e10
    assert redelivery.sweep(r, ctx.keys, 60, send, now=t) == []
    assert r.zscore(ctx.keys.pending_since, tid) == t
    assert redelivery.sweep(r, ctx.keys, 60, send, now=t + 30) == []

    # held by a worker (recorded as unacknowledged): left alone
    raw = _take(r, FETCH, tid)
    r.hset(UNACKED, "tag-1", json.dumps([json.loads(raw), "", "fetch"]))
    assert redelivery.sweep(r, ctx.keys, 60, send, now=t + 60) == []
    assert r.zscore(ctx.keys.pending_since, tid) == t + 60

    # younger than the timeout: left alone even though it is nowhere
    r.hdel(UNACKED, "tag-1")
    assert redelivery.sweep(r, ctx.keys, 60, send, now=t + 90) == []
    # nowhere, and old enough: sent again with the same call
    assert redelivery.sweep(r, ctx.keys, 60, send, now=t + 120) == [tid]
    assert sent == [(tid, call)]

    # ended (the task removed its pending call): never sent again
    redelivery.forget(r, ctx.keys, tid)
    assert redelivery.sweep(r, ctx.keys, 60, send, now=t + 300) == []
    assert r.zscore(ctx.keys.pending_since, tid) is None
    assert sent == [(tid, call)]


def test_a_feed_read_twice_counts_once_in_its_submission(ctx, r):
    ctx.store.job_add("j2", feeds=2)
    for _ in range(2):  # the same message run twice, as redelivery may do
        ctx.store.feed_read("feed-a", "j2", error=False, last_status="200")
    assert ctx.store.job_progress("j2") == {"feeds": 2, "feeds_done": 1, "errors": 0, "articles": 0, "stored": 0}
    ctx.store.feed_read("feed-b", "j2", error=True, last_status="http")
    assert ctx.store.job_progress("j2") == {"feeds": 2, "feeds_done": 2, "errors": 1, "articles": 0, "stored": 0}


@pytest.mark.slow
def test_lost_upload_and_lost_batch_are_stored_after_the_visibility_timeout(ctx, r, start_worker):
    docs = feeds(4, 60, seed=3)
    job = send_job(ctx, app, ingest_calls(docs))
    # an upload lost in the window: off the queue, held by no worker
    lost_upload = _queued(r, FETCH, job)[0]
    _take(r, FETCH, lost_upload)
    assert r.hexists(ctx.keys.pending, lost_upload)

    # the other uploads are read; their batches wait for a worker of the process queue
    # (its own sweep waits an hour, so the lost upload stays lost until the last worker)
    reader = start_worker(concurrency=1, queues="fetch", env={"FEEDSIFT_VISIBILITY_TIMEOUT": "3600"})
    wait_for(lambda: ctx.store.job_progress(job)["feeds_done"] >= 3, timeout=60, message="three uploads read")
    os.kill(reader.proc.pid, signal.SIGTERM)  # warm shutdown
    reader.proc.wait(timeout=60)
    assert ctx.store.job_progress(job)["feeds_done"] == 3
    batches = _queued(r, PROCESS, job)
    assert len(batches) >= 2
    _take(r, PROCESS, batches[0])  # a batch lost the same way

    w = start_worker(concurrency=2, env={"FEEDSIFT_VISIBILITY_TIMEOUT": "2"})
    wait_for(lambda: job_finished(ctx, job), timeout=90, message="every article, lost ones included")
    log = w.log_path.read_text()
    assert f"message {lost_upload} (feedsift.ingest_feed) was lost" in log
    assert f"message {batches[0]} (feedsift.process_articles) was lost" in log
    assert_stored_exactly_once(r, ctx.keys, 240)
    # every call ended, so nothing is left to send again
    wait_for(lambda: r.hlen(ctx.keys.pending) == 0, timeout=10, message="no pending calls left")
    assert r.zcard(ctx.keys.pending_since) == 0


@pytest.mark.parametrize("broker", ["rabbitmq"], indirect=True)
def test_no_ledger_with_rabbitmq(ctx, r, broker):
    """RabbitMQ keeps a message until it is acknowledged, so nothing is written to `pending` for it."""
    broker.app.send_task("feedsift.ingest_feed", args=["<rss/>", "upload:amqp"], kwargs={"job": "j3"})
    assert r.hlen(ctx.keys.pending) == 0 and r.zcard(ctx.keys.pending_since) == 0
    assert broker.app.conf.broker_url.startswith("amqp://")
