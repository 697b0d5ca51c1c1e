"""Every Redis key feedsift uses, built by one helper per kind.

The table `SCHEMA` is the written-down schema; the README's table is checked
against it by a test, so the two cannot drift apart.

On a Redis Cluster each Lua script and each MULTI must touch one slot. The
duplicate index carries its hash tag `{dedup}` everywhere; with `hash_tags` set,
the keys other transactions write together get one too, in front of the
name: `{feeds}` for a feed's state and article list with the feed indexes,
`{model}` for the published models. Everything else (article records above
all) spreads over the cluster by its own name.
"""

from __future__ import annotations

from dataclasses import dataclass

from feedsift.workers.article import FIELDS

#: (pattern, Redis type, what it holds) — patterns are shown with the default prefix.
SCHEMA: list[tuple[str, str, str]] = [
    ("article:<id>", "hash", "one article: " + ", ".join(FIELDS)),
    ("articles", "zset", "every article id, scored by publication time (epoch seconds)"),
    ("topic:<topic>", "zset", "article ids tagged with the topic, scored by publication time"),
    ("duplicates", "zset", "article ids flagged as duplicates, scored by publication time"),
    (
        "cluster:<id>",
        "zset",
        "members of the duplicate cluster whose canonical (earliest-seen) article is <id>, scored by publication time",
    ),
    (
        "feed:<feed id>",
        "hash",
        "a feed's state: url, title, etag, modified, last_fetch, last_status, last_error, articles, boilerplate; "
        "subscribed: every, interval, next_due, failures, paused (the reason)",
    ),
    ("feed:<feed id>:articles", "zset", "the feed's article ids, scored by publication time"),
    ("feeds", "zset", "every feed id, scored by when it was first submitted"),
    (
        "feeds:due",
        "zset",
        "subscribed feed ids, scored by when each is next due (epoch seconds); a paused feed leaves it",
    ),
    ("schedule:lock", "string", "held by the one scheduler sending due feeds, with an expiry"),
    (
        "seen",
        "hash",
        "article id -> source hash (48-bit, hex) of the version last stored (drops re-polled articles before cleaning)",
    ),
    ("errors", "stream", "errors: time, feed, url, kind, message (capped at about 10,000 entries)"),
    ("deadletter", "list", "JSON of batches that failed every attempt, with their error"),
    ("job:<job id>", "hash", "one submission: feeds (how many it sent)"),
    ("job:<job id>:feeds", "hash", "feed id -> ok or error, for each feed of the submission already read"),
    (
        "job:<job id>:articles",
        "hash",
        "batch -> articles in it, for each batch the submission enqueued (a batch is named by a hash of its article ids)",
    ),
    ("job:<job id>:done", "hash", "batch -> articles in it, for each batch of the submission already stored"),
    ("model:current", "string", "version of the topic model workers use"),
    ("model:versions", "hash", "version -> JSON of the model's header (figures, thresholds, date)"),
    ("model:artifact:<version>", "string", "the model artifact (.npz bytes)"),
    ("{dedup}:seq", "string", "counter that orders articles for the duplicate index"),
    (
        "{dedup}:meta",
        "hash",
        "index state: level, split, entries (linear hashing of the buckets), per_chunk (records per chunk, fixed when the index is made), cursor, sweep",
    ),
    ("{dedup}:time", "zset", "record chunk n -> latest time an article was indexed in it, for the window"),
    (
        "{dedup}:docs",
        "hash",
        "record chunk n -> fixed-width index records of a run of sequence numbers: id, cluster root, verdict "
        "(duplicated sequence number, kind, similarity, linked flag), text hash, shingle and word counts, opening "
        "word hashes, 16-bit MinHash codes of names and of shingles (binary)",
    ),
    (
        "{dedup}:buckets",
        "hash",
        "LSH bucket n (linear hashing) -> 8-byte entries, band hash and sequence number (binary)",
    ),
    (
        "pending",
        "hash",
        "task id -> JSON of a task call sent and not yet ended (sent again if a dying worker lost it); "
        "on the broker's Redis, with the queues",
    ),
    ("pending:since", "zset", "task id of each pending call, scored by when it was sent or last found queued"),
    ("pending:lock", "string", "held for a moment by the worker sweeping for lost messages"),
    ("queue:<name>", "list", "Celery queues fetch and process (kombu's own keys share the queue: prefix)"),
    (
        "queue:unacked",
        "hash",
        "kombu's, Redis broker: delivery tag -> JSON of a message a worker took, not yet acknowledged",
    ),
    (
        "queue:unacked_index",
        "zset",
        "kombu's, Redis broker: delivery tag of each held message, scored by its holder's last heartbeat; "
        "put back on its queue once older than the visibility timeout",
    ),
]


def text(value: bytes | str | None) -> str:
    """A Redis reply as text ("" for a missing value)."""
    return value.decode() if isinstance(value, bytes) else ("" if value is None else str(value))


@dataclass(frozen=True)
class Keys:
    prefix: str = "feedsift:"
    #: Hash tags for the keys one transaction writes together (Redis Cluster).
    hash_tags: bool = False

    def _k(self, *parts: object) -> str:
        return self.prefix + ":".join(str(p) for p in parts)

    def _tagged(self, tag: str, *parts: object) -> str:
        return self._k(f"{{{tag}}}", *parts) if self.hash_tags else self._k(*parts)

    def article(self, article_id: str) -> str:
        return self._k("article", article_id)

    @property
    def articles(self) -> str:
        return self._k("articles")

    def topic(self, topic: str) -> str:
        return self._k("topic", topic)

    @property
    def duplicates(self) -> str:
        return self._k("duplicates")

    def cluster(self, canonical_id: str) -> str:
        return self._k("cluster", canonical_id)

    def feed(self, feed_id: str) -> str:
        return self._tagged("feeds", "feed", feed_id)

    def feed_articles(self, feed_id: str) -> str:
        return self._tagged("feeds", "feed", feed_id, "articles")

    @property
    def feeds(self) -> str:
        return self._tagged("feeds", "feeds")

    @property
    def feeds_due(self) -> str:
        return self._tagged("feeds", "feeds", "due")

    @property
    def schedule_lock(self) -> str:
        return self._k("schedule", "lock")

    @property
    def seen(self) -> str:
        return self._k("seen")

    @property
    def errors(self) -> str:
        return self._k("errors")

    @property
    def deadletter(self) -> str:
        return self._k("deadletter")

    def job(self, job_id: str) -> str:
        return self._k("job", job_id)

    def job_feeds(self, job_id: str) -> str:
        return self._k("job", job_id, "feeds")

    def job_articles(self, job_id: str) -> str:
        return self._k("job", job_id, "articles")

    def job_done(self, job_id: str) -> str:
        return self._k("job", job_id, "done")

    @property
    def model_current(self) -> str:
        return self._tagged("model", "model", "current")

    @property
    def model_versions(self) -> str:
        return self._tagged("model", "model", "versions")

    def model_artifact(self, version: str) -> str:
        return self._tagged("model", "model", "artifact", version)

    def dedup(self, name: str) -> str:
        """Index keys: {dedup}:seq, meta, time, docs, buckets; one hash tag, so one Redis Cluster slot."""
        return self._k("{dedup}", name)

    @property
    def pending(self) -> str:
        """The ledger of sent messages (pending, pending:since, pending:lock) lives with the queues it is
        checked against, on the broker's Redis."""
        return self._k("pending")

    @property
    def pending_since(self) -> str:
        return self._k("pending", "since")

    @property
    def pending_lock(self) -> str:
        return self._k("pending", "lock")

    def queue(self, name: str) -> str:
        """A Celery queue (or kombu's `unacked` hash) as kombu names it under the queue prefix."""
        return self.queue_prefix + name

    @property
    def unacked(self) -> str:
        return self.queue("unacked")

    @property
    def unacked_index(self) -> str:
        """Renewed by every worker's heartbeat for what it holds (`liveness`)."""
        return self.queue("unacked_index")

    @property
    def queue_prefix(self) -> str:
        return self._k("queue", "")
