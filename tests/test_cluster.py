"""Results on a real 3-master Redis Cluster, queues on a plain Redis apart: the answers of one Redis.

The end-to-end, racing-duplicate and worker-killed tests of the single-server
suite, run again with `FEEDSIFT_REDIS_CLUSTER=1` against `tests/cluster.py`'s
local cluster, with real worker processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from redis.cluster import key_slot

from feedsift.workers.client import Client
from feedsift.workers.feeds import feed_id
from feedsift.workers.keys import Keys
from feedsift.workers.settings import Settings
from tests.cluster import cli_binary
from tests.harness import EXAMPLES, PREFIX, ROOT, job_finished, send_job, wait_for
from tests.test_dedup_race import PAIRS, batches, check_clusters
from tests.test_end_to_end import EXPECTED, FILES, assert_near_pairs_clustered, ids_by_guid
from tests.test_faults import assert_stored_exactly_once, feeds, ingest_calls, stored


def test_each_script_and_transaction_touches_one_slot():
    k = Keys("x:", hash_tags=True)
    groups = [
        [k.dedup(name) for name in ("seq", "meta", "time", "docs", "buckets")],  # index.lua, prune.lua
        [k.feed("f1"), k.feed_articles("f1"), k.feeds, k.feeds_due, k.feed("f2")],  # the schedule's MULTIs
        [k.model_current, k.model_versions, k.model_artifact("v1")],  # publishing a model
    ]
    for group in groups:
        assert len({key_slot(key.encode()) for key in group}) == 1, group
    # records and the per-topic indexes spread by their own names
    assert len({key_slot(k.article(f"a{i}").encode()) * 3 // 16384 for i in range(100)}) == 3
    assert k.topic("sport") == "x:topic:sport" and k.article("a") == "x:article:a"
    assert Keys("x:").feed("f") == "x:feed:f" and Keys("x:").model_current == "x:model:current"


def test_cluster_without_a_broker_is_refused_at_start(service_env):
    with pytest.raises(ValueError, match="FEEDSIFT_BROKER_URL"):
        Settings(redis_cluster=True)
    env = {**service_env, "FEEDSIFT_REDIS_CLUSTER": "1", "FEEDSIFT_BROKER_URL": ""}
    argv = [sys.executable, "-m", "celery", "-A", "feedsift.workers.app", "worker", "--pool", "solo"]
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr  # one clear line, no traceback


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_example_feeds_on_the_cluster(cluster, feed_server):
    ctx, r = cluster.ctx, cluster.r
    tag = uuid.uuid4().hex[:8]
    served = [
        feed_server.add(f"/{tag}/{name}", (EXAMPLES / name).read_bytes(), etag=f'"{tag}-{name}"') for name in FILES
    ]
    cluster.start_worker(concurrency=2)
    client = Client(ctx, cluster.app)
    job, _ = client.submit(served)
    progress = client.wait(job, timeout=120)
    ids = ids_by_guid()
    assert progress.articles == len(EXPECTED["articles"]) == len(ids) and progress.errors == 0

    for (name, guid), aid in ids.items():
        record = ctx.store.article(aid)
        assert record["guid"] == guid and record["feed"] == feed_id(served[FILES.index(name)])
        assert set(json.loads(record["scores"])) == {"diplomacy", "sport", "politics"}
    assert r.zcard(ctx.keys.articles) == len(ids)
    # article records spread over every master
    assert len({cluster.cluster.node_of(ctx.keys.article(aid)) for aid in ids.values()}) == 3

    for topic in ("diplomacy", "sport", "politics"):
        members = {m.decode() for m in r.zrange(ctx.keys.topic(topic), 0, -1)}
        assert members == {aid for aid in ids.values() if topic in ctx.store.article(aid)["topics"].split(",")}
        # readable by hand, whichever node one asks
        for port in cluster.cluster.ports:
            argv = [cli_binary(), "-c", "-p", str(port), "ZRANGE", ctx.keys.topic(topic), "0", "-1"]
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout
            assert set(out.split()) == members

    assert_near_pairs_clustered(ctx, ids)
    flagged = {m.decode() for m in r.zrange(ctx.keys.duplicates, 0, -1)}
    in_pairs = {ids[(p[s]["feed"], p[s]["guid"])] for p in EXPECTED["duplicates"] for s in ("copy", "original")}
    assert flagged <= in_pairs and len(flagged) >= 3

    for url in served:
        state = ctx.store.feed(feed_id(url))
        assert state["last_status"] == "200" and state["etag"] and state["url"] == url
    # second poll: 304, nothing processed again
    before = {aid: ctx.store.article(aid)["processed_at"] for aid in ids.values()}
    time.sleep(1.1)
    p2 = client.wait(client.submit(served)[0], timeout=60)
    assert p2.articles == 0 and p2.stored == 0
    assert all(ctx.store.feed(feed_id(url))["last_status"] == "304" for url in served)
    assert {aid: ctx.store.article(aid)["processed_at"] for aid in ids.values()} == before


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_racing_workers_miss_no_duplicate_on_the_cluster(cluster):
    """Four processes race over the batches whose pairs are split across consecutive messages; on one Redis a
    single worker finds exactly the planted pairs (tests/test_dedup_race.py): here the racers must too."""
    work, planted = batches()
    job = uuid.uuid4().hex[:12]
    for batch in work:
        cluster.app.send_task("feedsift.process_articles", args=[batch], kwargs={"job": job})
    assert Client(cluster.ctx, cluster.app).queue_depths()["process"] == len(work)  # read on the broker
    racers = [cluster.start_worker(concurrency=2, queues="process") for _ in range(2)]
    total = sum(map(len, work))
    r = cluster.r
    wait_for(lambda: cluster.ctx.store.job_stored(job) >= total, timeout=240, interval=0.5, message="5,000 articles")
    ids = [a["id"] for batch in work for a in batch]
    pipe = r.pipeline(transaction=False)
    for aid in ids:
        pipe.hget(cluster.ctx.keys.article(aid), "duplicate_of")
    raced = {frozenset((aid, dup.decode())) for aid, dup in zip(ids, pipe.execute()) if dup}
    assert raced == planted, f"missed {len(planted - raced)}, extra {len(raced - planted)}"
    assert check_clusters(r) == PAIRS
    for w in racers:
        assert "succeeded" in w.log_path.read_text()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_worker_group_killed_mid_load_on_the_cluster(cluster):
    ctx, r = cluster.ctx, cluster.r
    docs = feeds(20, 100, seed=21)
    first = cluster.start_worker(concurrency=2)
    job = send_job(ctx, cluster.app, ingest_calls(docs))
    wait_for(lambda: stored(r, ctx.keys) >= 150, timeout=120, interval=0.02, message="some batches stored")
    os.killpg(first.proc.pid, signal.SIGKILL)  # the worker and its pool children, mid-batch
    first.proc.wait()
    at_kill = stored(r, ctx.keys)
    assert at_kill < 2000, "the worker finished before it could be killed"
    assert cluster.broker.hlen(PREFIX + "queue:unacked") > 0  # held by the dead worker, on the broker
    cluster.start_worker(concurrency=2)
    wait_for(lambda: job_finished(ctx, job), timeout=120, message="every article after the kill")
    assert_stored_exactly_once(r, ctx.keys, 2000)
    assert not ctx.store.errors(count=10) and r.llen(ctx.keys.deadletter) == 0
    print(f"\ncluster: killed with {at_kill} of 2000 stored; all 2000 stored once afterwards")


def test_the_schedule_and_model_transactions_run_on_the_cluster(cluster):
    """Each MULTI stays in one slot: subscribing, a failed fetch pausing a feed, resuming, polling,
    forgetting, publishing a model."""
    from feedsift.models.topics import TopicModel
    from feedsift.workers import registry
    from feedsift.workers.context import bundled_model_path
    from feedsift.workers.schedule import Schedule

    ctx, r, k = cluster.ctx, cluster.r, cluster.ctx.keys
    schedule = Schedule.of(ctx)
    url = "http://feed.example/rss"
    fid = feed_id(url)
    schedule.subscribe(fid, url, 900, now=1000.0)
    assert r.zscore(k.feeds_due, fid) == 1000.0 and ctx.store.feed(fid)["url"] == url
    sent = []
    assert schedule.poll(sent.append, now=2000.0)["polled"] == 1 and sent == [url]
    for _ in range(ctx.settings.pause_after_failures):
        schedule.after_fetch(fid, {"error": "timeout"}, now=3000.0)
    assert ctx.store.feed(fid)["paused"] and schedule.next_due(fid) is None
    assert schedule.resume(fid, now=4000.0) and schedule.next_due(fid) == 4000.0
    r.zadd(k.feed_articles(fid), {"a1": 1.0})
    assert schedule.forget(fid)
    assert not r.exists(k.feed(fid), k.feed_articles(fid)) and r.zscore(k.feeds, fid) is None

    version = registry.publish(r, k, TopicModel.load(bundled_model_path()))
    assert registry.current(r, k) == version and r.exists(k.model_artifact(version))
