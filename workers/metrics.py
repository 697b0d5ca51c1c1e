"""Prometheus metrics: counted where tasks end, summed over a worker's processes, read from Redis at scrape time.

A prefork worker's processes each write their counts to files in one folder
(prometheus_client's multiprocess mode); the worker's main process points
prometheus_client at that folder before forking (the `worker_init` signal), and
serves the sum on `FEEDSIFT_METRICS_PORT`. What lives in Redis (queue depth,
articles stored, the model in use, paused feeds) is read when scraped, by the
worker and by the API alike.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from celery import signals

#: Seconds: the buckets of the stage latency histograms.
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ENV = "PROMETHEUS_MULTIPROC_DIR"  # how prometheus_client itself finds the folder

_folder: dict[str, str] = {}


@lru_cache(maxsize=1)
def _m():
    """The metrics, made on first use (after `worker_init` chose the folder, so they count in it)."""
    from types import SimpleNamespace

    from prometheus_client import Counter, Histogram

    return SimpleNamespace(
        stored=Counter("feedsift_articles_stored", "Articles written to Redis (new or updated)"),
        duplicates=Counter("feedsift_duplicates", "Articles flagged as duplicates, by kind", ["kind"]),
        tags=Counter("feedsift_tags", "Topic tags given, by topic", ["topic"]),
        stage=Histogram("feedsift_stage_seconds", "Seconds per stage of work", ["stage"], buckets=BUCKETS),
        fetches=Counter(
            "feedsift_fetches", "Feed fetches by HTTP status (or error) and error kind", ["status", "error"]
        ),
    )


@contextmanager
def stage(name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        _m().stage.labels(name).observe(time.perf_counter() - start)


def fetched(outcome: dict) -> None:
    error = "error" in outcome
    _m().fetches.labels(
        "error" if error else str(outcome.get("status", "")), str(outcome["status"]) if error else ""
    ).inc()


def stored(articles, decisions) -> None:
    m = _m()
    m.stored.inc(len(articles))
    for a in articles:
        for topic in a.topics:
            m.tags.labels(topic).inc()
    for d in decisions:
        if d.duplicate_of:
            m.duplicates.labels(d.kind or "near").inc()


class StateCollector:
    """Gauges read from Redis at scrape time: they hold whatever process scrapes them."""

    def __init__(self, client):
        self.client = client

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        depth = GaugeMetricFamily("feedsift_queue_depth", "Messages waiting in each queue", labels=["queue"])
        for name, n in self.client.queue_depths().items():
            depth.add_metric([name], n)
        yield depth
        model = GaugeMetricFamily("feedsift_model_info", "Topic model version workers use", labels=["version"])
        model.add_metric([self.client.current_model()], 1)
        yield model
        state = self.client.state_counts()
        yield GaugeMetricFamily("feedsift_articles", "Articles held in Redis", value=state["articles"])
        yield GaugeMetricFamily("feedsift_feeds_subscribed", "Subscribed feeds", value=state["subscribed"])
        yield GaugeMetricFamily("feedsift_feeds_paused", "Subscriptions paused after failing", value=state["paused"])


def registry(client, folder: str | None = None):
    """A registry with the counts of every process writing to `folder` (if any) and the Redis gauges."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    reg = CollectorRegistry()
    if folder:
        MultiProcessCollector(reg, path=folder)
    reg.register(StateCollector(client))
    return reg


def exposition(client) -> tuple[bytes, str]:
    """The text a scrape of the API's /metrics gets: the Redis gauges, and the counts of workers on this host
    when they share `FEEDSIFT_METRICS_DIR` with it."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(registry(client, client.ctx.settings.metrics_dir or None)), CONTENT_TYPE_LATEST


@signals.worker_init.connect
def _worker_init(**_) -> None:
    """In the worker's main process, before forking: one folder for its processes' counts, served on the port."""
    from feedsift.workers.settings import get_settings

    settings = get_settings()
    folder = settings.metrics_dir or tempfile.mkdtemp(prefix="feedsift-metrics-")
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):  # counts of an earlier run are not this run's
        if name.endswith(".db"):
            os.remove(os.path.join(folder, name))
    os.environ[ENV] = folder
    _folder["path"], _folder["owned"] = folder, "" if settings.metrics_dir else "1"
    if settings.metrics_port:
        from prometheus_client import start_http_server

        from feedsift.workers.client import Client

        start_http_server(settings.metrics_port, registry=registry(Client(), folder))


@signals.worker_process_shutdown.connect
def _process_gone(pid=None, **_) -> None:
    if "path" in _folder:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid(), _folder["path"])


@signals.worker_shutdown.connect
def _worker_gone(**_) -> None:
    if _folder.get("owned"):
        shutil.rmtree(_folder["path"], ignore_errors=True)
