"""A local Redis Cluster for tests and benchmarks: three masters, no replicas, on free ports.

Each node is a `redis-server --cluster-enabled yes` in a folder of its own;
`redis-cli --cluster create` assigns the slots. The nodes listen on `host`
(loopback by default; an address other network namespaces reach, for tests of
workers on other hosts) and announce it, so a client anywhere that reaches
`host` follows the cluster's redirections.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from celery import Celery
from redis.cluster import RedisCluster

from feedsift.workers.embedded import COMPACT_HASH_VALUE, EmbeddedRedis, redis_cli_binary, redis_server_binary
from feedsift.workers.queues import ALL
from tests.brokers import sending_to
from tests.harness import PREFIX, Worker, clean


def node_port(host: str) -> int:
    """A free port whose cluster bus port (10000 above) is free too, and exists."""
    rng = random.Random()
    while True:
        port = rng.randint(20000, 50000)
        if all(_free(host, p) for p in (port, port + 10000)):
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


class LocalCluster:
    def __init__(self, masters: int = 3, host: str = "127.0.0.1"):
        self.host, self.ports = host, [node_port(host) for _ in range(masters)]
        self.directory = Path(tempfile.mkdtemp(prefix="feedsift-cluster-"))
        self.processes: dict[int, subprocess.Popen] = {}

    @property
    def url(self) -> str:
        """Any node will do: the client learns the others from it."""
        return f"redis://{self.host}:{self.ports[0]}/0"

    def start(self, timeout: float = 30) -> LocalCluster:
        try:
            for port in self.ports:
                self._start_node(port)
            for port in self.ports:
                self._wait(lambda p=port: ping(self.host, p), timeout, f"node {port}")
            nodes = [f"{self.host}:{p}" for p in self.ports]
            subprocess.run(
                [cli_binary(), "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=60,
            )
            self._wait(self._ok, timeout, "cluster_state:ok on every node")
        except BaseException:
            self.close()
            raise
        return self

    def _start_node(self, port: int) -> None:
        folder = self.directory / str(port)
        folder.mkdir()
        argv = [server_binary(), "--port", str(port), "--bind", self.host, "--dir", str(folder)]
        argv += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"]
        argv += ["--cluster-announce-ip", self.host, "--protected-mode", "no", "--save", "", "--appendonly", "no"]
        argv += ["--hash-max-ziplist-value", str(COMPACT_HASH_VALUE), "--logfile", str(folder / "redis.log")]
        self.processes[port] = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )

    def _ok(self) -> bool:
        for port in self.ports:
            with redis.Redis(self.host, port, socket_timeout=1) as node:
                if node.cluster("info").get("cluster_state") != "ok":
                    return False
        return True

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
