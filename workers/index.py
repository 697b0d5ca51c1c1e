"""The near-duplicate index in Redis, kept by two Lua scripts.

`index.lua` decides and inserts a whole batch in one atomic step (see its
header for the layout and why it lives in five keys); `prune.lua` drops what
is older than the window. `decide` runs both in one round trip and returns
the decisions; the caller writes them with the batch (`Store.apply_decisions`).

Memory per indexed article: one fixed-width record (`MinHasher.layout`)
packed into 16 KB chunks, plus one 8-byte bucket entry per band, for the
lead key and for the id, in bucket strings that linear hashing keeps about
`LOAD` entries long. Chunks and buckets are values of two hashes, and both
hashes must be tables, never Redis's packed small-hash encoding (rewritten
whole on every write): a chunk is larger than the 4 KB `hash-max-listpack-value`
the README recommends, and a new index starts with more buckets than
`hash-max-listpack-entries`. A candidate's chunk is read whole to reach its
record; 8 KB chunks were measured no cheaper (more chunks read per article).
The records per chunk are fixed in the index's meta when it is made.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from importlib import resources

import redis

from feedsift.models.minhash import Decision, MinHasher, Sketch, Verdict
from feedsift.workers.keys import Keys

#: Average bucket entries (8 bytes each) before linear hashing splits a bucket.
LOAD = 128
#: A new index has 2**LEVEL0 buckets: more fields than a hash keeps in its packed encoding (128 by default on
#: Redis 7, 512 on some servers), so the buckets hash is a table from its first batch on.
LEVEL0 = 10
#: Bytes a record chunk may take: over the packed-hash value limit (4 KB as the README sets it). An index
#: keeps the records per chunk it was made with (meta `per_chunk`; indexes made before it was kept: this).
CHUNK_BYTES = 16384 - 64
#: The index's keys, in the order the scripts take them.
INDEX_KEYS = ("seq", "meta", "time", "docs", "buckets")
PRUNE_KEYS = ("meta", "time", "docs", "buckets")


def _script(name: str) -> str:
    return resources.files("feedsift.workers").joinpath(name).read_text()


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
        names: float = Verdict.names,
        excerpt: float = Verdict.excerpt,
    ):
        self.client, self.keys, self.hasher = client, keys, hasher
        self.verdict = Verdict(near=threshold, names=names, excerpt=excerpt)
        self.window = window_days * 86400
        self.per_chunk = max(1, CHUNK_BYTES // hasher.record_size)
        self._index = client.register_script(_script("index.lua"))
        self._prune = client.register_script(_script("prune.lua"))
        v, layout = self.verdict, hasher.layout
        self._config = {
            "layout": {name: [at, n] for name, at, n in layout.fields},
            "record": layout.size,
            "per_chunk": self.per_chunk,
            "load": LOAD,
            "level0": LEVEL0,
            "near": v.near,
            "names": v.names,
            "excerpt": v.excerpt,
            "excerpt_words": v.excerpt_words,
            "excerpt_ratio": v.excerpt_ratio,
            "contained": v.contained,
            "slack": v.slack,
        }

    def item(self, article_id: str, title: str, text: str, published: float) -> Item:
        """What the index keeps of an article: its text hash and sketch (a text-less item falls back to its title)."""
        return self.items([(article_id, title, text, published)])[0]

    def items(self, articles: list[tuple[str, str, str, float]]) -> list[Item]:
        """`item` of each (id, title, text, published), sketched together: cheaper than one by one."""
        sketches = self.hasher.sketches([text or title for _, title, text, _ in articles])
        return [Item(aid, sk.text_hash, sk, published) for (aid, _, _, published), sk in zip(articles, sketches)]

    def decide(self, items: list[Item], now: float | None = None) -> list[Decision]:
        """Decides and inserts a batch in one atomic step, then drops what left the window; one round trip.

        Deciding the same batch again (a re-delivery) gives the same decisions and changes nothing.
        """
        if not items:
            return []
        now = time.time() if now is None else now
        h = self.hasher
        args: list = [json.dumps({**self._config, "now": now})]
        for it in items:
            args += [
                it.article_id,
                h.record(it.article_id, it.text_hash, it.sketch),
                h.entries(it.article_id, it.sketch),
            ]
        pipe = self.client.pipeline(transaction=False)
        self._index(keys=[self.keys.dedup(k) for k in INDEX_KEYS], args=args, client=pipe)
        self._queue_prune(pipe, now)
        return [_decision(r) for r in pipe.execute()[0]]

    def prune(self, now: float | None = None, chunks: int = 100, sweep: int = 64) -> tuple[int, int]:
        """Drops entries indexed before `now - window`: (chunks dropped, bucket entries dropped)."""
        pipe = self.client.pipeline(transaction=False)
        self._queue_prune(pipe, now, chunks, sweep)
        dropped, entries = pipe.execute()[0]
        return int(dropped), int(entries)

    def _queue_prune(self, pipe, now: float | None, chunks: int = 100, sweep: int = 64) -> None:
        self._prune(
            keys=[self.keys.dedup(k) for k in PRUNE_KEYS],
            args=[(time.time() if now is None else now) - self.window, chunks, sweep, self.per_chunk],
            client=pipe,
        )

    def memory(self) -> dict[str, int]:
        """Bytes the index's keys take (MEMORY USAGE), and how many articles it holds."""
        total = sum(self.client.memory_usage(self.keys.dedup(k), samples=0) or 0 for k in INDEX_KEYS)
        return {"bytes": total, "articles": int(self.client.get(self.keys.dedup("seq")) or 0)}


def _decision(reply) -> Decision:
    aid, seq, other, kind, sim, cluster, new = (x.decode() if isinstance(x, bytes) else x for x in reply)
    return Decision(aid, int(seq), other, kind, float(sim) if sim else 0.0, cluster, new == "1")
