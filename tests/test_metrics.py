"""Prometheus metrics of a real prefork worker: counts summed over its processes, Redis gauges at scrape time."""

from __future__ import annotations

import re

import httpx

from feedsift.workers.client import Client
from feedsift.workers.embedded import free_port
from tests.harness import EXAMPLES, wait_for


def value(text: str, name: str, **labels: str) -> float:
    """The sample `name{labels}` of a scrape (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if match and match.group(1) == name and ",".join(sorted((match.group(2) or "").split(","))) == want:
            return float(match.group(3))
    return 0.0


def test_worker_serves_counts_of_all_its_processes(ctx, r, start_worker, feed_server, tmp_path):
    port = free_port()
    start_worker(concurrency=2, env={"FEEDSIFT_METRICS_PORT": str(port), "FEEDSIFT_METRICS_DIR": str(tmp_path)})
    client = Client(ctx)
    urls = [feed_server.add(f"/metrics/{p.name}", p.read_bytes()) for p in sorted(EXAMPLES.glob("*.[ax]*"))]
    urls.append(feed_server.add("/metrics/missing.xml", b"", status=404))
    job, _ = client.submit(urls)
    done = client.wait(job, timeout=120)
    stored = [client.article(i.decode()) for i in r.zrange(ctx.keys.articles, 0, -1)]

    def counted() -> str | None:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        return text if value(text, "feedsift_articles_stored_total") >= done.stored else None

    text = wait_for(counted, timeout=30, message="the stored articles counted")
    assert value(text, "feedsift_articles_stored_total") == done.stored == len(stored)
    for topic in ("diplomacy", "sport", "politics"):
        tagged = sum(1 for a in stored if topic in a.topics)
        assert value(text, "feedsift_tags_total", topic=topic) == tagged > 0
    kinds = {a.duplicate_kind for a in stored if a.duplicate_of}
    assert sum(value(text, "feedsift_duplicates_total", kind=k) for k in kinds) == sum(
        1 for a in stored if a.duplicate_of
    )
    assert value(text, "feedsift_fetches_total", status="200", error="") == len(urls) - 1
    assert value(text, "feedsift_fetches_total", status="error", error="permanent") == 1
    for stage in ("fetch", "sketch", "tag", "index", "store"):
        assert value(text, "feedsift_stage_seconds_count", stage=stage) > 0
    assert value(text, "feedsift_queue_depth", queue="process") == r.llen(ctx.keys.queue("process"))
    assert value(text, "feedsift_model_info", version=client.current_model()) == 1
    assert value(text, "feedsift_articles") == len(stored)
    assert list(tmp_path.glob("*.db")), "the processes wrote their counts to the shared folder"
