"""Pretrained word vectors in the topic model: loading, caching, persistence, and what they add."""

import numpy as np
import pytest

from feedsift.models import embeddings
from feedsift.models.topics import VECTOR_TERM, TopicModel, labels, tokens
from tests.test_topics_unit import NONE, SPORT, rows

VECTORS = embeddings.NAME


def embed(wv, docs):
    toks = [tokens(d) for d in docs]
    return wv.embed([t for ts in toks for t in ts], np.array([len(ts) for ts in toks]))


def cosine(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_document_vectors_are_unit_length_and_independent_of_the_batch():
    wv = embeddings.word_vectors()
    docs = ["Striker scores twice in the derby", "Foreign ministers meet in Geneva", ""]
    E = embed(wv, docs)
    assert E.shape == (3, embeddings.DIMS[VECTORS])
    np.testing.assert_allclose(np.linalg.norm(E[:2], axis=1), 1.0, rtol=1e-5)
    assert not E[2].any()  # no words, no direction
    np.testing.assert_allclose(embed(wv, docs[1:2])[0], E[1], rtol=1e-6)


def test_cache_eviction_changes_nothing(monkeypatch):
    docs = ["the pitcher threw a no hitter", "the senate confirmed the nominee", "ceasefire talks resume in doha"]
    want = embed(embeddings.WordVectors(), docs)
    monkeypatch.setattr(embeddings, "_CACHE_MAX", 8)
    small = embeddings.WordVectors()
    for _ in range(2):
        np.testing.assert_allclose(embed(small, docs), want, rtol=1e-6)
    assert len(small._index) <= 8 + len(set(tokens(" ".join(docs))))


def test_another_table_behind_the_same_cache():
    wv = embeddings.word_vectors()
    docs = ["the pitcher threw a no hitter", "ceasefire talks resume in doha"]
    same = embeddings.WordVectors.from_table(wv.table, wv.tokenizer, wv.digest)
    np.testing.assert_allclose(embed(same, docs), embed(wv, docs), rtol=1e-6)
    flipped = embeddings.WordVectors.from_table(-wv.table, wv.tokenizer, "flipped")
    np.testing.assert_allclose(embed(flipped, docs), -embed(wv, docs), rtol=1e-6)


def test_vectors_place_unseen_words_by_meaning():
    wv = embeddings.word_vectors()
    baseball, football, treaty = embed(
        wv,
        ["pitcher inning homer shortstop", "striker goalkeeper penalty midfielder", "ambassador treaty embassy envoy"],
    )
    assert cosine(baseball, football) > cosine(baseball, treaty) + 0.1


def test_unknown_vectors_are_refused():
    with pytest.raises(ValueError, match="unknown word vectors"):
        embeddings.WordVectors("glove-42")


@pytest.fixture(scope="module")
def pair():
    data = rows()
    out = {}
    for wv in (None, VECTORS):
        m = TopicModel(n_features=2**16, word_vectors=wv, vector_weight=4.0)  # a toy corpus needs a strong pull
        out[wv] = m.fit([m.document(r["title"], r["text"]) for r in data], labels(data), folds=3)
    return out


def test_vectors_carry_a_topic_to_words_training_never_saw(pair):
    # none of these words occurs in the training rows
    doc = "Pitcher homers; shortstop, outfielder rally late, ninth inning"
    assert not set(tokens(doc)) & set(tokens(" ".join(r["title"] + " " + r["text"] for r in rows())))
    sport = {wv: m.predict_proba([m.document("", doc)])[0, 1] for wv, m in pair.items()}
    assert sport[VECTORS] > pair[VECTORS].thresholds_[1] > sport[None]


def test_round_trip_keeps_vectors_and_explains_them(pair, tmp_path):
    m = pair[VECTORS]
    m.save(tmp_path / "m.npz")
    loaded = TopicModel.load(tmp_path / "m.npz")
    docs = [m.document("Title", t) for t in SPORT + NONE]
    np.testing.assert_allclose(loaded.predict_proba(docs), m.predict_proba(docs), rtol=1e-5, atol=1e-6)
    assert loaded.word_vectors == VECTORS and loaded.width == m.width == 2**16 + 256
    why = loaded.explain(m.document("", SPORT[0]))["sport"]
    assert VECTOR_TERM in [term for term, _ in why["up"] + why["down"]]


def test_model_refuses_other_vectors_than_it_was_trained_with(pair, tmp_path):
    m = pair[VECTORS]
    m.save(tmp_path / "m.npz")
    loaded = TopicModel.load(tmp_path / "m.npz")
    loaded.meta_["word_vectors_sha256"] = "0" * 16
    with pytest.raises(RuntimeError, match="retrain"):
        loaded.predict_proba(["anything"])
