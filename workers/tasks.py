"""The task API. Names are public: any Celery client can `send_task` them with JSON arguments.

Tasks are thin: Celery's concerns (routing, retries, dead letters) here, the
work in `feedsift.workers.pipeline`.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
import traceback

import redis
from celery.exceptions import Retry

from feedsift.workers import metrics, pipeline, retention
from feedsift.workers.app import app
from feedsift.workers.article import Article
from feedsift.workers.context import context
from feedsift.workers.errors import FeedError, InternalError, TransientFetchError
from feedsift.workers.feeds import feed_id
from feedsift.workers.schedule import Schedule

log = logging.getLogger(__name__)

#: Redis unreachable: the message is tried again later, never dropped. A cluster answers CLUSTERDOWN (MASTERDOWN
#: too) while a master it lost is not yet replaced, and TRYAGAIN while a slot moves.
REDIS_DOWN = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.RedisClusterUnreachableError,  # no node of the cluster answers
)


#: Longest waits, in seconds, between tries: Redis coming back, a feed server recovering, a failing batch.
REDIS_BACKOFF_CAP, FETCH_BACKOFF_CAP, BATCH_BACKOFF_CAP = 60, 300, 60


def _backoff(task, cap: float) -> float:
    """Seconds before the next try: 2, 4, 8, ... up to `cap`. The one back-off of every retry."""
    return float(min(cap, 2 ** min(task.request.retries + 1, 20)))


def _later(task, exc: Exception):
    log.warning("Redis unreachable, %s tried again later: %s", task.name, exc)
    return task.retry(exc=exc, countdown=_backoff(task, REDIS_BACKOFF_CAP), max_retries=10**6)


def _unexpected(task, ctx, locator, exc: Exception, job) -> dict:
    """A failure no one planned for still leaves a stored, readable error on the feed; when Redis cannot take
    that error either, the message is tried again later rather than acknowledged and lost."""
    log.exception("unexpected error reading %s", locator)
    try:
        return pipeline.fail(
            ctx, feed_id(locator), locator, InternalError(f"unexpected {type(exc).__name__}: {exc}"[:1000]), job
        )
    except REDIS_DOWN as down:
        raise _later(task, down) from exc


def _enqueue(batch: list[Article], job: str | None) -> None:
    process_articles.apply_async(([a.to_message() for a in batch],), {"job": job} if job else {})


@app.task(name="feedsift.fetch_feed", bind=True)
def fetch_feed(self, url: str, job: str | None = None) -> dict:
    """Downloads a feed and enqueues its new articles; transient errors are retried with back-off."""
    ctx = context()
    url = url if isinstance(url, str) else repr(url)
    try:
        with metrics.stage("fetch"):
            outcome = pipeline.fetch_feed(ctx, url, job, _enqueue)
    except TransientFetchError as exc:
        # a server that says when to come back is asked again then (by the schedule), not in seconds
        if self.request.retries < ctx.settings.fetch_retries and not exc.retry_after:
            raise self.retry(exc=exc, countdown=_backoff(self, FETCH_BACKOFF_CAP))
        outcome = {**pipeline.fail(ctx, feed_id(url), url, exc, job), "headers": {"retry-after": exc.retry_after}}
    except Retry:
        raise
    except REDIS_DOWN as exc:
        raise _later(self, exc)
    except Exception as exc:
        outcome = _unexpected(self, ctx, url, exc, job)
    metrics.fetched(outcome)
    try:
        Schedule.of(ctx).after_fetch(feed_id(url), outcome)
    except REDIS_DOWN as exc:
        log.warning("next poll of %s not set, Redis unreachable: %s", url, exc)
    return outcome


@app.task(name="feedsift.ingest_feed", bind=True)
def ingest_feed(self, document: str, source: str, job: str | None = None, encoding: str = "text") -> dict:
    """Takes a feed document the client holds: text (default), or its raw bytes as base64 (`encoding="base64"`)."""
    ctx = context()
    source = source if isinstance(source, str) else repr(source)
    try:
        if not isinstance(document, str):
            return pipeline.fail(
                ctx,
                feed_id(source),
                source,
                FeedError(f"document is a JSON {type(document).__name__}, not a string"),
                job,
            )
        if encoding == "base64":
            try:
                raw, charset = base64.b64decode(document, validate=True), None
            except (binascii.Error, ValueError):
                return pipeline.fail(ctx, feed_id(source), source, FeedError("document is not valid base64"), job)
        else:
            raw, charset = document.encode("utf-8", "replace"), "utf-8"
        return pipeline.ingest_feed(ctx, raw, source, job, _enqueue, charset)
    except REDIS_DOWN as exc:
        raise _later(self, exc)
    except Exception as exc:
        return _unexpected(self, ctx, source, exc, job)


@app.task(name="feedsift.process_articles", bind=True)
def process_articles(self, batch: list[dict], job: str | None = None) -> dict:
    """Tags, fingerprints, deduplicates and stores a batch; a batch that keeps failing is dead-lettered."""
    ctx = context()
    try:
        return pipeline.process_articles(ctx, [Article.from_message(a) for a in batch], job)
    except Retry:
        raise
    except REDIS_DOWN as exc:
        raise _later(self, exc)
    except Exception as exc:
        attempt = self.request.retries + 1
        if attempt < ctx.settings.process_attempts:
            log.warning("batch failed (attempt %d): %s", attempt, exc)
            raise self.retry(exc=exc, countdown=_backoff(self, BATCH_BACKOFF_CAP))
        log.error("batch dead-lettered after %d attempts: %s", attempt, exc)
        try:
            _dead_letter(self, ctx, batch, job, attempt, exc)
        except REDIS_DOWN as down:  # parked only once Redis takes it: until then the message is tried again
            raise _later(self, down) from exc
        size = len(batch) if isinstance(batch, list) else 0
        return {"stored": 0, "dead_lettered": size}


def _dead_letter(task, ctx, batch, job, attempt: int, exc: Exception) -> None:
    """Parks a batch that failed every attempt, with its error, and says so on each of its feeds."""
    ctx.store.dead_letter(
        {
            "task": task.name,
            "id": task.request.id,
            "time": time.time(),
            "attempts": attempt,
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(limit=5),
            "batch": batch,
            "job": job,
        }
    )
    size = len(batch) if isinstance(batch, list) else 0
    feeds = {str(a.get("feed", "")) for a in batch if isinstance(a, dict)} if isinstance(batch, list) else set()
    for feed in feeds or {""}:
        ctx.store.record_error(feed, "", "dead_letter", f"batch of {size} articles failed {attempt} times: {exc}")


@app.task(name="feedsift.expire_articles")
def expire_articles() -> dict:
    """Removes articles older than `FEEDSIFT_RETENTION_DAYS`, a bounded number per run (run by `celery beat`)."""
    ctx = context()
    return {"removed": retention.expire(ctx.store, ctx.settings.retention_days)}


@app.task(name="feedsift.poll_feeds")
def poll_feeds() -> dict:
    """Sends `fetch_feed` for each subscribed feed that is due (run by `celery beat`, every schedule tick)."""
    return Schedule.of(context()).poll(lambda url: fetch_feed.apply_async((url,)))
