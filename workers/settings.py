"""The one settings object. Read from `FEEDSIFT_*` environment variables, once, at the edge."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import cached_property, lru_cache

ENV_PREFIX = "FEEDSIFT_"


@dataclass(frozen=True)
class Settings:
    #: Redis server holding every result (and the queues, unless `broker_url` names another broker).
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Message broker: empty for the Redis server of `redis_url`, or an amqp:// URL of RabbitMQ.
    broker_url: str = ""
    #: `redis_url` names any node of a Redis Cluster holding the results; the queues then need `broker_url`.
    redis_cluster: bool = False
    #: Prefix of every key feedsift writes (queues included).
    prefix: str = "feedsift:"
    #: Articles per `process_articles` message.
    batch_size: int = 50
    #: Estimated Jaccard similarity of word 3-shingles (0 to 1) at or above which two articles are near-duplicates.
    dedup_threshold: float = 0.5
    #: Estimated share (0 to 1) of one article's names and numbers found in the other that two near-duplicates
    #: need as well (keeps template stories apart).
    dedup_names: float = 0.85
    #: Share (0 to 1) of a shorter text found at the opening of (or contained in) a longer one for an excerpt.
    dedup_excerpt: float = 0.9
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
    #: Seconds a message taken by a worker stays its own without a heartbeat of the worker; then it is delivered again.
    visibility_timeout: int = 15
    #: Seconds between two polls of a subscribed feed unless `subscribe --every` says otherwise (0: no polling).
    poll_interval: int = 900
    #: Seconds between two looks for due subscriptions by `celery beat`.
    schedule_tick: int = 30
    #: Shortest interval, in seconds, between two polls of a feed that changes often.
    poll_min_interval: int = 60
    #: Longest interval, in seconds, between two polls of a feed that rarely changes or keeps failing.
    poll_max_interval: int = 86400
    #: Failed fetches in a row after which a subscription is paused until resumed.
    pause_after_failures: int = 5
    #: Path of the topic model artifact; empty: the published model in Redis, else the bundled one.
    model_path: str = ""
    #: User-Agent header of feed requests.
    user_agent: str = "feedsift/0.1 (feed reader)"
    #: Seconds to connect to Redis before the call fails (and the task is retried later).
    redis_connect_timeout: float = 5.0
    #: Seconds a Redis reply may take; 0: no limit (a long Lua script under load is not an error).
    redis_socket_timeout: float = 0.0
    #: Entries kept in the error stream (approximately; older ones are trimmed).
    errors_maxlen: int = 10_000
    #: Seconds a submission's progress keys live after their last update.
    job_ttl: int = 7 * 86400
    #: Days an article is kept, by publication time; 0: forever.
    retention_days: int = 0
    #: Comma-separated keys the HTTP API accepts (`Authorization: Bearer KEY`); empty: every write refused.
    api_keys: str = ""
    #: Let anyone read through the HTTP API and the dashboard without a key.
    api_public_read: bool = False
    #: Port where a worker serves its Prometheus metrics; 0: off.
    metrics_port: int = 0
    #: Folder the processes of one worker (or the API) share for their metrics; empty: a new temporary folder.
    metrics_dir: str = ""

    def __post_init__(self) -> None:
        """Refuses a setting that would only fail later, task by task."""
        for name, low, high in _RANGES:
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"{ENV_PREFIX}{name.upper()}={value!r} is out of range [{low:g}, {high:g}]")
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"{ENV_PREFIX}REDIS_URL={self.redis_url!r} is not a redis://, rediss:// or unix:// URL")
        if self.redis_cluster and not self.broker_url:
            raise ValueError(
                f"{ENV_PREFIX}REDIS_CLUSTER is set but {ENV_PREFIX}BROKER_URL is not: the queues need RabbitMQ or a "
                "plain Redis (kombu does not speak the cluster protocol)"
            )
        if self.broker_url and not self.broker_url.startswith(
            ("redis://", "rediss://", "unix://", "amqp://", "amqps://")
        ):
            raise ValueError(f"{ENV_PREFIX}BROKER_URL={self.broker_url!r} is not a redis:// or amqp:// URL")
        if not self.prefix or any(c in self.prefix for c in " {}*?"):
            raise ValueError(
                f"{ENV_PREFIX}PREFIX={self.prefix!r} must be non-empty, without spaces, braces or glob characters"
            )
        _ = self.endpoints
        if self.poll_min_interval > self.poll_max_interval:
            raise ValueError(f"{ENV_PREFIX}POLL_MIN_INTERVAL is above {ENV_PREFIX}POLL_MAX_INTERVAL")

    @cached_property
    def endpoints(self) -> frozenset:
        """`allow_endpoints` parsed: (address, port) pairs."""
        return parse_endpoints(self.allow_endpoints)

    @cached_property
    def api_key_list(self) -> tuple[str, ...]:
        """`api_keys` parsed: the keys the HTTP API accepts."""
        return tuple(k for k in (part.strip() for part in self.api_keys.split(",")) if k)

    @property
    def api_body_limit(self) -> int:
        """Bytes of a request body the HTTP API reads: a feed document of the largest size, escaped as JSON."""
        return 2 * self.max_feed_bytes + 64 * 1024

    @property
    def broker(self) -> str:
        """The broker's URL: `broker_url`, else the Redis server of the results."""
        return self.broker_url or self.redis_url

    @property
    def amqp(self) -> bool:
        """RabbitMQ is the broker: it returns a dead consumer's messages itself, so no heartbeat, sweep or ledger."""
        return self.broker.startswith(("amqp://", "amqps://"))

    @property
    def heartbeat(self) -> float:
        """Seconds between two heartbeats of a worker: five to a visibility timeout, so a live worker's hold
        on its messages survives four missed ones."""
        return self.visibility_timeout / 5

    @property
    def restore_interval(self) -> int:
        """Seconds between two looks for messages whose hold lapsed: often enough that they come back soon
        after the visibility timeout, rarely enough to cost nothing."""
        return max(1, min(10, self.visibility_timeout // 4))

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


#: (setting, lowest, highest) allowed.
_RANGES = (
    ("batch_size", 1, 10_000),
    ("dedup_threshold", 0.05, 1.0),
    ("dedup_names", 0.0, 1.0),
    ("dedup_excerpt", 0.5, 1.0),
    ("dedup_window_days", 1, 36_500),
    ("max_feed_bytes", 1, 1 << 34),
    ("max_entries", 1, 1_000_000),
    ("max_article_chars", 1, 1 << 30),
    ("connect_timeout", 0.01, 3600),
    ("read_timeout", 0.01, 3600),
    ("fetch_deadline", 0.01, 86400),
    ("max_redirects", 0, 100),
    ("fetch_retries", 0, 1000),
    ("process_attempts", 1, 1000),
    ("visibility_timeout", 2, 1 << 31),
    ("poll_interval", 0, 1 << 31),
    ("schedule_tick", 1, 86400),
    ("poll_min_interval", 1, 1 << 31),
    ("poll_max_interval", 1, 1 << 31),
    ("pause_after_failures", 1, 1_000_000),
    ("redis_connect_timeout", 0.01, 3600),
    ("redis_socket_timeout", 0, 3600),
    ("errors_maxlen", 1, 1 << 31),
    ("job_ttl", 1, 1 << 31),
    ("retention_days", 0, 36_500),
    ("metrics_port", 0, 65535),
)


def parse_endpoints(spec: str) -> frozenset[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]]:
    """`FEEDSIFT_ALLOW_ENDPOINTS`: comma-separated `ip:port` (IPv6 as `[ip]:port`)."""
    out = set()
    for item in filter(None, (part.strip() for part in spec.split(","))):
        host, sep, port = item.rpartition(":")
        try:
            if not sep or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(item)
            out.add((ipaddress.ip_address(host.strip("[]")), int(port)))
        except ValueError:
            raise ValueError(f"{ENV_PREFIX}ALLOW_ENDPOINTS: {item!r} is not an ip:port") from None
    return frozenset(out)


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
