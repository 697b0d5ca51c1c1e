"""End-to-end benchmark: feeds served over local HTTP, submitted by URL, stored by real Celery workers.

One run prints:
- articles/s end to end with 1 and then 2 worker processes, each on a fresh Redis, and the
  submit -> stored latency (p50 / p99) of every article under that load;
- the baselines of the same run: a Celery no-op task per article through the same broker,
  and feedparser alone on the same documents;
- a re-poll of the unchanged feeds (no ETag): items dropped per second;
- CPU per article by stage, measured in this process on the same documents (fetch, parse and
  clean, tagging, sketch, index script, store), next to the workers' and the Redis
  server's own CPU per article from the end-to-end run (the rest is Celery's share);
- Redis bytes per stored article, by key family.

With `--cluster` the end-to-end run is made twice, results on one Redis and on a
local 3-master Redis Cluster (queues on a plain Redis apart), and the cluster
run also counts the Redis commands and broker messages per article.

    .venv/bin/python bench/pipeline.py [--articles 10000] [--feeds 100] [--processes 1,2] [--cluster]

The articles come from the written corpus (models/corpus/): its rows as they are, then new
articles made of sentences of three different rows, until there are enough; short rows stay
short (title + lede in <description>), long ones are full text in <content:encoded>.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from email.utils import formatdate
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

import redis
from redis.cluster import RedisCluster

from feedsift.workers import queues
from feedsift.workers.client import Client
from feedsift.workers.context import Context, context
from feedsift.workers.embedded import EmbeddedRedis
from feedsift.workers.settings import Settings

#: The default key prefix: key names weigh in the memory figures as they will in use.
PREFIX = Settings().prefix
#: redis-server to run (--redis-server); empty: the one bundled with feedsift.
REDIS_SERVER = ""
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/cluster.py: the local cluster
SENTENCE = re.compile(r"(?<=[.!?])\s+")


# -- the feeds ----------------------------------------------------------------------------
def corpus_rows() -> list[dict]:
    rows = []
    for path in sorted(Path(str(resources.files("feedsift.models").joinpath("corpus"))).glob("*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def articles(n: int, seed: int = 11) -> list[dict]:
    """`n` distinct articles: the corpus rows, then mixtures of three rows' sentences."""
    rng = random.Random(seed)
    rows = corpus_rows()
    out = [{"title": r["title"], "text": r["text"]} for r in rows[:n]]
    while len(out) < n:
        a, b, c = rng.sample(rows, 3)
        parts = [SENTENCE.split(r["text"]) for r in (a, b, c)]
        mixed = [s for group in zip(*parts) for s in group] or parts[0]
        out.append({"title": f"{a['title']}: {c['title']}", "text": " ".join(mixed)})
    rng.shuffle(out)
    return out


def rss(feed: int, items: list[dict], tag: str) -> bytes:
    entries = []
    for i, a in enumerate(items):
        body = a["text"]
        date = formatdate(1_767_225_600 + feed * 1000 + i, usegmt=True)
        head = f"<title>{escape(a['title'])}</title><guid>{tag}-{feed}-{i}</guid><pubDate>{date}</pubDate>"
        head += f"<link>https://feed{feed}.example/{i}</link>"
        if len(body.split()) < 80:
            entries.append(f"<item>{head}<description>{escape(body)}</description></item>")
        else:
            html = "".join(f"<p>{escape(p)}</p>" for p in body.split("\n") if p.strip())
            lede = escape(SENTENCE.split(body)[0])
            entries.append(
                f"<item>{head}<description>{lede}</description>"
                f"<content:encoded><![CDATA[{html}]]></content:encoded></item>"
            )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel>'
        f"<title>Bench feed {feed}</title><link>https://feed{feed}.example/</link>"
        f"{''.join(entries)}</channel></rss>"
    ).encode()


class Server:
    """Serves the feeds on 127.0.0.1, without ETag or Last-Modified (every poll is a full download)."""

    def __init__(self, docs: dict[str, bytes]):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = docs.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/rss+xml")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"


# -- processes ------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live children (the prefork pool)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid] + [
        int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    ]
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def node_infos(r: redis.Redis | RedisCluster, section: str) -> list[dict]:
    """INFO of the server, or of every node of a cluster."""
    if isinstance(r, RedisCluster):
        return list(r.info(section, target_nodes=RedisCluster.PRIMARIES).values())
    return [r.info(section)]


def redis_cpu(r: redis.Redis | RedisCluster) -> float:
    return sum(float(i["used_cpu_user"]) + float(i["used_cpu_sys"]) for i in node_infos(r, "cpu"))


def commands(r: redis.Redis | RedisCluster) -> Counter:
    """Calls of each command the server (every node of a cluster) has run."""
    out: Counter = Counter()
    for info in node_infos(r, "commandstats"):
        for name, stats in info.items():
            out[name.removeprefix("cmdstat_")] += int(stats["calls"])
    return out


def start_worker(env: dict, processes: int, log: Path, app: str | None = None, queue: str | None = None):
    argv = queues.worker_argv(queue or ",".join(queues.ALL), processes, "prefork", "INFO", name=f"bench{processes}@%h")
    if app:
        argv[argv.index(queues.APP)] = app
    out = open(log, "w")  # noqa: SIM115 (held for the worker's life)
    proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=HERE, start_new_session=True)
    deadline = time.monotonic() + 120
    while " ready." not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    return proc


def stop(proc) -> None:
    os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()


def settings_env(url: str, broker: str = "") -> dict:
    """Results at `url`; with `broker`, `url` is a cluster and the queues are at `broker`."""
    env = {"FEEDSIFT_REDIS_URL": url, "FEEDSIFT_PREFIX": PREFIX, "FEEDSIFT_ALLOW_PRIVATE_NETWORKS": "1"}
    if broker:
        env.update({"FEEDSIFT_BROKER_URL": broker, "FEEDSIFT_REDIS_CLUSTER": "1"})
    return env


def environment(url: str, broker: str = "") -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDSIFT_")}
    env.update(settings_env(url, broker))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH", "")]))
    return env


def family(key: str) -> str:
    """A key's family: its name under the prefix, ids folded (`article:…`, `feed:…:articles`)."""
    parts = key[len(PREFIX) :].split(":")
    if parts[0] in ("{feeds}", "{model}"):  # a cluster's hash tag in front of the name
        parts = parts[1:]
    if parts[0] in ("article", "cluster", "topic", "model", "feed", "job"):
        return ":".join([parts[0], "…", *parts[2:]])
    return ":".join(parts)


def memory_by_family(r: redis.Redis) -> dict[str, int]:
    out: Counter = Counter()
    for key in r.scan_iter(match=PREFIX + "*", count=1000):
        name = key.decode()
        if name.startswith(PREFIX + "queue:"):
            continue
        out[family(name)] += r.memory_usage(key, samples=0) or 0
    return dict(out)


def end_to_end(urls: list[str], processes: int, n: int, logs: Path, cluster: bool = False) -> dict:
    """Submits every feed URL to a fresh Redis (or cluster) and `processes` worker processes; waits for every
    article."""
    from tests.cluster import LocalCluster

    server = (LocalCluster() if cluster else EmbeddedRedis(binary=REDIS_SERVER)).start()
    broker = EmbeddedRedis(binary=REDIS_SERVER).start() if cluster else None
    try:
        broker_url = broker.url if broker else ""
        env = environment(server.url, broker_url)
        app = use_redis(server.url, broker_url)
        ctx = context()
        r = ctx.redis
        queues_redis = ctx.broker_redis
        worker = start_worker(env, processes, logs / f"worker-{processes}{'-cluster' if cluster else ''}.log")
        client = Client(ctx, app=app)
        cpu0, rcpu0 = cpu_seconds(worker.pid), redis_cpu(r)
        calls0, broker0, polls = commands(r), commands(queues_redis), 0
        t0 = time.monotonic()
        job = client.send([("feedsift.fetch_feed", [u], {}) for u in urls])
        seen: dict[str, tuple[float, int]] = {}  # batch -> (when it was seen stored, its articles)
        done_key = ctx.keys.job_done(job)
        while True:
            now = time.monotonic()
            for batch, count in r.hgetall(done_key).items():
                seen.setdefault(batch, (now, int(count)))
            progress = client.progress(job)
            polls += 1
            if progress.finished and progress.feeds_done == len(urls):
                break
            if now - t0 > 1800:
                raise RuntimeError(f"not finished after 30 min: {progress}")
            time.sleep(0.02)
        took = time.monotonic() - t0
        cpu, rcpu = cpu_seconds(worker.pid) - cpu0, redis_cpu(r) - rcpu0
        calls = commands(r) - calls0
        # this loop's own reads: HGETALL, then progress (HGETALL, HVALS, HVALS, HVALS) per poll
        calls -= Counter({"hgetall": 2 * polls, "hvals": 3 * polls, "info": 2})
        sent = commands(queues_redis) - broker0
        latencies = sorted(at - t0 for at, count in seen.values() for _ in range(count))
        stored = progress.stored
        memory = memory_by_family(r)
        # the same feeds again: no validators, every item already stored
        cpu1, rcpu1 = cpu_seconds(worker.pid), redis_cpu(r)
        t1 = time.monotonic()
        again = client.wait(client.send([("feedsift.fetch_feed", [u], {}) for u in urls]), timeout=600, interval=0.02)
        repoll = time.monotonic() - t1
        repoll_cpu = cpu_seconds(worker.pid) - cpu1 + redis_cpu(r) - rcpu1
        stop(worker)
        assert again.articles == 0, again
        return {
            "processes": processes,
            "stored": stored,
            "seconds": took,
            "per_s": stored / took,
            "p50": latencies[len(latencies) // 2],
            "p99": latencies[int(len(latencies) * 0.99)],
            "worker_ms": 1000 * cpu / stored,
            "redis_ms": 1000 * rcpu / stored,
            "memory": memory,
            "cluster": cluster,
            "commands": {k: v / stored for k, v in calls.items() if v > 0},
            "broker": {k: v / stored for k, v in sent.items() if v > 0} if cluster else {},
            "repoll_per_s": n / repoll,
            "repoll_per_cpu_s": n / max(repoll_cpu, 1e-9),
        }
    finally:
        server.close()
        if broker:
            broker.close()


def use_redis(url: str, broker: str = ""):
    """Points this process at a benchmark Redis: settings, the worker context, and a Celery app to send with."""
    from celery import Celery

    from feedsift.workers import settings
    from feedsift.workers.app import celery_config

    for name in ("FEEDSIFT_BROKER_URL", "FEEDSIFT_REDIS_CLUSTER"):
        os.environ.pop(name, None)
    os.environ.update(settings_env(url, broker))
    settings.get_settings.cache_clear()
    context.cache_clear()
    app = Celery("feedsift-bench-client")
    app.config_from_object(celery_config())
    return app


def noop_baseline(messages: list[dict], processes: int, logs: Path) -> dict:
    """Each article sent as its own message to a task that does nothing."""
    server = EmbeddedRedis(binary=REDIS_SERVER).start()
    try:
        env = environment(server.url)
        worker = start_worker(env, processes, logs / f"noop-{processes}.log", app="noop_app", queue="noop")
        app = use_redis(server.url)
        r = redis.Redis.from_url(server.url)
        queue, unacked = PREFIX + "queue:noop", PREFIX + "queue:unacked"
        t0 = time.monotonic()
        for m in messages:
            app.send_task("bench.noop", args=[m], queue="noop")
        while r.llen(queue) or r.hlen(unacked):
            time.sleep(0.01)
        took = time.monotonic() - t0
        stop(worker)
        return {"processes": processes, "per_s": len(messages) / took}
    finally:
        server.close()


# -- the stages, one at a time, in this process -----------------------------------------------------------
def stages(urls: list[str]) -> tuple[dict[str, float], int]:
    """CPU seconds per article of each stage, run back to back on the same documents in this process."""
    from feedsift.workers import feeds as feed_parsing
    from feedsift.workers.fetch import fetch

    server = EmbeddedRedis(binary=REDIS_SERVER).start()
    try:
        settings = Settings(redis_url=server.url, prefix=PREFIX, allow_private_networks=True)
        ctx = Context(settings)
        clock = time.process_time
        out: dict[str, float] = defaultdict(float)

        t = clock()
        bodies = [fetch(u, settings).body for u in urls]
        out["fetch (HTTP GET, guarded)"] = clock() - t
        t = clock()
        parsed = [
            feed_parsing.parse(b, f"f{i}", u, time.time(), settings.max_entries, settings.max_article_chars)
            for i, (b, u) in enumerate(zip(bodies, urls))
        ]
        out["parse + clean (fast path, else feedparser)"] = clock() - t
        batch = [a for p in parsed for a in p.articles]
        n = len(batch)
        t = clock()
        fresh = ctx.store.unseen(batch)
        out["seen check (Redis)"] = clock() - t
        model = ctx.model()
        t = clock()
        probs = [
            model.predict_proba([model.document(a.title, a.text) for a in fresh[s : s + 50]]) for s in range(0, n, 50)
        ]
        out["tagging (batches of 50)"] = clock() - t
        t = clock()
        items = [
            it
            for s in range(0, len(fresh), 50)
            for it in ctx.index.items([(a.id, a.title, a.text, a.published) for a in fresh[s : s + 50]])
        ]
        out["sketch"] = clock() - t
        r, rcpu0 = ctx.redis, redis_cpu(ctx.redis)
        t = clock()
        for s in range(0, n, 50):
            ctx.index.decide(items[s : s + 50])
        out["index script (client side)"] = clock() - t
        rcpu1 = redis_cpu(r)
        out["index script (Redis server)"] = rcpu1 - rcpu0
        tagged = [
            a.with_(topics=tuple(tags), model=model.version)
            for a, tags in zip(fresh, (t for p in probs for t in model.tags(p)))
        ]
        t = clock()
        for s in range(0, n, 50):
            ctx.store.save_batch(tagged[s : s + 50], job="bench")
        out["store (client side)"] = clock() - t
        out["store (Redis server)"] = redis_cpu(r) - rcpu1
        # the same documents again, every entry stored: dropped before cleaning
        rcpu2, t = redis_cpu(r), clock()
        dropped = sum(
            feed_parsing.parse(
                b,
                f"f{i}",
                u,
                time.time(),
                settings.max_entries,
                settings.max_article_chars,
                known=ctx.store.known_sources,
            ).unchanged
            for i, (b, u) in enumerate(zip(bodies, urls))
        )
        repoll = clock() - t + redis_cpu(r) - rcpu2
        per_article = {k: 1000 * v / n for k, v in out.items()}
        per_article["re-poll, per entry dropped (parse + seen check, incl. Redis)"] = 1000 * repoll / max(dropped, 1)
        return per_article, n
    finally:
        server.close()


def feedparser_alone(docs: list[bytes], n: int) -> float:
    import feedparser

    t = time.process_time()
    for body in docs:
        feedparser.parse(body)
    return n / (time.process_time() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--articles", type=int, default=10_000)
    ap.add_argument("--feeds", type=int, default=100)
    ap.add_argument("--processes", default="1,2")
    ap.add_argument("--redis-server", default="", help="redis-server binary (default: the bundled one)")
    ap.add_argument("--cluster", action="store_true", help="also run end to end on a local 3-master Redis Cluster")
    args = ap.parse_args()
    global REDIS_SERVER
    REDIS_SERVER = args.redis_server

    pool = articles(args.articles)
    per_feed = -(-len(pool) // args.feeds)
    tag = f"{random.Random().getrandbits(32):08x}"
    docs = {f"/feed{f}.xml": rss(f, pool[f * per_feed : (f + 1) * per_feed], tag) for f in range(args.feeds)}
    server = Server(docs)
    urls = [server.base + path for path in docs]
    short = sum(1 for a in pool if len(a["text"].split()) < 80)
    print(
        f"{len(pool)} articles ({short} short items, {len(pool) - short} full text) in {len(urls)} feeds, "
        f"{sum(map(len, docs.values())) / 1e6:.1f} MB, served from {server.base}\n"
    )
    logs = Path(tempfile.mkdtemp(prefix="feedsift-bench-"))

    per_stage, n = stages(urls)
    fp = feedparser_alone(list(docs.values()), n)
    results = [end_to_end(urls, int(p), len(pool), logs) for p in args.processes.split(",")]
    if args.cluster:
        results += [end_to_end(urls, int(p), len(pool), logs, cluster=True) for p in args.processes.split(",")]
    messages = [{"title": a["title"], "text": a["text"], "id": str(i)} for i, a in enumerate(pool)]
    noops = {int(p): noop_baseline(messages, int(p), logs) for p in args.processes.split(",")}

    print("end to end (submit by URL -> every article stored)")
    print(
        f"{'results':>8} {'processes':>9} {'articles/s':>11} {'no-op/s':>9} {'ratio':>6} {'p50 s':>7} {'p99 s':>7} "
        f"{'worker ms/art':>14} {'redis ms/art':>13}"
    )
    for res in results:
        base = noops[res["processes"]]["per_s"]
        print(
            f"{'cluster' if res['cluster'] else 'redis':>8} {res['processes']:>9} {res['per_s']:>11.0f} {base:>9.0f} "
            f"{res['per_s'] / base:>6.2f} {res['p50']:>7.2f} {res['p99']:>7.2f} {res['worker_ms']:>14.3f} "
            f"{res['redis_ms']:>13.3f}"
        )
    for res in results:
        if res["cluster"]:
            top = sorted(res["commands"].items(), key=lambda kv: -kv[1])
            print(
                f"cluster, {res['processes']} processes: {sum(res['commands'].values()):.1f} Redis commands per article "
                f"({', '.join(f'{k} {v:.2f}' for k, v in top[:8])}); broker: "
                f"{res['broker'].get('lpush', 0):.3f} messages (LPUSH) and {sum(res['broker'].values()):.2f} commands "
                "per article "
                f"({', '.join(f'{k} {v:.3f}' for k, v in sorted(res['broker'].items(), key=lambda kv: -kv[1])[:6])})"
            )
    print(f"baseline, feedparser alone on the same documents: {fp:.0f} articles/s (one core)")
    for res in results:
        print(
            f"re-poll of the unchanged feeds ({res['processes']} processes): {res['repoll_per_s']:.0f} items/s, "
            f"{res['repoll_per_cpu_s']:.0f} items per CPU second (workers + Redis)"
        )
    print("\nCPU per article by stage (this process, one core; Redis server CPU where marked)")
    for name, ms in per_stage.items():
        print(f"  {name:<40} {ms:8.3f} ms")
    print(f"  {'sum':<40} {sum(per_stage.values()):8.3f} ms")
    res = next(r for r in reversed(results) if r["cluster"]) if args.cluster else results[-1]
    stored = res["stored"]
    where = "the cluster" if res["cluster"] else "one Redis"
    print(f"\nRedis memory per stored article ({stored} articles on {where}, {res['processes']} processes' run)")
    mean_text = statistics.mean(len(a["title"].encode()) + len(a["text"].encode()) for a in pool)
    total = 0
    for fam, size in sorted(res["memory"].items(), key=lambda kv: -kv[1]):
        total += size
        print(f"  {fam:<28} {size / stored:8.0f} B")
    print(
        f"  {'total':<28} {total / stored:8.0f} B   (title + text average {mean_text:.0f} B; overhead {total / stored - mean_text:.0f} B)"
    )
    print(f"\nworker logs: {logs}")


if __name__ == "__main__":
    main()
