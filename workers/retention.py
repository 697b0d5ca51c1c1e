"""Retention: articles older than `FEEDSIFT_RETENTION_DAYS` leave Redis with everything that points at them.

Oldest first, a step of articles at a time, a bounded number of steps per run
(beat runs `expire_articles` every few minutes, so a backlog drains over a few
runs without one long stall of Redis). An article leaves its hash, the article,
topic, feed and duplicate sets, its cluster and the `seen` table; a cluster left
with one article is no cluster. The duplicate index keeps its own window
(`FEEDSIFT_DEDUP_WINDOW_DAYS`) and is not touched here; submission traces expire
on their own (`FEEDSIFT_JOB_TTL`).
"""

from __future__ import annotations

import time

from feedsift.workers.store import Store

DAY = 86400
#: Articles removed per Redis round trip, and round trips per run at most.
STEP, STEPS = 500, 20


def expire(store: Store, days: int, now: float | None = None, steps: int = STEPS) -> int:
    """Removes articles published more than `days` days before `now`; returns how many. 0 days: keeps all."""
    if days <= 0:
        return 0
    cutoff = (time.time() if now is None else now) - days * DAY
    removed = 0
    for _ in range(steps):
        ids = store.older_than(cutoff, STEP)
        if not ids:
            break
        store.remove_articles(ids)
        removed += len(ids)
    return removed
