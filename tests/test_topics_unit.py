"""The topic model as pure code: training, thresholds, persistence without pickle."""

import io
import json

import numpy as np
import pytest

from feedsift.models.fitting import fold_splits
from feedsift.models.metrics import best_threshold, difference, intervals, scores
from feedsift.models.topics import TopicModel, labels

SPORT = [
    "striker scores twice as club wins league title",
    "tennis champion wins final in straight sets",
    "coach sacked after cup defeat",
    "sprinter breaks world record at athletics meeting",
    "goalkeeper saves penalty in derby match",
    "cyclist wins mountain stage of the tour",
]
POLITICS = [
    "parliament passes budget after long debate",
    "opposition party wins regional election",
    "prime minister reshuffles cabinet amid scandal",
    "senate rejects tax bill in close vote",
    "minister resigns over housing policy row",
    "voters go to the polls in local elections",
]
DIPLOMACY = [
    "foreign ministers sign trade treaty at summit",
    "ambassador summoned over border dispute",
    "security council adopts resolution on ceasefire talks",
    "envoy opens embassy after normalisation deal",
    "leaders hold summit to ease sanctions",
    "peace talks resume with mediators in geneva",
]
NONE = [
    "shares fall as oil prices climb",
    "storm floods coastal towns",
    "new phone chip doubles battery life",
    "museum opens exhibition of ancient pottery",
    "police arrest suspects in bank robbery",
    "scientists map deep sea vents",
]


def rows():
    out = []
    for topic, texts in (("sport", SPORT), ("politics", POLITICS), ("diplomacy", DIPLOMACY), (None, NONE)):
        for i, t in enumerate(texts * 2):
            out.append(
                {
                    "title": t.split()[0].title() + f" story {i}",
                    "text": t,
                    "diplomacy": int(topic == "diplomacy"),
                    "sport": int(topic == "sport"),
                    "politics": int(topic == "politics"),
                }
            )
    return out


@pytest.fixture(scope="module")
def model():
    data = rows()
    m = TopicModel(n_features=2**16)
    return m.fit([m.document(r["title"], r["text"]) for r in data], labels(data), folds=3)


def test_learns_each_topic(model):
    docs = [
        model.document("", "the striker scored in the cup final"),
        model.document("", "the senate passed the bill after debate"),
        model.document("", "the ambassador attended the summit on sanctions"),
        model.document("", "oil prices and shares fell"),
    ]
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
    sport = why["sport"]
    assert sport["up"] and all(w > 0 for _, w in sport["up"]) and all(w < 0 for _, w in why["politics"]["down"])
    assert any(term in ("striker", "cup", "cup final") for term, _ in sport["up"])
    assert sport["tagged"] == (sport["probability"] >= sport["threshold"])
    p = model.predict_proba([model.document("", "the striker scored a goal in the cup final")])[0, 1]
    assert sport["probability"] == pytest.approx(p, abs=1e-4)


def test_explain_terms_are_the_columns_counts_uses():
    m = TopicModel(n_features=2**12, word_ngrams=(1, 2), word_vectors=None)
    doc = "Ministers met envoys; the envoys met again"
    cols = set(m.counts([doc]).indices.tolist())
    assert set(m._terms(doc).values()) == cols
    assert "ministers met" in m._terms(doc) and "envoys" in m._terms(doc)


def test_counts_are_sublinear_and_ngram_aware():
    m = TopicModel(n_features=2**16, word_ngrams=(1, 2), word_vectors=None)
    X = m.counts(["goal goal goal", "goal"])
    assert X.shape == (2, 2**16)
    row0 = dict(zip(X[0].indices.tolist(), X[0].data.tolist()))
    assert len(row0) == 2  # "goal" and "goal goal"
    assert max(row0.values()) == pytest.approx(1 + np.log(3), rel=1e-5)
    assert X[1].nnz == 1
    uni = TopicModel(n_features=2**16, word_ngrams=(1, 1), word_vectors=None)
    assert uni.counts(["goal goal goal"]).nnz == 1


def test_documents_fold_unicode_only_when_needed():
    m = TopicModel()
    assert m.document("Title", "plain text") == "Title Title plain text"
    assert m.document("\u201cQuoted\u201d", "caf\u00e9  \uff21") == '"Quoted" "Quoted" caf\u00e9 A'


@pytest.mark.parametrize("classifier", ["svm", "sgd"])
def test_other_learners_round_trip_as_plain_arrays(classifier, tmp_path):
    data = rows()
    m = TopicModel(n_features=2**14, classifier=classifier, C=0.5)
    m.fit([m.document(r["title"], r["text"]) for r in data], labels(data), folds=3)
    assert m.calib_.shape == (3, 2)
    if classifier == "svm":
        assert np.all(m.calib_[:, 0] < 0)  # a sigmoid fitted on the SVM scores, increasing in the score
    else:
        assert np.all(m.calib_ == np.array([-1.0, 0.0], dtype=np.float32))
    m.save(tmp_path / "m.npz")
    loaded = TopicModel.load(tmp_path / "m.npz")
    docs = [m.document("", t) for t in SPORT + POLITICS]
    np.testing.assert_allclose(loaded.predict_proba(docs), m.predict_proba(docs), rtol=1e-5, atol=1e-6)
    assert loaded.classifier == classifier and loaded.version == m.version
    tags = loaded.tags(loaded.predict_proba([loaded.document("", SPORT[0])]))
    assert tags == [["sport"]]


def test_refuses_older_format(tmp_path):
    buf = io.BytesIO()
    np.savez(buf, header=np.frombuffer(json.dumps({"format": "feedsift-topics/1"}).encode(), dtype=np.uint8))
    with pytest.raises(ValueError, match="retrain"):
        TopicModel.from_bytes(buf.getvalue())


def test_unknown_learner_is_refused():
    with pytest.raises(ValueError, match="classifier"):
        TopicModel(classifier="forest")


def test_fold_splits_keep_groups_together():
    group = np.repeat(np.arange(20), 2)
    splits = fold_splits(len(group), 5, seed=0, group=group)
    assert len(splits) == 5
    tested = np.concatenate([test for _, test in splits])
    assert sorted(tested.tolist()) == list(range(40))
    for train, test in splits:
        assert not set(group[train]) & set(group[test])


def test_best_threshold_maximises_f1():
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.1, 0.45, 0.5, 0.8, 0.9])
    assert 0.45 < best_threshold(y, p) <= 0.5
    # of equally good cuts, the lowest (recall first when nothing else decides)
    assert best_threshold(np.array([0, 1]), np.array([0.2, 0.8])) == pytest.approx(0.21, abs=1e-6)


def test_scores_micro_and_macro():
    Y = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]])
    P = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 1], [0, 0, 0]])
    s = scores(Y, P)
    assert s["diplomacy"]["f1"] == 1.0 and s["politics"]["precision"] == 0.5
    assert s["micro_f1"] == round(2 * 3 / (2 * 3 + 1), 4)


def test_intervals_bracket_the_figures_and_narrow_with_certainty():
    rng = np.random.default_rng(3)
    Y = rng.random((200, 3)) < 0.3
    noisy = Y ^ (rng.random((200, 3)) < 0.15)
    s, ci = scores(Y, noisy), intervals(Y, noisy)
    assert ci["micro_f1"][0] < s["micro_f1"] < ci["micro_f1"][1]
    for t in ("diplomacy", "sport", "politics"):
        assert ci[t][0] < s[t]["f1"] < ci[t][1] and ci[t][1] - ci[t][0] < 0.4
    assert intervals(Y, Y)["micro_f1"] == [1.0, 1.0]


def test_paired_difference_tells_a_better_tagger_from_a_tie():
    rng = np.random.default_rng(4)
    Y = rng.random((300, 3)) < 0.3
    worse = Y ^ (rng.random((300, 3)) < 0.2)
    lo, hi = difference(Y, Y, worse)
    assert 0 < lo < hi
    assert difference(Y, worse, worse) == [0.0, 0.0]
    slightly = worse.copy()
    slightly[0] = Y[0]  # one article put right: not a difference this data can show
    lo, hi = difference(Y, slightly, worse)
    assert lo <= 0 <= hi


def test_labels_require_every_topic():
    with pytest.raises(ValueError, match="row without label"):
        labels([{"title": "x", "text": "y", "sport": 1}])
