"""The topic model: hashed TF-IDF features and one logistic regression per topic.

Multi-label by construction: each topic has its own classifier and its own
threshold, chosen on out-of-fold predictions so that the stored tags
maximise F1 per topic. Features are hashed, so the artifact holds no
vocabulary and stays small; `explain` recovers term weights by hashing the
article's own terms.

The artifact is a NumPy `.npz` archive of plain arrays plus a JSON header,
loaded with `allow_pickle=False`: opening a model never executes code.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, cross_val_predict

from models.text import normalise

TOPICS: tuple[str, ...] = ("diplomacy", "sport", "politics")
FORMAT = "feedsift-topics/1"


@dataclass
class TopicModel:
    """TF-IDF over hashed word n-grams (optionally character n-grams too) + logistic regression per topic.

    Settings are explicit keywords; learned state ends in `_` (scikit-learn's
    convention), so the training code can clone and compare configurations.
    """

    n_features: int = 2**20
    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] | None = None
    C: float = 8.0
    class_weight: str | None = "balanced"
    title_weight: int = 2
    topics: tuple[str, ...] = TOPICS
    idf_: np.ndarray | None = field(default=None, repr=False)
    coef_: np.ndarray | None = field(default=None, repr=False)
    intercept_: np.ndarray | None = field(default=None, repr=False)
    thresholds_: np.ndarray | None = field(default=None, repr=False)
    meta_: dict = field(default_factory=dict, repr=False)

    # -- features -----------------------------------------------------------
    def _vectorizers(self) -> list[HashingVectorizer]:
        common = dict(n_features=self.n_features, alternate_sign=False, norm=None, lowercase=True, dtype=np.float32)
        vecs = [HashingVectorizer(analyzer="word", ngram_range=tuple(self.word_ngrams), token_pattern=r"(?u)\b\w\w+\b", **common)]
        if self.char_ngrams:
            vecs.append(HashingVectorizer(analyzer="char_wb", ngram_range=tuple(self.char_ngrams), **common))
        return vecs

    def document(self, title: str, text: str) -> str:
        """Title repeated so a headline-only excerpt and a full article weigh it alike."""
        return normalise(" ".join([title] * self.title_weight + [text]))

    def counts(self, docs: Sequence[str]) -> sp.csr_matrix:
        mats = [v.transform(docs) for v in self._vectorizers()]
        X = mats[0] if len(mats) == 1 else sp.hstack(mats, format="csr")
        X = X.tocsr()
        X.data = 1.0 + np.log(X.data, dtype=np.float32)  # sublinear tf
        return X

    def _tfidf(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        X = counts.multiply(self.idf_).tocsr()
        norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        return sp.diags(1.0 / norms).dot(X).tocsr().astype(np.float32)

    # -- learning -----------------------------------------------------------
    def fit(self, docs: Sequence[str], Y: np.ndarray, folds: int = 5, seed: int = 0) -> "TopicModel":
        Y = np.asarray(Y, dtype=np.int8)
        counts = self.counts(docs)
        df = np.bincount(counts.indices, minlength=counts.shape[1])
        n = counts.shape[0]
        self.idf_ = (np.log((1 + n) / (1 + df)) + 1.0).astype(np.float32)
        X = self._tfidf(counts)
        coefs, intercepts, thresholds, oof = [], [], [], np.zeros(Y.shape, dtype=np.float32)
        cv = KFold(n_splits=folds, shuffle=True, random_state=seed)
        for j in range(Y.shape[1]):
            clf = self._classifier()
            oof[:, j] = cross_val_predict(clf, X, Y[:, j], cv=cv, method="predict_proba")[:, 1]
            thresholds.append(best_threshold(Y[:, j], oof[:, j]))
            clf.fit(X, Y[:, j])
            coefs.append(clf.coef_[0].astype(np.float32))
            intercepts.append(float(clf.intercept_[0]))
        self.coef_ = np.vstack(coefs)
        self.intercept_ = np.asarray(intercepts, dtype=np.float32)
        self.thresholds_ = np.asarray(thresholds, dtype=np.float32)
        self.meta_ = {
            "trained_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "n_train": int(n),
            "cv": scores(Y, oof >= self.thresholds_, self.topics),
        }
        return self

    def _classifier(self) -> LogisticRegression:
        return LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=2000, solver="liblinear")

    # -- prediction ---------------------------------------------------------
    def predict_proba(self, docs: Sequence[str]) -> np.ndarray:
        if self.coef_ is None:
            raise RuntimeError("model is not trained")
        X = self._tfidf(self.counts(docs))
        z = X @ self.coef_.T + self.intercept_
        return 1.0 / (1.0 + np.exp(-z))

    def tags(self, probs: np.ndarray) -> list[list[str]]:
        hit = probs >= self.thresholds_
        return [[t for t, h in zip(self.topics, row) if h] for row in hit]

    def explain(self, doc: str, top: int = 8) -> dict[str, list[tuple[str, float]]]:
        """Per topic, the document's terms with the largest contributions (+ and -)."""
        X = self._tfidf(self.counts([doc]))
        terms = self._terms(doc)
        out: dict[str, list[tuple[str, float]]] = {}
        for j, topic in enumerate(self.topics):
            contrib = {}
            for term, idx in terms.items():
                value = float(X[0, idx] * self.coef_[j, idx])
                if value:
                    contrib[term] = value
            ranked = sorted(contrib.items(), key=lambda kv: -abs(kv[1]))
            out[topic] = ranked[:top]
        return out

    def _terms(self, doc: str) -> dict[str, int]:
        """Each term of the document and its column, found by hashing the term alone."""
        terms: dict[str, int] = {}
        lookup = HashingVectorizer(analyzer=_identity, n_features=self.n_features, alternate_sign=False, norm=None)
        for offset, vec in enumerate(self._vectorizers()):
            found = sorted(set(vec.build_analyzer()(doc)))
            if not found:
                continue
            rows = lookup.transform([[t] for t in found])
            for term, col in zip(found, rows.indices):
                terms[term] = offset * self.n_features + int(col)
        return terms

    # -- persistence --------------------------------------------------------
    def header(self) -> dict:
        return {
            "format": FORMAT,
            "topics": list(self.topics),
            "params": {
                "n_features": self.n_features,
                "word_ngrams": list(self.word_ngrams),
                "char_ngrams": list(self.char_ngrams) if self.char_ngrams else None,
                "C": self.C,
                "class_weight": self.class_weight,
                "title_weight": self.title_weight,
            },
            "thresholds": [float(t) for t in self.thresholds_],
            "meta": self.meta_,
        }

    def to_bytes(self) -> bytes:
        """Sparse arrays (only learned weights are stored) in an .npz archive."""
        cols = np.flatnonzero(np.any(self.coef_ != 0, axis=0)).astype(np.int32)
        header = self.header()
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
            cols=cols,
            coef=self.coef_[:, cols].astype(np.float32),
            idf=self.idf_[cols],
            idf_default=np.float32(self.idf_.max()),
            intercept=self.intercept_,
        )
        return buf.getvalue()

    @property
    def version(self) -> str:
        """Stable name: training date plus a hash of the weights."""
        return self.meta_.get("version") or _version(self)

    def save(self, path: str | Path) -> str:
        self.meta_["version"] = _version(self)
        data = self.to_bytes()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
        return self.meta_["version"]

    @classmethod
    def from_bytes(cls, data: bytes) -> "TopicModel":
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            header = json.loads(bytes(z["header"]).decode())
            if header.get("format") != FORMAT:
                raise ValueError(f"not a feedsift topic model (format {header.get('format')!r})")
            p = header["params"]
            model = cls(
                n_features=p["n_features"],
                word_ngrams=tuple(p["word_ngrams"]),
                char_ngrams=tuple(p["char_ngrams"]) if p["char_ngrams"] else None,
                C=p["C"],
                class_weight=p["class_weight"],
                title_weight=p["title_weight"],
                topics=tuple(header["topics"]),
            )
            width = p["n_features"] * (2 if p["char_ngrams"] else 1)
            cols = z["cols"]
            model.coef_ = np.zeros((len(model.topics), width), dtype=np.float32)
            model.coef_[:, cols] = z["coef"]
            model.idf_ = np.full(width, z["idf_default"], dtype=np.float32)
            model.idf_[cols] = z["idf"]
            model.intercept_ = z["intercept"].astype(np.float32)
        model.thresholds_ = np.asarray(header["thresholds"], dtype=np.float32)
        model.meta_ = header["meta"]
        return model

    @classmethod
    def load(cls, path: str | Path) -> "TopicModel":
        return cls.from_bytes(Path(path).read_bytes())


def _identity(terms):
    return terms


def _version(model: TopicModel) -> str:
    digest = hashlib.sha256(model.coef_.tobytes() + model.thresholds_.tobytes()).hexdigest()[:8]
    day = model.meta_.get("trained_at", "")[:10].replace("-", "") or "untrained"
    return f"{day}-{digest}"


def best_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The probability cut that maximises F1 on held-out predictions."""
    best, best_f1 = 0.5, -1.0
    for t in np.linspace(0.1, 0.9, 81):
        f1 = _f1(y, p >= t)
        if f1 > best_f1 + 1e-9:
            best, best_f1 = float(t), f1
    return best


def _f1(y: np.ndarray, pred: np.ndarray) -> float:
    tp = float(np.sum((y == 1) & pred))
    fp = float(np.sum((y == 0) & pred))
    fn = float(np.sum((y == 1) & ~pred))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def scores(Y: np.ndarray, pred: np.ndarray, topics: Iterable[str] = TOPICS) -> dict:
    """Per-topic precision/recall/F1 plus micro and macro F1."""
    Y = np.asarray(Y).astype(bool)
    pred = np.asarray(pred).astype(bool)
    out: dict = {}
    tps = fps = fns = 0.0
    for j, topic in enumerate(topics):
        tp = float(np.sum(Y[:, j] & pred[:, j]))
        fp = float(np.sum(~Y[:, j] & pred[:, j]))
        fn = float(np.sum(Y[:, j] & ~pred[:, j]))
        tps, fps, fns = tps + tp, fps + fp, fns + fn
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[topic] = {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4), "support": int(tp + fn)}
    out["micro_f1"] = round(2 * tps / (2 * tps + fps + fns), 4) if tps else 0.0
    out["macro_f1"] = round(float(np.mean([out[t]["f1"] for t in topics])), 4)
    return out


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
