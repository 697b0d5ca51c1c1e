"""RabbitMQ for service tests: a vhost of its own on the machine's server, or a node of its own to kill.

The machine's server (127.0.0.1:5672, guest/guest) is shared with other runs:
each test gets a fresh vhost, deleted afterwards, so no queue is shared. A test
that kills the broker starts a node of its own (own name, port and data
folder) instead of touching the shared one.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from celery import Celery

from feedsift.workers.embedded import free_port

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672/"
#: The server's start script (Debian's layout), else whatever PATH has.
SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
if not os.path.exists(SERVER):
    SERVER = "rabbitmq-server"


def rabbitmqctl(*args: str, node: str | None = None) -> str:
    argv = ["rabbitmqctl", "-q", *(["-n", node] if node else []), *args]
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120).stdout


@contextmanager
def rabbitmq_vhost(base: str = RABBITMQ, node: str | None = None) -> Iterator[str]:
    """The broker URL of a new vhost that guest may use; the vhost and its queues are deleted afterwards."""
    vhost = f"feedsift-test-{uuid.uuid4().hex[:10]}"
    rabbitmqctl("add_vhost", vhost, node=node)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*", node=node)
        yield base + vhost
    finally:
        rabbitmqctl("delete_vhost", vhost, node=node)


def listening(port: int, host: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


class RabbitNode:
    """A RabbitMQ node of its own on a free loopback port, with its data on disk: killed and started again."""

    def __init__(self):
        self.port, self.dist_port = free_port(), free_port()
        self.name = f"feedsift-{uuid.uuid4().hex[:8]}@localhost"
        self.directory = Path(tempfile.mkdtemp(prefix="feedsift-rabbit-"))
        (self.directory / "enabled_plugins").write_text("[].\n")
        (self.directory / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        for sub in ("mnesia", "log"):
            (self.directory / sub).mkdir()
        self.env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.directory / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.directory / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.directory / "rabbitmq.conf"),
        }
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def start(self, timeout: float = 90) -> RabbitNode:
        assert not listening(self.port), f"port {self.port} is taken"
        log = open(self.directory / "server.out", "a")  # noqa: SIM115 (the server's for its life)
        # the script itself, not the wrapper on PATH that switches user in a session of its own: the
        # server stays in this process group, so a kill reaches it
        self.process = subprocess.Popen(
            [SERVER], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not listening(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"RabbitMQ node did not start: {(self.directory / 'server.out').read_text()[-2000:]}"
                )
            time.sleep(0.2)
        return self

    def kill(self) -> None:
        """Kills the node hard (SIGKILL to the server and its Erlang VM)."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None
        deadline = time.monotonic() + 10
        while listening(self.port):
            assert time.monotonic() < deadline, "the killed node still listens"
            time.sleep(0.1)

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


@contextmanager
def sending_to(url: str, **settings: str) -> Iterator[Celery]:
    """While inside, this process's settings name `url` as the broker (empty: the Redis of the results), and
    any other `FEEDSIFT_*` given; yields a Celery client configured as feedsift's own app would be."""
    from feedsift.workers import settings as module
    from feedsift.workers.app import celery_config
    from feedsift.workers.context import context

    names = {"FEEDSIFT_BROKER_URL": url, **{f"FEEDSIFT_{k.upper()}": v for k, v in settings.items()}}
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(names)
    module.get_settings.cache_clear()
    context.cache_clear()
    app = Celery("feedsift-client")
    app.add_defaults(celery_config)
    try:
        yield app
    finally:
        app.close()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        module.get_settings.cache_clear()
        context.cache_clear()


@dataclass(frozen=True)
class Broker:
    """The broker a test runs on: its name, URL (empty: Redis), the workers' environment, a client app."""

    name: str
    url: str
    env: dict
    app: Celery

    @property
    def amqp(self) -> bool:
        return self.name == "rabbitmq"


def messages_in(url: str, node: str | None = None) -> int:
    """Messages in the vhost of `url`, ready or held by a consumer (RabbitMQ's own count)."""
    vhost = url.rsplit("/", 1)[1] or "/"
    rows = rabbitmqctl("list_queues", "-p", vhost, "--no-table-headers", "name", "messages", node=node)
    return sum(int(n) for _, n in (line.split() for line in rows.splitlines() if line.strip()))
