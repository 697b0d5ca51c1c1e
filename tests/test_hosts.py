"""Workers on other hosts: each in a network namespace of its own, reaching the cluster and the broker over a
link, give the answers of workers on one host.

The servers listen on a service address of the host (on its loopback); each namespace ("host") has its
own address on a veth pair (tests/netns.py) and a route to the service address through it. The cluster nodes
announce the service address, so the redirections a worker follows lead over the link too.
"""

from __future__ import annotations

import random
import subprocess
import uuid

import pytest

from tests.cluster import LocalCluster, on_cluster, plain_redis
from tests.harness import job_finished, send_job, wait_for
from tests.netns import Netns, ip
from tests.test_dedup_race import PAIRS, batches, check_clusters
from tests.test_faults import assert_stored_exactly_once, feeds, ingest_calls


class Network:
    """A service address on the host and namespaces ("hosts") routed to it."""

    def __init__(self, hosts: list[Netns]):
        self.hosts = hosts
        self.address = f"10.{random.randint(64, 250)}.{random.randint(0, 255)}.{random.randint(2, 254)}"
        ip("addr", "add", f"{self.address}/32", "dev", "lo")
        try:
            for ns in hosts:
                ip("netns", "exec", ns.name, "ip", "route", "add", f"{self.address}/32", "via", ns.host_ip)
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        subprocess.run(["ip", "addr", "del", f"{self.address}/32", "dev", "lo"], capture_output=True)


@pytest.fixture(scope="module")
def network():
    hosts: list[Netns] = []
    try:
        for _ in range(2):
            hosts.append(Netns())
    except (OSError, subprocess.CalledProcessError) as exc:
        for ns in hosts:
            ns.close()
        reason = exc.stderr.decode().strip() if getattr(exc, "stderr", None) else str(exc)
        pytest.skip(f"network namespaces not permitted here: {reason}")
    try:
        net = Network(hosts)
        yield net
        net.close()
    finally:
        for ns in hosts:
            ns.close()


@pytest.fixture(scope="module")
def services(network):
    """The results' cluster and the queues' Redis, listening on the service address only."""
    with LocalCluster(host=network.address) as cluster, plain_redis(network.address) as broker_url:
        yield cluster, broker_url


@pytest.fixture
def remote(service_env, network, services, tmp_path):
    cluster, broker_url = services
    with on_cluster(service_env, cluster, broker_url, tmp_path) as run:
        yield run


def peers(run) -> set[str]:
    """Client addresses connected to the broker and to every cluster node."""
    out = {c["addr"].rsplit(":", 1)[0] for c in run.broker.client_list()}
    for node in run.r.get_primaries():
        out |= {c["addr"].rsplit(":", 1)[0] for c in run.r.client_list(target_nodes=node)}
    return out


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_workers_on_two_hosts_give_the_one_host_answers(remote, network):
    hosts = network.hosts
    workers = [remote.start_worker(concurrency=2, prefix=ns.prefix) for ns in hosts]
    # every worker reached the broker and the cluster from its own address, over its link
    assert {ns.inner_ip for ns in hosts} <= peers(remote)

    # uploaded feeds: every article stored once
    job = send_job(remote.ctx, remote.app, ingest_calls(feeds(10, 100, seed=31)))
    wait_for(lambda: job_finished(remote.ctx, job), timeout=120, message="1,000 uploaded articles")
    assert_stored_exactly_once(remote.r, remote.ctx.keys, 1000)

    # racing duplicates across hosts: exactly the pairs a single worker finds (tests/test_dedup_race.py)
    remote.r.delete(*[remote.ctx.keys.dedup(k) for k in ("seq", "meta", "time", "docs", "buckets")])
    work, planted = batches()
    race = uuid.uuid4().hex[:12]
    for batch in work:
        remote.app.send_task("feedsift.process_articles", args=[batch], kwargs={"job": race})
    wait_for(lambda: remote.ctx.store.job_stored(race) >= 5000, timeout=240, interval=0.5, message="5,000 articles")
    ids = [a["id"] for batch in work for a in batch]
    pipe = remote.r.pipeline(transaction=False)
    for aid in ids:
        pipe.hget(remote.ctx.keys.article(aid), "duplicate_of")
    raced = {frozenset((aid, dup.decode())) for aid, dup in zip(ids, pipe.execute()) if dup}
    assert raced == planted, f"missed {len(planted - raced)}, extra {len(raced - planted)}"
    assert check_clusters(remote.r) == PAIRS
    for w in workers:
        assert "succeeded" in w.log_path.read_text()  # both hosts did part of the work
