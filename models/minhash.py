"""MinHash sketches of articles, the record the duplicate index keeps, and the decision on two records.

Everything here is pure: the Redis index (`workers/index.lua`) stores what
`MinHasher.record` packs and decides exactly as `compare`/`MemoryIndex` do,
which tests check against each other.

Signatures must be identical in every worker process and on every machine,
so words are hashed with CRC32 (stable, unlike Python's salted `hash()`) and
the permutations come from a fixed seed.

A sketch of a text holds three views, each for one kind of copy:
- `sig`: minimums of its word k-gram hashes, cut into LSH bands. Their share
  of equal values estimates Jaccard similarity: lightly edited copies.
- `names`: minimums over its names and numbers (capitalised words inside a
  sentence, digit runs). Template stories (match results, market reports)
  share most k-grams and differ exactly there, so a near-duplicate must also
  agree on them.
- `lead`: a 16-bit hash of each of its first words, and one bucket key for
  its first `lead_key_words` words. A teaser (the story's opening, often one
  sentence) shares that key with its full story, and the word hashes verify
  that the shorter text is the opening of the longer, word by word.

Each 32-bit minimum is stored as a 16-bit monotone code (5-bit exponent,
11-bit mantissa: order is preserved and two different minimums almost never
share a code), each LSH band as a 32-bit hash.
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
import zlib
from dataclasses import dataclass, field, replace

import numpy as np

from feedsift.models.text import normalise, words

EMPTY = 0xFFFFFFFF
ID_BYTES = 16

KINDS = ("", "excerpt", "near", "exact")  # ranked: a better kind wins over a higher similarity

# Names: a capitalised word (after an opening bracket or quote, if any) that does not open a sentence: a
# space before it, and before that no sentence end (the text is normalised: one space between words).
# Numbers: runs of digits. Capitalised words are found first and their context checked after: a
# look-behind tried at every character costs twice as much.
_CAPITALISED = re.compile(r"[A-Z][\w'-]*")
_SENTENCE_END = frozenset('.!?:;"\n')
_DIGITS = re.compile(r"\d+")
#: CRC32 of words seen lately, shared by every sketch of the process (news reuses its vocabulary).
_WORD_CRC: dict[str, int] = {}
_WORD_CRC_MAX = 500_000
#: Most elements (8 bytes each) of the permutations-by-values product `MinHasher.sketches` makes at once.
_PRODUCT = 1 << 20


@dataclass(frozen=True)
class Sketch:
    sig: np.ndarray  # uint32, num_perm
    names: np.ndarray  # uint32, name_perm
    lead: np.ndarray  # uint16, hashes of the first lead_words words
    lead_key: int | None  # hash of the first lead_key_words words; None for a shorter text
    size: int  # distinct shingles
    words: int
    text_hash: str  # of the word sequence: equal for exact copies


@dataclass(frozen=True)
class Verdict:
    """Thresholds of the duplicate decision; every worker and the index use the same ones."""

    #: Estimated Jaccard similarity of word shingles at or above which two texts are near-duplicates.
    near: float = 0.5
    #: Estimated share of names and numbers (of one text, found in the other) a near-duplicate needs as well.
    names: float = 0.85
    #: Share of a shorter text's opening words found at the opening of a longer one (or estimated
    #: containment of its shingles) at or above which it is an excerpt.
    excerpt: float = 0.9
    #: Fewest words an excerpt, or any duplicate but an exact copy, has.
    excerpt_words: int = 10
    #: Estimated share of the shorter text's shingles in the longer at or above which (with the names)
    #: it is a near-duplicate although its Jaccard similarity is lower: a copy with a paragraph added.
    contained: float = 0.8
    #: An excerpt is shorter than what it is taken from: at most this share of its shingles.
    excerpt_ratio: float = 0.9
    #: Words an opening word may be shifted by and still match (a word added or dropped).
    slack: int = 3


@dataclass(frozen=True)
class Layout:
    """Byte layout of an index record: (name, offset, bytes) of each field, defined here only.

    `index.lua` gets it by name (`fields`), so the two never disagree on an offset.
    """

    lead_words: int
    name_perm: int
    num_perm: int

    @property
    def fields(self) -> list[tuple[str, int, int]]:
        sizes = [
            ("id", ID_BYTES),  # NUL padded
            ("root", ID_BYTES),  # id of the earliest article of its cluster (its own when canonical); set by the index
            ("dup", 4),  # sequence number of the article it duplicates (0: none); set by the index
            ("kind", 1),  # rank of its duplicate kind in KINDS; set by the index
            ("sim", 2),  # its similarity, in ten-thousandths; set by the index
            ("linked", 1),  # 1 once another article points to it (it heads a cluster or is inside one)
            ("hash", 8),  # text hash: equal means an exact copy
            ("size", 2),  # distinct shingles
            ("words", 2),
            ("lead", 2 * self.lead_words),  # 16-bit hashes of the first words
            ("names", 2 * self.name_perm),  # 16-bit codes
            ("codes", 2 * self.num_perm),  # 16-bit codes
        ]
        out, at = [], 0
        for name, n in sizes:
            out.append((name, at, n))
            at += n
        return out

    @property
    def size(self) -> int:
        _, at, n = self.fields[-1]
        return at + n

    def slice(self, name: str) -> slice:
        for f, at, n in self.fields:
            if f == name:
                return slice(at, at + n)
        raise KeyError(name)


@dataclass(frozen=True)
class MinHasher:
    """Sketch parameters; every worker (and the index) must use the same ones."""

    num_perm: int = 96
    bands: int = 32
    shingle: int = 3
    name_perm: int = 32
    lead_words: int = 32
    lead_key_words: int = 8
    seed: int = 20261128
    _a: np.ndarray = field(init=False, repr=False, compare=False)
    _b: np.ndarray = field(init=False, repr=False, compare=False)
    _band_mul: np.ndarray = field(init=False, repr=False, compare=False)
    _gram_mul: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.num_perm % self.bands:
            raise ValueError("num_perm must be a multiple of bands")
        if self.name_perm > self.num_perm or self.lead_key_words > self.lead_words:
            raise ValueError("name_perm must be at most num_perm, lead_key_words at most lead_words")
        rng = np.random.default_rng(self.seed)
        # multiply-shift hashing: (a*x + b) mod 2^64, top 32 bits; a odd
        a = rng.integers(1, 2**63, size=self.num_perm, dtype=np.uint64) | np.uint64(1)
        b = rng.integers(0, 2**63, size=self.num_perm, dtype=np.uint64)
        # multilinear band hashing: sum(value_j * m_j) + m_0 mod 2^64, top 32 bits; one row of m per band
        band_mul = rng.integers(1, 2**63, size=(self.bands, self.rows + 1), dtype=np.uint64) | np.uint64(1)
        object.__setattr__(self, "_a", a)
        object.__setattr__(self, "_b", b)
        object.__setattr__(self, "_band_mul", band_mul)
        # a k-gram's hash: sum of its words' CRC32 times one odd constant per position, mod 2^64
        gram_mul = np.random.default_rng(self.seed + 1).integers(
            1, 2**63, size=self.shingle, dtype=np.uint64
        ) | np.uint64(1)
        object.__setattr__(self, "_gram_mul", gram_mul)

    @property
    def rows(self) -> int:
        return self.num_perm // self.bands

    @property
    def layout(self) -> Layout:
        return Layout(self.lead_words, self.name_perm, self.num_perm)

    @property
    def record_size(self) -> int:
        return self.layout.size

    @property
    def keys_per_article(self) -> int:
        """Bucket entries an article of at least `lead_key_words` words takes: its bands, its lead key, its id."""
        return self.bands + 2

    # -- shingles and minimums -----------------------------------------------
    def tokens(self, text: str) -> list[str]:
        return words(normalise(text))

    def _grams(self, t: np.ndarray) -> np.ndarray:
        if not t.size:
            return np.zeros(0, dtype=np.uint64)
        n = max(1, t.size - self.shingle + 1)  # a text shorter than k words is one gram
        acc = np.zeros(n, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for j in range(min(self.shingle, t.size)):
                acc += t[j : j + n] * self._gram_mul[j]
        return np.unique(acc)

    def shingles(self, text: str) -> np.ndarray:
        """64-bit hash of each word k-gram, deduplicated (a set, as Jaccard wants)."""
        return self._grams(_word_crc(self.tokens(text)))

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
        """The sketch of one text; a batch is cheaper per text through `sketches`."""
        return self.sketches([text])[0]

    def sketches(self, texts: list[str]) -> list[Sketch]:
        """`sketch` of each text, the numpy work done once for them all.

        Per text, numpy's call overhead costs a news item more than the arithmetic does: the k-grams and
        the minimums of a whole batch come from one pass each, then are cut back into texts (a sketch's
        arrays are rows and slices of the batch's).
        """
        if not texts:
            return []
        k = self.shingle
        crcs, names, keys, hashes = [], [], [], []
        for text in texts:  # the words are dropped as soon as hashed: a batch of long texts holds less
            text = normalise(text)
            tokens = words(text)
            crcs.append(_word_crc(tokens))
            names.append(list(names_and_numbers(text)))
            key = None
            if len(tokens) >= self.lead_key_words:
                key = zlib.crc32(" ".join(tokens[: self.lead_key_words]).encode(), 0x1EAD)
            keys.append(key)
            hashes.append(_hash_words(tokens))
        nwords = np.array([c.size for c in crcs])
        crc = np.concatenate(crcs)
        # each text's word CRCs, then k-1 zeros: no gram spans two texts, and a text shorter than k words
        # is one gram whose missing words add nothing, as in `_grams`
        ntexts, word_at = np.arange(len(texts)), _starts(nwords)
        padded = np.zeros(crc.size + (k - 1) * len(texts), dtype=np.uint64)
        padded[np.arange(crc.size) + (k - 1) * np.repeat(ntexts, nwords)] = crc
        n = padded.size - (k - 1)
        acc = np.zeros(n, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for j in range(k):
                acc += padded[j : j + n] * self._gram_mul[j]
        ngrams = np.where(nwords > 0, np.maximum(nwords - k + 1, 1), 0)
        text_at = word_at + (k - 1) * ntexts  # where each text starts in `padded`
        grams = acc[np.arange(ngrams.sum()) + np.repeat(text_at - _starts(ngrams), ngrams)]
        sig = self._minimums_each(grams, ngrams, self.num_perm)
        name_sig = self._minimums_each(
            _crc([w for ns in names for w in ns], b"n\0"), np.array([len(ns) for ns in names]), self.name_perm
        )
        low16 = (crc & np.uint64(0xFFFF)).astype(np.uint16)
        bounds = np.cumsum(ngrams).tolist()
        out = []
        for i, (w, at, g, e) in enumerate(zip(nwords.tolist(), word_at.tolist(), [0, *bounds], bounds)):
            # distinct grams: only their count, as a repeated gram changes no minimum
            size = len(set(grams[g:e].tolist()))
            lead = low16[at : at + min(w, self.lead_words)]
            out.append(Sketch(sig[i], name_sig[i], lead, keys[i], size, w, hashes[i]))
        return out

    def _minimums_each(self, h: np.ndarray, counts: np.ndarray, n: int) -> np.ndarray:
        """`_minimums` of each text (its values the next `counts[i]` of `h`), one row per text.

        One product of the permutations by a chunk of `h` at a time, at most `_PRODUCT` elements (a
        batch of news items in one go, long texts in several): the minimum of each text's part of a
        chunk, kept if lower than its minimum so far.
        """
        out = np.full((counts.size, n), EMPTY, dtype=np.uint32)
        starts = _starts(counts)
        ends = starts + counts
        step = max(1, _PRODUCT // n)
        buf = np.empty((n, min(step, h.size)), dtype=np.uint64)  # one buffer: a fresh one each chunk costs page faults
        for s in range(0, h.size, step):
            e = min(s + step, h.size)
            # texts with values in [s, e); reduceat takes no empty run
            rows = np.flatnonzero((counts > 0) & (starts < e) & (ends > s))
            mixed = buf[:, : e - s]
            with np.errstate(over="ignore"):
                np.multiply(self._a[:n, None], h[s:e], out=mixed)
                mixed += self._b[:n, None]
            low = np.minimum.reduceat(mixed, np.maximum(starts[rows], s) - s, axis=1)
            out[rows] = np.minimum(out[rows], (low >> np.uint64(32)).astype(np.uint32).T)
        return out

    # -- what the index stores -------------------------------------------------
    def band_hashes(self, sk: Sketch) -> np.ndarray:
        """uint32 per band, then the lead key if the text has one: the keys of its LSH buckets."""
        out = _multilinear(sk.sig.reshape(self.bands, self.rows), self._band_mul)
        if sk.lead_key is not None:
            out = np.append(out, np.uint32(sk.lead_key))
        return out

    def record(self, article_id: str, text_hash: str, sk: Sketch) -> bytes:
        """Fixed-width record in `layout` order, big-endian; `root` is left blank for the index to fill."""
        ident = article_id.encode()
        if len(ident) > ID_BYTES or b"\0" in ident or not ident:
            raise ValueError(f"article id {article_id!r} must be 1 to {ID_BYTES} bytes")
        lead = np.zeros(self.lead_words, dtype=">u2")
        lead[: sk.lead.size] = sk.lead
        return b"".join(
            (
                ident.ljust(ID_BYTES, b"\0"),
                bytes(ID_BYTES + 8),
                bytes.fromhex(text_hash)[:8].ljust(8, b"\0"),
                struct.pack(">HH", min(sk.size, 0xFFFF), min(sk.words, 0xFFFF)),
                lead.tobytes(),
                codes(np.concatenate((sk.names, sk.sig))).astype(">u2").tobytes(),  # names then shingles
            )
        )

    def entries(self, article_id: str, sk: Sketch) -> bytes:
        """The bucket keys of an article, 4 bytes each, big-endian: bands, lead key, then its id."""
        keys = np.append(self.band_hashes(sk), np.uint32(id_hash(article_id)))
        return keys.astype(">u4").tobytes()


def _crc(items: list[str], salt: bytes = b"") -> np.ndarray:
    return np.fromiter((zlib.crc32(salt + w.encode()) for w in items), dtype=np.uint64, count=len(items))


def _starts(counts: np.ndarray) -> np.ndarray:
    """Where each of consecutive runs of these lengths starts."""
    return np.cumsum(counts) - counts


def _multilinear(values: np.ndarray, mul: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        acc = mul[:, 0].copy()
        for j in range(values.shape[1]):
            acc += values[:, j].astype(np.uint64) * mul[:, j + 1]
    return (acc >> np.uint64(32)).astype(np.uint32)


def names_and_numbers(text: str) -> set[str]:
    """Capitalised words that do not open a sentence, lower-cased, and runs of digits (of a normalised text)."""
    out = set(_DIGITS.findall(text))
    for m in _CAPITALISED.finditer(text):
        at = m.start()
        if at and text[at - 1] in "('":
            at -= 1
        if at >= 2 and text[at - 1] == " " and text[at - 2] not in _SENTENCE_END:
            out.add(m.group().lower())
    return out


def _word_crc(tokens: list[str]) -> np.ndarray:
    """CRC32 of each word, from the process's cache where it can."""
    vals = list(map(_WORD_CRC.get, tokens))
    if None in vals:
        if len(_WORD_CRC) > _WORD_CRC_MAX:
            _WORD_CRC.clear()
        for i, v in enumerate(vals):
            if v is None:
                vals[i] = _WORD_CRC[tokens[i]] = zlib.crc32(tokens[i].encode())
    return np.array(vals, dtype=np.uint64)


def text_hash(text: str) -> str:
    """Hash of the text's word sequence: texts differing only in case, punctuation or spacing are "exact" copies."""
    return _hash_words(words(normalise(text)))


def _hash_words(tokens: list[str]) -> str:
    return hashlib.blake2b(" ".join(tokens).encode(), digest_size=8).hexdigest()


def id_hash(article_id: str) -> int:
    return zlib.crc32(b"id\0" + article_id.encode())


def codes(sig: np.ndarray) -> np.ndarray:
    """16-bit monotone codes of 32-bit minimums: v < 4096 as is, else exponent e and the top 12 bits of v."""
    v = np.asarray(sig, dtype=np.uint64)
    _, exp = np.frexp(v.astype(np.float64))  # v = m * 2**exp, 0.5 <= m < 1: exp is v's bit length
    e = np.maximum(exp.astype(np.int64) - 12, 0).astype(np.uint64)
    return np.where(e == 0, v, e * np.uint64(2048) + (v >> e)).astype(np.uint16)


@dataclass(frozen=True)
class Record:
    """An index record, unpacked."""

    id: str
    root: str
    dup: int
    kind: int
    sim: int
    linked: int
    hash: bytes
    size: int
    words: int
    lead: np.ndarray
    names: np.ndarray
    codes: np.ndarray

    @classmethod
    def unpack(cls, blob: bytes, layout: Layout) -> Record:
        f = {name: blob[at : at + n] for name, at, n in layout.fields}
        size, nwords = struct.unpack(">HH", f["size"] + f["words"])
        u2 = lambda b: np.frombuffer(b, dtype=">u2").astype(np.int64)  # noqa: E731
        return cls(
            f["id"].rstrip(b"\0").decode(),
            f["root"].rstrip(b"\0").decode(),
            int.from_bytes(f["dup"], "big"),
            f["kind"][0],
            int.from_bytes(f["sim"], "big"),
            f["linked"][0],
            f["hash"],
            size,
            nwords,
            u2(f["lead"]),
            u2(f["names"]),
            u2(f["codes"]),
        )


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


def opening(short: Record, long: Record, lead_words: int, slack: int) -> float:
    """Share of the shorter text's first words found at the opening of the longer, each within `slack` places."""
    m, n = min(short.words, lead_words), min(long.words, lead_words)
    if m == 0:
        return 0.0
    hit = 0
    for i in range(m):
        if short.lead[i] in long.lead[max(0, i - slack) : min(n, i + slack + 1)]:
            hit += 1
    return hit / m


def names_contained(a: np.ndarray, b: np.ndarray) -> float:
    """Estimated share of one text's names and numbers found in the other's, the larger of the two ways.

    Per permutation the minimum of A∪B lies in A∩B (codes equal), in A\\B (A's code lower) or in B\\A;
    equal / (equal + A-lower) estimates |A∩B| / |A|. A copy with a header or a paragraph added keeps
    every name of its original; a template story has other names and numbers in both directions.
    """
    eq = int(np.count_nonzero(a == b))
    if eq == 0:
        return 0.0
    return max(eq / (eq + int(np.count_nonzero(a < b))), eq / (eq + int(np.count_nonzero(a > b))))


def compare(new: Record, old: Record, v: Verdict, lead_words: int) -> tuple[str, float]:
    """(kind, similarity) of a record against an earlier one; kind "" when not a duplicate.

    Below `excerpt_words` words a text is only ever an exact copy: a few words carry too little.
    """
    if new.hash == old.hash:
        return "exact", 1.0
    eq = new.codes == old.codes
    sim = float(np.count_nonzero(eq)) / eq.size
    short, long = (new, old) if new.words <= old.words else (old, new)
    if short.words < v.excerpt_words:
        return "", sim
    if sim >= v.near and names_contained(new.names, old.names) >= v.names:
        return "near", sim
    if short.size <= v.excerpt_ratio * long.size:
        equal = int(np.count_nonzero(eq))
        less, more = int(np.count_nonzero(short.codes < long.codes)), int(np.count_nonzero(short.codes > long.codes))
        c = containment(equal, less, more, short.size, long.size)
        teaser = short.words <= lead_words
        o = opening(short, long, lead_words, v.slack)
        # the opening of the longer text, word by word; a longer one also with no shingle outside it
        if o >= v.excerpt and (teaser or less == 0):
            return "excerpt", o if teaser or equal == 0 else c
        if not teaser and c >= v.excerpt:
            return "excerpt", c
        # an edited copy with a paragraph added: most of the shorter is in the longer
        if c >= v.contained and names_contained(new.names, old.names) >= v.names:
            return "near", c
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


@dataclass(frozen=True)
class Decision:
    """The index's verdict on one article."""

    article_id: str
    seq: int
    duplicate_of: str = ""
    kind: str = ""  # "exact", "near", "excerpt" or "" (not a duplicate)
    similarity: float = 0.0
    cluster: str = ""  # id of the earliest-seen article of its cluster; "" when the article is alone
    #: Numbered by this very decision: the index never judged the article before, so no verdict is undone.
    new: bool = False


def ten_thousandths(sim: float) -> int:
    """A similarity as the index stores it (half up, as `index.lua` rounds)."""
    return math.floor(sim * 10000 + 0.5)


class MemoryIndex:
    """The index's decision procedure without Redis: the reference for tests and the benchmark's sweeps.

    Decides like `index.lua`: an article points to its best earlier match and joins that match's
    cluster. An earlier article that is the opening of the new one (a teaser) and is alone joins
    the new one's cluster too, so a teaser seen first is not left out when the story it opens
    matches something better; its changed verdict is returned after the new article's.
    """

    def __init__(self, hasher: MinHasher, verdict: Verdict | None = None):
        self.hasher, self.verdict = hasher, verdict or Verdict()
        self.layout = hasher.layout
        self.records: dict[int, Record] = {}
        self.buckets: dict[int, list[int]] = {}
        self.by_id: dict[str, int] = {}
        self.candidates = 0

    def _decision(self, seq: int, new: bool = False) -> Decision:
        rec = self.records[seq]
        if not rec.dup:
            return Decision(rec.id, seq, new=new)
        other = self.records.get(rec.dup)
        root = rec.root
        return Decision(rec.id, seq, other.id if other else root, KINDS[rec.kind], rec.sim / 10000, root, new)

    def add(self, article_id: str, text_hash: str, sk: Sketch) -> list[Decision]:
        """The decision on the article, then any earlier article's changed verdict."""
        new = Record.unpack(self.hasher.record(article_id, text_hash, sk), self.layout)
        keys = self.hasher.band_hashes(sk).tolist()
        seq = self.by_id.get(article_id)
        stored = self.records.get(seq) if seq else None
        fresh = seq is None
        if fresh:
            seq = len(self.by_id) + 1
            self.by_id[article_id] = seq
        seen: set[int] = set()
        best, teasers, again = None, [], []
        for h in keys:
            for cand in self.buckets.get(h, ()):
                if cand < seq and cand not in seen:
                    seen.add(cand)
                    old = self.records[cand]
                    kind, sim = compare(new, old, self.verdict, self.hasher.lead_words)
                    if kind and better(kind, sim, cand, best):
                        best = (kind, sim, cand)
                    if kind == "excerpt" and old.words <= new.words and old.root == old.id and not old.linked:
                        teasers.append((cand, sim))
                    elif old.dup == seq:
                        again.append(cand)  # relabelled by this article before: the same verdict again
        self.candidates += len(seen)
        linked = stored.linked if stored else 0
        if best is not None:
            kind, sim, cand = best
            old = self.records[cand]
            root, dup, rank, tt = old.root or old.id, cand, KINDS.index(kind), ten_thousandths(sim)
            self.records[cand] = replace(old, linked=1)
        elif stored and stored.dup > seq:  # relabelled by a later article: keep that verdict
            root, dup, rank, tt = stored.root, stored.dup, stored.kind, stored.sim
        else:
            root, dup, rank, tt = article_id, 0, 0, 0
        teasers = [(c, s) for c, s in teasers if not best or c != best[2]]
        if teasers:
            linked = 1
        self.records[seq] = replace(new, root=root, dup=dup, kind=rank, sim=tt, linked=linked)
        for cand, sim in teasers:
            self.records[cand] = replace(
                self.records[cand], root=root, dup=seq, kind=KINDS.index("excerpt"), sim=ten_thousandths(sim)
            )
        for h in keys:
            bucket = self.buckets.setdefault(h, [])
            if seq not in bucket:
                bucket.append(seq)
        return [self._decision(seq, fresh)] + [self._decision(c) for c in sorted([c for c, _ in teasers] + again)]


def jaccard(a: set | np.ndarray, b: set | np.ndarray) -> float:
    """Exact Jaccard of two shingle sets (the ground truth MinHash estimates)."""
    sa, sb = set(a.tolist() if isinstance(a, np.ndarray) else a), set(b.tolist() if isinstance(b, np.ndarray) else b)
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)


def lsh_probability(s: float, bands: int, rows: int) -> float:
    """Chance that two sets of Jaccard similarity s share at least one of `bands` bands of `rows` rows."""
    return 1.0 - (1.0 - s**rows) ** bands
