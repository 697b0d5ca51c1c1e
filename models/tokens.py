"""Word tokens and their hashes: the one tokeniser the topic model and its word vectors read.

The TF-IDF columns, the word vectors, `explain` and the corpus checks all see
the same words, so a term `explain` names is exactly a term that was counted.
Word n-grams are combined from the tokens' hashes with integer arithmetic on
whole arrays, several times faster than hashing every n-gram string.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator, Sequence

import numpy as np

_TOKEN = re.compile(r"\w{2,}")  # maximal runs of two or more word characters
_U64 = np.uint64
# The process's token table: token -> id, id -> token, id -> CRC-32 of its UTF-8 bytes (stdlib, so
# predicting needs no scikit-learn, which alone would add 65 MB to a worker). Every model and
# vector table reads tokens through it, so each token of a batch is looked up once. Cleared when
# it grows past _CACHE_MAX, so a long-running worker stays bounded; `generation` counts clearings.
_IDS: dict[str, int] = {}
_WORDS: list[str] = []
_HASH = np.zeros(0, dtype=np.uint64)
_CACHE_MAX = 200_000
generation = 0


def tokens(doc: str) -> list[str]:
    """Lower-cased word tokens of two or more characters."""
    return _TOKEN.findall(doc.lower())


def tokenise(docs: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Every document's tokens end to end, and how many belong to each document."""
    toks: list[str] = []
    lens = np.zeros(len(docs), dtype=np.int64)
    for i, doc in enumerate(docs):
        t = tokens(doc)
        lens[i] = len(t)
        toks.extend(t)
    return toks, lens


def token_ids(toks: list[str]) -> np.ndarray:
    """Each token's id in the process's token table (valid until the table is next cleared)."""
    global _HASH, generation
    missing = set(toks).difference(_IDS)
    if missing:
        if len(_IDS) + len(missing) > _CACHE_MAX:
            _IDS.clear()
            _WORDS.clear()
            _HASH = np.zeros(0, dtype=np.uint64)
            generation += 1
            missing = set(toks)
        new = list(missing)
        _IDS.update(zip(new, range(len(_WORDS), len(_WORDS) + len(new))))
        _WORDS.extend(new)
        crc = np.fromiter((zlib.crc32(t.encode()) for t in new), dtype=np.uint64, count=len(new))
        _HASH = np.concatenate([_HASH, crc])
    return np.fromiter(map(_IDS.__getitem__, toks), dtype=np.int64, count=len(toks))


def hashes_of(ids: np.ndarray) -> np.ndarray:
    return _HASH[ids]


def token_hashes(toks: list[str]) -> np.ndarray:
    return hashes_of(token_ids(toks))


def words_of(ids) -> list[str]:
    return [_WORDS[i] for i in ids]


def _mix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Combines two uint64 hash arrays into one (a splitmix64 finaliser over a*K + b)."""
    x = a * _U64(0x9E3779B97F4A7C15) + b + _U64(0x632BE59BD9B4E019)
    x ^= x >> _U64(30)
    x *= _U64(0xBF58476D1CE4E5B9)
    x ^= x >> _U64(27)
    x *= _U64(0x94D049BB133111EB)
    x ^= x >> _U64(31)
    return x


def ngram_columns(h: np.ndarray, ngrams: tuple[int, int], width: int) -> Iterator[tuple[int, np.ndarray]]:
    """(n, column of the n-gram starting at each position) for n in the range, from token hashes `h`.

    Positions run over the concatenated tokens; callers drop n-grams that cross a document's end.
    """
    lo, hi = ngrams
    g = h
    for n in range(1, hi + 1):
        if n > 1:
            g = _mix(g[:-1], h[n - 1 :])
        if n >= lo and len(g):
            yield n, (g % _U64(width)).astype(np.int64)
