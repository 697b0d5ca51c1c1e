"""The client: submit feeds, follow a submission, read what was stored. Returns data, prints nothing.

The CLI, the demo and the tests call it; none of them talks to Redis or
sends a task on its own.
"""

from __future__ import annotations

import base64
import ipaddress
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from celery import Celery

from feedsift.workers import queues, registry
from feedsift.workers.article import Article
from feedsift.workers.context import Context, bundled_model_path, context
from feedsift.workers.errors import BlockedURLError
from feedsift.workers.feeds import feed_id
from feedsift.workers.fetch import check_address, check_url
from feedsift.workers.schedule import Schedule
from feedsift.workers.store import Store

#: A task call: (task name, args, kwargs).
Call = tuple[str, list, dict]


class UnknownFilter(ValueError):
    """A filter naming a topic or feed that does not exist; the message lists the known ones."""


class TooLarge(ValueError):
    """A document larger than feeds may be."""


@dataclass(frozen=True)
class Page:
    """Articles newest first, and the cursor of the next page (None after the last)."""

    articles: list[Article]
    next: str | None


@dataclass(frozen=True)
class Progress:
    """How far a submission is: feeds read of those sent, articles stored of those enqueued."""

    feeds: int
    feeds_done: int
    errors: int
    articles: int
    stored: int

    @property
    def finished(self) -> bool:
        return self.feeds_done >= self.feeds and self.stored >= self.articles


class Client:
    def __init__(self, ctx: Context | None = None, app: Celery | None = None):
        self.ctx = ctx or context()
        self._app = app

    @property
    def app(self) -> Celery:
        if self._app is None:
            from feedsift.workers.app import app

            self._app = app
        return self._app

    # -- submitting ----------------------------------------------------------------
    def calls_for(self, targets: list[str]) -> list[Call]:
        """URLs go to `fetch_feed`, files are read here and go to `ingest_feed`; anything else is a ValueError."""
        calls = []
        limit = self.ctx.settings.max_feed_bytes
        for target in dict.fromkeys(targets):  # a feed named twice is one feed of the submission
            scheme = urlsplit(target).scheme.lower()
            if scheme in ("http", "https"):
                calls.append(("feedsift.fetch_feed", [target], {}))
            elif Path(target).is_file():
                data = Path(target).read_bytes()
                if len(data) > limit:
                    raise ValueError(f"{target}: larger than FEEDSIFT_MAX_FEED_BYTES ({limit} bytes)")
                source = "file://" + str(Path(target).resolve())
                calls.append(
                    ("feedsift.ingest_feed", [base64.b64encode(data).decode(), source], {"encoding": "base64"})
                )
            elif scheme and len(scheme) > 1:
                raise ValueError(f"{target}: only http and https URLs are fetched")
            else:
                raise ValueError(f"{target}: no such file")
        return calls

    def submit(self, targets: list[str]) -> tuple[str, int]:
        """Sends feeds as one submission; returns its job id and how many feeds it sent."""
        calls = self.calls_for(targets)
        return self.send(calls), len(calls)

    def send(self, calls: list[Call]) -> str:
        """Sends task calls as one submission (a job) whose progress `progress` follows; returns the job id."""
        job = uuid.uuid4().hex[:12]
        self.ctx.store.job_add(job, feeds=len(calls))
        for name, args, kwargs in calls:
            self.app.send_task(name, args=args, kwargs={**kwargs, "job": job})
        return job

    def progress(self, job: str) -> Progress:
        p = self.ctx.store.job_progress(job)
        return Progress(p.get("feeds", 0), p["feeds_done"], p["errors"], p["articles"], p["stored"])

    def wait(
        self, job: str, timeout: float, on_progress: Callable[[Progress], None] | None = None, interval: float = 0.2
    ) -> Progress:
        """Polls until every feed is read and every enqueued article stored; TimeoutError after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            p = self.progress(job)
            if on_progress:
                on_progress(p)
            if p.finished:
                return p
            if time.monotonic() > deadline:
                raise TimeoutError(f"gave up waiting after {timeout:.0f}s: {p}")
            time.sleep(interval)

    def ingest(self, document: str, source: str) -> tuple[str, str]:
        """Sends one feed document (text) to `ingest_feed`, under the same size limit as fetched feeds; the feed
        is known from now on. Returns the job and the feed id."""
        limit = self.ctx.settings.max_feed_bytes
        if len(document.encode("utf-8", "replace")) > limit:
            raise TooLarge(f"document is larger than the limit of {limit} bytes")
        fid = feed_id(source)
        self.ctx.store.register_feed(fid, source)
        return self.send([("feedsift.ingest_feed", [document, source], {})]), fid

    def guard(self, url: str) -> str:
        """Refuses at once a URL the fetcher would refuse for its scheme or a literal address (BlockedURLError);
        names are resolved, and every address checked again, when it is fetched."""
        _, host, port = check_url(url)
        settings = self.ctx.settings
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            if not settings.allow_private_networks and (host == "localhost" or host.endswith(".localhost")):
                raise BlockedURLError(f"{host} is a loopback name") from None
            return url.strip()
        if (address, port) not in settings.endpoints:
            check_address(host, settings.allow_private_networks)
        return url.strip()

    # -- subscriptions -------------------------------------------------------------
    def subscribe(self, url: str, every: int | None = None) -> tuple[str, str]:
        """Subscribes a feed URL (fetched now, then on its own schedule); returns the job of this first fetch
        and the feed id."""
        url = self.guard(url)
        fid = feed_id(url)
        every = every or self.ctx.settings.poll_interval or 900
        Schedule.of(self.ctx).subscribe(fid, url, every, now=time.time() + every)
        return self.send([("feedsift.fetch_feed", [url], {})]), fid

    def unsubscribe(self, fid: str) -> bool:
        """Stops polling a feed and forgets it (its articles stay); False if unknown."""
        return Schedule.of(self.ctx).forget(fid)

    def resume(self, fid: str) -> bool:
        """Polls a paused subscription again, now; False if the feed is not subscribed."""
        return Schedule.of(self.ctx).resume(fid)

    def poll(self, now: float | None = None) -> dict:
        """Sends the subscribed feeds due by `now` (what beat's `poll_feeds` does)."""
        return Schedule.of(self.ctx).poll(lambda url: self.app.send_task("feedsift.fetch_feed", args=[url]), now)

    def feed_id_of(self, ref: str) -> str:
        """A feed id given its id or its URL."""
        return ref if self.ctx.store.has_feed(ref) else feed_id(ref)

    # -- reading -------------------------------------------------------------------
    def page(
        self,
        topic: str | None = None,
        feed: str | None = None,
        duplicates: bool = False,
        since: float | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page:
        """Stored articles newest first, a page at a time; filters intersect. The cursor is the score and id
        of the last article of the previous page."""
        store, keys = self.ctx.store, self.ctx.keys
        self.check_filters(topic, feed)
        after = None
        if cursor:
            score, sep, last = cursor.partition(":")
            try:
                after = (float(score), last)
            except ValueError:
                raise ValueError(f"malformed cursor {cursor[:60]!r}") from None
            if not sep or not last or after[0] != after[0]:
                raise ValueError(f"malformed cursor {cursor[:60]!r}")
        sources = [keys.topic(topic)] if topic else []
        if feed:
            sources.append(keys.feed_articles(feed))
        if duplicates:
            sources.append(keys.duplicates)
        rows = store.page(sources or [keys.articles], limit + 1, since, after)
        found = {r["id"]: r for r in store.articles(i for i, _ in rows[:limit])}
        articles = [Article.from_record(found[i]) for i, _ in rows[:limit] if i in found]
        last = rows[limit - 1] if len(rows) > limit else None
        return Page(articles, f"{last[1]!r}:{last[0]}" if last else None)

    def topics(self, published: bool = True) -> list[str]:
        """Topics of the bundled model and (unless `published` is false) of every published version."""
        out = list(_bundled_topics())
        for header in registry.versions(self.ctx.redis, self.ctx.keys) if published else ():
            out += [t for t in header.get("topics", []) if t not in out]
        return out

    def check_filters(self, topic: str | None = None, feed: str | None = None) -> None:
        """An unknown topic or feed is an UnknownFilter naming the known ones, not an empty answer."""
        if topic:
            known = self.topics()
            if topic not in known:
                raise UnknownFilter(f"unknown topic {topic!r}; known topics: {', '.join(known)}")
        if feed and not self.ctx.store.has_feed(feed):
            known = self.ctx.store.feed_ids(limit=21)
            listed = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "") if known else "none yet"
            raise UnknownFilter(f"unknown feed {feed!r}; known feeds: {listed}")

    def feed(self, fid: str) -> dict[str, str] | None:
        return self.ctx.store.feed_row(fid)

    def cluster_of(self, canonical_id: str) -> dict | None:
        """A duplicate cluster: its canonical article and each member, None if there is none."""
        return self.ctx.store.cluster_rows(canonical_id)

    def job(self, job: str) -> Progress | None:
        return self.progress(job) if self.ctx.store.job_known(job) else None

    def tags_per_day(self, days: int = 14, now: float | None = None) -> dict:
        """Articles tagged with each topic on each of the last `days` days (UTC), oldest first."""
        day = 86400
        end = (int(time.time() if now is None else now) // day + 1) * day
        edges = [end - (days - n) * day for n in range(days + 1)]
        topics = self.topics()
        counts = self.ctx.store.counts_between([self.ctx.keys.topic(t) for t in topics], edges)
        return {"days": [epoch_day(e) for e in edges[:-1]], "topics": dict(zip(topics, counts))}

    def state_counts(self) -> dict[str, int]:
        """Articles held, feeds subscribed and subscriptions paused (read at scrape time)."""
        rows = self.feeds()
        return {
            "articles": self.ctx.store.article_count(),
            "subscribed": sum(1 for r in rows if r.get("every")),
            "paused": sum(1 for r in rows if r.get("paused")),
        }

    def queue_depths(self) -> dict[str, int]:
        """Messages waiting in each queue, on the broker's Redis (the results' one unless another is named)."""
        return Store(self.ctx.broker_redis, self.ctx.keys).queue_depths(list(queues.ALL))

    def health(self, timeout: float = 1.0) -> dict:
        """Whether Redis and the broker answer, and the names of the workers that answered a ping."""
        out = {"redis": False, "broker": False, "workers": []}
        try:
            out["redis"] = bool(self.ctx.redis.ping())
        except Exception:
            return out
        try:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=timeout)
            out["broker"] = True
            replies = self.app.control.ping(timeout=timeout) or []
            out["workers"] = sorted(name for reply in replies for name in reply)
        except Exception:
            pass
        return out

    def articles(
        self, topic: str | None = None, feed: str | None = None, duplicates: bool = False, limit: int = 100
    ) -> list[Article]:
        """Stored articles, newest first; filters intersect."""
        store = self.ctx.store
        ids = store.article_ids(topic=topic, feed=feed, duplicates=duplicates, limit=limit)
        return [Article.from_record(r) for r in store.articles(ids)]

    def article(self, article_id: str) -> Article | None:
        record = self.ctx.store.article(article_id)
        return Article.from_record(record) if record else None

    def cluster(self, canonical_id: str) -> list[str]:
        return self.ctx.store.cluster(canonical_id)

    def clusters(self, limit: int = 100) -> list[dict]:
        return self.ctx.store.clusters(limit=limit)

    def feeds(self) -> list[dict[str, str]]:
        return self.ctx.store.feeds()

    def errors(self, limit: int = 50) -> list[dict[str, str]]:
        return self.ctx.store.errors(count=limit)

    # -- topic models ------------------------------------------------------------------
    def models(self) -> list[dict]:
        """The bundled model, then every published version, each with `current` set on the one workers use."""
        from feedsift.models.topics import TopicModel

        r, keys = self.ctx.redis, self.ctx.keys
        bundled = TopicModel.load(bundled_model_path())
        current = registry.current(r, keys)
        rows = [{**h, "current": h["version"] == current} for h in registry.versions(r, keys)]
        rows.insert(0, {**bundled.header(), "version": bundled.version, "bundled": True, "current": current is None})
        return rows

    def use_model(self, version: str) -> tuple[str, bool]:
        """Makes a published version (or `bundled`) current: every worker switches on its next batch.
        Returns the version now current and whether it is the bundled model."""
        from feedsift.models.topics import TopicModel

        bundled = TopicModel.load(bundled_model_path())
        chosen = registry.use(self.ctx.redis, self.ctx.keys, version, bundled.version)
        return (bundled.version, True) if chosen == registry.BUNDLED else (chosen, False)

    def publish_model(self, model) -> str:
        return registry.publish(self.ctx.redis, self.ctx.keys, model)

    def current_model(self) -> str:
        """Version of the topic model workers use now."""
        return registry.current(self.ctx.redis, self.ctx.keys) or _bundled_version()

    def explain(self, article_id: str, top: int = 8) -> dict | None:
        """Per topic, the probability an article got and the terms that pushed it, by the version that tagged
        it (or the current one, with a note, when that version is gone); None for an unknown article."""
        article = self.article(article_id)
        if article is None:
            return None
        model, note = self.ctx.model_of(article.model), ""
        if model is None:
            model = self.ctx.model()
            note = (
                f"model {article.model or '?'} that tagged it is gone; explained with the current model {model.version}"
            )
        why = model.explain(model.document(article.title, article.text), top=top)
        return {"id": article_id, "title": article.title, "model": model.version, "note": note, "topics": why}


def epoch_day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


@lru_cache(maxsize=1)
def _bundled_header() -> dict:
    from feedsift.models.topics import read_header

    return read_header(bundled_model_path().read_bytes())


def _bundled_topics() -> tuple[str, ...]:
    return tuple(_bundled_header()["topics"])


@lru_cache(maxsize=1)
def _bundled_version() -> str:
    from feedsift.models.topics import TopicModel

    return TopicModel.load(bundled_model_path()).version
