"""MinHash sketches of word shingles, and the duplicate decision they support.

Everything here is pure: the Redis index (`workers/index.lua`) stores what
`MinHasher.record` packs and decides exactly as `compare`/`MemoryIndex` do,
which tests check against each other.

Signatures must be identical in every worker process and on every machine,
so shingles are hashed with CRC32 (stable, unlike Python's salted `hash()`)
and the permutations come from a fixed seed.

A sketch of a text holds:
- `sig`: `num_perm` 32-bit minimums of the text's shingle hashes;
- `lead`: `lead_perm` minimums over the shingles of its first `lead_words`
  words, so that an excerpt (the opening of a longer story) and the full
  story share LSH buckets even though their Jaccard similarity is low;
- `size`: the number of distinct shingles (needed to turn the minimums into a
  containment estimate).

What the index stores per article is small: each minimum is kept as a 16-bit
monotone code (5-bit exponent, 11-bit mantissa: order is preserved and two
different minimums almost never share a code), and each LSH band is reduced
to a 32-bit hash.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from feedsift.models.text import normalise, words

EMPTY = 0xFFFFFFFF
#: bytes of the fixed part of a record: id (16, NUL padded), text hash (8), shingle count (2)
RECORD_HEAD = 26
ID_BYTES = 16
#: Smallest shingle set that can count as an excerpt of another text.
MIN_EXCERPT_SHINGLES = 10
#: An excerpt is shorter than what it is taken from: at most this share of its shingles.
EXCERPT_MAX_RATIO = 0.9

KINDS = ("", "excerpt", "near", "exact")  # ranked: a better kind wins over a higher similarity


@dataclass(frozen=True)
class Sketch:
    sig: np.ndarray  # uint32, num_perm
    lead: np.ndarray  # uint32, lead_perm
    size: int


@dataclass(frozen=True)
class MinHasher:
    """Sketch parameters; every worker (and the index) must use the same ones."""

    num_perm: int = 128
    bands: int = 32
    shingle: int = 4
    lead_words: int = 24
    lead_perm: int = 16
    lead_bands: int = 4
    seed: int = 20261128
    _a: np.ndarray = field(init=False, repr=False, compare=False)
    _b: np.ndarray = field(init=False, repr=False, compare=False)
    _band_mul: np.ndarray = field(init=False, repr=False, compare=False)
    _lead_mul: np.ndarray = field(init=False, repr=False, compare=False)
    _gram_mul: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.num_perm % self.bands:
            raise ValueError("num_perm must be a multiple of bands")
        if self.lead_bands and (self.lead_perm % self.lead_bands or self.lead_perm > self.num_perm):
            raise ValueError("lead_perm must be a multiple of lead_bands and at most num_perm")
        rng = np.random.default_rng(self.seed)
        # multiply-shift hashing: (a*x + b) mod 2^64, top 32 bits; a odd
        a = rng.integers(1, 2**63, size=self.num_perm, dtype=np.uint64) | np.uint64(1)
        b = rng.integers(0, 2**63, size=self.num_perm, dtype=np.uint64)
        # multilinear band hashing: sum(value_j * m_j) + m_0 mod 2^64, top 32 bits; one row of m per band
        band_mul = rng.integers(1, 2**63, size=(self.bands, self.rows + 1), dtype=np.uint64) | np.uint64(1)
        lead_rows = self.lead_perm // self.lead_bands if self.lead_bands else 0
        lead_mul = rng.integers(1, 2**63, size=(self.lead_bands, lead_rows + 1), dtype=np.uint64) | np.uint64(1)
        object.__setattr__(self, "_a", a)
        object.__setattr__(self, "_b", b)
        object.__setattr__(self, "_band_mul", band_mul)
        object.__setattr__(self, "_lead_mul", lead_mul)
        # a k-gram's hash: sum of its words' CRC32 times one odd constant per position, mod 2^64
        gram_mul = np.random.default_rng(self.seed + 1).integers(
            1, 2**63, size=self.shingle, dtype=np.uint64
        ) | np.uint64(1)
        object.__setattr__(self, "_gram_mul", gram_mul)

    @property
    def rows(self) -> int:
        return self.num_perm // self.bands

    @property
    def record_size(self) -> int:
        return RECORD_HEAD + 2 * self.num_perm

    @property
    def keys_per_article(self) -> int:
        """Bucket entries one article takes: its bands, its lead bands and its id."""
        return self.bands + self.lead_bands + 1

    # -- shingles and minimums -----------------------------------------------
    def tokens(self, text: str) -> list[str]:
        return words(normalise(text))

    def _grams(self, tokens: list[str]) -> np.ndarray:
        if not tokens:
            return np.zeros(0, dtype=np.uint64)
        t = np.fromiter((zlib.crc32(w.encode()) for w in tokens), dtype=np.uint64, count=len(tokens))
        n = max(1, len(tokens) - self.shingle + 1)  # a text shorter than k words is one gram
        acc = np.zeros(n, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for j in range(min(self.shingle, len(tokens))):
                acc += t[j : j + n] * self._gram_mul[j]
        return np.unique(acc)

    def shingles(self, text: str) -> np.ndarray:
        """64-bit hash of each word k-gram, deduplicated (a set, as Jaccard wants)."""
        return self._grams(self.tokens(text))

    def _minimums(self, h: np.ndarray, n: int) -> np.ndarray:
        if h.size == 0:
            return np.full(n, EMPTY, dtype=np.uint32)
        with np.errstate(over="ignore"):
            mixed = np.multiply.outer(self._a[:n], h)
            mixed += self._b[:n, None]
        # the top 32 bits of the smallest value are the smallest top 32 bits
        return (mixed.min(axis=1) >> np.uint64(32)).astype(np.uint32)

    def signature(self, text: str) -> np.ndarray:
        """uint32 array of length num_perm; all-ones for an empty text."""
        return self._minimums(self.shingles(text), self.num_perm)

    def sketch(self, text: str) -> Sketch:
        tokens = self.tokens(text)
        h = self._grams(tokens)
        lead = (
            self._minimums(self._grams(tokens[: self.lead_words]), self.lead_perm)
            if self.lead_bands
            else np.zeros(0, np.uint32)
        )
        return Sketch(self._minimums(h, self.num_perm), lead, int(h.size))

    # -- what the index stores -------------------------------------------------
    def band_hashes(self, sk: Sketch) -> np.ndarray:
        """uint32 per band, then per lead band: a band's rows hashed together."""
        out = [_multilinear(sk.sig.reshape(self.bands, self.rows), self._band_mul)]
        if self.lead_bands:
            out.append(_multilinear(sk.lead.reshape(self.lead_bands, -1), self._lead_mul))
        return np.concatenate(out)

    def record(self, article_id: str, text_hash: str, sk: Sketch) -> bytes:
        """Fixed-width record: id, text hash, shingle count, 16-bit codes of the minimums (big-endian)."""
        ident = article_id.encode()
        if len(ident) > ID_BYTES or b"\0" in ident or not ident:
            raise ValueError(f"article id {article_id!r} must be 1 to {ID_BYTES} bytes")
        th = bytes.fromhex(text_hash)[:8].ljust(8, b"\0")
        return (
            ident.ljust(ID_BYTES, b"\0")
            + th
            + struct.pack(">H", min(sk.size, 0xFFFF))
            + codes(sk.sig).astype(">u2").tobytes()
        )

    def entries(self, article_id: str, sk: Sketch) -> bytes:
        """The bucket keys of an article, 4 bytes each, big-endian: bands, lead bands, then its id."""
        keys = np.append(self.band_hashes(sk), np.uint32(id_hash(article_id)))
        return keys.astype(">u4").tobytes()


def _multilinear(values: np.ndarray, mul: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        acc = mul[:, 0].copy()
        for j in range(values.shape[1]):
            acc += values[:, j].astype(np.uint64) * mul[:, j + 1]
    return (acc >> np.uint64(32)).astype(np.uint32)


def id_hash(article_id: str) -> int:
    return zlib.crc32(b"id\0" + article_id.encode())


def codes(sig: np.ndarray) -> np.ndarray:
    """16-bit monotone codes of 32-bit minimums: v < 4096 as is, else exponent e and the top 12 bits of v."""
    v = np.asarray(sig, dtype=np.uint64)
    _, exp = np.frexp(v.astype(np.float64))  # v = m * 2**exp, 0.5 <= m < 1: exp is v's bit length
    e = np.maximum(exp.astype(np.int64) - 12, 0).astype(np.uint64)
    return np.where(e == 0, v, e * np.uint64(2048) + (v >> e)).astype(np.uint16)


def unpack_record(blob: bytes) -> tuple[str, bytes, int, np.ndarray]:
    ident = blob[:ID_BYTES].rstrip(b"\0").decode()
    size = struct.unpack(">H", blob[24:26])[0]
    return ident, blob[16:24], size, np.frombuffer(blob[RECORD_HEAD:], dtype=">u2").astype(np.int64)


# -- the decision ------------------------------------------------------------------
def containment(equal: int, less: int, more: int, a: int, b: int) -> float:
    """Maximum-likelihood share of the smaller set (size a) found in the larger (size b).

    Per permutation the minimum of A∪B falls in A∩B (codes equal), in A\\B (A's
    code lower) or in B\\A, with probabilities x, a-x, b-x over a+b-x where x is
    the intersection. Solved for x by bisection; `index.lua` does the same
    arithmetic in the same order.
    """
    if equal == 0 or a <= 0:
        return 0.0
    n = equal + less + more
    lo, hi = 0.0, float(min(a, b))
    for _ in range(40):
        x = (lo + hi) / 2
        g = equal / x + n / (a + b - x)
        if less > 0:
            g = g - less / (a - x)
        if more > 0:
            g = g - more / (b - x)
        if g > 0:
            lo = x
        else:
            hi = x
    return (lo + hi) / 2 / min(a, b)


def compare(new: bytes, old: bytes, threshold: float, excerpt: float) -> tuple[str, float]:
    """(kind, similarity) of a new record against an earlier one; kind "" when not a duplicate."""
    _, th_new, size_new, c_new = unpack_record(new)
    _, th_old, size_old, c_old = unpack_record(old)
    n = c_new.size
    equal = int(np.sum(c_new == c_old))
    if th_new == th_old:
        return "exact", 1.0
    sim = equal / n
    if sim >= threshold:
        return "near", sim
    if size_new <= size_old:
        a, b, less, more = size_new, size_old, int(np.sum(c_new < c_old)), int(np.sum(c_new > c_old))
    else:
        a, b, less, more = size_old, size_new, int(np.sum(c_old < c_new)), int(np.sum(c_old > c_new))
    if a >= MIN_EXCERPT_SHINGLES and a <= EXCERPT_MAX_RATIO * b:
        c = containment(equal, less, more, a, b)
        if c >= excerpt:
            return "excerpt", c
    return "", sim


def better(kind: str, sim: float, seq: int, best: tuple[str, float, int] | None) -> bool:
    if best is None:
        return True
    rk, rb = KINDS.index(kind), KINDS.index(best[0])
    if rk != rb:
        return rk > rb
    if sim != best[1]:
        return sim > best[1]
    return seq < best[2]


@dataclass
class Decision:
    seq: int
    duplicate_of: str = ""
    similarity: float = 0.0
    kind: str = ""
    cluster: str = ""


class MemoryIndex:
    """The index's decision procedure without Redis: the reference for tests and the benchmark's sweep."""

    def __init__(self, hasher: MinHasher, threshold: float = 0.8, excerpt: float = 0.85):
        self.hasher, self.threshold, self.excerpt = hasher, threshold, excerpt
        self.records: dict[int, bytes] = {}
        self.buckets: dict[int, list[int]] = {}
        self.root: dict[str, str] = {}
        self.by_id: dict[str, int] = {}
        self.candidates = 0

    def add(self, article_id: str, text_hash: str, sk: Sketch) -> Decision:
        rec = self.hasher.record(article_id, text_hash, sk)
        keys = self.hasher.band_hashes(sk).tolist()
        seq = self.by_id.get(article_id)
        if seq is None:
            seq = len(self.by_id) + 1
            self.by_id[article_id] = seq
        seen: set[int] = set()
        best = None
        for h in keys:
            for cand in self.buckets.get(h, ()):
                if cand < seq and cand not in seen:
                    seen.add(cand)
                    kind, sim = compare(rec, self.records[cand], self.threshold, self.excerpt)
                    if kind and better(kind, sim, cand, best):
                        best = (kind, sim, cand)
        self.candidates += len(seen)
        self.records[seq] = rec
        for h in keys:
            bucket = self.buckets.setdefault(h, [])
            if seq not in bucket:
                bucket.append(seq)
        if best is None:
            return Decision(seq)
        kind, sim, cand = best
        other = unpack_record(self.records[cand])[0]
        root = self.root.get(other, other)
        self.root[article_id] = root
        return Decision(seq, other, sim, kind, root)


def similarity(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """Estimated Jaccard similarity: the share of equal minimums."""
    return float(np.mean(np.asarray(sig_a) == np.asarray(sig_b)))


def jaccard(a: set | np.ndarray, b: set | np.ndarray) -> float:
    """Exact Jaccard of two shingle sets (the ground truth MinHash estimates)."""
    sa, sb = set(a.tolist() if isinstance(a, np.ndarray) else a), set(b.tolist() if isinstance(b, np.ndarray) else b)
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)


def lsh_probability(s: float, bands: int, rows: int) -> float:
    """Chance that two sets of Jaccard similarity s share at least one of `bands` bands of `rows` rows."""
    return 1.0 - (1.0 - s**rows) ** bands
