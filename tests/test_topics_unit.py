"""The topic model as pure code: training, thresholds, persistence without pickle."""

import io
import json

import numpy as np
import pytest

from models.topics import TopicModel, best_threshold, labels, scores

SPORT = ["striker scores twice as club wins league title", "tennis champion wins final in straight sets",
         "coach sacked after cup defeat", "sprinter breaks world record at athletics meeting",
         "goalkeeper saves penalty in derby match", "cyclist wins mountain stage of the tour"]
POLITICS = ["parliament passes budget after long debate", "opposition party wins regional election",
            "prime minister reshuffles cabinet amid scandal", "senate rejects tax bill in close vote",
            "minister resigns over housing policy row", "voters go to the polls in local elections"]
DIPLOMACY = ["foreign ministers sign trade treaty at summit", "ambassador summoned over border dispute",
             "security council adopts resolution on ceasefire talks", "envoy opens embassy after normalisation deal",
             "leaders hold summit to ease sanctions", "peace talks resume with mediators in geneva"]
NONE = ["shares fall as oil prices climb", "storm floods coastal towns", "new phone chip doubles battery life",
        "museum opens exhibition of ancient pottery", "police arrest suspects in bank robbery", "scientists map deep sea vents"]


def rows():
    out = []
    for topic, texts in (("sport", SPORT), ("politics", POLITICS), ("diplomacy", DIPLOMACY), (None, NONE)):
        for i, t in enumerate(texts * 2):
            out.append({"title": t.split()[0].title() + f" story {i}", "text": t,
                        "diplomacy": int(topic == "diplomacy"), "sport": int(topic == "sport"), "politics": int(topic == "politics")})
    return out


@pytest.fixture(scope="module")
def model():
    data = rows()
    m = TopicModel(n_features=2**16)
    return m.fit([m.document(r["title"], r["text"]) for r in data], labels(data), folds=3)


def test_learns_each_topic(model):
    docs = [model.document("", "the striker scored in the cup final"), model.document("", "the senate passed the bill after debate"),
            model.document("", "the ambassador attended the summit on sanctions"), model.document("", "oil prices and shares fell")]
    tags = model.tags(model.predict_proba(docs))
    assert tags[0] == ["sport"] and tags[1] == ["politics"] and tags[2] == ["diplomacy"] and tags[3] == []


def test_round_trip_is_exact_and_pickle_free(model, tmp_path):
    path = tmp_path / "m.npz"
    version = model.save(path)
    loaded = TopicModel.load(path)
    docs = [model.document("Title", t) for t in SPORT + NONE]
    np.testing.assert_allclose(loaded.predict_proba(docs), model.predict_proba(docs), rtol=1e-5, atol=1e-6)
    assert loaded.version == version and list(loaded.thresholds_) == list(model.thresholds_)
    with np.load(path, allow_pickle=False) as z:  # would raise on object arrays
        assert all(z[name].dtype != object for name in z.files)


def test_refuses_foreign_archives(tmp_path):
    buf = io.BytesIO()
    np.savez(buf, header=np.frombuffer(json.dumps({"format": "other"}).encode(), dtype=np.uint8))
    with pytest.raises(ValueError, match="not a feedsift topic model"):
        TopicModel.from_bytes(buf.getvalue())


def test_explain_names_the_terms_that_push(model):
    why = model.explain(model.document("", "the striker scored a goal in the cup final"))
    assert why["sport"] and why["sport"][0][1] > 0
    assert any(term in ("striker", "cup") for term, _ in why["sport"])


def test_best_threshold_maximises_f1():
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.1, 0.45, 0.5, 0.8, 0.9])
    assert 0.45 < best_threshold(y, p) <= 0.5


def test_scores_micro_and_macro():
    Y = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]])
    P = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 1], [0, 0, 0]])
    s = scores(Y, P)
    assert s["diplomacy"]["f1"] == 1.0 and s["politics"]["precision"] == 0.5
    assert s["micro_f1"] == round(2 * 3 / (2 * 3 + 1), 4)


def test_labels_require_every_topic():
    with pytest.raises(ValueError, match="row without label"):
        labels([{"title": "x", "text": "y", "sport": 1}])
