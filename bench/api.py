"""HTTP API latency: `GET /articles?limit=50` with 100,000 stored articles, through a real uvicorn server.

Fills a private Redis through the store (as workers write, minus the index),
starts `feedsift serve` against it, and times requests from one client: the
first page, a page deep in the list (by cursor), and filtered pages (a topic; a
topic and a feed, which intersects). The baseline, measured in the same run,
is the same page read in-process through the client, without HTTP.

    .venv/bin/python bench/api.py [--articles 100000] [--requests 1000]

Target: p99 of the first page under 50 ms.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from feedsift.workers.article import Article
from feedsift.workers.embedded import EmbeddedRedis, free_port
from feedsift.workers.settings import Settings

KEY = "bench-key"
TOPICS = ("diplomacy", "sport", "politics")
WORDS = [
    "summit",
    "minister",
    "treaty",
    "league",
    "final",
    "coalition",
    "vote",
    "border",
    "trade",
    "cup",
    "election",
    "talks",
]


def fill(ctx, n: int, feeds: int = 50, seed: int = 7) -> None:
    rng = random.Random(seed)
    start = time.time() - 365 * 86400
    for lo in range(0, n, 1000):
        batch = []
        for i in range(lo, min(n, lo + 1000)):
            title = " ".join(rng.choices(WORDS, k=8))
            topics = tuple(t for t in TOPICS if rng.random() < 0.35)
            batch.append(
                Article(
                    id=f"{i:016x}",
                    feed=f"{i % feeds:012x}",
                    url=f"https://news.example/{i}",
                    title=title,
                    published=start + i * 300 + rng.random(),
                    text=(title + ". ") * 20,
                    content_hash=f"{i:016x}",
                    topics=topics,
                    scores={t: round(rng.random(), 4) for t in TOPICS},
                    model="bench",
                    processed_at=time.time(),
                )
            )
        ctx.store.save_batch(batch)
    for f in range(feeds):
        ctx.store.register_feed(f"{f:012x}", f"https://news.example/feed/{f}.xml")


def percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    q = statistics.quantiles(ms, n=100)
    return f"p50 {q[49]:6.2f} ms  p95 {q[94]:6.2f} ms  p99 {q[98]:6.2f} ms  max {ms[-1]:6.2f} ms"


def timed(call, n: int) -> list[float]:
    for _ in range(20):  # warm up
        call()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--articles", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=1000)
    args = ap.parse_args()

    server = EmbeddedRedis().start()
    env = {
        **os.environ,
        "FEEDSIFT_REDIS_URL": server.url,
        "FEEDSIFT_PREFIX": "bench:",
        "FEEDSIFT_API_KEYS": KEY,
    }
    from feedsift.workers.client import Client
    from feedsift.workers.context import Context

    ctx = Context(Settings.from_env(env))
    t = time.perf_counter()
    fill(ctx, args.articles)
    print(f"stored {ctx.store.article_count():,} articles in {time.perf_counter() - t:.1f}s")

    port = free_port()
    api = subprocess.Popen(
        [sys.executable, "-m", "feedsift.workers.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {KEY}"})
        deadline = time.monotonic() + 60
        while True:
            try:
                http.get("/openapi.json").raise_for_status()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

        first = http.get("/articles", params={"limit": 50}).json()
        assert len(first["items"]) == 50 and first["next"]
        deep = first["next"]
        for _ in range(200):  # 10,000 articles down
            deep = http.get("/articles", params={"limit": 50, "cursor": deep}).json()["next"]

        client = Client(ctx)
        n = args.requests
        rows = [
            ("in-process client.page(limit=50) (baseline)", lambda: client.page(limit=50)),
            ("GET /articles?limit=50", lambda: http.get("/articles", params={"limit": 50}).raise_for_status()),
            (
                "GET /articles?limit=50&cursor=<10,000 down>",
                lambda: http.get("/articles", params={"limit": 50, "cursor": deep}).raise_for_status(),
            ),
            (
                "GET /articles?limit=50&topic=sport",
                lambda: http.get("/articles", params={"limit": 50, "topic": "sport"}).raise_for_status(),
            ),
            (
                "GET /articles?limit=50&topic=sport&feed=<one of 50>",
                lambda: http.get(
                    "/articles", params={"limit": 50, "topic": "sport", "feed": "000000000007"}
                ).raise_for_status(),
            ),
        ]
        results = {}
        for name, call in rows:
            results[name] = timed(call, n)
            print(f"{name:52s} {percentiles(results[name])}")
        base = statistics.median(results[rows[0][0]])
        http_p50 = statistics.median(results[rows[1][0]])
        p99 = statistics.quantiles(results[rows[1][0]], n=100)[98] * 1000
        print(f"HTTP over in-process, median: {http_p50 / base:.2f}x")
        print(f"target p99 < 50 ms for GET /articles?limit=50: {'met' if p99 < 50 else 'NOT met'} ({p99:.2f} ms)")
    finally:
        api.terminate()
        api.wait()
        server.close()


if __name__ == "__main__":
    main()
