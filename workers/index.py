"""The near-duplicate index in Redis, kept by two Lua scripts.

`index.lua` decides and inserts a whole batch in one atomic step (see its
header for the layout and for why); `prune.lua` drops what is older than the
window. Both are queued on the caller's pipeline, so a batch's index updates
travel with its writes.

Memory per indexed article: one fixed-width record (26 bytes + 2 per
permutation) packed into shared chunk strings, plus one 8-byte bucket entry
per band, per lead band and for the id, in bucket strings that linear hashing
keeps about `LOAD` entries long. Strings have no compact-encoding limits to
respect, so nothing depends on the server's `*-max-ziplist-*` configuration.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import resources

import redis

from feedsift.models.minhash import EXCERPT_MAX_RATIO, MIN_EXCERPT_SHINGLES, MinHasher, Sketch
from feedsift.workers.keys import Keys

#: Average bucket entries (8 bytes each) before linear hashing splits a bucket.
LOAD = 128
#: Containment of the shorter text in the longer at or above which it is flagged an excerpt.
EXCERPT_CONTAINMENT = 0.85
#: Bytes a record chunk may take (a jemalloc size class, less the string header).
CHUNK_BYTES = 16384 - 16


def _script(name: str) -> str:
    return resources.files("feedsift.workers").joinpath(name).read_text()


@dataclass(frozen=True)
class Decision:
    seq: int
    duplicate_of: str
    similarity: str
    kind: str
    cluster: str


@dataclass(frozen=True)
class Item:
    """One article as the index takes it."""

    article_id: str
    text_hash: str
    sketch: Sketch
    published: float


class DuplicateIndex:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        hasher: MinHasher,
        threshold: float,
        window_days: int,
        excerpt: float = EXCERPT_CONTAINMENT,
    ):
        self.keys, self.hasher, self.threshold, self.excerpt = keys, hasher, threshold, excerpt
        self.window = window_days * 86400
        self.per_chunk = max(1, CHUNK_BYTES // hasher.record_size)
        self._index = client.register_script(_script("index.lua"))
        self._prune = client.register_script(_script("prune.lua"))

    def add_batch(self, pipe, items: list[Item], now: float | None = None) -> None:
        """Queues the decision and insertion of `items` on `pipe`; its reply is a list of decisions."""
        if not items:
            return
        k, h = self.keys, self.hasher
        args: list = [
            self.threshold,
            self.excerpt,
            now or time.time(),
            self.per_chunk,
            h.record_size,
            h.keys_per_article,
            LOAD,
            k.dedup(""),
            k.article(""),
            k.cluster(""),
            MIN_EXCERPT_SHINGLES,
            EXCERPT_MAX_RATIO,
        ]
        for it in items:
            args += [
                it.article_id,
                h.record(it.article_id, it.text_hash, it.sketch),
                h.entries(it.article_id, it.sketch),
                it.published,
            ]
        self._index(keys=[k.dedup("seq"), k.dedup("meta"), k.dedup("time"), k.duplicates], args=args, client=pipe)

    def add(self, pipe, item: Item, now: float | None = None) -> None:
        self.add_batch(pipe, [item], now)

    def prune(self, pipe, now: float | None = None, chunks: int = 100, sweep: int = 64) -> None:
        """Queues the removal of entries indexed before `now - window`; reply: [chunks dropped, entries dropped]."""
        k = self.keys
        self._prune(
            keys=[k.dedup("meta"), k.dedup("time")],
            args=[(now or time.time()) - self.window, chunks, sweep, self.per_chunk, k.dedup("")],
            client=pipe,
        )

    def memory(self, client: redis.Redis) -> dict[str, int]:
        """Bytes the index's keys take (MEMORY USAGE), and how many articles it holds."""
        total, keys = 0, 0
        for key in client.scan_iter(match=self.keys.dedup("*"), count=1000):
            total += client.memory_usage(key, samples=0) or 0
            keys += 1
        seq = int(client.get(self.keys.dedup("seq")) or 0)
        return {"bytes": total, "keys": keys, "articles": seq}

    @staticmethod
    def decisions(reply) -> list[Decision]:
        return [Decision(int(r[0]), *((x.decode() if isinstance(x, bytes) else str(x)) for x in r[1:])) for r in reply]
