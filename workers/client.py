"""The client: submit feeds, follow a submission, read what was stored. Returns data, prints nothing.

The CLI, the demo and the tests call it; none of them talks to Redis or
sends a task on its own.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from celery import Celery

from feedsift.workers import registry
from feedsift.workers.article import Article
from feedsift.workers.context import Context, bundled_model_path, context

#: A task call: (task name, args, kwargs).
Call = tuple[str, list, dict]


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

    # -- reading -------------------------------------------------------------------
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
