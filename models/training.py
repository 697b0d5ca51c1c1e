"""Training and evaluation of the topic model on labelled JSONL rows.

Rows carry `id`, `title`, `text` and a 0/1 field per topic. The starter
corpus is `models/corpus/*.jsonl`; users bring their own files in the same
shape. Everything here is pure: rows in, models and figures out.

The starter corpus is deduplicated on load (exact and near-identical texts)
and split by a fixed rule: an article is held out when a hash of its
normalised title falls in the first `HELD_OUT_PERCENT` of 100 buckets. The
held-out part is never trained on while configurations are compared; it
measures the shipped model.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from feedsift.models.metrics import TOPICS, intervals, scores
from feedsift.models.tokens import tokens
from feedsift.models.topics import TopicModel, labels, load_jsonl

HELD_OUT_PERCENT = 15
NEAR_DUPLICATE = 0.8  # word 5-shingle Jaccard at or above which two texts are one article
LENGTH_BUCKETS = (("short (<100 words)", 0, 100), ("medium (100-299)", 100, 300), ("long (300+)", 300, 10**9))
LEAD_WORDS = (25, 60)  # a lead view: whole sentences until at least 25 words, at most 60


def corpus_dir() -> Path:
    return Path(str(resources.files("feedsift.models").joinpath("corpus")))


def starter_rows(directory: Path | None = None) -> list[dict]:
    """Every row of the starter corpus files, in file order (not deduplicated)."""
    rows: list[dict] = []
    for path in sorted((directory or corpus_dir()).glob("*.jsonl")):
        for row in load_jsonl(path):
            row.setdefault("_file", path.name)
            rows.append(row)
    return rows


def corpus(directory: Path | None = None) -> tuple[list[dict], list[dict]]:
    """The starter corpus, deduplicated, as (training part, held-out part)."""
    rows, _ = deduplicate(starter_rows(directory))
    return split(rows)


# -- corpus hygiene -----------------------------------------------------------
def validate(rows: Sequence[dict], topics: Sequence[str] = TOPICS) -> list[str]:
    """Problems that make rows unusable or ambiguous: missing fields, labels not 0/1, empty text, repeated ids."""
    problems = []
    seen: Counter[str] = Counter()
    for i, row in enumerate(rows):
        name = row.get("id") or f"row {i + 1}"
        seen[str(row.get("id"))] += 1
        if not str(row.get("title", "")).strip() and not str(row.get("text", "")).strip():
            problems.append(f"{name}: no title and no text")
        for t in topics:
            if row.get(t) not in (0, 1, True, False):
                problems.append(f"{name}: label {t!r} is {row.get(t)!r}, not 0 or 1")
    problems += [f"id {i!r} is used {n} times" for i, n in seen.items() if n > 1 and i != "None"]
    return problems


def _shingles(text: str, k: int = 5) -> set[str]:
    w = tokens(text)
    return {" ".join(w[i : i + k]) for i in range(max(1, len(w) - k + 1))}


def deduplicate(
    rows: Sequence[dict], threshold: float = NEAR_DUPLICATE
) -> tuple[list[dict], list[tuple[dict, dict, float]]]:
    """Drops rows whose text repeats an earlier row's exactly or nearly (word 5-shingle Jaccard >= threshold).

    Returns the kept rows and (dropped, kept twin, similarity) triples; a twin
    with other labels is worth a look, as one of the two is mislabelled.
    """
    sets = [_shingles(str(r.get("text") or r.get("title", ""))) for r in rows]  # a re-titled copy is still a copy
    vocab: dict[str, int] = {}
    indices, indptr = [], [0]
    for s in sets:
        indices.extend(vocab.setdefault(g, len(vocab)) for g in s)
        indptr.append(len(indices))
    M = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(len(rows), max(1, len(vocab))))
    inter = (M @ M.T).tocoo()
    size = np.array([len(s) for s in sets], dtype=np.float32)
    kept_twin: dict[int, tuple[int, float]] = {}
    for i, j, n in zip(inter.row, inter.col, inter.data):
        if j < i:
            sim = float(n / (size[i] + size[j] - n))
            if sim >= threshold and (i not in kept_twin or sim > kept_twin[i][1]):
                kept_twin[i] = (int(j), sim)
    dropped = set()
    pairs = []
    for i in sorted(kept_twin):
        j, sim = kept_twin[i]
        while j in dropped:  # point at the surviving row of a chain of copies
            j = kept_twin[j][0]
        dropped.add(i)
        pairs.append((rows[i], rows[j], round(sim, 3)))
    return [r for i, r in enumerate(rows) if i not in dropped], pairs


def held_out(row: dict) -> bool:
    """The fixed split rule: a hash of the lower-cased, space-folded title, 15 of 100 buckets held out."""
    key = " ".join(str(row.get("title", "")).lower().split()) or str(row.get("text", ""))[:200]
    return int(hashlib.blake2b(key.encode(), digest_size=8).hexdigest(), 16) % 100 < HELD_OUT_PERCENT


def split(rows: Sequence[dict]) -> tuple[list[dict], list[dict]]:
    train = [r for r in rows if not held_out(r)]
    test = [r for r in rows if held_out(r)]
    return train, test


def length_bucket(row: dict) -> str:
    n = len(str(row.get("text", "")).split())
    return next(name for name, lo, hi in LENGTH_BUCKETS if lo <= n < hi)


def counts_by(rows: Sequence[dict], topics: Sequence[str] = TOPICS) -> dict:
    """Rows per label and per length bucket."""
    Y = labels(rows, topics) if rows else np.zeros((0, len(topics)))
    out = {
        "rows": len(rows),
        **{t: int(Y[:, j].sum()) for j, t in enumerate(topics)},
        "none": int((Y.sum(axis=1) == 0).sum()),
    }
    out["length"] = dict(Counter(length_bucket(r) for r in rows))
    return out


# -- views ------------------------------------------------------------------------
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")


def lead(text: str, least: int = LEAD_WORDS[0], most: int = LEAD_WORDS[1]) -> str:
    """The opening of a text as a feed excerpt gives it: whole sentences until `least` words, cut at `most`."""
    out: list[str] = []
    for sentence in _SENTENCE_END.split(" ".join(text.split())):
        out.extend(sentence.split())
        if len(out) >= least:
            break
    return " ".join(out[:most])


def views(rows: Sequence[dict], leads: bool) -> tuple[list[tuple[str, str]], np.ndarray]:
    """(title, text) pairs to learn from and the article each came from; with `leads`, longer
    articles also appear as title + lead, the way many feeds deliver them."""
    pairs, group = [], []
    for i, r in enumerate(rows):
        title, text = str(r.get("title", "")), str(r.get("text", ""))
        pairs.append((title, text))
        group.append(i)
        if leads and len(text.split()) > LEAD_WORDS[1]:
            pairs.append((title, lead(text)))
            group.append(i)
    return pairs, np.asarray(group)


# -- training and evaluation ------------------------------------------------------
def check_trainable(rows: Sequence[dict], topics: Sequence[str] = TOPICS) -> np.ndarray:
    if len(rows) < 20:
        raise ValueError(f"{len(rows)} labelled rows are too few to train on")
    problems = validate(rows, topics)
    bad = [p for p in problems if "is used" not in p]
    if bad:
        raise ValueError(
            "unusable rows: " + "; ".join(bad[:5]) + (f" (and {len(bad) - 5} more)" if len(bad) > 5 else "")
        )
    Y = labels(rows, topics)
    for j, topic in enumerate(topics):
        if Y[:, j].sum() < 5 or (Y[:, j] == 0).sum() < 5:
            raise ValueError(f"topic {topic!r} needs at least 5 positive and 5 negative examples")
    return Y


def train(rows: Sequence[dict], leads: bool = True, folds: int = 5, **params) -> TopicModel:
    """Fits a model; `meta_["cv"]` holds its out-of-fold figures on the full texts it was given."""
    model = TopicModel(**params)
    Y = check_trainable(rows, model.topics)
    pairs, group = views(rows, leads)
    docs = [model.document(t, x) for t, x in pairs]
    model.fit_counts(model.counts(docs), Y[group], folds=folds, group=group)
    full = np.r_[True, group[1:] != group[:-1]]  # the first view of each article is its full text
    model.meta_["cv"] = scores(Y, model.oof_[full] >= model.thresholds_, model.topics)
    model.meta_["n_train"] = len(rows)
    model.meta_["lead_views"] = int((~full).sum())
    model.oof_ = model.oof_[full]
    return model


def evaluate(model: TopicModel, rows: Sequence[dict]) -> dict:
    """Scores overall and per length bucket, the label mix-ups, and the most confident wrong calls.

    Micro-F1 and each topic's F1 come with a bootstrap 95% interval over the
    rows (`micro_f1_ci`, and `f1_ci` inside each topic), overall and per bucket.
    """
    Y = labels(rows, model.topics)
    docs = [model.document(r.get("title", ""), r.get("text", "")) for r in rows]
    probs = model.predict_proba(docs)
    pred = probs >= model.thresholds_
    result = scored(Y, pred, model.topics)
    result["rows"] = len(rows)
    buckets = np.array([length_bucket(r) for r in rows])
    result["by_length"] = {
        name: {"rows": int((buckets == name).sum()), **scored(Y[buckets == name], pred[buckets == name], model.topics)}
        for name, _, _ in LENGTH_BUCKETS
        if (buckets == name).any()
    }
    mixups: Counter[tuple[str, str]] = Counter()
    mistakes = []
    for i, row in enumerate(rows):
        truth = "+".join(t for t, y in zip(model.topics, Y[i]) if y) or "none"
        said = "+".join(t for t, p in zip(model.topics, pred[i]) if p) or "none"
        if truth != said:
            mixups[(truth, said)] += 1
        for j, topic in enumerate(model.topics):
            if bool(pred[i, j]) != bool(Y[i, j]):
                margin = abs(float(probs[i, j]) - float(model.thresholds_[j]))
                mistakes.append(
                    {
                        "id": str(row.get("id", i)),
                        "title": str(row.get("title", ""))[:90],
                        "topic": topic,
                        "error": "false positive" if pred[i, j] else "false negative",
                        "probability": round(float(probs[i, j]), 3),
                        "margin": round(margin, 3),
                    }
                )
    result["mixups"] = [{"labelled": a, "predicted": b, "count": n} for (a, b), n in mixups.most_common()]
    result["confusions"] = sorted(mistakes, key=lambda m: -m["margin"])
    return result


def scored(Y: np.ndarray, pred: np.ndarray, topics: Sequence[str] = TOPICS) -> dict:
    """`scores` with bootstrap 95% intervals: `micro_f1_ci: [lo, hi]` and, per topic, `f1_ci: [lo, hi]`."""
    out = scores(Y, pred, topics)
    ci = intervals(Y, pred, topics)
    out["micro_f1_ci"] = ci["micro_f1"]
    for t in topics:
        out[t]["f1_ci"] = ci[t]
    return out


__all__ = [
    "TOPICS",
    "corpus",
    "corpus_dir",
    "counts_by",
    "deduplicate",
    "evaluate",
    "held_out",
    "lead",
    "length_bucket",
    "scored",
    "split",
    "starter_rows",
    "train",
    "validate",
    "views",
]
