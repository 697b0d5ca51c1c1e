"""The topic model at run time: hashed TF-IDF features, one linear classifier per topic, persistence.

Multi-label by construction: each topic has its own classifier and its own
threshold, chosen on out-of-fold predictions so that the stored tags
maximise F1 per topic. Whatever learner trained it (`fitting.py`), a model
is plain arrays: a weight vector and an intercept per topic, and a sigmoid
that maps the linear score to a probability. Predicting needs no learner.

Features are hashed, so the artifact holds no vocabulary and stays small;
`explain` recovers term weights by hashing the article's own terms, with the
same tokeniser and n-gram loop (`tokens.py`) that counting uses. Character
n-grams, when enabled, use scikit-learn's `HashingVectorizer`.

The artifact is a NumPy `.npz` archive of plain arrays plus a JSON header,
loaded with `allow_pickle=False`: opening a model never executes code.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.special import expit

from feedsift.models import embeddings
from feedsift.models.metrics import TOPICS, scores
from feedsift.models.text import normalise
from feedsift.models.tokens import hashes_of, ngram_columns, token_hashes, token_ids, tokenise, tokens

FORMAT = "feedsift-topics/4"
READS = (FORMAT,)  # /4: vectors inside, CRC-32 token columns; older artifacts hashed tokens otherwise
CLASSIFIERS = ("logreg", "svm", "sgd")
VECTOR_TERM = "(meaning)"  # the vector columns' share, shown as one term (one word: a table never wraps it)
#: what each topic is about, in the annotation guide's terms; an article's similarity to each, in the
#: word vectors' space, can join the features
DEFINITIONS = {
    "diplomacy": "diplomacy and international relations between states: foreign ministers, ambassadors and envoys, "
    "negotiations, treaties, summits, sanctions, peace talks, the United Nations, NATO and EU acting between states",
    "sport": "sport: athletes, players, teams, clubs and coaches; matches, games, races, results, scores, leagues, "
    "cups, championships, tournaments and transfers",
    "politics": "domestic politics and government: elections, voters, political parties, parliament and congress, "
    "legislation and bills, cabinet ministers, campaigns, opposition leaders and public policy",
}


@dataclass
class TopicModel:
    """TF-IDF over hashed word n-grams (optionally character n-grams too) + a linear classifier per topic.

    Settings are explicit keywords; learned state ends in `_` (scikit-learn's
    convention), so the training code can clone and compare configurations.
    Probabilities are `1 / (1 + exp(a * (x.w + c) + b))` per topic, with
    `(a, b) = (-1, 0)` for the learners that are probabilistic already.
    """

    n_features: int = 2**20
    word_ngrams: tuple[int, int] = (1, 1)
    char_ngrams: tuple[int, int] | None = None
    #: character n-grams read only the first `char_chars` characters (title and lead); 0: all of it
    char_chars: int = 0
    classifier: str = "svm"
    C: float = 0.5
    alpha: float = 1e-5
    class_weight: str | None = "balanced"
    title_weight: int = 2
    #: static word-piece vectors whose unit mean (times `vector_weight`) joins the TF-IDF features
    word_vectors: str | None = embeddings.NAME
    vector_weight: float = 0.25
    #: the mean vector's cosine to each topic's definition, times this, as one more column per topic (0: none)
    definition_weight: float = 0.0
    #: 0: one learner over all columns; f > 0: words and vectors learned apart, log-odds mixed (1 - f) : f
    fusion: float = 0.0
    topics: tuple[str, ...] = TOPICS
    vectors_: embeddings.StaticVectors | None = field(default=None, repr=False, compare=False)
    idf_: np.ndarray | None = field(default=None, repr=False)
    coef_: np.ndarray | None = field(default=None, repr=False)
    intercept_: np.ndarray | None = field(default=None, repr=False)
    calib_: np.ndarray | None = field(default=None, repr=False)
    thresholds_: np.ndarray | None = field(default=None, repr=False)
    meta_: dict = field(default_factory=dict, repr=False)
    oof_: np.ndarray | None = field(default=None, repr=False, compare=False)
    _weights: tuple | None = field(default=None, init=False, repr=False, compare=False)
    _definitions: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.classifier not in CLASSIFIERS:
            raise ValueError(f"classifier must be one of {CLASSIFIERS}, not {self.classifier!r}")
        lo, hi = self.word_ngrams
        if not 1 <= lo <= hi <= 3:
            raise ValueError(f"word n-grams must lie within (1, 3), not {self.word_ngrams}")

    def params(self) -> dict:
        return {
            "n_features": self.n_features,
            "word_ngrams": list(self.word_ngrams),
            "char_ngrams": list(self.char_ngrams) if self.char_ngrams else None,
            "char_chars": self.char_chars,
            "classifier": self.classifier,
            "C": self.C,
            "alpha": self.alpha,
            "class_weight": self.class_weight,
            "title_weight": self.title_weight,
            "word_vectors": self.word_vectors,
            "vector_weight": self.vector_weight,
            "definition_weight": self.definition_weight,
            "fusion": self.fusion,
        }

    @property
    def _text_width(self) -> int:
        return self.n_features * (2 if self.char_ngrams else 1)

    @property
    def _dense_width(self) -> int:
        if not self.word_vectors:
            return 0
        return self._vectors().dim + (len(self.topics) if self.definition_weight else 0)

    @property
    def width(self) -> int:
        return self._text_width + self._dense_width

    def _vectors(self) -> embeddings.StaticVectors:
        """The table this model reads: its own once trained or loaded, else the one training starts from."""
        if self.vectors_ is None:
            self.vectors_ = embeddings.word_vectors(self.word_vectors)
        return self.vectors_

    def _dense(self, ids: np.ndarray, lens: np.ndarray) -> np.ndarray:
        """Each document's unit mean vector, then (if enabled) its cosine to every topic's definition."""
        E = self._vectors().embed_ids(ids, lens)
        if not self.definition_weight:
            return E
        if self._definitions is None or self._definitions[0] is not self.vectors_:
            d = [tokens(DEFINITIONS[t]) for t in self.topics]
            D = self.vectors_.embed([w for ws in d for w in ws], np.array([len(ws) for ws in d]))
            self._definitions = (self.vectors_, D.T.copy())
        return np.hstack([E, E @ self._definitions[1]])

    # -- features -----------------------------------------------------------
    def document(self, title: str, text: str) -> str:
        """Title repeated so a headline-only excerpt and a full article weigh it alike."""
        doc = " ".join([title] * self.title_weight + [text])
        # ASCII text is already in normal form; folding is only needed (and only costs) otherwise.
        return doc if doc.isascii() else normalise(doc)

    def _char_vectorizer(self):
        from sklearn.feature_extraction.text import HashingVectorizer  # only character n-grams need it

        return HashingVectorizer(
            analyzer="char_wb",
            ngram_range=tuple(self.char_ngrams),
            n_features=self.n_features,
            alternate_sign=False,
            norm=None,
            lowercase=True,
            dtype=np.float32,
        )

    def _word_columns(self, ids: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row and column of every word n-gram occurrence that lies within one document."""
        doc = np.repeat(np.arange(len(lens), dtype=np.int64), lens)
        rows, cols = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        for n, col in ngram_columns(hashes_of(ids), self.word_ngrams, self.n_features):
            same = doc[: len(col)] == doc[n - 1 :]
            rows.append(doc[: len(col)][same])
            cols.append(col[same])
        return np.concatenate(rows), np.concatenate(cols)

    def counts(self, docs: Sequence[str]) -> sp.csr_matrix:
        """Sublinear term counts (1 + log tf) over hashed columns, one row per document."""
        toks, lens = tokenise(docs)
        ids = token_ids(toks)  # looked up once, for the word columns and the vectors alike
        rows, cols = self._word_columns(ids, lens)
        # distinct (row, column) pairs in order, with their counts: the CSR arrays directly
        pairs, tf = np.unique(rows * self.n_features + cols, return_counts=True)
        indptr = np.zeros(len(docs) + 1, dtype=np.int64)
        np.cumsum(np.bincount(pairs // self.n_features, minlength=len(docs)), out=indptr[1:])
        X = sp.csr_matrix((tf.astype(np.float32), pairs % self.n_features, indptr), shape=(len(docs), self.n_features))
        if self.char_ngrams:
            text = docs if not self.char_chars else [d[: self.char_chars] for d in docs]
            X = sp.hstack([X, self._char_vectorizer().transform(text)], format="csr")
            X.sum_duplicates()
        X.data = 1.0 + np.log(X.data, dtype=np.float32)
        if self.word_vectors:
            X = _append_dense(X, self._dense(ids, lens), self._text_width)
        return X

    def _tfidf(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        """TF-IDF rows of unit length; vector columns pass through times `vector_weight` (definitions: `definition_weight`).

        Works on the data array alone (no column slicing): vector columns are the
        last ones of every row, with IDF 1, left out of the row's length.
        """
        X = counts.copy()
        X.data = X.data * self.idf_[X.indices]
        text = X.indices < self._text_width
        sq = np.concatenate([[0.0], np.cumsum(np.where(text, X.data.astype(np.float64) ** 2, 0.0))])
        norms = np.sqrt(sq[X.indptr[1:]] - sq[X.indptr[:-1]])
        norms[norms == 0] = 1.0
        dense = np.full(X.shape[1] - self._text_width + 1, self.vector_weight, dtype=np.float64)
        if self.word_vectors and self.definition_weight:
            dense[self._vectors().dim :] = self.definition_weight
        scale = np.where(
            text, 1.0 / np.repeat(norms, np.diff(X.indptr)), dense[np.maximum(X.indices - self._text_width, 0)]
        )
        X.data = (X.data * scale).astype(np.float32)
        return X

    # -- learning -----------------------------------------------------------
    def fit(self, docs: Sequence[str], Y: np.ndarray, folds: int = 5, seed: int = 0, group=None) -> TopicModel:
        return self.fit_counts(self.counts(docs), Y, folds=folds, seed=seed, group=group)

    def fit_counts(self, counts: sp.csr_matrix, Y: np.ndarray, folds: int = 5, seed: int = 0, group=None) -> TopicModel:
        """Learns IDF, the classifiers and thresholds (`fitting.fit_counts`); rows sharing a `group` share a fold."""
        from feedsift.models import fitting  # the learners load only where a model is trained

        return fitting.fit_counts(self, counts, Y, folds=folds, seed=seed, group=group)

    # -- prediction ---------------------------------------------------------
    def logits(self, X: sp.csr_matrix) -> np.ndarray:
        """Log-odds per topic of TF-IDF rows (after calibration)."""
        if self._weights is None or self._weights[0] is not self.coef_:
            # (features, topics), contiguous: a sparse row times it reads only the row's columns
            self._weights = (self.coef_, np.ascontiguousarray(self.coef_.T))
        z = np.asarray(X @ self._weights[1]) + self.intercept_
        return -(self.calib_[:, 0] * z + self.calib_[:, 1])

    def predict_proba(self, docs: Sequence[str]) -> np.ndarray:
        return self.predict_proba_counts(self.counts(docs))

    def predict_proba_counts(self, counts: sp.csr_matrix) -> np.ndarray:
        if self.coef_ is None:
            raise RuntimeError("model is not trained")
        return expit(self.logits(self._tfidf(counts)))

    def tags(self, probs: np.ndarray) -> list[list[str]]:
        hit = probs >= self.thresholds_
        return [[t for t, h in zip(self.topics, row) if h] for row in hit]

    def explain(self, doc: str, top: int = 8) -> dict[str, dict]:
        """Per topic: probability, threshold, and the document's terms that pushed the log-odds up and down most.

        A term's weight is its TF-IDF value times the topic's (calibrated) weight
        for its hashed column: the amount it adds to the topic's log-odds.
        """
        X = self._tfidf(self.counts([doc]))
        value = dict(zip(X.indices.tolist(), X.data.tolist()))
        logit = self.logits(X)[0]
        terms = self._terms(doc)
        out: dict[str, dict] = {}
        for j, topic in enumerate(self.topics):
            slope = -float(self.calib_[j, 0])
            contrib = [
                (term, round(value[col] * float(self.coef_[j, col]) * slope, 4))
                for term, col in terms.items()
                if col in value
            ]
            if self.word_vectors:  # the vector columns count as one term
                cols = np.arange(self._text_width, self.width)
                vec = sum(value.get(int(c), 0.0) * float(self.coef_[j, c]) for c in cols) * slope
                contrib.append((VECTOR_TERM, round(vec, 4)))
            contrib = [c for c in contrib if c[1]]
            up = sorted((c for c in contrib if c[1] > 0), key=lambda c: -c[1])[:top]
            down = sorted((c for c in contrib if c[1] < 0), key=lambda c: c[1])[:top]
            p = float(expit(logit[j]))
            out[topic] = {
                "probability": round(p, 4),
                "threshold": round(float(self.thresholds_[j]), 4),
                "tagged": p >= float(self.thresholds_[j]),
                "up": up,
                "down": down,
            }
        return out

    def _terms(self, doc: str) -> dict[str, int]:
        """Each term of the document and its column, hashed exactly as `counts` hashes it."""
        toks = tokens(doc)
        found: dict[str, int] = {}
        for n, cols in ngram_columns(token_hashes(toks), self.word_ngrams, self.n_features):
            for i, col in enumerate(cols.tolist()):
                found.setdefault(" ".join(toks[i : i + n]), col)
        if self.char_ngrams:
            text = doc if not self.char_chars else doc[: self.char_chars]
            grams = sorted(set(self._char_vectorizer().build_analyzer()(text)))
            lookup = type(self._char_vectorizer())(
                analyzer=_identity, n_features=self.n_features, alternate_sign=False, norm=None
            )
            if grams:
                for gram, col in zip(grams, lookup.transform([[g] for g in grams]).indices):
                    found.setdefault(f"«{gram}»", self.n_features + int(col))
        return found

    # -- persistence --------------------------------------------------------
    def header(self) -> dict:
        return {
            "format": FORMAT,
            "topics": list(self.topics),
            "params": self.params(),
            "thresholds": [round(float(t), 4) for t in self.thresholds_],
            "meta": self.meta_,
        }

    def to_bytes(self) -> bytes:
        """Only columns seen in training are stored (sparse), in an .npz archive of plain arrays."""
        self.meta_["version"] = self.version
        # every column seen in training: a column without weight still counts in each row's length
        cols = np.flatnonzero(np.any(self.coef_ != 0, axis=0) | (self.idf_ < self.idf_.max())).astype(np.int32)
        table = self.vectors_.to_arrays() if self.word_vectors else {}
        if table:  # the table travels inside the artifact; its checksum is verified on load
            self.meta_["vectors"] = {**self.vectors_.provenance(), "table_sha256": embeddings.checksum(table)}
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            header=np.frombuffer(json.dumps(self.header()).encode(), dtype=np.uint8),
            **table,
            cols=cols,
            coef=self.coef_[:, cols].astype(np.float32),
            idf=self.idf_[cols],
            idf_default=np.float32(self.idf_.max()),
            intercept=self.intercept_,
            calib=self.calib_,
        )
        return buf.getvalue()

    @property
    def version(self) -> str:
        """Stable name: training date plus a hash of the weights."""
        return self.meta_.get("version") or _version(self)

    def save(self, path: str | Path) -> str:
        data = self.to_bytes()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
        return self.version

    @classmethod
    def from_bytes(cls, data: bytes) -> TopicModel:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            header = json.loads(bytes(z["header"]).decode())
            if header.get("format") not in READS:
                raise ValueError(
                    f"not a feedsift topic model of this release (format {header.get('format')!r}); retrain it"
                )
            p = header["params"]
            model = cls(
                n_features=p["n_features"],
                word_ngrams=tuple(p["word_ngrams"]),
                char_ngrams=tuple(p["char_ngrams"]) if p["char_ngrams"] else None,
                char_chars=p["char_chars"],
                classifier=p["classifier"],
                C=p["C"],
                alpha=p["alpha"],
                class_weight=p["class_weight"],
                title_weight=p["title_weight"],
                word_vectors=p.get("word_vectors"),
                vector_weight=p.get("vector_weight", 0.0),
                definition_weight=p.get("definition_weight", 0.0),
                fusion=p.get("fusion", 0.0),
                topics=tuple(header["topics"]),
            )
            if model.word_vectors:
                model.vectors_ = embeddings.StaticVectors.from_artifact(z, header["meta"]["vectors"])
            cols = z["cols"]
            model.coef_ = np.zeros((len(model.topics), model.width), dtype=np.float32)
            model.coef_[:, cols] = z["coef"]
            model.idf_ = np.full(model.width, z["idf_default"], dtype=np.float32)
            model.idf_[cols] = z["idf"]
            model.intercept_ = z["intercept"].astype(np.float32)
            model.calib_ = z["calib"].astype(np.float32)
        model.thresholds_ = np.asarray(header["thresholds"], dtype=np.float32)
        model.meta_ = header["meta"]
        return model

    @classmethod
    def load(cls, path: str | Path) -> TopicModel:
        return cls.from_bytes(Path(path).read_bytes())


def _append_dense(X: sp.csr_matrix, E: np.ndarray, offset: int) -> sp.csr_matrix:
    """X with the dense rows of E appended as columns offset.. (built directly, without hstack)."""
    n, dim = E.shape
    indptr = X.indptr + np.arange(n + 1, dtype=X.indptr.dtype) * dim
    is_text = np.ones(indptr[-1], dtype=bool)
    dense_at = (indptr[1:, None] - dim + np.arange(dim)).ravel()  # the last `dim` places of each row
    is_text[dense_at] = False
    data = np.empty(indptr[-1], dtype=np.float32)
    indices = np.empty(indptr[-1], dtype=np.int64)
    data[is_text], indices[is_text] = X.data, X.indices
    data[dense_at], indices[dense_at] = E.ravel(), np.tile(np.arange(offset, offset + dim), n)
    return sp.csr_matrix((data, indices, indptr), shape=(n, offset + dim))


def read_header(data: bytes) -> dict:
    """The JSON header of an artifact, without building the model."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return json.loads(bytes(z["header"]).decode())


def _identity(terms):
    return terms


def _version(model: TopicModel) -> str:
    digest = hashlib.sha256(
        model.coef_.tobytes()
        + model.intercept_.tobytes()
        + model.calib_.tobytes()
        + model.thresholds_.tobytes()
        + json.dumps(model.params()).encode()
    ).hexdigest()[:8]
    day = model.meta_.get("trained_at", "")[:10].replace("-", "") or "untrained"
    return f"{day}-{digest}"


def load_jsonl(path: str | Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{n}: not JSON ({exc.msg})") from None
    return rows


def labels(rows: Sequence[dict], topics: Sequence[str] = TOPICS) -> np.ndarray:
    try:
        return np.array([[int(r[t]) for t in topics] for r in rows], dtype=np.int8)
    except KeyError as exc:
        raise ValueError(f"row without label {exc}") from None


# what other code imports from here: the model, its file helpers, and the figures it is judged by
__all__ = ["TOPICS", "VECTOR_TERM", "TopicModel", "labels", "load_jsonl", "read_header", "scores", "tokens"]
