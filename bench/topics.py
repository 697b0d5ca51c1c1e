"""Topic model benchmark: feedsift's TopicModel against a plain scikit-learn pipeline, measured in the same run.

    python bench/topics.py [--repeat 20] [--data ../shared/data/topics-dev.jsonl]

Both are trained on the starter corpus's training part. The baseline is
`OneVsRestClassifier(LogisticRegression)` over `TfidfVectorizer` word 1-2 grams
(sublinear TF, the title counted twice as in feedsift), pickled the usual way
to measure its size. Prediction throughput is measured on full-length articles
(every corpus article of 300 words or more, plus the long articles of the dev
file when it is there), in one batch and one article at a time, on one core:
run it with the BLAS thread variables set to 1 (the script sets them if unset). Times are
CPU seconds of the process (`time.process_time`), the least of a few repeats, so a busy
machine does not skew the ratio. Memory: the resident set (VmRSS, and its peak VmHWM) of a
fresh process that loads the saved artifact and tags a batch of the test articles, as a
worker does.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import pickle  # noqa: E402  (only to size the baseline the way people ship it)
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.multiclass import OneVsRestClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

from feedsift.models.topics import labels, load_jsonl  # noqa: E402
from feedsift.models.training import corpus, train  # noqa: E402

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "topics-dev.jsonl"


def best_of(fn, repeat: int) -> float:
    """Least CPU time of this process over `repeat` runs: one core's work, whatever else the machine runs."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


WORKER = """
import json, sys
from feedsift.models.topics import TopicModel
model = TopicModel.load(sys.argv[1])
docs = [model.document(t, x) for t, x in json.load(open(sys.argv[2]))]
model.tags(model.predict_proba(docs))
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(json.dumps({k: int(status[k].split()[0]) // 1024 for k in ("VmRSS", "VmHWM")}))
"""


def resident_mb(model, batch: list[tuple[str, str]]) -> dict:
    """Resident memory (MB) of a new process that loads the artifact and tags a batch, as a worker does."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save(f"{tmp}/m.npz")
        Path(f"{tmp}/docs.json").write_text(json.dumps(batch))
        out = subprocess.run(
            [sys.executable, "-c", WORKER, f"{tmp}/m.npz", f"{tmp}/docs.json"], capture_output=True, text=True
        )
    return json.loads(out.stdout) if out.returncode == 0 else {"error": out.stderr[-300:]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=5, help="timed repeats; the best is kept")
    p.add_argument("--data", type=Path, default=DEV, help="extra labelled JSONL whose long articles join the test set")
    args = p.parse_args()

    rows, held = corpus()
    Y = labels(rows)
    long_rows = [r for r in rows + held if len(r["text"].split()) >= 300]
    if args.data and args.data.is_file():
        long_rows += [r for r in load_jsonl(args.data) if len(r["text"].split()) >= 300]
    articles = [(r["title"], r["text"]) for r in long_rows]
    batch = (articles * (2000 // max(1, len(articles)) + 1))[:2000]
    words = np.mean([len(t.split()) for _, t in batch])

    start = time.perf_counter()
    model = train(rows)
    ours_train = time.perf_counter() - start
    ours_size = len(model.to_bytes())
    memory = resident_mb(model, batch[:500])

    def ours_batch():
        model.predict_proba([model.document(t, x) for t, x in batch])

    def ours_single():
        for t, x in batch[:300]:
            model.predict_proba([model.document(t, x)])

    def doc(t: str, x: str) -> str:
        return f"{t} {t} {x}"

    base = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
        OneVsRestClassifier(LogisticRegression(C=8.0, class_weight="balanced", solver="liblinear")),
    )
    start = time.perf_counter()
    base.fit([doc(r["title"], r["text"]) for r in rows], Y)
    base_train = time.perf_counter() - start
    base_size = len(pickle.dumps(base, protocol=pickle.HIGHEST_PROTOCOL))

    def base_batch():
        base.predict_proba([doc(t, x) for t, x in batch])

    def base_single():
        for t, x in batch[:300]:
            base.predict_proba([doc(t, x)])

    ours_b = len(batch) / best_of(ours_batch, args.repeat)
    base_b = len(batch) / best_of(base_batch, args.repeat)
    ours_s = 300 / best_of(ours_single, max(1, args.repeat // 2))
    base_s = 300 / best_of(base_single, max(1, args.repeat // 2))
    figures = {
        "training articles": len(rows),
        "test articles (distinct, >= 300 words)": len(articles),
        "mean words per test article": round(float(words), 1),
        "train seconds": {
            "feedsift": round(ours_train, 2),
            "sklearn": round(base_train, 2),
            "note": "feedsift's includes 5-fold out-of-fold thresholds and title+lead views",
        },
        "model bytes": {
            "feedsift (.npz)": ours_size,
            "sklearn (pickle)": base_size,
            "ratio": round(base_size / ours_size, 2),
        },
        "resident memory of a process with the model loaded, MB": {
            "after tagging 500 articles": memory.get("VmRSS"),
            "peak": memory.get("VmHWM"),
        },
        "batch of 2000, articles/s": {
            "feedsift": round(ours_b),
            "sklearn": round(base_b),
            "ratio": round(ours_b / base_b, 2),
        },
        "one at a time, articles/s": {
            "feedsift": round(ours_s),
            "sklearn": round(base_s),
            "ratio": round(ours_s / base_s, 2),
        },
    }
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
