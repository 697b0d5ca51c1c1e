"""The one settings object. Read from `FEEDSIFT_*` environment variables, once, at the edge."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import lru_cache

ENV_PREFIX = "FEEDSIFT_"


@dataclass(frozen=True)
class Settings:
    #: Redis server holding the queues and every result.
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Prefix of every key feedsift writes (queues included).
    prefix: str = "feedsift:"
    #: Articles per `process_articles` message.
    batch_size: int = 50
    #: Estimated Jaccard similarity at or above which two articles are near-duplicates.
    dedup_threshold: float = 0.8
    #: Days an article stays in the duplicate index (its record stays for good).
    dedup_window_days: int = 30
    #: Allow fetching loopback/private addresses. For tests and local demos only.
    allow_private_networks: bool = False
    #: Comma-separated `ip:port` endpoints fetched even though private (`[ip]:port` for IPv6); for tests.
    allow_endpoints: str = ""
    #: Largest feed body accepted, in bytes, after decompression.
    max_feed_bytes: int = 10 * 1024 * 1024
    #: Entries read from one feed; the rest are ignored.
    max_entries: int = 1000
    #: Characters of article text kept; longer texts are cut.
    max_article_chars: int = 100_000
    #: Seconds to establish a connection.
    connect_timeout: float = 5.0
    #: Seconds to wait for each read from the server.
    read_timeout: float = 10.0
    #: Seconds for a whole download; a server trickling bytes is cut off.
    fetch_deadline: float = 30.0
    #: Redirects followed before giving up.
    max_redirects: int = 5
    #: Retries of a fetch after a transient error (time-out, 5xx, connection reset).
    fetch_retries: int = 3
    #: Attempts of a batch before it is parked in the dead-letter list.
    process_attempts: int = 3
    #: Seconds before a message taken by a worker that died is delivered again.
    visibility_timeout: int = 3600
    #: Seconds between two polls of every submitted feed URL by `celery beat` (0: no polling).
    poll_interval: int = 900
    #: Path of the topic model artifact; empty: the published model in Redis, else the bundled one.
    model_path: str = ""
    #: User-Agent header of feed requests.
    user_agent: str = "feedsift/0.1 (feed reader)"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.name, raw, type(f.default))
        return cls(**values)


def _parse(name: str, raw: str, kind: type):
    try:
        if kind is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        return kind(raw)
    except ValueError:
        raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid {kind.__name__}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings (environment read on first use, not at import)."""
    return Settings.from_env()
