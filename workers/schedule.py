"""Subscriptions: each feed polled on its own clock, set by what the feed says and how it behaves.

A subscribed feed's next poll is its score in `feeds:due`. After each fetch the
next one is set: no sooner than the server asked (`Cache-Control: max-age`,
`Retry-After`, the feed's `<ttl>`), sooner when the feed keeps changing, later
when it does not, within bounds; after a failure twice as late each time (with
jitter, up to `poll_max_interval`), and after `pause_after_failures` failures in
a row not at all until someone resumes it. Beat sends `poll_feeds` to every
worker pool, possibly from several beat processes: a lock with an expiry lets
one of them send the due feeds, and moving each sent feed's score forward before
sending keeps it from being sent twice.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from collections.abc import Callable
from email.utils import parsedate_to_datetime

import redis

from feedsift.workers.article import iso
from feedsift.workers.keys import Keys, text
from feedsift.workers.settings import Settings

#: Seconds the scheduler's lock is held at most (a scheduler that died lets go by then).
LOCK_SECONDS = 60
#: Interval factors after a poll that brought new articles, and after one that did not.
FASTER, SLOWER = 0.7, 1.3
#: Extra share of an error back-off drawn at random, so failing feeds do not come back in step.
JITTER = 0.2
#: Fields of the feed hash that belong to its subscription.
FIELDS = ("every", "interval", "next_due", "failures", "paused")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def parse_every(spec: str) -> int:
    """`15m`, `2h`, `1d`, `90s` or plain seconds, as seconds."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", str(spec).lower())
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"interval {spec!r} is not like 15m, 2h, 1d or a number of seconds")
    return int(match.group(1)) * _UNITS[match.group(2) or "s"]


def hints(headers: dict[str, str], ttl_minutes: int = 0, now: float | None = None) -> float:
    """Seconds the server asked us to wait before the next poll (0 when it did not say)."""
    now = time.time() if now is None else now
    wait = float(max(0, ttl_minutes) * 60)
    match = re.search(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)", headers.get("cache-control", ""), re.I)
    if match:
        wait = max(wait, float(match.group(1)))
    return max(wait, retry_after(headers.get("retry-after", ""), now))


def retry_after(value: str, now: float) -> float:
    """A `Retry-After` value (seconds or an HTTP date) as seconds from `now`."""
    value = (value or "").strip()
    if not value:
        return 0.0
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return 0.0


class Schedule:
    def __init__(self, r: redis.Redis, keys: Keys, settings: Settings):
        self.r, self.keys, self.settings = r, keys, settings

    @classmethod
    def of(cls, ctx) -> Schedule:
        """The schedule of a process's context (its Redis client, keys and settings)."""
        return cls(ctx.redis, ctx.keys, ctx.settings)

    # -- subscribing ---------------------------------------------------------------
    def subscribe(self, fid: str, url: str, every: int, now: float | None = None) -> None:
        """Subscribes a feed (or changes its interval), due at `now` (default: at once)."""
        now = time.time() if now is None else now
        pipe = self.r.pipeline(transaction=True)
        pipe.hsetnx(self.keys.feed(fid), "url", url)
        pipe.zadd(self.keys.feeds, {fid: now}, nx=True)
        fields = {"every": every, "interval": every, "failures": 0, "paused": "", "next_due": iso(now)}
        pipe.hset(self.keys.feed(fid), mapping=fields)
        pipe.zadd(self.keys.feeds_due, {fid: now})
        pipe.execute()

    def forget(self, fid: str) -> bool:
        """Stops polling a feed and drops its state and article list (its articles stay); False if unknown."""
        pipe = self.r.pipeline(transaction=True)
        pipe.zrem(self.keys.feeds_due, fid)
        pipe.zrem(self.keys.feeds, fid)
        pipe.delete(self.keys.feed(fid), self.keys.feed_articles(fid))
        _, known, deleted = pipe.execute()
        return bool(known or deleted)

    def resume(self, fid: str, now: float | None = None) -> bool:
        """Resumes a paused (or any) subscription now; False if the feed is not subscribed."""
        now = time.time() if now is None else now
        if not self.r.hget(self.keys.feed(fid), "every"):
            return False
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.keys.feed(fid), mapping={"failures": 0, "paused": "", "next_due": iso(now)})
        pipe.zadd(self.keys.feeds_due, {fid: now})
        pipe.execute()
        return True

    # -- polling ---------------------------------------------------------------------
    def poll(self, send: Callable[[str], None], now: float | None = None, limit: int = 10_000) -> dict:
        """Sends every feed due by `now`; one scheduler at a time (the others return at once)."""
        now = time.time() if now is None else now
        token = uuid.uuid4().hex
        if not self.r.set(self.keys.schedule_lock, token, nx=True, ex=LOCK_SECONDS):
            return {"polled": 0, "busy": True}
        try:
            ids = [text(i) for i in self.r.zrangebyscore(self.keys.feeds_due, "-inf", now, start=0, num=limit)]
            pipe = self.r.pipeline(transaction=False)
            for fid in ids:
                pipe.hmget(self.keys.feed(fid), "url", "interval", "every")
            sent = 0
            for fid, (url, interval, every) in zip(ids, pipe.execute()):
                url = text(url)
                if not url.startswith(("http://", "https://")) or not text(every):
                    self.r.zrem(self.keys.feeds_due, fid)
                    continue
                # not due again before its outcome sets the next time (or its interval passes, if it never does)
                lease = float(text(interval) or text(every))
                self.r.zadd(self.keys.feeds_due, {fid: now + lease})
                send(url)
                sent += 1
            return {"polled": sent}
        finally:
            self.r.eval(_RELEASE, 1, self.keys.schedule_lock, token)

    def after_fetch(self, fid: str, outcome: dict, now: float | None = None) -> float | None:
        """Sets a subscribed feed's next poll from a fetch's outcome; returns it (None: not subscribed or paused)."""
        now = time.time() if now is None else now
        state = {text(k): text(v) for k, v in self.r.hgetall(self.keys.feed(fid)).items()}
        if not state.get("every") or state.get("paused"):  # a paused feed waits to be resumed, whatever happens
            return None
        s = self.settings
        every = float(state["every"])
        interval = float(state.get("interval") or every)
        lo = max(s.poll_min_interval, min(every / 4, s.poll_max_interval))
        hi = min(s.poll_max_interval, max(every * 8, lo))
        asked = hints(outcome.get("headers") or {}, int(outcome.get("ttl") or 0), now)
        if "error" not in outcome:
            interval = min(hi, max(lo, interval * (FASTER if outcome.get("new") else SLOWER)))
            fields = {"interval": round(interval), "failures": 0, "paused": ""}
            wait = min(s.poll_max_interval, max(interval, asked))
        else:
            failures = int(state.get("failures") or 0) + 1
            fields = {"failures": failures}
            if failures >= s.pause_after_failures:
                fields.update(paused=f"{failures} failed fetches in a row; last: {outcome['error']}"[:500], next_due="")
                pipe = self.r.pipeline(transaction=True)
                pipe.hset(self.keys.feed(fid), mapping=fields)
                pipe.zrem(self.keys.feeds_due, fid)
                pipe.execute()
                return None
            backoff = min(s.poll_max_interval, interval * 2**failures)
            backoff = min(s.poll_max_interval, backoff * (1 + JITTER * random.random()))
            wait = max(backoff, min(asked, s.poll_max_interval))
        due = now + wait
        fields["next_due"] = iso(due)
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.keys.feed(fid), mapping=fields)
        pipe.zadd(self.keys.feeds_due, {fid: due}, xx=True)
        pipe.execute()
        return due

    def next_due(self, fid: str) -> float | None:
        return self.r.zscore(self.keys.feeds_due, fid)
