"""A master of the results' Redis Cluster killed mid-load; the cluster promotes its replica by itself.

Three masters with a replica each (`tests/cluster.py`, a node timeout of 2 s),
the queues on a plain Redis apart, real worker processes. The master holding
the duplicate index (`{dedup}`) is the hardest to lose: every batch goes
through it, and what it holds decides every later duplicate; the master of
the `articles` index is the other variant. Until the replica takes over the
workers get connection errors from the dead master, then CLUSTERDOWN from
every master once the others count it failed; their tasks are tried again
later, not dropped, also when the cluster stays down for longer (a replica
allowed to take over only after a while).

Redis replicates asynchronously: what a master acknowledged but had not yet
sent its replica dies with it. On one machine a replica is hardly ever
behind, so the last test makes it lag on purpose and shows what is lost, and
what is not.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest
import redis
from redis.exceptions import RedisClusterException

from feedsift.models.minhash import MinHasher
from feedsift.workers.client import Client
from feedsift.workers.feeds import feed_id
from tests.cluster import replicated_cluster  # noqa: F401 (the fixture)
from tests.harness import PREFIX, job_finished, wait_for
from tests.test_dedup_race import check_clusters
from tests.test_faults import assert_stored_exactly_once, feeds, ingest_calls

FEEDS, PER_FEED = 12, 100
ARTICLES = FEEDS * PER_FEED
#: Seconds the cluster stays down (every master answering CLUSTERDOWN) before the replica may take over, in the
#: variant that holds it down: longer than a batch's three attempts would last (2 + 4 s) if CLUSTERDOWN counted
#: as a failure of the batch rather than as Redis being unreachable.
HELD_DOWN = 8


def reading(predicate):
    """`predicate`, false while the cluster answers with an error (a node down, CLUSTERDOWN)."""

    def check():
        try:
            return predicate()
        except (redis.RedisError, RedisClusterException):
            return False

    return check


def settled(run, job: str | None):
    """A predicate: the job (if any) is finished and every task has ended, retries included (nothing queued or
    held on the broker), at this look and the one before. A batch counts as stored only once all of it is
    written; the queues are watched as well so that nothing a retry still has to do is missed."""
    before = [False]

    def check() -> bool:
        ctx = run.ctx
        now = job is None or reading(lambda: bool(job_finished(ctx, job)))()
        now = now and not any(Client(ctx).queue_depths().values())
        now = now and not run.broker.hlen(PREFIX + "queue:unacked")
        steady, before[0] = now and before[0], now
        return steady

    return check


class Job:
    """A submission whose feeds are counted at once and sent in parts: what is sent while a master is down
    reaches the workers (the queues are on the broker) as if a client had sent it just before."""

    def __init__(self, run, calls):
        self.run, self.calls, self.id = run, calls, uuid.uuid4().hex[:12]
        run.ctx.store.job_add(self.id, feeds=len(calls))

    def send(self, calls) -> None:
        for name, args, kwargs in calls:
            self.run.app.send_task(name, args=args, kwargs={**kwargs, "job": self.id})


def arrivals(r, k, order: list[str], least: int):
    """A predicate for wait_for that, each time it looks, appends to `order` the articles stored since its last
    look, until `least` are stored: the order in which they were stored, to within a look (20 ms)."""
    known = set(order)

    def enough() -> bool:
        new = {m.decode() for m in r.zrange(k.articles, 0, -1)} - known
        known.update(new)
        order.extend(sorted(new))
        return len(order) >= least

    return enough


def copies_document(originals: list[dict], tag: str) -> tuple[str, bytes, list[str]]:
    """A feed of near-copies: each original's text with one word changed (word 3-shingle Jaccard about 0.9)."""
    items, guids = [], []
    for n, a in enumerate(originals):
        words = a["text"].split()
        words[len(words) // 2] = "altered"
        guid = f"{tag}-copy-{n}"
        items.append(
            f"<item><title>{a['title']}</title><guid>{guid}</guid>"
            f"<pubDate>Tue, 02 Jun 2026 12:00:00 GMT</pubDate><description>{' '.join(words)}</description></item>"
        )
        guids.append(guid)
    doc = (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>Copies</title>'
        f"<link>http://copies-{tag}.example/</link>{''.join(items)}</channel></rss>"
    ).encode()
    return f"upload:{tag}:copies", doc, guids


def ingest_copies(run, originals: list[dict]) -> list[dict]:
    """Ingests near-copies of `originals` as one feed, waits until they are stored; their records, in order."""
    ctx, r = run.ctx, run.r
    source, doc, guids = copies_document(originals, uuid.uuid4().hex[:8])
    job = Job(run, ingest_calls([(source, doc, guids)]))
    job.send(job.calls)
    wait_for(settled(run, job.id), timeout=60, message="the copies stored")
    records = {}
    for m in r.zrange(ctx.keys.feed_articles(feed_id(source)), 0, -1):
        record = ctx.store.article(m.decode())
        records[record["guid"]] = record
    return [records[g] for g in guids]


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("victim", "held"), [("dedup", 0), ("articles", 0), ("dedup", HELD_DOWN)], ids=["dedup", "articles", "held-down"]
)
def test_master_killed_mid_load_fails_over_to_its_replica(replicated_cluster, victim, held):  # noqa: F811
    run = replicated_cluster
    ctx, r, k, cluster = run.ctx, run.r, run.ctx.keys, run.cluster
    port = cluster.master_of(k.dedup("seq") if victim == "dedup" else k.articles)
    (replica,) = cluster.replicas_of(port)
    # the node FEEDSIFT_REDIS_URL names stays up: a process that starts while it is down finds no cluster
    assert f":{port}/" not in run.env["FEEDSIFT_REDIS_URL"]
    if held:
        with cluster.node(replica) as node:
            node.config_set("cluster-replica-no-failover", "yes")

    worker = run.start_worker(concurrency=2)
    job = Job(run, ingest_calls(feeds(FEEDS, PER_FEED, seed=31)))
    job.send(job.calls[: FEEDS // 2])
    stored: list[str] = []  # in the order stored, to know what was written just before the kill
    wait_for(arrivals(r, k, stored, 300), timeout=120, interval=0.02, message="some batches stored")
    cluster.kill(port)
    killed = time.monotonic()
    job.send(job.calls[FEEDS // 2 :])  # taken by the workers while the master is down
    if held:
        wait_for(cluster.down, timeout=30, message="cluster_state:fail")
        time.sleep(HELD_DOWN)
        with cluster.node(replica) as node:
            node.config_set("cluster-replica-no-failover", "no")
    assert cluster.wait_promoted(port) == replica
    failover = time.monotonic() - killed

    wait_for(reading(lambda: job_finished(ctx, job.id)), timeout=120, message="the job finished")
    finished = time.monotonic() - killed
    wait_for(settled(run, job.id), timeout=60, message="every task ended")
    took = time.monotonic() - killed
    assert_stored_exactly_once(r, k, ARTICLES)
    assert not ctx.store.errors(count=10) and r.llen(k.deadletter) == 0
    assert Client(ctx).progress(job.id).errors == 0

    # duplicate detection across the fail-over: near-copies of the first articles stored, of the last 100 stored
    # before the kill (what a replica behind its master would have missed) and of the first ones after it are all
    # found, and nothing else is flagged
    after = sorted({m.decode() for m in r.zrange(k.articles, 0, -1)} - set(stored))
    originals = [ctx.store.article(aid) for aid in stored[:20] + stored[-100:] + after[:40]]
    for original, copy in zip(originals, ingest_copies(run, originals)):
        assert copy["duplicate_of"] == copy["cluster"] == original["id"], copy["guid"]
    assert r.zcard(k.duplicates) == len(originals) and check_clusters(r) == len(originals)

    log = worker.log_path.read_text()
    assert worker.proc.poll() is None and "batch failed" not in log and "unexpected" not in log
    print(
        f"\n{victim} master killed with {len(stored)} of {ARTICLES} stored, "
        f"replica promoted {failover:.1f} s after the kill{f' (held down {held} s)' if held else ''}; "
        f"the job finished {finished:.1f} s after it, every task ended {took:.1f} s after it, every article "
        f"stored once; {log.count('tried again later')} tries put off; "
        f"{len(originals)} planted pairs found"
    )


@pytest.mark.timeout(180)
def test_what_a_lagging_replica_missed_is_lost_with_its_master(replicated_cluster):  # noqa: F811
    """The replica of the `{dedup}` master stops receiving (its link cut, as a slow network would hold it back)
    while the workers go on; then the master dies and that replica is promoted. What the master acknowledged in
    between is gone: the tasks that wrote it were acknowledged too, so nothing sends it again. Everything
    acknowledged before the replica fell behind is intact, and what is lost is confined to those writes."""
    run = replicated_cluster
    ctx, r, k, cluster = run.ctx, run.r, run.ctx.keys, run.cluster
    port = cluster.master_of(k.dedup("seq"))
    (replica,) = cluster.replicas_of(port)
    assert port not in (cluster.master_of(k.articles), cluster.master_of(k.seen))  # those stay up

    run.start_worker(concurrency=2)
    docs = feeds(FEEDS, PER_FEED, seed=32)
    job = Job(run, ingest_calls(docs))
    job.send(job.calls[: FEEDS // 2])
    stored: list[str] = []
    wait_for(arrivals(r, k, stored, 300), timeout=120, interval=0.02, message="some batches stored")
    replicated = set(stored)
    time.sleep(0.05)  # the batches whose `articles` entry was written are through their other writes too
    os.kill(cluster.processes[replica].pid, signal.SIGSTOP)  # it cannot reconnect and catch up
    with cluster.node(port) as node:
        assert node.client_kill_filter(_type="replica") == 1
    job.send(job.calls[FEEDS // 2 :])  # work for the lag, however far the first half has gone
    # the polls above may trail the workers (they share two cores with them): what was stored by the cut is read
    # after it, and the lag is counted from there
    arrivals(r, k, stored, 0)()
    at_cut = len(stored)
    # the workers go on for 150 articles, or 1.5 s at most (less than the node timeout: the replica, stopped, is
    # not counted failed)
    cut, more = time.monotonic(), arrivals(r, k, stored, at_cut + 150)
    while not more() and time.monotonic() - cut < 1.5:
        time.sleep(0.02)
    assert len(stored) > at_cut, "the workers stored nothing while the replica lagged"
    lagged = set(stored) - replicated
    cluster.kill(port)
    os.kill(cluster.processes[replica].pid, signal.SIGCONT)
    assert cluster.wait_promoted(port) == replica
    wait_for(reading(lambda: r.zcard(k.articles) == ARTICLES), timeout=120, message="every article indexed")
    wait_for(settled(run, None), timeout=60, message="every task ended")  # the job may never say finished

    ids = [m.decode() for m in r.zrange(k.articles, 0, -1)]
    pipe = r.pipeline(transaction=False)
    for aid in ids:
        pipe.exists(k.article(aid))
    no_record = {aid for aid, there in zip(ids, pipe.execute()) if not there}
    unindexed = ARTICLES - int(r.get(k.dedup("seq")))
    # what survived: every article in `articles` and `seen` (their masters did not die), every record and index
    # entry written before the replica fell behind, and the index is whole (only shorter)
    assert len(ids) == r.hlen(k.seen) == ARTICLES
    assert int(r.hget(k.dedup("meta"), "entries")) == (ARTICLES - unindexed) * MinHasher().keys_per_article
    # what is lost: writes of the lag to the dead master's slots, its share of the records and the index entries
    # of the batches that ended in the lag (a batch the kill interrupted was tried again, so it is whole)
    assert no_record <= lagged and unindexed <= len(lagged)
    assert no_record or unindexed, f"nothing was lost of the {len(stored) - at_cut} articles stored in the lag"
    # duplicate detection: a near-copy of an article indexed before the lag is found; one of an article whose
    # index entry was lost is not
    early, late = stored[:20], sorted(lagged - no_record)
    originals = [ctx.store.article(aid) for aid in early + late]
    copies = ingest_copies(run, originals)
    assert all(c["duplicate_of"] == o["id"] for o, c in zip(originals[: len(early)], copies))
    missed = sum(1 for c in copies[len(early) :] if not c["duplicate_of"])
    assert missed <= unindexed
    # sending the same feeds again does not repair it: `seen` says every article is stored
    again = Job(run, ingest_calls(docs))
    again.send(again.calls)
    wait_for(settled(run, again.id), timeout=60, message="the feeds read again")
    assert Client(ctx).progress(again.id).articles == 0
    assert not any(r.exists(k.article(aid)) for aid in no_record)
    print(
        f"\nreplica cut off while {len(lagged)} articles were stored, then its master killed: {len(no_record)} "
        f"records and {unindexed} index entries lost; {missed} of {len(late)} near-copies of articles stored in the "
        f"lag not found; the job counts {Client(ctx).progress(job.id).stored} of {ARTICLES} articles stored"
    )
