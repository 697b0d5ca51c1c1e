"""The steps behind the tasks: fetch or take a document, parse, enqueue; tag, sign, index, store.

Tasks only add Celery's concerns (retries, dead letters) around these.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from feedsift.models.text import remember_lines
from feedsift.workers import feeds, metrics
from feedsift.workers.article import Article, iso
from feedsift.workers.context import Context
from feedsift.workers.errors import FeedError, FeedsiftError, PermanentFetchError
from feedsift.workers.fetch import fetch
from feedsift.workers.store import Store

log = logging.getLogger(__name__)

Enqueue = Callable[[list[Article], str | None], None]


def fetch_feed(ctx: Context, url: str, job: str | None, enqueue: Enqueue) -> dict:
    """Conditional GET of a feed URL, then `take_document`. Transient errors propagate (to be retried)."""
    fid = feeds.feed_id(url)
    state = ctx.store.register_feed(fid, url)
    try:
        result = fetch(url, ctx.settings, etag=state.get("etag", ""), modified=state.get("modified", ""))
    except PermanentFetchError as exc:
        return fail(ctx, fid, url, exc, job)
    if result.not_modified:
        ctx.store.feed_read(fid, job, last_fetch=iso(time.time()), last_status="304", last_error="")
        return {"feed": fid, "status": 304, "new": 0, "headers": _cache_headers(result.headers)}
    summary_ = take_document(
        ctx,
        result.body,
        fid,
        url,
        job,
        enqueue,
        charset=_charset(result.headers.get("content-type", "")),
        state=state,
        validators={"etag": result.etag, "modified": result.modified},
    )
    return {**summary_, "headers": _cache_headers(result.headers)}


def _cache_headers(headers: dict[str, str]) -> dict[str, str]:
    """The response headers that say when to poll again (the schedule reads them)."""
    return {k: headers[k] for k in ("cache-control", "retry-after") if k in headers}


def _charset(content_type: str) -> str | None:
    for part in content_type.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value:
            return value.strip("\"' ")
    return None


def ingest_feed(
    ctx: Context, document: bytes, source: str, job: str | None, enqueue: Enqueue, charset: str | None
) -> dict:
    fid = feeds.feed_id(source)
    state = ctx.store.register_feed(fid, source)
    if len(document) > ctx.settings.max_feed_bytes:
        return fail(
            ctx,
            fid,
            source,
            PermanentFetchError(f"document is larger than the limit of {ctx.settings.max_feed_bytes} bytes"),
            job,
        )
    return take_document(ctx, document, fid, source, job, enqueue, charset, state)


def take_document(
    ctx: Context,
    document: bytes,
    fid: str,
    locator: str,
    job: str | None,
    enqueue: Enqueue,
    charset: str | None,
    state: dict[str, str],
    validators: dict[str, str] | None = None,
) -> dict:
    """Parses a document, enqueues its new articles and records the read on the feed (with the response's
    `validators`, ETag and Last-Modified, whatever the outcome); `state` is the feed's hash as read before."""
    s = ctx.settings
    now = time.time()
    validators = validators or {}
    try:
        known = Store.boilerplate_of(state)
        parsed = feeds.parse(
            document,
            fid,
            locator,
            now,
            s.max_entries,
            s.max_article_chars,
            charset=charset,
            known_boilerplate=frozenset(known),
            known=ctx.store.known_sources,
        )
    except FeedError as exc:
        return fail(ctx, fid, locator, exc, job, validators)
    remembered = remember_lines(known, parsed.boilerplate)
    learned = {"boilerplate": json.dumps(remembered)} if remembered != known else {}
    fresh = ctx.store.unseen(parsed.articles)
    batches = [fresh[start : start + s.batch_size] for start in range(0, len(fresh), s.batch_size)]
    if job:
        ctx.store.job_expect(job, [[a.id for a in batch] for batch in batches])
    for batch in batches:
        enqueue(batch, job)
    ctx.store.feed_read(
        fid,
        job,
        error=bool(parsed.warning),
        title=parsed.title,
        link=parsed.link,
        last_fetch=iso(now),
        last_status="200",
        last_error=parsed.warning,
        articles=len(parsed.articles) + parsed.unchanged,
        **learned,
        **validators,
    )
    if parsed.warning:
        ctx.store.record_error(fid, locator, "warning", parsed.warning)
    log.info("feed %s: %d articles, %d new", locator, len(parsed.articles) + parsed.unchanged, len(fresh))
    return {
        "feed": fid,
        "status": 200,
        "articles": len(parsed.articles) + parsed.unchanged,
        "new": len(fresh),
        "warning": parsed.warning,
        "ttl": parsed.ttl,
    }


def fail(
    ctx: Context, fid: str, locator: str, exc: FeedsiftError, job: str | None, validators: dict | None = None
) -> dict:
    """A feed that cannot be read: its state and the error stream say why."""
    message = str(exc)
    fields = {"last_fetch": iso(time.time()), "last_status": exc.kind, "last_error": message, **(validators or {})}
    ctx.store.feed_read(fid, job, error=True, **fields)
    ctx.store.record_error(fid, locator, exc.kind, message)
    log.warning("feed %s: %s", locator, message)
    return {"feed": fid, "status": exc.kind, "error": message}


def process_articles(ctx: Context, batch: list[Article], job: str | None) -> dict:
    """Signs a batch, tags it while Redis runs the duplicate index on it, then stores it in one pipeline.

    The index script is the longest Redis call of a batch: sent from another thread, it runs on the
    server while this process tags, instead of after it.
    """
    if not batch:
        return {"stored": 0}
    model = ctx.model()
    now = time.time()
    with metrics.stage("sketch"):
        items = ctx.index.items([(a.id, a.title, a.text, a.published) for a in batch])
    deciding = _background().submit(ctx.index.decide, items, now)
    with metrics.stage("tag"):
        probs = model.predict_proba([model.document(a.title, a.text) for a in batch])
    done = [
        a.with_(
            topics=tuple(topics),
            scores={t: round(float(v), 4) for t, v in zip(model.topics, p)},
            model=model.version,
            processed_at=now,
        )
        for a, p, topics in zip(batch, probs, model.tags(probs))
    ]
    with metrics.stage("index"):
        decisions = deciding.result()
    with metrics.stage("store"):
        ctx.store.save_batch(done, job, decisions)
    metrics.stored(done, decisions)
    duplicates = sum(1 for d in decisions if d.duplicate_of)
    return {"stored": len(batch), "duplicates": duplicates, "model": model.version}


_pool: tuple[int, ThreadPoolExecutor] | None = None


def _background() -> ThreadPoolExecutor:
    """Threads that wait on Redis for the index script; one pool per process (a forked child has none of its
    parent's threads), with room for a threads pool's concurrent tasks."""
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        _pool = (os.getpid(), ThreadPoolExecutor(max_workers=8, thread_name_prefix="feedsift-index"))
    return _pool[1]
