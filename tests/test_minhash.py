"""Unit tests of the sketches and the duplicate decision (models/minhash.py) and of the cleaning they rely on."""

from __future__ import annotations

import random
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest

from feedsift.models import minhash
from feedsift.models.minhash import (
    MemoryIndex,
    MinHasher,
    Record,
    Sketch,
    Verdict,
    codes,
    compare,
    containment,
    jaccard,
    lsh_probability,
)
from feedsift.models.text import normalise, remember_lines, strip_furniture, words
from feedsift.workers.feeds import parse
from tests.harness import ROOT

H = MinHasher()
VOCAB = [f"w{i}" for i in range(3000)]


def story(rng: random.Random, n: int = 200) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def th(i) -> str:
    return f"{i:016x}"


def test_codes_keep_order_and_resolution():
    v = np.array([0, 1, 4095, 4096, 4097, 8191, 8192, 1_000_000, 2**31, 2**32 - 1], dtype=np.uint64)
    c = codes(v).astype(np.int64)
    assert np.all(np.diff(c) >= 0) and c.max() < 2**16
    rng = np.random.default_rng(0)
    x = np.sort(rng.integers(0, 2**32, 5000, dtype=np.uint64))
    cx = codes(x).astype(np.int64)
    assert np.all(np.diff(cx) >= 0)
    # two distinct values share a code only when within 1/2048 of each other
    same = np.diff(cx) == 0
    assert np.all(np.diff(x.astype(np.float64))[same] <= x[1:][same] / 2048 + 1)


def test_normalisation_makes_copies_equal():
    a = "The minister said \u201cno\u201d \u2014 twice.\nRead the  full   statement\u2026"
    b = 'the Minister said "no" - twice. read the full statement...'
    assert np.array_equal(H.signature(a), H.signature(b))
    assert H.sketch(a).size == H.sketch(b).size


def test_signatures_are_the_same_in_another_process():
    text = "Kazakhstan and Uzbekistan sign a water-sharing accord on the Syr Darya river after talks"
    code = (
        "from feedsift.models.minhash import MinHasher; import sys; "
        f"sys.stdout.write(MinHasher().signature({text!r}).tobytes().hex())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
        check=True,
    ).stdout
    assert out == H.signature(text).tobytes().hex()


def test_compare_kinds():
    rng = random.Random(1)
    full = story(rng, 300)
    words = full.split()
    edited = " ".join(words[:100] + ["changed"] + words[101:200] + ["again"] + words[201:])
    excerpt = " ".join(words[:45])
    other = story(rng, 300)
    rec = lambda i, t: Record.unpack(H.record(th(i), th(hash(t) & 0xFFFFFFFF), H.sketch(t)), H.layout)  # noqa: E731
    v = Verdict()
    same = Record.unpack(H.record(th(2), th(hash(full) & 0xFFFFFFFF), H.sketch(full)), H.layout)
    assert compare(rec(1, full), same, v, H.lead_words) == ("exact", 1.0)
    kind, sim = compare(rec(3, edited), rec(1, full), v, H.lead_words)
    assert kind == "near" and sim >= 0.8
    for a, b in ((excerpt, full), (full, excerpt)):
        kind, sim = compare(rec(4, a), rec(5, b), v, H.lead_words)
        assert kind == "excerpt" and sim >= 0.85
    assert compare(rec(6, other), rec(1, full), v, H.lead_words)[0] == ""
    # the excerpt's own Jaccard similarity is far below the threshold: containment is what finds it
    assert jaccard(H.shingles(excerpt), H.shingles(full)) < 0.3


def match_report(home, away, scorer, keeper, g1, g2, crowd, minute) -> str:
    return (
        f"{home} beat {away} {g1}-{g2} on Saturday afternoon to climb into the top half of the table. "
        f"The home side started brightly and {scorer} opened the scoring after {minute} minutes with a low shot "
        f"from the edge of the area that went in off the post. The visitors had chances to level before the "
        f"break but {keeper} made two fine saves to keep them out. After the interval the pattern of the game "
        f"stayed the same, with the home side pressing and the visitors waiting for mistakes. "
        f"A crowd of {crowd} saw the home side hold on for a deserved win, their third in a row at home. "
        f"The manager said afterwards that he was pleased with the way his players had defended as a team."
    )


def test_light_edits_are_near_and_template_stories_are_not():
    base = match_report("Arsenal", "Chelsea", "Okafor", "Lindqvist", 2, 1, "31,204", 23)
    other = match_report("Fulham", "Burnley", "Ravelli", "Moreau", 3, 0, "18,117", 41)
    words = base.split()
    for i in range(5, len(words), 25):  # one word in 25 changed
        words[i] = "however"
    edited = " ".join(words)
    rec = lambda i, t: Record.unpack(H.record(th(i), th(i), H.sketch(t)), H.layout)  # noqa: E731
    kind, sim = compare(rec(1, edited), rec(2, base), Verdict(), H.lead_words)
    assert kind == "near" and sim < 0.8  # under the previous threshold, as such copy-edits are
    # the template story shares as many shingles; its other names and numbers keep it apart
    assert jaccard(H.shingles(other), H.shingles(base)) > 0.7
    assert compare(rec(3, other), rec(2, base), Verdict(), H.lead_words)[0] == ""


def test_containment_estimate_is_close():
    rng = np.random.default_rng(3)
    for a, b, x in ((40, 200, 40), (40, 200, 20), (100, 300, 90), (200, 200, 180)):
        sa = {zlib.crc32(b"%d" % i) for i in range(a)}
        sb = {zlib.crc32(b"%d" % i) for i in range(a - x, a - x + b)}
        est = []
        for _t in range(30):
            h = MinHasher(seed=int(rng.integers(1 << 30)))
            ca = codes(h._minimums(np.array(sorted(sa), dtype=np.uint64), h.num_perm)).astype(int)
            cb = codes(h._minimums(np.array(sorted(sb), dtype=np.uint64), h.num_perm)).astype(int)
            est.append(containment(int((ca == cb).sum()), int((ca < cb).sum()), int((ca > cb).sum()), a, b))
        assert abs(np.mean(est) - x / a) < 0.06, (a, b, x, np.mean(est))


def test_memory_index_excerpt_either_order_and_earliest_is_canonical():
    rng = random.Random(2)
    full = story(rng, 250)
    excerpt = " ".join(full.split()[:40]) + " ..."
    for order in ((full, excerpt), (excerpt, full)):
        idx = MemoryIndex(H)
        first = idx.add("a1", th(1), H.sketch(order[0]))[0]
        second = idx.add("a2", th(2), H.sketch(order[1]))[0]
        assert first.duplicate_of == "" and first.seq == 1
        assert (second.duplicate_of, second.kind, second.cluster) == ("a1", "excerpt", "a1")
    tiny = " ".join(full.split()[: Verdict().excerpt_words - 1])  # too short to call anything an excerpt of it
    idx = MemoryIndex(H)
    idx.add("a1", th(1), H.sketch(full))
    assert idx.add("a2", th(2), H.sketch(tiny))[0].kind == ""


def test_clusters_point_to_the_earliest():
    rng = random.Random(5)
    base = story(rng, 200).split()
    idx = MemoryIndex(H)
    ids = []
    for i in range(4):
        w = list(base)
        w[20 * i + 5] = "x"  # each copy differs from the first by one word
        ids.append(idx.add(f"c{i}", th(i + 1), H.sketch(" ".join(w)))[0])
    assert ids[0].cluster == "" and all(d.cluster == "c0" for d in ids[1:])


def test_default_bands_catch_threshold_pairs():
    assert lsh_probability(0.8, H.bands, H.rows) > 0.999
    assert lsh_probability(Verdict().near + 0.05, H.bands, H.rows) > 0.99  # candidates at the threshold
    assert lsh_probability(0.1, H.bands, H.rows) < 0.05  # few chance candidates
    assert H.record_size + 8 * H.keys_per_article < 1024


@pytest.mark.parametrize("bad", ["", "x" * 17])
def test_record_rejects_unusable_ids(bad):
    with pytest.raises(ValueError):
        H.record(bad, th(1), H.sketch("a b c d"))


def test_record_round_trip():
    sk = H.sketch("one two three four five six")
    rec = Record.unpack(H.record("abc", th(7), sk), H.layout)
    assert (rec.id, rec.hash, rec.size, rec.words) == ("abc", bytes.fromhex(th(7)), sk.size, 6)
    assert np.array_equal(rec.codes, codes(sk.sig)) and np.array_equal(rec.names, codes(sk.names))


def one_by_one(h: MinHasher, text: str) -> Sketch:
    """A text's sketch from the single-text steps, as `sketch` computed it before batches."""
    text = normalise(text)
    tokens = words(text)
    t = minhash._word_crc(tokens)
    grams = h._grams(t)
    key = None
    if len(tokens) >= h.lead_key_words:
        key = zlib.crc32(" ".join(tokens[: h.lead_key_words]).encode(), 0x1EAD)
    return Sketch(
        h._minimums(grams, h.num_perm),
        h._minimums(minhash._crc(list(minhash.names_and_numbers(text)), b"n\0"), h.name_perm),
        (t[: h.lead_words] & np.uint64(0xFFFF)).astype(np.uint16),
        key,
        int(grams.size),
        len(tokens),
        minhash._hash_words(tokens),
    )


@pytest.mark.parametrize("product", [None, 1, 96 * 5])  # one product for the batch, one per value, a few
def test_batch_sketches_equal_one_by_one(monkeypatch, product):
    if product:
        monkeypatch.setattr(minhash, "_PRODUCT", product)
    rng = random.Random(3)
    texts = [
        "",
        "   ",
        "...!",
        "word",
        "two words",
        "a b c",
        "the the the the the the the the",  # one distinct gram
        "Le café de Zoë à Zürich: 3 crème brûlées, ÄÖÜ ß, 東京 2024",
        "Arsenal beat Chelsea 3-1 at the Emirates on 12 May, said O'Neill (Reuters) in London.",
        story(rng, 8),
        story(rng, 40),
        story(rng, 2000),
    ]
    texts += [rng.choice(texts) for _ in range(40)]
    for h in (H, MinHasher(num_perm=64, bands=16, shingle=2, name_perm=16, lead_words=8, lead_key_words=4)):
        got = h.sketches(texts)
        assert len(got) == len(texts) and h.sketches([]) == []
        for text, sk in zip(texts, got):
            ref = one_by_one(h, text)
            for f in ("sig", "names", "lead"):
                a, b = getattr(sk, f), getattr(ref, f)
                assert a.dtype == b.dtype and np.array_equal(a, b), (text[:30], f)
            assert (sk.lead_key, sk.size, sk.words, sk.text_hash) == (ref.lead_key, ref.size, ref.words, ref.text_hash)
            assert h.record("a", sk.text_hash, sk) == h.record("a", ref.text_hash, ref)
            assert h.sketch(text).text_hash == sk.text_hash and np.array_equal(h.sketch(text).sig, sk.sig)


# -- cleaning that holds across polls ----------------------------------------------
PODCAST = "Listen to our Morning Briefing podcast every weekday."


def rss(items: list[tuple[str, str]]) -> bytes:
    body = "".join(
        f"<item><title>{t}</title><guid>g-{t}</guid><description><![CDATA[{d}]]></description></item>" for t, d in items
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title><link>http://s.example/</link>{body}</channel></rss>'.encode()


def test_feed_boilerplate_is_remembered_across_polls():
    items = [(f"story {i}", f"<p>Story number {i} is about topic {i}.</p><p>{PODCAST}</p>") for i in range(5)]
    first = parse(rss(items), "f", "http://s.example/feed", time.time(), 100, 10_000)
    assert first.boilerplate and all(PODCAST not in a.text for a in first.articles)
    known = remember_lines([], first.boilerplate)
    # a later poll brings one new article: too few to learn from, the remembered lines still apply
    later = [("story 9", f"<p>Story number 9 is new.</p><p>{PODCAST}</p>")]
    alone = parse(rss(later), "f", "http://s.example/feed", time.time(), 100, 10_000)
    assert PODCAST in alone.articles[0].text
    again = parse(
        rss(later), "f", "http://s.example/feed", time.time(), 100, 10_000, known_boilerplate=frozenset(known)
    )
    assert again.articles[0].text == "Story number 9 is new."


def test_remember_lines_keeps_newest():
    assert remember_lines(["a", "b"], {"b", "c"}) == ["a", "b", "c"]
    assert remember_lines([str(i) for i in range(10)], {"x"}, limit=3) == ["8", "9", "x"]
    assert strip_furniture("keep this\nfollow us on mastodon\nthe end", frozenset({"the end"})) == "keep this"
