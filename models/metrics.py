"""Figures of a multi-label tagger: precision, recall and F1 per topic, micro and macro F1, their uncertainty.

F1 is computed in one place, `f1`, from counts of true positives, false
positives and false negatives; every other figure (the threshold search, the
bootstrap) feeds it counts, whole arrays at a time.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

TOPICS: tuple[str, ...] = ("diplomacy", "sport", "politics")
BOOTSTRAP = 2000  # resamples behind each interval
LEVEL = 0.95


def f1(tp, fp, fn):
    """2tp / (2tp + fp + fn), 0 where there is no true positive; scalars or arrays alike."""
    tp, fp, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tp > 0, 2 * tp / (2 * tp + fp + fn), 0.0)


def _counts(Y: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row, per-topic indicators of true positives, false positives and false negatives."""
    return Y & pred, ~Y & pred, Y & ~pred


def scores(Y: np.ndarray, pred: np.ndarray, topics: Iterable[str] = TOPICS) -> dict:
    """Per-topic precision/recall/F1 plus micro and macro F1."""
    Y = np.asarray(Y).astype(bool)
    pred = np.asarray(pred).astype(bool)
    tp, fp, fn = (c.sum(axis=0).astype(float) for c in _counts(Y, pred))
    out: dict = {}
    topics = list(topics)
    for j, topic in enumerate(topics):
        out[topic] = {
            "precision": round(tp[j] / (tp[j] + fp[j]), 4) if tp[j] + fp[j] else 0.0,
            "recall": round(tp[j] / (tp[j] + fn[j]), 4) if tp[j] + fn[j] else 0.0,
            "f1": round(float(f1(tp[j], fp[j], fn[j])), 4),
            "support": int(tp[j] + fn[j]),
        }
    out["micro_f1"] = round(float(f1(tp.sum(), fp.sum(), fn.sum())), 4)
    out["macro_f1"] = round(float(np.mean([out[t]["f1"] for t in topics])), 4)
    return out


def best_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The probability cut that maximises F1 on held-out predictions (the lowest of equally good cuts)."""
    grid = np.round(np.linspace(0.1, 0.9, 81), 2)
    y = np.asarray(y) == 1
    pred = np.asarray(p)[None, :] >= grid[:, None]
    f1s = f1((pred & y).sum(1), (pred & ~y).sum(1), (~pred & y).sum(1))
    return float(grid[int(np.argmax(f1s >= f1s.max() - 1e-9))])


def intervals(Y: np.ndarray, pred: np.ndarray, topics: Iterable[str] = TOPICS, seed: int = 0) -> dict:
    """Bootstrap 95% intervals (percentile) for micro-F1 and each topic's F1, resampling articles.

    Returns {"micro_f1": [lo, hi], topic: [lo, hi], ...}. Two figures whose
    difference lies inside these widths cannot be told apart on this data.
    """
    Y = np.asarray(Y).astype(bool)
    pred = np.asarray(pred).astype(bool)
    n = len(Y)
    if n == 0:
        return {}
    # each row of W says how often each article is drawn in one resample
    W = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=BOOTSTRAP).astype(np.float64)
    tp, fp, fn = (W @ c.astype(np.float64) for c in _counts(Y, pred))
    tail = (1 - LEVEL) / 2 * 100
    out = {"micro_f1": f1(tp.sum(1), fp.sum(1), fn.sum(1))}
    out.update({t: f1(tp[:, j], fp[:, j], fn[:, j]) for j, t in enumerate(topics)})
    return {k: [round(float(v), 4) for v in np.percentile(s, [tail, 100 - tail])] for k, s in out.items()}


def difference(Y: np.ndarray, pred: np.ndarray, other: np.ndarray, seed: int = 0) -> list[float]:
    """Bootstrap 95% interval of micro-F1(pred) - micro-F1(other) on the same resampled articles.

    Paired, so much narrower than the two separate intervals: an interval that
    holds 0 means the two cannot be told apart on this data (a tie).
    """
    Y = np.asarray(Y).astype(bool)
    n = len(Y)
    W = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=BOOTSTRAP).astype(np.float64)
    micro = []
    for p in (pred, other):
        tp, fp, fn = (W @ c.astype(np.float64) for c in _counts(Y, np.asarray(p).astype(bool)))
        micro.append(f1(tp.sum(1), fp.sum(1), fn.sum(1)))
    tail = (1 - LEVEL) / 2 * 100
    return [round(float(v), 4) for v in np.percentile(micro[0] - micro[1], [tail, 100 - tail])]
