"""`feedsift demo`: the whole service on one machine, from nothing.

Starts a private Redis (unless FEEDSIFT_REDIS_URL names one), a worker with
two processes, submits the example feeds, waits for every article and
prints what was stored and how to read it with redis-cli.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

from rich.console import Console

from feedsift.workers import queues
from feedsift.workers.embedded import EmbeddedRedis, redis_cli_binary

console = Console()


def example_feeds() -> list[Path]:
    """The example feeds, shipped as package data (a source checkout and a wheel alike)."""
    here = Path(str(resources.files("feedsift.examples").joinpath("feeds")))
    return sorted(p for p in here.glob("*") if p.suffix in (".xml", ".atom", ".rdf", ".rss"))


def start_worker(env: dict, log: Path, concurrency: int = 2) -> subprocess.Popen:
    """A worker whose banner and logs go to `log`, not into the tables a newcomer reads."""
    argv = queues.worker_argv(concurrency=concurrency, loglevel="INFO", name=f"demo-{os.getpid()}@%h")
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def run(serve: bool | None = None) -> int:
    from feedsift.workers import settings, tables
    from feedsift.workers.client import Client

    feeds = example_feeds()
    if not feeds:
        console.print("[red]no example feeds found in the installed package (feedsift.examples)[/]")
        return 2
    embedded = None
    env = dict(os.environ)
    if not env.get("FEEDSIFT_REDIS_URL"):
        embedded = EmbeddedRedis().start()
        env["FEEDSIFT_REDIS_URL"] = embedded.url
        console.print(f"started a private Redis at [bold]{embedded.url}[/] (set FEEDSIFT_REDIS_URL to use your own)")
    os.environ.update(env)
    settings.get_settings.cache_clear()
    log = Path(tempfile.gettempdir()) / f"feedsift-demo-worker-{os.getpid()}.log"
    worker = start_worker(env, log)
    console.print(f"started a worker (pid {worker.pid}) on queues {', '.join(queues.ALL)}; its log: {log}")
    try:
        client = Client()
        job, sent = client.submit([str(p) for p in feeds])
        console.print(f"submitted {sent} example feed(s) as job {job}")
        try:
            progress = client.wait(job, timeout=300)
        except TimeoutError as exc:
            console.print(f"[red]{exc}; the worker's log is {log}[/]")
            return 1
        console.print(f"{progress.stored} new article(s) stored from {sent} feed(s); {progress.errors} feed error(s)")
        console.print(tables.articles(client.articles(limit=100)))
        _how_to_inspect(env["FEEDSIFT_REDIS_URL"], settings.get_settings().prefix)
        if serve if serve is not None else sys.stdin.isatty():
            console.print("\nRedis and the worker keep running; press Ctrl-C to stop.")
            try:
                while worker.poll() is None:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        return 0
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
        if embedded:
            embedded.close()


def _how_to_inspect(url: str, prefix: str) -> None:
    cli_bin = redis_cli_binary() or "redis-cli"
    console.print("\nThe same data with redis-cli:")
    for cmd in (
        f"ZREVRANGE {prefix}topic:sport 0 -1",
        f"HGETALL {prefix}article:<id>",
        f"ZRANGE {prefix}duplicates 0 -1",
        f"ZRANGE {prefix}cluster:<canonical id> 0 -1",
        f"XREVRANGE {prefix}errors + - COUNT 5",
    ):
        console.print(f"  {cli_bin} -u {url} {cmd}")
