"""The near-duplicate index in Redis: MinHash LSH bands kept by two Lua scripts.

`index.lua` decides and inserts in one atomic step (see its header for why);
`prune.lua` drops entries older than the window. Both are queued on the
caller's pipeline, so a batch's index updates travel with its writes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import resources

import redis

from models.minhash import MinHasher
from workers.keys import Keys


def _script(name: str) -> str:
    return resources.files("workers").joinpath(name).read_text()


@dataclass(frozen=True)
class Decision:
    seq: int
    duplicate_of: str
    similarity: str
    kind: str
    cluster: str


class DuplicateIndex:
    def __init__(self, client: redis.Redis, keys: Keys, hasher: MinHasher, threshold: float, window_days: int):
        self.keys, self.hasher, self.threshold = keys, hasher, threshold
        self.window = window_days * 86400
        self._index = client.register_script(_script("index.lua"))
        self._prune = client.register_script(_script("prune.lua"))

    def add(self, pipe, article_id: str, signature_blob: bytes, text_hash: str, published: float, now: float | None = None) -> None:
        k = self.keys
        self._index(
            keys=[k.dedup("seq"), k.dedup("doc"), k.dedup("root"), k.dedup("time"),
                  k.article(article_id), k.duplicates],
            args=[article_id, signature_blob, self.hasher.bands, self.hasher.rows, self.threshold,
                  now or time.time(), k.dedup("band:"), k.article(""), k.cluster(""), published, text_hash],
            client=pipe,
        )

    def prune(self, pipe, now: float | None = None, limit: int = 1000) -> None:
        k = self.keys
        self._prune(
            keys=[k.dedup("doc"), k.dedup("root"), k.dedup("time")],
            args=[(now or time.time()) - self.window, limit, self.hasher.bands, self.hasher.rows, k.dedup("band:")],
            client=pipe,
        )

    @staticmethod
    def decision(reply) -> Decision:
        seq, dup, sim, kind, cluster = (x.decode() if isinstance(x, bytes) else str(x) for x in reply)
        return Decision(int(seq), dup, sim, kind, cluster)
