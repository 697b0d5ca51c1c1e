"""Articles, feeds, errors and progress in Redis, under the key schema of `feedsift.workers.keys`.

Every write is idempotent: storing the same batch twice leaves Redis as
storing it once, which is what makes late acknowledgement and re-delivery
safe.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime

import redis

from feedsift.workers.keys import Keys

ERRORS_MAXLEN = 10_000
JOB_TTL = 7 * 86400


def iso(ts: float | str | None) -> str:
    if ts in (None, ""):
        return ""
    return datetime.fromtimestamp(float(ts), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _s(value) -> str:
    return value.decode() if isinstance(value, bytes) else ("" if value is None else str(value))


class Store:
    def __init__(self, client: redis.Redis, keys: Keys):
        self.r, self.keys = client, keys

    # -- feeds --------------------------------------------------------------
    def feed(self, feed_id: str) -> dict[str, str]:
        return {_s(k): _s(v) for k, v in self.r.hgetall(self.keys.feed(feed_id)).items()}

    def register_feed(self, feed_id: str, url: str) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.hsetnx(self.keys.feed(feed_id), "url", url)
        pipe.zadd(self.keys.feeds, {feed_id: time.time()}, nx=True)
        pipe.execute()

    def update_feed(self, feed_id: str, **fields) -> None:
        self.r.hset(self.keys.feed(feed_id), mapping={k: _s(v) for k, v in fields.items()})

    def feeds(self) -> list[dict[str, str]]:
        ids = [_s(i) for i in self.r.zrange(self.keys.feeds, 0, -1)]
        pipe = self.r.pipeline(transaction=False)
        for fid in ids:
            pipe.hgetall(self.keys.feed(fid))
            pipe.zcard(self.keys.feed_articles(fid))
        replies = pipe.execute()
        out = []
        for fid, state, count in zip(ids, replies[::2], replies[1::2]):
            row = {"id": fid, **{_s(k): _s(v) for k, v in state.items()}}
            row["articles"] = str(count)
            out.append(row)
        return out

    # -- articles -------------------------------------------------------------
    def unseen(self, articles: list[dict]) -> list[dict]:
        """Articles never stored, or stored with other content (then marked updated)."""
        if not articles:
            return []
        known = self.r.hmget(self.keys.seen, [a["id"] for a in articles])
        out = []
        for article, stored in zip(articles, known):
            if stored is None:
                out.append(article)
            elif _s(stored) != article["content_hash"]:
                out.append({**article, "updated": 1})
        return out

    def article(self, article_id: str) -> dict[str, str]:
        return {_s(k): _s(v) for k, v in self.r.hgetall(self.keys.article(article_id)).items()}

    def article_ids(
        self, topic: str | None = None, feed: str | None = None, duplicates: bool = False, limit: int = 100
    ) -> list[str]:
        """Newest first; filters intersect."""
        sources = [self.keys.topic(topic)] if topic else []
        if feed:
            sources.append(self.keys.feed_articles(feed))
        if duplicates:
            sources.append(self.keys.duplicates)
        if not sources:
            sources = [self.keys.articles]
        if len(sources) == 1:
            return [_s(i) for i in self.r.zrevrange(sources[0], 0, limit - 1)]
        ranked = None
        for key in sources:
            scored = {_s(m): s for m, s in self.r.zrange(key, 0, -1, withscores=True)}
            ranked = scored if ranked is None else {m: s for m, s in ranked.items() if m in scored}
        return [m for m, _ in sorted(ranked.items(), key=lambda kv: -kv[1])][:limit]

    def articles(self, ids: Iterable[str]) -> list[dict[str, str]]:
        pipe = self.r.pipeline(transaction=False)
        ids = list(ids)
        for i in ids:
            pipe.hgetall(self.keys.article(i))
        return [{_s(k): _s(v) for k, v in h.items()} for h in pipe.execute() if h]

    def cluster(self, canonical_id: str) -> list[str]:
        return sorted(_s(m) for m in self.r.smembers(self.keys.cluster(canonical_id)))

    def clusters(self, limit: int = 100) -> list[dict]:
        """Duplicate clusters whose newest duplicate is among the latest flagged, newest first:
        {"canonical", "title", "members": [{"id", "duplicate_of", "kind", "similarity", "title"}]}."""
        fields = ("cluster", "duplicate_of", "duplicate_kind", "similarity", "title")
        roots: list[str] = []
        for start in range(0, self.r.zcard(self.keys.duplicates), 1000):
            ids = [_s(i) for i in self.r.zrevrange(self.keys.duplicates, start, start + 999)]
            pipe = self.r.pipeline(transaction=False)
            for i in ids:
                pipe.hget(self.keys.article(i), "cluster")
            for root in pipe.execute():
                root = _s(root)
                if root and root not in roots:
                    roots.append(root)
            if len(roots) >= limit:
                break
        roots = roots[:limit]
        pipe = self.r.pipeline(transaction=False)
        for root in roots:
            pipe.smembers(self.keys.cluster(root))
        members = [sorted(_s(m) for m in ms) for ms in pipe.execute()]
        pipe = self.r.pipeline(transaction=False)
        for root, ms in zip(roots, members):
            for i in [root] + ms:
                pipe.hmget(self.keys.article(i), fields)
        replies = iter(pipe.execute())
        out = []
        for root, ms in zip(roots, members):
            head = dict(zip(fields, (_s(v) for v in next(replies))))
            rows = []
            for i in ms:
                f = dict(zip(fields, (_s(v) for v in next(replies))))
                if i != root:
                    rows.append(
                        {
                            "id": i,
                            "duplicate_of": f["duplicate_of"],
                            "kind": f["duplicate_kind"],
                            "similarity": f["similarity"],
                            "title": f["title"],
                        }
                    )
            out.append({"canonical": root, "title": head["title"], "members": rows})
        return out

    def write_article(
        self, pipe, record: dict[str, str], topics: list[str], published: float, content_hash: str
    ) -> None:
        """Queues an article's record and indexes on `pipe` (the batch's one pipeline)."""
        k, aid = self.keys, record["id"]
        pipe.hset(k.article(aid), mapping=record)
        pipe.zadd(k.articles, {aid: published})
        pipe.zadd(k.feed_articles(record["feed"]), {aid: published})
        for topic in topics:
            pipe.zadd(k.topic(topic), {aid: published})
        pipe.hset(k.seen, aid, content_hash)

    def untag(self, pipe, article_id: str, topics: Iterable[str]) -> None:
        for topic in topics:
            pipe.zrem(self.keys.topic(topic), article_id)

    # -- errors ---------------------------------------------------------------
    def record_error(self, feed_id: str, url: str, kind: str, message: str, pipe=None) -> None:
        target = pipe or self.r.pipeline(transaction=False)
        target.xadd(
            self.keys.errors,
            {"time": iso(time.time()), "feed": feed_id, "url": url, "kind": kind, "message": message[:2000]},
            maxlen=ERRORS_MAXLEN,
            approximate=True,
        )
        if pipe is None:
            target.execute()

    def errors(self, count: int = 50) -> list[dict[str, str]]:
        return [
            {"entry": _s(eid), **{_s(k): _s(v) for k, v in fields.items()}}
            for eid, fields in self.r.xrevrange(self.keys.errors, count=count)
        ]

    def dead_letter(self, payload: dict) -> None:
        self.r.rpush(self.keys.deadletter, json.dumps(payload))

    # -- submission progress ------------------------------------------------
    def job_add(self, job: str, pipe=None, **counts: int) -> None:
        target = pipe or self.r.pipeline(transaction=False)
        for field, n in counts.items():
            target.hincrby(self.keys.job(job), field, n)
        target.expire(self.keys.job(job), JOB_TTL)
        if pipe is None:
            target.execute()

    def job_feed_done(self, job: str, fid: str, error: bool) -> None:
        """Marks a feed of the submission read; a message run twice (redelivered) marks it once."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(self.keys.job_feeds(job), fid, "error" if error else "ok")
        pipe.expire(self.keys.job_feeds(job), JOB_TTL)
        pipe.execute()

    def job_expect(self, pipe, job: str, article_ids: list[str]) -> None:
        if article_ids:
            pipe.sadd(self.keys.job_articles(job), *article_ids)
            pipe.expire(self.keys.job_articles(job), JOB_TTL)

    def job_done(self, pipe, job: str, article_ids: list[str]) -> None:
        if article_ids:
            pipe.sadd(self.keys.job_done(job), *article_ids)
            pipe.expire(self.keys.job_done(job), JOB_TTL)

    def job_progress(self, job: str) -> dict[str, int]:
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(self.keys.job(job))
        pipe.hvals(self.keys.job_feeds(job))
        pipe.scard(self.keys.job_articles(job))
        pipe.scard(self.keys.job_done(job))
        state, outcomes, expected, done = pipe.execute()
        out = {_s(k): int(v) for k, v in state.items()}
        out["feeds_done"], out["errors"] = len(outcomes), sum(1 for o in outcomes if o == b"error")
        out["articles"], out["stored"] = int(expected), int(done)
        return out
