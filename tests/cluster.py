"""A local Redis Cluster for tests and benchmarks: three masters on free ports, no replicas unless asked.

Each node is a `redis-server --cluster-enabled yes` in a folder of its own;
`redis-cli --cluster create` assigns the slots (and, with `replicas`, gives
each master that many replicas). The nodes listen on `host` (loopback by
default; an address other network namespaces reach, for tests of workers on
other hosts) and announce it, so a client anywhere that reaches `host` follows
the cluster's redirections. A test may kill a master (`kill`) and wait for
the cluster itself to promote its replica (`wait_promoted`).
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from celery import Celery
from redis.cluster import RedisCluster, key_slot

from feedsift.workers.embedded import COMPACT_HASH_VALUE, EmbeddedRedis, redis_cli_binary, redis_server_binary
from feedsift.workers.queues import ALL
from tests.brokers import sending_to
from tests.harness import PREFIX, Worker, clean


def node_port(host: str, taken: Collection[int] = ()) -> int:
    """A free port whose cluster bus port (10000 above) is free too, and exists; none of `taken`."""
    rng = random.Random()
    while True:
        port = rng.randint(20000, 50000)
        if port not in taken and all(_free(host, p) for p in (port, port + 10000)):
            return port


def _free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def ping(host: str, port: int) -> bool:
    with redis.Redis(host, port, socket_timeout=1) as client:
        return client.ping()


def server_binary() -> str:
    """The system's redis-server when it has one (7.x), else the bundled one (6.2 speaks cluster too)."""
    return shutil.which("redis-server") or redis_server_binary()


def cli_binary() -> str:
    return shutil.which("redis-cli") or redis_cli_binary() or "redis-cli"


def _covers(slots: str, slot: int) -> bool:
    """Whether a CLUSTER NODES slot field ("5461-10922", "42", or a "[...]" migration note) holds `slot`."""
    if slots.startswith("["):
        return False
    first, _, last = slots.partition("-")
    return int(first) <= slot <= int(last or first)


class LocalCluster:
    """`masters` masters, each with `replicas` replicas. `node_timeout` (ms) is how long a node may be
    unreachable before the others count it failed and its replica takes over: short for fail-over tests."""

    def __init__(self, masters: int = 3, host: str = "127.0.0.1", replicas: int = 0, node_timeout: int = 5000):
        self.host, self.replicas, self.node_timeout = host, replicas, node_timeout
        self.ports: list[int] = []
        for _ in range(masters * (1 + replicas)):
            self.ports.append(node_port(host, self.ports))
        self.directory = Path(tempfile.mkdtemp(prefix="feedsift-cluster-"))
        self.processes: dict[int, subprocess.Popen] = {}

    @property
    def url(self) -> str:
        """Any node will do: the client learns the others from it (the first one running)."""
        return f"redis://{self.host}:{(self.live() or self.ports)[0]}/0"

    def live(self) -> list[int]:
        """The ports of the nodes still running."""
        return [p for p in self.ports if p in self.processes and self.processes[p].poll() is None]

    def start(self, timeout: float = 30) -> LocalCluster:
        try:
            for port in self.ports:
                self._start_node(port)
            for port in self.ports:
                self._wait(lambda p=port: ping(self.host, p), timeout, f"node {port}")
            nodes = [f"{self.host}:{p}" for p in self.ports]
            replicas = ["--cluster-replicas", str(self.replicas)]
            subprocess.run(
                [cli_binary(), "--cluster", "create", *nodes, *replicas, "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=60,
            )
            self._wait(self._ok, timeout, "cluster_state:ok on every node")
            if self.replicas:
                self._wait(self._replicated, timeout, f"{self.replicas} replica(s) in sync with every master")
        except BaseException:
            self.close()
            raise
        return self

    def _start_node(self, port: int) -> None:
        folder = self.directory / str(port)
        folder.mkdir()
        argv = [server_binary(), "--port", str(port), "--bind", self.host, "--dir", str(folder)]
        argv += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        argv += ["--cluster-node-timeout", str(self.node_timeout)]
        argv += ["--cluster-announce-ip", self.host, "--protected-mode", "no", "--save", "", "--appendonly", "no"]
        argv += ["--repl-diskless-sync-delay", "0"]  # a replica's first sync starts at once, not 5 s later
        argv += ["--hash-max-ziplist-value", str(COMPACT_HASH_VALUE), "--logfile", str(folder / "redis.log")]
        self.processes[port] = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )

    def _ok(self) -> bool:
        for port in self.live():
            with redis.Redis(self.host, port, socket_timeout=1) as node:
                if node.cluster("info").get("cluster_state") != "ok":
                    return False
        return True

    def nodes(self) -> list[dict]:
        """Every node as a running node sees it: port, id, role ("master" or "slave"), master id, flags, slots."""
        with self.node(self.live()[0]) as node:
            text = node.execute_command("CLUSTER", "NODES")  # the raw text (CLUSTER NODES is parsed otherwise)
        out = []
        for line in text.splitlines():
            node_id, address, flags, master, *_ = fields = line.split()
            slots = fields[8:]
            flags = set(flags.split(","))
            port = int(address.split("@")[0].rsplit(":", 1)[1])
            role = "master" if "master" in flags else "slave"
            out.append({"port": port, "id": node_id, "role": role, "master": master, "flags": flags, "slots": slots})
        return out

    def _replicated(self) -> bool:
        """Every running node knows every replica, and each master has its replicas online."""
        for port in self.live():
            with self.node(port) as node:
                info = node.info("replication")
                if info["role"] == "master" and info.get("connected_slaves", 0) < self.replicas:
                    return False
                if info["role"] == "slave" and info.get("master_link_status") != "up":
                    return False
        nodes = self.nodes()
        masters = [m for m in nodes if m["role"] == "master" and m["slots"]]
        return all(sum(1 for n in nodes if n["master"] == m["id"]) >= self.replicas for m in masters)

    def master_of(self, key: str) -> int:
        """The port of the master holding `key`, as the cluster says now."""
        slot = key_slot(key.encode())
        for n in self.nodes():
            if n["role"] == "master" and "fail" not in n["flags"] and any(_covers(r, slot) for r in n["slots"]):
                return n["port"]
        raise LookupError(f"no master serves slot {slot}")

    def replicas_of(self, port: int) -> list[int]:
        nodes = self.nodes()
        (master,) = [n["id"] for n in nodes if n["port"] == port]
        return [n["port"] for n in nodes if n["master"] == master]

    def node(self, port: int) -> redis.Redis:
        """A plain client of one node (close it after use)."""
        return redis.Redis(self.host, port, socket_timeout=1, decode_responses=True)

    def down(self) -> bool:
        """Whether a running node says cluster_state:fail (it then answers every key command with CLUSTERDOWN)."""
        with self.node(self.live()[0]) as node:
            return node.cluster("info").get("cluster_state") == "fail"

    def kill(self, port: int) -> None:
        """SIGKILL: the node dies with whatever it had not yet sent its replicas."""
        proc = self.processes[port]
        proc.kill()
        proc.wait()

    def wait_promoted(self, port: int, timeout: float = 30) -> int:
        """Waits until a replica of the (dead) master at `port` serves its slots and every running node says
        cluster_state:ok; returns that replica's port."""
        replicas = set(self.replicas_of(port))
        promoted = []

        def done() -> bool:
            masters = [n for n in self.nodes() if n["role"] == "master" and n["slots"] and "fail" not in n["flags"]]
            promoted[:] = [n["port"] for n in masters if n["port"] in replicas]
            return bool(promoted) and self._ok()

        self._wait(done, timeout, f"a replica of {port} promoted")
        return promoted[0]

    @staticmethod
    def _wait(check, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if check():
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"local Redis Cluster: no {what} after {timeout:g} s")
            time.sleep(0.1)

    def client(self) -> RedisCluster:
        return RedisCluster.from_url(self.url)

    def node_of(self, key: str) -> int:
        """The port of the master holding `key`."""
        c = self.client()
        try:
            return c.get_node_from_key(key).port
        finally:
            c.close()

    def close(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self.processes.clear()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class OnCluster:
    """A test's view of the service on a cluster: this process's context and Celery client, both Redis clients
    (results on the cluster, queues on the broker), and a way to start workers with the same settings."""

    cluster: LocalCluster
    env: dict
    app: Celery
    ctx: object
    r: RedisCluster
    broker: redis.Redis
    log_dir: Path
    workers: list[Worker] = field(default_factory=list)

    def start_worker(self, concurrency: int = 2, queues: str = ",".join(ALL), env: dict | None = None, prefix=()):
        name = f"c{len(self.workers)}-{uuid.uuid4().hex[:6]}"
        w = Worker({**self.env, **(env or {})}, self.log_dir, name, concurrency, queues, tuple(prefix))
        self.workers.append(w)
        return w.wait_ready()


@contextmanager
def on_cluster(service_env: dict, cluster: LocalCluster, broker_url: str, log_dir: Path) -> Iterator[OnCluster]:
    """While inside, this process and the workers it starts keep results on `cluster` and queues at `broker_url`."""
    from feedsift.workers.context import context

    settings = {"redis_url": cluster.url, "redis_cluster": "1"}
    with sending_to(broker_url, **settings) as app:
        env = {**service_env, "FEEDSIFT_BROKER_URL": broker_url, "FEEDSIFT_REDIS_URL": cluster.url}
        env["FEEDSIFT_REDIS_CLUSTER"] = "1"
        r, broker = cluster.client(), redis.Redis.from_url(broker_url)
        clean(r, PREFIX)
        clean(broker, PREFIX)
        run = OnCluster(cluster, env, app, context(), r, broker, log_dir)
        try:
            yield run
        finally:
            for w in run.workers:
                w.stop()
            for client in (r, broker, *(run.ctx.__dict__.get(n) for n in ("redis", "broker_redis"))):
                if client is not None:
                    client.close()


@pytest.fixture(scope="session")
def local_cluster():
    with LocalCluster() as c:
        yield c


@pytest.fixture(scope="session")
def cluster_broker():
    """The queues' plain Redis, apart from the cluster."""
    with EmbeddedRedis() as b:
        yield b


@pytest.fixture
def cluster(service_env, local_cluster, cluster_broker, tmp_path):
    with on_cluster(service_env, local_cluster, cluster_broker.url, tmp_path) as run:
        yield run


@pytest.fixture
def replicated_cluster(service_env, cluster_broker, tmp_path):
    """A cluster of its own for one test (which may kill a master): three masters, a replica each, and a node
    timeout of 1 s, so the replica of a killed master takes over about 2.5 s after the kill."""
    with (
        LocalCluster(replicas=1, node_timeout=2000) as c,
        on_cluster(service_env, c, cluster_broker.url, tmp_path) as run,
    ):
        yield run


@contextmanager
def plain_redis(host: str) -> Iterator[str]:
    """A plain redis-server listening on `host` (the queues' broker for workers on other hosts); yields its URL."""
    port = node_port(host)
    with tempfile.TemporaryDirectory(prefix="feedsift-broker-") as folder:
        argv = [server_binary(), "--port", str(port), "--bind", host, "--dir", folder, "--save", ""]
        proc = subprocess.Popen(
            [*argv, "--protected-mode", "no", "--logfile", f"{folder}/redis.log"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            LocalCluster._wait(lambda: ping(host, port), 30, f"redis on {host}:{port}")
            yield f"redis://{host}:{port}/0"
        finally:
            proc.kill()
            proc.wait()
