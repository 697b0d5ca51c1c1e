"""Training and evaluation of the topic model on labelled JSONL rows.

Rows carry `title`, `text` and a 0/1 field per topic. The starter corpus is
`models/corpus/*.jsonl`; users bring their own files in the same shape.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Sequence


from models.topics import TOPICS, TopicModel, labels, load_jsonl, scores


def corpus_dir() -> Path:
    return Path(str(resources.files("models").joinpath("corpus")))


def starter_rows() -> list[dict]:
    rows: list[dict] = []
    for path in sorted(corpus_dir().glob("*.jsonl")):
        rows.extend(load_jsonl(path))
    return rows


def train(rows: Sequence[dict], **params) -> TopicModel:
    if len(rows) < 20:
        raise ValueError(f"{len(rows)} labelled rows are too few to train on")
    model = TopicModel(**params)
    Y = labels(rows, model.topics)
    for j, topic in enumerate(model.topics):
        if Y[:, j].sum() < 5 or (Y[:, j] == 0).sum() < 5:
            raise ValueError(f"topic {topic!r} needs at least 5 positive and 5 negative examples")
    docs = [model.document(r.get("title", ""), r.get("text", "")) for r in rows]
    return model.fit(docs, Y)


def evaluate(model: TopicModel, rows: Sequence[dict]) -> dict:
    """Scores plus the errors that cost most: the most confident wrong calls."""
    Y = labels(rows, model.topics)
    docs = [model.document(r.get("title", ""), r.get("text", "")) for r in rows]
    probs = model.predict_proba(docs)
    pred = probs >= model.thresholds_
    result = scores(Y, pred, model.topics)
    mistakes = []
    for i, row in enumerate(rows):
        for j, topic in enumerate(model.topics):
            if bool(pred[i, j]) != bool(Y[i, j]):
                margin = abs(float(probs[i, j]) - float(model.thresholds_[j]))
                mistakes.append({
                    "id": row.get("id", str(i)), "title": row.get("title", "")[:90], "topic": topic,
                    "error": "false positive" if pred[i, j] else "false negative",
                    "probability": round(float(probs[i, j]), 3), "margin": round(margin, 3),
                })
    result["confusions"] = sorted(mistakes, key=lambda m: -m["margin"])
    result["rows"] = len(rows)
    return result


__all__ = ["TOPICS", "train", "evaluate", "starter_rows", "corpus_dir"]
