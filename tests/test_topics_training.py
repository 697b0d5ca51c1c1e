"""Corpus hygiene, the fixed split, lead views, training and evaluation: pure code, no Redis."""

from __future__ import annotations

import json

import numpy as np
import pytest

from feedsift.models.select_model import _renumber, corpus_report
from feedsift.models.topics import TOPICS, TopicModel, labels
from feedsift.models.training import (
    HELD_OUT_PERCENT,
    corpus,
    counts_by,
    deduplicate,
    evaluate,
    held_out,
    lead,
    length_bucket,
    split,
    starter_rows,
    train,
    validate,
    views,
)
from tests.test_topics_unit import rows as toy_rows

LONG = ("The foreign ministers met in Geneva on Monday. They agreed to resume talks on the border. " * 8).strip()


def row(i, title, text, d=0, s=0, p=0):
    return {"id": f"t-{i:04d}", "title": title, "text": text, "diplomacy": d, "sport": s, "politics": p}


def test_deduplicate_drops_exact_and_near_copies_only():
    base = (
        "the central bank raised interest rates by a quarter point on thursday citing persistent inflation in services "
        "and a labour market that has stayed tighter than its economists expected at the start of the year while "
        "mortgage lenders said they would pass the increase on to borrowers within days and several large banks "
        "announced higher savings rates the governor told reporters the committee would watch wage data closely"
    )
    rows = [
        row(1, "Rates up", base),
        row(2, "Rates up", base),  # exact copy
        row(3, "Rates rise again", base.replace("thursday", "friday")),  # near copy, new title
        row(4, "Striker signs", "the striker signed a four year contract with the club after a long medical on monday"),
    ]
    kept, dropped = deduplicate(rows)
    assert [r["id"] for r in kept] == ["t-0001", "t-0004"]
    assert sorted((gone["id"], twin["id"]) for gone, twin, _ in dropped) == [("t-0002", "t-0001"), ("t-0003", "t-0001")]
    assert all(0.8 <= sim <= 1.0 for _, _, sim in dropped)


def test_split_is_fixed_disjoint_and_about_the_stated_share():
    rows = [row(i, f"Headline number {i} about something", "text") for i in range(2000)]
    train_part, test_part = split(rows)
    assert len(train_part) + len(test_part) == 2000
    assert {r["id"] for r in train_part}.isdisjoint({r["id"] for r in test_part})
    assert abs(len(test_part) / 2000 - HELD_OUT_PERCENT / 100) < 0.03
    # the rule reads the title only: renumbering ids or editing text does not move an article
    moved = [held_out({**r, "id": "x", "text": "other"}) for r in rows[:200]]
    assert moved == [held_out(r) for r in rows[:200]]
    assert held_out(row(1, "  Some   TITLE ", "a")) == held_out(row(2, "some title", "b"))


def test_lead_keeps_whole_sentences_within_bounds():
    text = "One two three four five six seven eight nine ten. " * 10
    cut = lead(text)
    assert 25 <= len(cut.split()) <= 60 and cut.endswith(".")
    assert lead("Short text only.") == "Short text only."
    assert len(lead("word " * 500).split()) == 60  # no sentence end: cut at the bound


def test_views_add_leads_for_long_articles_only():
    rows = [row(1, "Talks", LONG, d=1), row(2, "Brief", "Ministers met.", d=1)]
    pairs, group = views(rows, leads=True)
    assert group.tolist() == [0, 0, 1] and pairs[1][1] == lead(LONG) and pairs[1][0] == "Talks"
    assert views(rows, leads=False)[1].tolist() == [0, 1]


def test_validate_names_unusable_rows():
    rows = [row(1, "ok", "text", d=1), row(1, "again", "text"), {**row(3, "", ""), "sport": 2}]
    problems = validate(rows)
    assert any("no title and no text" in p for p in problems)
    assert any("'sport' is 2" in p for p in problems)
    assert any("'t-0001' is used 2 times" in p for p in problems)
    assert validate([row(1, "ok", "text")]) == []


def test_renumber_keeps_every_row_and_makes_ids_unique():
    rows = [{"id": "sp-0001"}, {"id": "sp-0002"}, {"id": "sp-0001"}, {"id": "sp-0002"}, {"id": "sp-0003"}]
    assert _renumber(rows) == 2
    ids = [r["id"] for r in rows]
    assert len(ids) == 5 and len(set(ids)) == 5 and ids[:2] == ["sp-0001", "sp-0002"]


def test_corpus_fix_renumbers_and_dedupes_files(tmp_path, capsys):
    a = [
        row(1, "A match", "the home side won the match two nil in front of a full stadium", s=1),
        row(2, "Vote", "parliament voted on the budget after a long debate in the chamber", p=1),
    ]
    b = [
        row(1, "Other match", "a late goal settled the derby and lifted the club to third place in the table", s=1),
        row(3, "Vote", "parliament voted on the budget after a long debate in the chamber", p=1),
    ]
    for name, rows in (("a.jsonl", a), ("b.jsonl", b)):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "b.jsonl").write_text(
        (tmp_path / "b.jsonl").read_text() + json.dumps(row(1, "Dup id", "text about tennis", s=1)) + "\n"
    )
    assert corpus_report(True, tmp_path) == 0
    out = [json.loads(line) for name in ("a.jsonl", "b.jsonl") for line in (tmp_path / name).read_text().splitlines()]
    assert len(out) == 4  # the copied vote dropped, nothing else
    ids = [r["id"] for r in out]
    assert len(set(ids)) == 4 and "Dup id" in {r["title"] for r in out}
    assert "repeated ids renumbered" in capsys.readouterr().out


def test_train_with_leads_and_evaluate_reports_buckets_and_mixups():
    data = toy_rows() + [row(100 + i, "Talks resume", LONG, d=1) for i in range(3)]
    model = train(data, folds=3, n_features=2**14)
    assert model.meta_["n_train"] == len(data) and model.meta_["lead_views"] == 3
    assert model.oof_.shape == (len(data), 3) and set(model.meta_["cv"]) >= {"micro_f1", "macro_f1", *TOPICS}
    result = evaluate(model, data[:8] + [row(200, "Shares fall", "markets fell", d=1)])
    assert result["rows"] == 9 and "short (<100 words)" in result["by_length"]
    lo, hi = result["micro_f1_ci"]
    assert lo <= result["micro_f1"] <= hi
    assert all(result[t]["f1_ci"][0] <= result[t]["f1"] <= result[t]["f1_ci"][1] for t in TOPICS)
    assert "micro_f1_ci" in result["by_length"]["short (<100 words)"]
    assert result["by_length"]["short (<100 words)"]["rows"] == 9
    assert any(m["labelled"] == "diplomacy" for m in result["mixups"])
    assert all(c["error"] in ("false positive", "false negative") for c in result["confusions"])


def test_train_refuses_unusable_data():
    with pytest.raises(ValueError, match="too few"):
        train(toy_rows()[:5])
    with pytest.raises(ValueError, match="needs at least 5 positive"):
        train([{**r, "sport": 0} for r in toy_rows()])
    with pytest.raises(ValueError, match="unusable rows"):
        train([{**r, "politics": 3} for r in toy_rows()])


def test_length_buckets():
    assert length_bucket({"text": "w " * 99}) == "short (<100 words)"
    assert length_bucket({"text": "w " * 100}) == "medium (100-299)"
    assert length_bucket({"text": "w " * 300}) == "long (300+)"


# -- the shipped corpus and artifact ------------------------------------------------
def test_starter_corpus_is_clean():
    rows = starter_rows()
    assert validate(rows) == []
    kept, dropped = deduplicate(rows)
    assert dropped == []
    counts = counts_by(kept)
    assert counts["rows"] >= 1000 and counts["none"] >= 300 and min(counts[t] for t in TOPICS) >= 150


def test_bundled_artifact_is_small_current_and_scored_on_the_held_out_part():
    from feedsift.workers.context import bundled_model_path

    path = bundled_model_path()
    assert path.stat().st_size < 20 * 2**20
    model = TopicModel.load(path)
    train_part, held = corpus()
    assert model.meta_["n_train"] == len(train_part)
    assert model.meta_["held_out"]["rows"] == len(held)
    assert model.meta_["held_out"]["micro_f1"] >= 0.85
    Y = labels(held)
    probs = model.predict_proba([model.document(r["title"], r["text"]) for r in held])
    assert np.mean((probs >= model.thresholds_) == Y.astype(bool)) > 0.9
