"""MinHash signatures over word shingles.

Signatures must be identical in every worker process and on every machine,
so hashing uses CRC32 (stable) rather than Python's salted `hash()`, and the
permutations come from a fixed seed. Values are 32-bit; a signature is
`num_perm` little-endian uint32 packed into bytes, which is what the Redis
index stores and compares.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from models.text import words

_MASK32 = np.uint64(0xFFFFFFFF)


@dataclass(frozen=True)
class MinHasher:
    """Signature parameters; every worker must use the same ones."""

    num_perm: int = 128
    bands: int = 32
    shingle: int = 3
    seed: int = 20261128

    def __post_init__(self) -> None:
        if self.num_perm % self.bands:
            raise ValueError("num_perm must be a multiple of bands")
        rng = np.random.default_rng(self.seed)
        # multiply-shift hashing: (a*x + b) mod 2^64, top 32 bits; a odd
        a = rng.integers(1, 2**63, size=self.num_perm, dtype=np.uint64) | np.uint64(1)
        b = rng.integers(0, 2**63, size=self.num_perm, dtype=np.uint64)
        object.__setattr__(self, "_a", a)
        object.__setattr__(self, "_b", b)

    @property
    def rows(self) -> int:
        return self.num_perm // self.bands

    def shingles(self, text: str) -> np.ndarray:
        """CRC32 of each word k-gram, deduplicated (a set, as Jaccard wants)."""
        tokens = words(text)
        k = self.shingle
        if len(tokens) < k:
            grams = [" ".join(tokens)] if tokens else []
        else:
            grams = [" ".join(tokens[i : i + k]) for i in range(len(tokens) - k + 1)]
        hashes = np.fromiter((zlib.crc32(g.encode()) for g in grams), dtype=np.uint64, count=len(grams))
        return np.unique(hashes)

    def signature(self, text: str) -> np.ndarray:
        """uint32 array of length num_perm; all-ones for an empty text."""
        h = self.shingles(text)
        if h.size == 0:
            return np.full(self.num_perm, 0xFFFFFFFF, dtype=np.uint32)
        with np.errstate(over="ignore"):
            mixed = (h[None, :] * self._a[:, None] + self._b[:, None]) >> np.uint64(32)
        return (mixed & _MASK32).min(axis=1).astype(np.uint32)

    def pack(self, signature: np.ndarray) -> bytes:
        return signature.astype("<u4").tobytes()

    def unpack(self, blob: bytes) -> np.ndarray:
        return np.frombuffer(blob, dtype="<u4")

    def bands_of(self, signature: np.ndarray) -> list[bytes]:
        """One key per band: the band's raw bytes (the index slices the same way)."""
        blob = self.pack(signature)
        width = self.rows * 4
        return [blob[i * width : (i + 1) * width] for i in range(self.bands)]


def similarity(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """Estimated Jaccard similarity: the share of equal minimums."""
    return float(np.mean(sig_a == sig_b))


def jaccard(a: set | np.ndarray, b: set | np.ndarray) -> float:
    """Exact Jaccard of two shingle sets (the ground truth MinHash estimates)."""
    sa, sb = set(a.tolist() if isinstance(a, np.ndarray) else a), set(b.tolist() if isinstance(b, np.ndarray) else b)
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)
