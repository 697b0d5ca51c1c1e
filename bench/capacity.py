"""One Redis shard's ceilings, measured: the duplicate index and the article store.

The duplicate index lives in one hash slot, so on one shard of a cluster
whatever the number of shards: its ceiling is the cluster's for new articles.

- index: `DuplicateIndex.decide` in batches of 50 on an index that already holds
  `--fill` articles. A Redis server runs one script at a time, so the server's
  CPU per article (INFO, user + sys) gives the shard's ceiling, 1 / CPU per
  article; `--clients` threads calling at once give the rate reached here.
- its memory: bytes per article of the five `{dedup}` keys (MEMORY USAGE),
  hence bytes per day of window.
- store: `Store.save_batch` of the same articles with the index's decisions,
  the same measures; Redis commands per article for both.

    .venv/bin/python bench/capacity.py [--fill 100000] [--measure 20000] [--clients 3] [--text mixed|distinct]

The cost of the index script grows with the candidates each article meets in
its buckets. `mixed` (the default) takes bench/pipeline.py's articles: the
written corpus, then mixtures of three rows' sentences, so every article shares
sentences with many others, a heavy case. `distinct` takes stories of random
words from a large vocabulary: no candidates, the light case.
"""

from __future__ import annotations

import argparse
import hashlib
import queue
import random
import shutil
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from pipeline import articles, commands, redis_cpu  # noqa: E402 (bench/ is not a package)

from feedsift.workers.article import Article  # noqa: E402
from feedsift.workers.context import Context  # noqa: E402
from feedsift.workers.embedded import EmbeddedRedis  # noqa: E402
from feedsift.workers.index import INDEX_KEYS  # noqa: E402
from feedsift.workers.settings import Settings  # noqa: E402

BATCH = 50
DAY = 3_000_000  # new articles a day in the capacity plan


def distinct(n: int, seed: int = 5) -> list[dict]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(50_000)]
    return [
        {"title": f"story {i}", "text": " ".join(rng.choice(vocab) for _ in range(rng.randint(80, 400)))}
        for i in range(n)
    ]


def in_threads(work: list, clients: int, call) -> float:
    """Runs `call(item)` for every item from `clients` threads at once; returns the wall seconds."""
    todo: queue.Queue = queue.Queue()
    for item in work:
        todo.put(item)

    def loop():
        while True:
            try:
                item = todo.get_nowait()
            except queue.Empty:
                return
            call(item)

    threads = [threading.Thread(target=loop) for _ in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - t0


def measure(r, n: int, clients: int, work: list, call) -> dict:
    cpu0, calls0 = redis_cpu(r), commands(r)
    wall = in_threads(work, clients, call)
    cpu, calls = redis_cpu(r) - cpu0, commands(r) - calls0
    calls.pop("info", None)
    calls.pop("commandstats", None)
    return {
        "server_ms": 1000 * cpu / n,
        "ceiling": n / cpu,
        "reached": n / wall,
        "commands": sum(calls.values()) / n,
        "by_command": {k: v / n for k, v in calls.most_common(6)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fill", type=int, default=100_000, help="articles in the index before measuring")
    ap.add_argument("--measure", type=int, default=20_000)
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--redis-server", default=shutil.which("redis-server") or "", help="default: the system's")
    ap.add_argument("--text", choices=("mixed", "distinct"), default="mixed")
    args = ap.parse_args()

    pool = (articles if args.text == "mixed" else distinct)(args.fill + args.measure)
    now = time.time()
    server = EmbeddedRedis(binary=args.redis_server).start()
    try:
        ctx = Context(Settings(redis_url=server.url, prefix="cap:"))
        r, index = ctx.redis, ctx.index
        print(f"redis-server: {r.info('server')['redis_version']}; {args.clients} client threads; batches of {BATCH}")
        t = time.process_time()
        rows = [(f"a{i}", a["title"], a["text"], now - (len(pool) - i) * 0.5) for i, a in enumerate(pool)]
        items = [it for s in range(0, len(rows), BATCH) for it in index.items(rows[s : s + BATCH])]
        print(f"sketches: {1000 * (time.process_time() - t) / len(items):.3f} ms per article (client CPU)")
        fill, rest = items[: args.fill], items[args.fill :]
        for s in range(0, len(fill), BATCH):
            index.decide(fill[s : s + BATCH], now=now)
        decisions: dict[str, object] = {}

        def decide(batch):
            for d in index.decide(batch, now=now):
                decisions[d.article_id] = d

        batches = [rest[s : s + BATCH] for s in range(0, len(rest), BATCH)]
        idx = measure(r, len(rest), args.clients, batches, decide)
        size = index.memory()
        per_article = size["bytes"] / size["articles"]
        flagged = sum(1 for d in decisions.values() if d.duplicate_of)

        stored = [
            Article(
                id=it.article_id,
                feed=f"f{n % 100}",
                url=f"https://example.com/{it.article_id}",
                guid=it.article_id,
                title=pool[args.fill + n]["title"],
                published=it.published,
                text=pool[args.fill + n]["text"],
                content_hash=hashlib.blake2b(pool[args.fill + n]["text"].encode(), digest_size=8).hexdigest(),
                topics=("politics",) if n % 3 else ("sport", "politics"),
                scores={"diplomacy": 0.1, "sport": 0.2, "politics": 0.7},
                model="bench",
                processed_at=now,
            )
            for n, it in enumerate(rest)
        ]
        groups = [stored[s : s + BATCH] for s in range(0, len(stored), BATCH)]
        store = measure(
            r,
            len(stored),
            args.clients,
            groups,
            lambda g: ctx.store.save_batch(g, job="cap", decisions=[decisions[a.id] for a in g]),
        )
    finally:
        server.close()

    print(
        f"\nduplicate index, one slot ({args.fill} {args.text} articles in it, then {len(rest)} measured; {flagged} flagged)"
    )
    print(f"  Redis server CPU     {idx['server_ms']:.3f} ms per article -> ceiling {idx['ceiling']:.0f} articles/s")
    print(f"  reached here         {idx['reached']:.0f} articles/s ({args.clients} clients)")
    print(f"  Redis commands       {idx['commands']:.2f} per article {fmt(idx['by_command'])}")
    print(f"  memory               {per_article:.0f} B per article in the window ({', '.join(INDEX_KEYS)})")
    print(f"                       {per_article * DAY / 1e9:.2f} GB per day of window at {DAY:,} articles a day")
    print(f"\narticle store (records, indexes, decisions; {len(stored)} articles)")
    print(
        f"  Redis server CPU     {store['server_ms']:.3f} ms per article -> ceiling {store['ceiling']:.0f} articles/s"
    )
    print(f"  reached here         {store['reached']:.0f} articles/s ({args.clients} clients)")
    print(f"  Redis commands       {store['commands']:.2f} per article {fmt(store['by_command'])}")


def fmt(by: dict) -> str:
    return "(" + ", ".join(f"{k} {v:.2f}" for k, v in by.items()) + ")"


if __name__ == "__main__":
    main()
