"""Duplicate detection benchmark: feedsift's Redis index against datasketch's MinHashLSH.

One run, one generated article set, one set of signatures: every system gets
the same MinHash values and the same bands. Prints, per system, throughput
(signature + query + insert, articles/s), Redis bytes per article, and
precision/recall against the exact Jaccard similarity (and containment, for
excerpts) of every pair, computed by brute force; then a sweep over feedsift's
parameters (permutations, bands, shingle size).

    .venv/bin/python bench/dedup.py [--originals 3000] [--seed 7] [--no-sweep]

The text is generated here from word lists and sentence patterns written for
this benchmark: stories about a subject, and copies of them with the edits
feeds make (re-titled, footer added, paragraph added or removed, words
changed, typography changed, excerpt), plus different stories on the same
subject as hard negatives.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import redis
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from feedsift.models.minhash import EXCERPT_MAX_RATIO, MIN_EXCERPT_SHINGLES, MinHasher
from feedsift.models.text import normalise, strip_furniture, words
from feedsift.workers.embedded import EmbeddedRedis
from feedsift.workers.index import EXCERPT_CONTAINMENT, DuplicateIndex, Item
from feedsift.workers.keys import Keys

THRESHOLD = 0.8

# -- text generation ----------------------------------------------------------------
PLACES = [
    "Astana",
    "Almaty",
    "Tashkent",
    "Bishkek",
    "Dushanbe",
    "Ashgabat",
    "Baku",
    "Tbilisi",
    "Yerevan",
    "Ankara",
    "Lisbon",
    "Madrid",
    "Dublin",
    "Oslo",
    "Turin",
    "Krakow",
    "Quito",
    "Lima",
    "Santiago",
    "Nairobi",
    "Accra",
    "Dakar",
    "Hanoi",
    "Manila",
    "Jakarta",
    "Perth",
    "Auckland",
    "Montreal",
    "Denver",
    "Porto",
]
PEOPLE = [
    "Lindqvist",
    "Ravelli",
    "Kimutai",
    "Alemayehu",
    "Nurlanov",
    "Petrova",
    "Okafor",
    "Moreau",
    "Santos",
    "Haddad",
    "Tanaka",
    "Kowalski",
    "Brennan",
    "Abenova",
    "Rahimov",
    "Costa",
    "Varga",
    "Novak",
    "Dubois",
    "Mensah",
    "Ortega",
    "Sato",
    "Lindgren",
    "Fischer",
    "Rossi",
    "Baptiste",
    "Osei",
    "Ivanova",
]
ORGS = [
    "ministry",
    "parliament",
    "senate",
    "council",
    "court",
    "union",
    "federation",
    "club",
    "league",
    "committee",
    "commission",
    "agency",
    "government",
    "opposition",
    "coalition",
    "cabinet",
    "embassy",
    "delegation",
    "board",
    "regulator",
]
TOPIC_WORDS = {
    "diplomacy": [
        "talks",
        "treaty",
        "accord",
        "ambassador",
        "summit",
        "sanctions",
        "border",
        "envoy",
        "visit",
        "agreement",
        "ceasefire",
        "negotiations",
    ],
    "sport": [
        "match",
        "season",
        "final",
        "goal",
        "coach",
        "striker",
        "title",
        "tournament",
        "champion",
        "race",
        "medal",
        "squad",
    ],
    "politics": [
        "election",
        "vote",
        "bill",
        "reform",
        "budget",
        "minister",
        "party",
        "campaign",
        "law",
        "referendum",
        "mandate",
        "coalition",
    ],
    "business": [
        "shares",
        "profit",
        "output",
        "prices",
        "market",
        "exports",
        "forecast",
        "investors",
        "plant",
        "contract",
        "loan",
        "merger",
    ],
    "weather": [
        "storm",
        "snow",
        "floods",
        "highway",
        "drivers",
        "rescue",
        "temperatures",
        "warning",
        "roads",
        "power",
        "outage",
        "blizzard",
    ],
}
VERBS = [
    "said",
    "announced",
    "confirmed",
    "warned",
    "agreed",
    "rejected",
    "approved",
    "signed",
    "criticised",
    "praised",
    "delayed",
    "welcomed",
    "questioned",
    "backed",
    "proposed",
    "denied",
    "expected",
    "reported",
]
ADVERBS = [
    "on Monday",
    "on Tuesday",
    "on Wednesday",
    "on Thursday",
    "on Friday",
    "on Saturday",
    "on Sunday",
    "late on Sunday",
    "earlier this week",
    "after a long debate",
    "in a statement",
    "at a news conference",
    "for the first time",
    "despite strong objections",
    "under pressure from critics",
    "after months of delays",
]
PATTERNS = (
    "{P} {V} {A} that the {O} would {v2} the {T} before the end of the year.",
    "The {O} in {L} {V} the {T} {A}, according to officials familiar with the matter.",
    "{P} told reporters in {L} that the {T} was {adj} and that the {O} had {v3} its position.",
    "Officials {V} the {T} {A}, saying it would affect about {N} people across {L}.",
    "Critics of the {O} said the {T} came too late, while supporters called it a {adj} step.",
    "The {T} follows a {adj} {T2} in {L} last month, when {P} {V} the {O}.",
    "{N} members of the {O} {V} the {T}, {N2} more than at the previous session.",
    "According to {P}, the {O} will review the {T} again in {N} days.",
    "Asked about the {T2}, {P} said the {O} in {L} was not ready to comment.",
    "The decision on the {T} was {V} by the {O} {A} and takes effect in {L} next week.",
)
ADJ = [
    "historic",
    "difficult",
    "modest",
    "surprising",
    "welcome",
    "bold",
    "cautious",
    "costly",
    "controversial",
    "decisive",
    "rare",
    "major",
]
V2 = ["approve", "delay", "review", "sign", "reject", "extend", "revise", "finance", "suspend", "publish"]
V3 = ["softened", "hardened", "changed", "restated", "defended", "clarified", "reversed"]


class Writer:
    def __init__(self, rng: random.Random):
        self.rng = rng

    def subject(self) -> dict:
        r = self.rng
        topic = r.choice(list(TOPIC_WORDS))
        return {"topic": topic, "people": r.sample(PEOPLE, 2), "place": r.choice(PLACES), "org": r.choice(ORGS)}

    def sentence(self, s: dict) -> str:
        r = self.rng
        t = TOPIC_WORDS[s["topic"]]
        return r.choice(PATTERNS).format(
            P=r.choice(s["people"]),
            V=r.choice(VERBS),
            A=r.choice(ADVERBS),
            O=s["org"] if r.random() < 0.7 else r.choice(ORGS),
            T=r.choice(t),
            T2=r.choice(t),
            L=s["place"] if r.random() < 0.7 else r.choice(PLACES),
            adj=r.choice(ADJ),
            v2=r.choice(V2),
            v3=r.choice(V3),
            N=r.randint(2, 999),
            N2=r.randint(2, 99),
        )

    def paragraph(self, s: dict) -> str:
        return " ".join(self.sentence(s) for _ in range(self.rng.randint(2, 4)))

    def story(self, s: dict) -> list[str]:
        return [self.paragraph(s) for _ in range(self.rng.randint(3, 8))]


def typographic(text: str) -> str:
    return text.replace("'", "\u2019").replace(" - ", " \u2014 ").replace("said", "SAID")


def generate(seed: int, originals: int):
    """Articles (id, raw text) and the planted relation of each copy: (copy id, original id, edit)."""
    rng = random.Random(seed)
    w = Writer(rng)
    docs: list[tuple[str, str]] = []
    planted: list[tuple[str, str, str]] = []
    edits = [
        "retitled",
        "footer",
        "typography",
        "para_added",
        "para_removed",
        "words_changed",
        "words_changed",
        "excerpt",
        "excerpt",
        "same_subject",
        "none",
        "none",
    ]
    for i in range(originals):
        subject = w.subject()
        paras = w.story(subject)
        oid = f"o{i}"
        docs.append((oid, "\n".join(paras)))
        edit = edits[i % len(edits)]
        cid = f"c{i}"
        if edit == "none":
            continue
        if edit == "retitled":
            text = "\n".join(paras)
        elif edit == "footer":
            text = "\n".join(
                paras
                + [
                    f"The post {subject['place']} {subject['topic']} update appeared first on Wire {i % 7}.",
                    "Follow us on Mastodon for more.",
                ]
            )
        elif edit == "typography":
            text = typographic("\n".join(paras))
        elif edit == "para_added":
            extra = list(paras)
            extra.insert(rng.randint(1, len(paras)), w.paragraph(subject))
            text = "\n".join(extra)
        elif edit == "para_removed":
            if len(paras) < 4:
                continue
            fewer = list(paras)
            del fewer[rng.randint(1, len(paras) - 1)]
            text = "\n".join(fewer)
        elif edit == "words_changed":
            toks = "\n".join(paras).split(" ")
            for _ in range(rng.randint(1, max(2, len(toks) // 12))):
                toks[rng.randrange(len(toks))] = rng.choice(ADJ + V2 + PEOPLE)
            text = " ".join(toks)
        elif edit == "excerpt":
            if rng.random() < 0.5:
                text = paras[0]
            else:
                text = " ".join(" ".join(paras).split()[: rng.randint(30, 60)]) + " [\u2026]"
        else:  # same_subject: a different story about the same people, place and topic
            text = "\n".join(w.story(subject))
        docs.append((cid, text))
        planted.append((cid, oid, edit))
    order = list(range(len(docs)))
    rng.shuffle(order)
    return [docs[k] for k in order], planted


def clean(text: str) -> str:
    return strip_furniture("\n".join(normalise(line) for line in text.split("\n")))


# -- ground truth ----------------------------------------------------------------
def truth(sets: list[np.ndarray], min_j: float = 0.3):
    """Every pair with exact Jaccard >= min_j or containment >= 0.5: {(i, j): (jaccard, containment)}."""
    vocab: dict[int, int] = {}
    rows, cols = [], []
    for i, s in enumerate(sets):
        for x in s.tolist():
            rows.append(i)
            cols.append(vocab.setdefault(x, len(vocab)))
    n = len(sets)
    m = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n, len(vocab)))
    sizes = np.array([len(s) for s in sets], dtype=np.float64)
    mt = m.T.tocsc()
    out = {}
    for start in range(0, n, 500):
        inter = (m[start : start + 500] @ mt).toarray()
        for a in range(inter.shape[0]):
            i = start + a
            row = inter[a]
            js = np.nonzero(row[i + 1 :])[0] + i + 1
            if js.size == 0:
                continue
            x = row[js]
            jac = x / (sizes[i] + sizes[js] - x)
            con = x / np.maximum(1, np.minimum(sizes[i], sizes[js]))
            keep = (jac >= min_j) | (con >= 0.5)
            for j, jj, cc in zip(js[keep].tolist(), jac[keep].tolist(), con[keep].tolist()):
                out[(i, j)] = (jj, cc)
    return out


def positive(j: float, c: float, small: int, large: int) -> bool:
    """A true duplicate: Jaccard at the threshold, or the shorter text (a real excerpt: 10 shingles to 90% of the
    longer) contained in the longer at the excerpt threshold."""
    return j >= THRESHOLD or (c >= EXCERPT_CONTAINMENT and MIN_EXCERPT_SHINGLES <= small <= EXCERPT_MAX_RATIO * large)


class Clusters:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)


def score(name: str, links: list[tuple[int, int]], pairs: dict, sizes: list[int], planted_idx, n: int) -> dict:
    cl = Clusters(n)
    for a, b in links:
        cl.union(a, b)
    correct = 0
    for a, b in links:
        key = (min(a, b), max(a, b))
        j, c = pairs.get(key, (0.0, 0.0))
        correct += positive(j, c, min(sizes[a], sizes[b]), max(sizes[a], sizes[b]))
    buckets = defaultdict(lambda: [0, 0])
    edges = [0.0, 0.3, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0001]
    near_tot = near_found = 0
    for (a, b), (j, _c) in pairs.items():
        found = cl.find(a) == cl.find(b)
        k = max(e for e in edges if e <= j)
        buckets[k][0] += 1
        buckets[k][1] += found
        if j >= THRESHOLD:
            near_tot += 1
            near_found += found
    ex = [(a, b) for a, b, e in planted_idx if e == "excerpt"]
    ex_found = sum(cl.find(a) == cl.find(b) for a, b in ex)
    neg = [(a, b) for a, b, e in planted_idx if e == "same_subject"]
    neg_flagged = sum(cl.find(a) == cl.find(b) for a, b in neg)
    return {
        "name": name,
        "links": len(links),
        "precision": correct / len(links) if links else 1.0,
        "recall_near": near_found / near_tot if near_tot else 1.0,
        "near_pairs": near_tot,
        "recall_excerpt": ex_found / len(ex) if ex else 1.0,
        "excerpts": len(ex),
        "same_subject_flagged": neg_flagged,
        "same_subject": len(neg),
        "buckets": {k: tuple(v) for k, v in sorted(buckets.items())},
    }


# -- systems -------------------------------------------------------------------------
def run_ours(r: redis.Redis, hasher: MinHasher, texts, ids, text_hashes, prefix: str, batch: int = 50):
    t0 = time.perf_counter()
    sketches = [hasher.sketch(t) for t in texts]
    t_sig = time.perf_counter() - t0
    index = DuplicateIndex(r, Keys(prefix), hasher, THRESHOLD, 30)
    pos = {a: i for i, a in enumerate(ids)}
    links = []
    r.config_resetstat()
    mem0 = r.info("memory")["used_memory"]
    t0 = time.perf_counter()
    for start in range(0, len(ids), batch):
        pipe = r.pipeline(transaction=False)
        index.add_batch(
            pipe, [Item(ids[k], text_hashes[k], sketches[k], 0.0) for k in range(start, min(len(ids), start + batch))]
        )
        for k, d in enumerate(DuplicateIndex.decisions(pipe.execute()[0])):
            if d.duplicate_of:
                links.append((start + k, pos[d.duplicate_of]))
    t_idx = time.perf_counter() - t0
    mem = index.memory(r)
    delta = r.info("memory")["used_memory"] - mem0
    kinds = Counter(r.hget(f"{prefix}article:{ids[a]}", "duplicate_kind").decode() for a, _ in links)
    return {
        "sig_s": t_sig,
        "index_s": t_idx,
        "bytes": mem["bytes"] / len(ids),
        "delta": delta / len(ids),
        "links": links,
        "sketches": sketches,
        "kinds": dict(kinds),
    }


def run_datasketch(r: redis.Redis | None, hasher: MinHasher, texts, sketches, port: int | None):
    from datasketch import LeanMinHash, MinHash, MinHashLSH

    cfg = {"type": "redis", "basename": b"dsbench", "redis": {"host": "127.0.0.1", "port": port}} if r else None
    lsh = MinHashLSH(
        threshold=THRESHOLD, num_perm=hasher.num_perm, params=(hasher.bands, hasher.rows), storage_config=cfg
    )
    if r:
        r.config_resetstat()
        mem0 = r.info("memory")["used_memory"]
    sigs = {}
    links = []
    t0 = time.perf_counter()
    for i, text in enumerate(texts):
        sig = hasher.signature(text)  # the same values as ours (signature time counted the same way)
        m = LeanMinHash(MinHash(num_perm=hasher.num_perm, hashvalues=sig.astype(np.uint64), scheme="affine32"))
        best, best_sim = None, -1.0
        for c in lsh.query(m):
            sim = float(np.mean(sigs[c] == sig))
            if sim >= THRESHOLD and (sim > best_sim or (sim == best_sim and c < best)):
                best, best_sim = c, sim
        if best is not None:
            links.append((i, best))
        lsh.insert(i, m)
        sigs[i] = sig
    elapsed = time.perf_counter() - t0
    out = {"total_s": elapsed, "links": links}
    if r:
        out["delta"] = (r.info("memory")["used_memory"] - mem0) / len(texts)
        total = sum(r.memory_usage(k, samples=0) or 0 for k in r.scan_iter(match=b"dsbench*", count=1000))
        out["bytes"] = total / len(texts)
    return out


def fmt_buckets(res: dict) -> str:
    return "  ".join(f"{k:.2f}:{f}/{t}" for k, (t, f) in res["buckets"].items())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--originals", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-sweep", action="store_true")
    args = ap.parse_args(argv)

    docs, planted = generate(args.seed, args.originals)
    ids = [a for a, _ in docs]
    texts = [clean(t) for _, t in docs]
    text_hashes = [hashlib.blake2b(" ".join(words(t)).encode(), digest_size=8).hexdigest() for t in texts]
    pos = {a: i for i, a in enumerate(ids)}
    planted_idx = [(pos[c], pos[o], e) for c, o, e in planted]
    print(
        f"generated {len(ids)} articles ({args.originals} stories; planted: {dict(Counter(e for _, _, e in planted))})"
    )

    truths: dict[int, tuple] = {}

    def ground(shingle: int):
        if shingle not in truths:
            h = MinHasher(shingle=shingle)
            sets = [h.shingles(t) for t in texts]
            t0 = time.perf_counter()
            truths[shingle] = (truth(sets), [len(s) for s in sets])
            print(
                f"  brute-force exact Jaccard, {shingle}-shingles: {len(truths[shingle][0])} pairs with J>=0.3 or C>=0.5 "
                f"({time.perf_counter() - t0:.1f}s)"
            )
        return truths[shingle]

    default = MinHasher()
    pairs, sizes = ground(default.shingle)
    n = len(ids)
    with EmbeddedRedis() as server:
        r = redis.Redis(port=server.port)
        print(
            f"\n== one run, the same signatures and bands for all: num_perm={default.num_perm}, "
            f"bands={default.bands}x{default.rows}, {default.shingle}-shingles, threshold {THRESHOLD}"
        )
        ours = run_ours(r, default, texts, ids, text_hashes, "bench:")
        r.flushall()
        ds_r = run_datasketch(r, default, texts, ours["sketches"], server.port)
        r.flushall()
        ds_m = run_datasketch(None, default, texts, ours["sketches"], None)
        ours_s = ours["sig_s"] + ours["index_s"]
        rows = [
            (
                "feedsift (Redis, Lua)",
                n / ours_s,
                ours["bytes"],
                ours["delta"],
                score("ours", ours["links"], pairs, sizes, planted_idx, n),
            ),
            (
                "datasketch MinHashLSH (Redis)",
                n / ds_r["total_s"],
                ds_r["bytes"],
                ds_r["delta"],
                score("ds-redis", ds_r["links"], pairs, sizes, planted_idx, n),
            ),
            (
                "datasketch MinHashLSH (memory)",
                n / ds_m["total_s"],
                float("nan"),
                float("nan"),
                score("ds-mem", ds_m["links"], pairs, sizes, planted_idx, n),
            ),
        ]
        print(
            f"{'system':34} {'articles/s':>10} {'B/article':>10} {'(delta)':>8} {'precision':>9} {'recall J>=.8':>12} "
            f"{'excerpt rec':>11} {'same-subj FP':>12}"
        )
        for name, tput, b, d, s in rows:
            print(
                f"{name:34} {tput:10.0f} {b:10.0f} {d:8.0f} {s['precision']:9.4f} {s['recall_near']:12.4f} "
                f"{s['recall_excerpt']:11.4f} {s['same_subject_flagged']:5d}/{s['same_subject']}"
            )
        print(
            f"feedsift: signatures {n / ours['sig_s']:.0f}/s, index (query+insert) {n / ours['index_s']:.0f}/s; kinds {ours['kinds']}"
        )
        print(
            f"ratio ours / datasketch-Redis: throughput {rows[0][1] / rows[1][1]:.1f}x, "
            f"bytes/article {rows[0][2] / rows[1][2]:.2f}x"
        )
        print(f"ratio ours / datasketch-memory: throughput {rows[0][1] / rows[2][1]:.2f}x")
        for name, _, _, _, s in rows:
            print(f"  {name} found/pairs per true-Jaccard bucket: {fmt_buckets(s)}")

        if not args.no_sweep:
            print(
                "\n== feedsift parameter sweep (same articles; Redis index; lead: 24 words, 16 permutations in 4 bands)"
            )
            print(
                f"{'num_perm':>8} {'bands':>7} {'shingle':>7} {'articles/s':>10} {'B/article':>9} {'precision':>9} "
                f"{'recall J>=.8':>12} {'excerpt rec':>11}  found/pairs per true-Jaccard bucket"
            )
            for p, b, k in (
                (128, 32, 4),
                (128, 32, 3),
                (128, 32, 5),
                (96, 24, 4),
                (120, 20, 4),
                (64, 16, 4),
                (256, 32, 4),
            ):
                h = MinHasher(num_perm=p, bands=b, shingle=k)
                pr, sz = ground(k)
                r.flushall()
                res = run_ours(r, h, texts, ids, text_hashes, "bench:")
                s = score("sweep", res["links"], pr, sz, planted_idx, n)
                print(
                    f"{p:8d} {b:3d}x{h.rows:<3d} {k:7d} {n / (res['sig_s'] + res['index_s']):10.0f} {res['bytes']:9.0f} "
                    f"{s['precision']:9.4f} {s['recall_near']:12.4f} {s['recall_excerpt']:11.4f}  {fmt_buckets(s)}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
