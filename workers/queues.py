"""Queue names, task routes and the `celery worker` command line: defined here once.

Task names are public (any Celery client may `send_task` them), so they never change.
"""

from __future__ import annotations

import sys

FETCH = "fetch"
PROCESS = "process"
#: Every queue a worker serves by default, I/O-bound first.
ALL = (FETCH, PROCESS)

ROUTES = {
    "feedsift.fetch_feed": FETCH,
    "feedsift.ingest_feed": FETCH,
    "feedsift.poll_feeds": FETCH,
    "feedsift.expire_articles": FETCH,
    "feedsift.process_articles": PROCESS,
}

APP = "feedsift.workers.app"


def worker_argv(
    queues: str = ",".join(ALL),
    concurrency: int | None = None,
    pool: str = "prefork",
    loglevel: str = "INFO",
    name: str | None = None,
) -> list[str]:
    """The command that starts a worker on feedsift's queues (the CLI, the demo and the tests run this)."""
    argv = [sys.executable, "-m", "celery", "-A", APP, "worker", "-Q", queues, "-P", pool, "-l", loglevel]
    if concurrency:
        argv += ["-c", str(concurrency)]
    if name:
        argv += ["-n", name]
    return [*argv, "--without-gossip", "--without-mingle"]
