"""Pretrained word vectors: what a word means beyond the articles we wrote.

The TF-IDF features only know words seen in training; a team, a party or a
minister the corpus never mentions contributes nothing. Word vectors learned
from a very large amount of text place such words near the ones we did see,
so an article's mean vector carries its subject even when its names are new.

The vectors are WordLlama's `l2_supercat` 256-dimensional token embeddings
(MIT licence; https://github.com/dleemiller/WordLlama), read from the files its
wheel ships (`weights/`, `tokenizers/`) without importing the package or
touching the network. A word's vector is the mean of its sub-word tokens'
vectors, computed once per distinct word and cached; a document's vector is the
mean over its words, scaled to unit length.
"""

from __future__ import annotations

import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.sparse as sp

NAME = "wordllama-l2_supercat-256"
DIMS = {NAME: 256}
_WEIGHTS = "weights/l2_supercat_256.safetensors"
_TOKENIZER = "tokenizers/l2_supercat_tokenizer_config.json"
_CACHE_MAX = 32_768  # words; 32 MB of vectors at most


def _package_dir() -> Path:
    spec = importlib.util.find_spec("wordllama")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("this topic model needs word vectors from the 'wordllama' package: pip install wordllama")
    return Path(next(iter(spec.submodule_search_locations)))


class WordVectors:
    """Lower-cased word -> vector, and mean unit vectors of tokenised documents."""

    def __init__(self, name: str = NAME):
        if name != NAME:
            raise ValueError(f"unknown word vectors {name!r} (this release has {NAME!r})")
        from safetensors.numpy import load
        from tokenizers import Tokenizer

        root = _package_dir()
        data = (root / _WEIGHTS).read_bytes()
        self._use(
            load(data)["embedding.weight"],
            Tokenizer.from_file(str(root / _TOKENIZER)),  # float16, 16 MB
            hashlib.sha256(data).hexdigest()[:16],
        )

    @classmethod
    def from_table(cls, table: np.ndarray, tokenizer, digest: str) -> WordVectors:
        """Any token table and its tokenizer behind the same per-word cache (for probing other vectors)."""
        vectors = cls.__new__(cls)
        vectors._use(table, tokenizer, digest)
        return vectors

    def _use(self, table: np.ndarray, tokenizer, digest: str) -> None:
        self.table, self.tokenizer, self.digest = table, tokenizer, digest
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.dim = self.table.shape[1]
        self._index: dict[str, int] = {}
        self._rows = np.zeros((1024, self.dim), dtype=np.float32)

    def _add(self, words: list[str]) -> None:
        need = len(self._index) + len(words)
        if need > len(self._rows):
            grown = np.zeros((max(need, min(2 * len(self._rows), _CACHE_MAX)), self.dim), dtype=np.float32)
            grown[: len(self._index)] = self._rows[: len(self._index)]
            self._rows = grown
        # a leading space: the word as it appears inside running text
        for word, enc in zip(words, self.tokenizer.encode_batch([" " + w for w in words], add_special_tokens=False)):
            ids = [i for i in enc.ids if i < len(self.table)]
            n = len(self._index)
            self._rows[n] = self.table[ids].astype(np.float32).mean(axis=0) if ids else 0.0
            self._index[word] = n

    def embed(self, tokens: list[str], lens: np.ndarray) -> np.ndarray:
        """Unit-length mean word vector of each document (`lens[i]` consecutive tokens each)."""
        missing = set(tokens).difference(self._index)
        if missing:
            if len(self._index) + len(missing) > _CACHE_MAX:
                self._index.clear()
                missing = set(tokens)
            self._add(list(missing))
        cols = np.fromiter(map(self._index.__getitem__, tokens), dtype=np.int64, count=len(tokens))
        # row i of A counts document i's words; repeated and unsorted columns are fine for a product
        indptr = np.concatenate([[0], np.cumsum(lens)])
        A = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), cols, indptr), shape=(len(lens), len(self._rows)))
        E = np.asarray(A @ self._rows)
        norms = np.linalg.norm(E, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return (E / norms).astype(np.float32)


@lru_cache(maxsize=2)
def word_vectors(name: str = NAME) -> WordVectors:
    """One shared table per process (16 MB, plus up to 32 MB of cached word vectors)."""
    return WordVectors(name)
