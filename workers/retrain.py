"""The topic model's life cycle: rebuild the bundled model, or train a version on a user's labelled data.

Returns models with their figures in `meta_`; saving or publishing is the caller's choice.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

Say = Callable[[str], None]


def figures(result: dict) -> dict:
    """The scores of an evaluation without its per-article lists (for a model's header)."""
    return {k: v for k, v in result.items() if k not in ("confusions", "mixups")}


def bundled(say: Say = print):
    """The bundled model rebuilt from the starter corpus's training part, scored on its held-out part."""
    from feedsift.models.training import corpus, evaluate, train

    rows, held = corpus()
    say(f"training the bundled model on {len(rows)} corpus articles ({len(held)} held out) …")
    model = train(rows)
    model.meta_["data"] = f"starter corpus, training part ({len(rows)} articles)"
    model.meta_["held_out"] = figures(evaluate(model, held))
    return model


def on_data(data: str, with_starter: bool, eval_path: str | None, say: Say = print):
    """A version trained on the user's rows (plus the whole starter corpus with `with_starter`), with
    cross-validated figures, on the user's rows alone too, and on `eval_path` when given."""
    from feedsift.models.topics import labels, load_jsonl, scores
    from feedsift.models.training import corpus, evaluate, train

    user = load_jsonl(data)
    rows = list(user)
    if with_starter:
        train_part, held = corpus()
        rows += train_part + held
    extra = len(rows) - len(user)
    say(
        f"training on {len(user)} labelled articles from {data}"
        + (f" and {extra} corpus articles" if extra else "")
        + " …"
    )
    model = train(rows)
    model.meta_["data"] = f"{Path(data).name} ({len(user)} articles)" + (
        f" + starter corpus ({extra})" if extra else ""
    )
    if with_starter:
        predicted = model.oof_[: len(user)] >= model.thresholds_
        model.meta_["cv_user"] = scores(labels(user, model.topics), predicted, model.topics)
    if eval_path:
        model.meta_["eval"] = {"data": Path(eval_path).name, **figures(evaluate(model, load_jsonl(eval_path)))}
    return model


def evaluate(data: str, model_path: str | Path) -> tuple[str, dict]:
    """A model's figures on labelled JSONL: (its version, the evaluation)."""
    from feedsift.models.topics import TopicModel, load_jsonl
    from feedsift.models.training import evaluate as score

    model = TopicModel.load(model_path)
    return model.version, score(model, load_jsonl(data))
