"""Near-duplicate detection on real text: recall per edit, precision on hard negatives, cost.

Base texts are real articles read by path (the BBC full texts of the labelled
evaluation files, long items of the captured real feeds) and, as a second,
larger set, the written corpus in models/corpus/. Each base gets copies made
by edit models with a parameter each (scattered word substitution, sentences
rewritten, dropped or reordered, paragraphs added or removed, header and
footer, teasers of N words or of the first sentence, truncation, HTML,
typography, OCR-like character noise). Hard negatives that must never be
flagged: the pairs of real articles closest in TF-IDF cosine (different
reports of the same subject) and template stories written here (match
results, market reports, weather: the same sentences with other names and
numbers).

Every system indexes the same cleaned texts in the same shuffled order through
Redis: the index as it is (`DuplicateIndex`, its Lua script), the previous
index (its code read from git at --previous, run through its own Lua script),
and datasketch's MinHashLSH with Redis storage on a sample, for throughput and
bytes. A copy is found when it ends in its base's cluster.

    .venv/bin/python bench/dedup_real.py [--data ../shared/data] [--corpus-bases 300] [--previous bd263f8]
"""

from __future__ import annotations

import argparse
import html
import json
import random
import re
import subprocess
import sys
import time
import types
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from feedsift.models.minhash import MinHasher, Verdict, text_hash  # noqa: E402
from feedsift.models.text import html_to_text, strip_furniture  # noqa: E402
from feedsift.workers.embedded import EmbeddedRedis  # noqa: E402
from feedsift.workers.index import DuplicateIndex  # noqa: E402
from feedsift.workers.keys import Keys  # noqa: E402

MIN_BASE_WORDS = 80


def usable(text: str) -> bool:
    """Long enough to edit: enough words and at least four sentences."""
    return len(text.split()) >= MIN_BASE_WORDS and len(sentences(text)) >= 4


_WORD = re.compile(r"\w+(?:['-]\w+)*")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")


# -- base texts ---------------------------------------------------------------------
def real_bases(data: Path) -> list[tuple[str, str, str]]:
    """(id, title, text) of the real full texts under `data`; empty when it is absent."""
    out = []
    for name in ("topics-val.jsonl", "topics-dev.jsonl"):
        path = data / name
        if not path.exists():
            print(f"  {path}: absent, skipped")
            continue
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if row["source"].startswith("BBC") and usable(row["text"]):
                out.append((f"r:{row['id']}", row["title"], row["text"]))
    feeds_dir = data / "real-feeds"
    if feeds_dir.exists():
        from feedsift.workers.feeds import parse

        seen = set()
        for path in sorted(feeds_dir.rglob("*")):
            if path.suffix not in (".xml", ".rss", ".atom", ".rdf") or not path.is_file():
                continue
            try:
                parsed = parse(path.read_bytes(), "bench", path.name, time.time(), 1000, 100_000)
            except Exception:  # a deliberately broken capture
                continue
            for a in parsed.articles:
                body = a.text
                if len(body.split()) >= 150 and usable(body) and body[:200] not in seen:
                    seen.add(body[:200])
                    out.append((f"f:{len(out)}", a.title, body))
    else:
        print(f"  {feeds_dir}: absent, skipped")
    return out


def corpus_bases(limit: int, rng: random.Random) -> list[tuple[str, str, str]]:
    rows = []
    for path in sorted((ROOT / "models" / "corpus").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if usable(row["text"]):
                rows.append((f"c:{row['id']}", row["title"], row["text"]))
    rng.shuffle(rows)
    return rows[:limit]


# -- edit models --------------------------------------------------------------------
def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE.split(" ".join(text.split())) if s]


def paragraphs(text: str) -> list[str]:
    paras = [p.strip() for p in text.split("\n") if p.strip()]
    if len(paras) >= 3:
        return paras
    sents = sentences(text)
    step = max(1, len(sents) // 3)
    return [" ".join(sents[i : i + step]) for i in range(0, len(sents), step)]


class Editor:
    def __init__(self, rng: random.Random, vocab: list[str], donors: list[str]):
        self.rng, self.vocab, self.donors = rng, vocab, donors

    def substitute(self, text: str, rate: float) -> str:
        """Scattered word changes: `rate` of the words replaced by other words, punctuation kept."""
        paras = [p.split(" ") for p in text.split("\n")]
        spots = [(i, j) for i, p in enumerate(paras) for j, w in enumerate(p) if re.search(r"\w", w)]
        for i, j in self.rng.sample(spots, max(1, round(rate * len(spots)))):
            w = paras[i][j]
            m = re.match(r"^(\W*)([\w'-]+)(\W*)$", w)
            new = self.rng.choice(self.vocab)
            paras[i][j] = (m.group(1) + new + m.group(3)) if m else new
        return "\n".join(" ".join(p) for p in paras)

    def donor_sentences(self, n: int) -> list[str]:
        return [self.rng.choice(sentences(self.rng.choice(self.donors))) for _ in range(n)]

    def rewrite(self, text: str, n: int) -> str:
        s = sentences(text)
        for k in self.rng.sample(range(1, len(s)), min(n, len(s) - 1)):
            s[k] = self.donor_sentences(1)[0]
        return " ".join(s)

    def drop(self, text: str, n: int) -> str:
        s = sentences(text)
        gone = set(self.rng.sample(range(1, len(s)), min(n, len(s) - 2)))
        return " ".join(x for k, x in enumerate(s) if k not in gone)

    def reorder(self, text: str) -> str:
        p = paragraphs(text)
        if len(p) < 3:
            p = sentences(text)
        k = self.rng.randrange(1, len(p) - 1)
        p[k], p[k + 1] = p[k + 1], p[k]
        return "\n".join(p)

    def add_paragraph(self, text: str) -> str:
        p = paragraphs(text)
        p.insert(self.rng.randint(1, len(p)), " ".join(self.donor_sentences(3)))
        return "\n".join(p)

    def remove_paragraph(self, text: str) -> str:
        p = paragraphs(text)
        del p[self.rng.randrange(1, len(p))]
        return "\n".join(p)

    def furniture(self, text: str) -> str:
        day = self.rng.randint(1, 28)
        head = f"By Staff Reporter | Updated {day} March 2026, 10:{day:02d}"
        tail = [
            "Follow us on Twitter and Facebook for the latest news.",
            "Copyright 2026 Example Media Group. All rights reserved.",
            "Sign up for our morning newsletter to get stories like this.",
        ]
        return "\n".join([head, text, *tail])

    def teaser(self, text: str, n: int) -> str:
        """The opening up to its n-th word (words as the index counts them) and a "more" mark."""
        ends = [m.end() for m in _WORD.finditer(text)]
        return " ".join(text[: ends[min(n, len(ends)) - 1]].split()) + self.rng.choice(
            [" \u2026", " [\u2026]", "...\nRead more"]
        )

    def first_sentence(self, text: str) -> str:
        return sentences(text)[0] + self.rng.choice([" \u2026", " [\u2026]", "\nRead more"])

    def truncate(self, text: str, n: int) -> str:
        return " ".join(text.split()[:n]) + " ..."

    def as_html(self, text: str) -> str:
        out = []
        for p in text.split("\n"):
            words = html.escape(p, quote=False).split(" ")
            if len(words) > 6:
                words[2] = f"<b>{words[2]}</b>"
                words[5] = f'<a href="https://example.org/x">{words[5]}</a>'
            out.append("<p>" + " ".join(words) + "</p>")
        return "<div class='story'>" + "\n".join(out) + "<script>track()</script></div>"

    def typography(self, text: str) -> str:
        text = re.sub(r'"([^"]*)"', "\u201c\\1\u201d", text)
        return text.replace("'", "\u2019").replace(" - ", " \u2014 ").replace("...", "\u2026")

    def ocr(self, text: str, rate: float) -> str:
        """Character noise: `rate` of the letters dropped, swapped with the next or misread."""
        misread = {"m": "rn", "l": "1", "i": "l", "o": "0", "e": "c", "c": "e", "h": "b", "u": "v", "n": "ri"}
        chars, out, k = list(text), [], 0
        while k < len(chars):
            ch = chars[k]
            if ch.isalpha() and self.rng.random() < rate:
                op = self.rng.randrange(3)
                if op == 0:
                    k += 1
                    continue
                if op == 1 and k + 1 < len(chars):
                    out += [chars[k + 1], ch]
                    k += 2
                    continue
                out.append(misread.get(ch.lower(), ch))
            else:
                out.append(ch)
            k += 1
        return "".join(out)


def variants(ed: Editor, text: str) -> list[tuple[str, str, str]]:
    """(edit, parameter, text) copies of one base."""
    out = [("retitled", "-", text), ("header+footer", "-", ed.furniture(text))]
    for r in (1, 2, 3, 5, 8, 10):
        out.append(("words changed", f"{r}%", ed.substitute(text, r / 100)))
    for r in (3, 5):
        changed = ed.substitute(text, r / 100)
        out.append(("words changed + retitled", f"{r}%", changed))
        out.append(("words changed + footer", f"{r}%", ed.furniture(changed)))
        out.append(("words changed + paragraph added", f"{r}%", ed.add_paragraph(changed)))
    for n in (1, 2):
        out.append(("sentence rewritten", str(n), ed.rewrite(text, n)))
    for n in (1, 2, 3):
        out.append(("sentences dropped", str(n), ed.drop(text, n)))
    out.append(("paragraphs reordered", "-", ed.reorder(text)))
    out.append(("paragraph added", "-", ed.add_paragraph(text)))
    out.append(("paragraph removed", "-", ed.remove_paragraph(text)))
    for n in (8, 10, 12, 15, 20, 25, 30, 40, 60):
        out.append(("teaser, words", str(n), ed.teaser(text, n)))
    first = ed.first_sentence(text)
    n = len(_WORD.findall(sentences(text)[0]))
    band = next(f"{lo}-{hi}" for lo, hi in ((0, 9), (10, 14), (15, 24), (25, 40), (41, 999)) if lo <= n <= hi)
    out.append(("teaser, first sentence", band, first))
    for n in (50, 100, 200):
        if len(text.split()) > n + 30:
            out.append(("truncated at N words", str(n), ed.truncate(text, n)))
    out.append(("HTML", "-", ed.as_html(text)))
    out.append(("curly quotes and dashes", "-", ed.typography(text)))
    for r in (1, 2, 3, 5):
        out.append(("character noise", f"{r}%", ed.ocr(text, r / 100)))
    return out


# -- template stories (hard negatives) -------------------------------------------------
TEAMS = [
    "Arsenal",
    "Chelsea",
    "Everton",
    "Fulham",
    "Burnley",
    "Brentford",
    "Wolves",
    "Leeds",
    "Villa",
    "Newcastle",
    "Brighton",
    "Palace",
]
PLAYERS = [
    "Okafor",
    "Lindqvist",
    "Ravelli",
    "Santos",
    "Moreau",
    "Haddad",
    "Tanaka",
    "Kowalski",
    "Brennan",
    "Mensah",
    "Ortega",
    "Novak",
]
GROUNDS = ["Riverside Park", "the Old Mill", "Kingsway Stadium", "Hollow Lane", "the Arena", "Marsh Road"]
INDICES = ["FTSE 100", "DAX", "CAC 40", "Nikkei 225", "S&P 500", "Hang Seng"]
COMPANIES = [
    "Barrow Mining",
    "Kestrel Foods",
    "Northwind Energy",
    "Halden Bank",
    "Corrin Telecom",
    "Veld Motors",
    "Arlo Retail",
]
CITIES = [
    "Leeds",
    "Glasgow",
    "Cardiff",
    "Belfast",
    "Norwich",
    "Plymouth",
    "Aberdeen",
    "Carlisle",
    "Swansea",
    "Inverness",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def match_report(r: random.Random) -> str:
    home, away = r.sample(TEAMS, 2)
    a, b, c = r.sample(PLAYERS, 3)
    g1, g2 = r.randint(1, 4), r.randint(0, 3)
    return (
        f"{home} beat {away} {g1}-{g2} at {r.choice(GROUNDS)} on {r.choice(DAYS)} to move up to "
        f"{r.randint(2, 12)}th in the table. {a} opened the scoring after {r.randint(3, 40)} minutes with a "
        f"low shot from the edge of the area, and {b} doubled the lead before half-time. {away} pulled one "
        f"back through {c} in the {r.randint(50, 80)}th minute, but {home} held on in front of a crowd of "
        f"{r.randint(8, 60)},{r.randint(100, 999)}. {home} manager said after the game that his side had "
        f"deserved the win and that {a} had been outstanding. {away} have now lost {r.randint(2, 6)} of their "
        f"last {r.randint(7, 10)} league games and sit {r.randint(3, 15)} points from safety. The two sides "
        f"meet again in the cup on {r.randint(2, 28)} March, when {away} will be without the suspended {c}."
    )


def market_report(r: random.Random) -> str:
    idx = r.choice(INDICES)
    up, down = r.sample(COMPANIES, 2)
    move = r.choice(["rose", "fell"])
    return (
        f"The {idx} {move} {r.randint(1, 150) / 100:.2f}% to {r.randint(3000, 40000):,} on {r.choice(DAYS)}, "
        f"as investors weighed fresh figures on inflation and interest rates. Shares in {up} led the gainers, "
        f"up {r.randint(2, 15)}% after the company raised its profit forecast for the year to "
        f"{r.randint(100, 900)} million. {down} was the biggest faller, down {r.randint(2, 12)}%, after it "
        f"warned that sales in the third quarter would be {r.randint(3, 20)}% lower than a year earlier. "
        f"The pound traded at ${r.randint(110, 140) / 100:.2f} against the dollar, and Brent crude was at "
        f"${r.randint(60, 95)}.{r.randint(10, 99)} a barrel. Analysts said trading volumes had been "
        f"{r.choice(['thin', 'light', 'heavy'])} ahead of the central bank meeting on {r.randint(2, 28)} April, "
        f"where rates are expected to stay at {r.randint(1, 6)}.{r.randint(0, 9)}%."
    )


def weather_report(r: random.Random) -> str:
    a, b, c = r.sample(CITIES, 3)
    return (
        f"{r.choice(DAYS)} will start {r.choice(['cloudy', 'bright', 'wet', 'foggy'])} across much of the "
        f"country, with temperatures reaching {r.randint(4, 28)}C in {a} by the afternoon. Rain moving in "
        f"from the west will reach {b} by {r.randint(1, 11)}pm, with up to {r.randint(5, 40)}mm expected on "
        f"high ground. Winds will gust to {r.randint(30, 90)}mph along the coast near {c}, and a yellow "
        f"warning is in place until {r.randint(1, 11)}am on {r.choice(DAYS)}. Overnight temperatures will fall "
        f"to {r.randint(-5, 10)}C in sheltered spots. The outlook for the weekend is "
        f"{r.choice(['drier', 'milder', 'colder', 'unsettled'])}, with highs of {r.randint(5, 25)}C in {b} "
        f"and sunshine for {r.randint(2, 9)} hours in {a}."
    )


def templates(rng: random.Random, n: int) -> list[tuple[str, str, str]]:
    out = []
    for name, make in (("match", match_report), ("market", market_report), ("weather", weather_report)):
        out += [(f"t:{name}{i}", name, make(rng)) for i in range(n)]
    return out


def same_subject_pairs(bases: list[tuple[str, str, str]], top: int) -> list[tuple[str, str, float]]:
    """The `top` pairs of different bases with the highest TF-IDF cosine: reports of one subject."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    if len(bases) < 2:
        return []
    m = TfidfVectorizer(sublinear_tf=True, stop_words="english", min_df=1).fit_transform([t for _, _, t in bases])
    sim = (m @ m.T).toarray()
    np.fill_diagonal(sim, 0)
    iu = np.triu_indices(len(bases), 1)
    order = np.argsort(-sim[iu])[:top]
    return [(bases[iu[0][k]][0], bases[iu[1][k]][0], float(sim[iu][k])) for k in order]


# -- the benchmark set -----------------------------------------------------------------
@dataclass
class Doc:
    id: str
    family: str  # the base it was made from (its own id for a base or a template)
    edit: str  # "" for a base, "template" for a template story
    param: str
    text: str  # cleaned as the workers clean it


def clean(text: str) -> str:
    return strip_furniture(html_to_text(text))


def build(bases, tmpl, rng: random.Random) -> tuple[list[Doc], list[Doc], list[Doc], dict[str, str]]:
    """Cleaned base texts, template stories and copies; ids short enough for index records (16 bytes)."""
    vocab = sorted({w.lower() for _, _, t in bases for w in re.findall(r"[A-Za-z]{3,}", t)})
    ed = Editor(rng, vocab, [t for _, _, t in bases])
    name = {bid: f"b{k}" for k, (bid, _, _) in enumerate(bases)}
    base_docs = [Doc(name[bid], name[bid], "", "", clean(t)) for bid, _, t in bases]
    tmpl_docs = [Doc(f"t{k}", f"t{k}", "template", kind, clean(t)) for k, (_, kind, t) in enumerate(tmpl)]
    copies = []
    for bid, _, text in bases:
        for j, (edit, param, copy) in enumerate(variants(ed, text)):
            copies.append(Doc(f"{name[bid]}v{j}", name[bid], edit, param, clean(copy)))
    return base_docs, tmpl_docs, copies, name


# -- systems ---------------------------------------------------------------------------
def run_current(r: redis.Redis, docs: list[Doc], prefix: str, batch: int = 50, verdict: Verdict | None = None) -> dict:
    verdict = verdict or Verdict()
    index = DuplicateIndex(r, Keys(prefix), MinHasher(), verdict.near, 30, verdict.names, verdict.excerpt)
    verdicts = {}
    t_sig = t_idx = 0.0
    c_sig = c_idx = 0.0
    for start in range(0, len(docs), batch):
        part = docs[start : start + batch]
        t0, p0 = time.perf_counter(), time.process_time()
        items = index.items([(d.id, "", d.text, 0.0) for d in part])
        t1, p1 = time.perf_counter(), time.process_time()
        decisions = index.decide(items, 1.0)
        t_idx += time.perf_counter() - t1
        c_idx += time.process_time() - p1
        t_sig += t1 - t0
        c_sig += p1 - p0
        for d in decisions:  # an earlier article's changed verdict replaces its first one
            verdicts[d.article_id] = d
    links = [(d.article_id, d.duplicate_of, d.kind, d.similarity) for d in verdicts.values() if d.duplicate_of]
    kinds = Counter(k for _, _, k, _ in links)
    res = {"links": links, "sig_s": t_sig, "index_s": t_idx, "bytes": index.memory()["bytes"], "kinds": kinds}
    return {**res, "sig_cpu": c_sig, "index_cpu": c_idx}


def load_previous(commit: str):
    """The index as it was at `commit`: its minhash module and its Lua script, read from git."""

    def show(path: str) -> str:
        return subprocess.run(
            ["git", "show", f"{commit}:{path}"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout

    mod = types.ModuleType("feedsift_previous_minhash")
    sys.modules[mod.__name__] = mod
    exec(compile(show("models/minhash.py"), f"{commit}:models/minhash.py", "exec"), mod.__dict__)
    return mod, show("workers/index.lua")


def run_previous(r: redis.Redis, docs: list[Doc], prefix: str, previous, batch: int = 50) -> dict:
    mod, lua = previous
    h = mod.MinHasher()
    script = r.register_script(lua)
    per_chunk = max(1, (16384 - 16) // h.record_size)
    head = [0.8, 0.85, 1.0, per_chunk, h.record_size, h.keys_per_article, 128]
    head += [
        prefix + "dedup:",
        prefix + "article:",
        prefix + "cluster:",
        mod.MIN_EXCERPT_SHINGLES,
        mod.EXCERPT_MAX_RATIO,
    ]
    keys = [prefix + "dedup:seq", prefix + "dedup:meta", prefix + "dedup:time", prefix + "duplicates"]
    links, kinds = [], Counter()
    t_sig = t_idx = 0.0
    c_sig = c_idx = 0.0
    for start in range(0, len(docs), batch):
        part = docs[start : start + batch]
        t0, p0 = time.perf_counter(), time.process_time()
        args = list(head)
        for d in part:  # the previous release's hasher sketches one text at a time
            sk = h.sketch(d.text)
            args += [d.id, h.record(d.id, text_hash(d.text), sk), h.entries(d.id, sk), 0.0]
        t1, p1 = time.perf_counter(), time.process_time()
        reply = script(keys=keys, args=args)
        t_idx += time.perf_counter() - t1
        c_idx += time.process_time() - p1
        t_sig += t1 - t0
        c_sig += p1 - p0
        for d, row in zip(part, reply):
            other = row[1].decode() if isinstance(row[1], bytes) else str(row[1])
            if other:
                kind = row[3].decode()
                links.append((d.id, other, kind, float(row[2])))
                kinds[kind] += 1
    total = sum(r.memory_usage(k, samples=0) or 0 for k in r.scan_iter(match=prefix + "dedup:*", count=1000))
    res = {"links": links, "sig_s": t_sig, "index_s": t_idx, "bytes": total, "kinds": kinds}
    return {**res, "sig_cpu": c_sig, "index_cpu": c_idx}


def run_datasketch(r: redis.Redis, port: int, docs: list[Doc], hasher: MinHasher) -> dict:
    from datasketch import LeanMinHash, MinHash, MinHashLSH

    cfg = {"type": "redis", "basename": b"dsbench", "redis": {"host": "127.0.0.1", "port": port}}
    lsh = MinHashLSH(num_perm=hasher.num_perm, params=(hasher.bands, hasher.rows), storage_config=cfg)
    sigs = {}
    t0 = time.perf_counter()
    for i, d in enumerate(docs):
        sig = hasher.signature(d.text)
        m = LeanMinHash(MinHash(num_perm=hasher.num_perm, hashvalues=sig.astype(np.uint64), scheme="affine32"))
        for c in lsh.query(m):
            float(np.mean(sigs[c] == sig))
        lsh.insert(i, m)
        sigs[i] = sig
    elapsed = time.perf_counter() - t0
    total = sum(r.memory_usage(k, samples=0) or 0 for k in r.scan_iter(match=b"dsbench*", count=1000))
    return {"total_s": elapsed, "bytes": total}


# -- scoring ---------------------------------------------------------------------------
class Clusters:
    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


def clusters(links) -> Clusters:
    cl = Clusters()
    for a, b, _, _ in links:
        cl.union(a, b)
    return cl


@dataclass
class Tally:
    """One system's figures over every world it indexed."""

    found: dict = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    links: int = 0
    wrong: list = field(default_factory=list)
    templates: int = 0
    same_subject: int = 0
    mixed: dict = field(default_factory=dict)

    def add_world(self, docs: list[Doc], res: dict) -> Clusters:
        fam = {d.id: d.family for d in docs}
        kind = {d.id: d.edit for d in docs}
        cl = clusters(res["links"])
        self.links += len(res["links"])
        for a, b, k, sim in res["links"]:
            if fam[a] != fam[b]:
                self.wrong.append((a, b, k, sim))
                self.templates += kind[a] == "template" and kind[b] == "template"
        return cl

    @property
    def precision(self) -> float:
        return 1 - len(self.wrong) / self.links if self.links else 1.0


def recall(cells: dict, keys) -> float:
    tot = sum(cells[k][0] for k in keys)
    return sum(cells[k][1] for k in keys) / tot if tot else float("nan")


def _num(p: str) -> float:
    m = re.match(r"\d+", p)
    return float(m.group()) if m else -1.0


def evaluate(title, systems, r, base_docs, tmpl_docs, copies, negatives, rng) -> dict[str, Tally]:
    """Per edit cell a world of the bases and one copy of each (shuffled: the copy comes first about half
    the time); a world of bases and template stories (hard negatives); a mixed world of everything
    (throughput, memory, recall with every copy present)."""
    cells = defaultdict(list)
    for d in copies:
        cells[(d.edit, d.param)].append(d)
    tallies = {name: Tally() for name in systems}
    texts = {d.id: d.text for d in base_docs + tmpl_docs + copies}
    for key, docs_in_cell in sorted(cells.items(), key=lambda kv: (kv[0][0], _num(kv[0][1]))):
        world = base_docs + docs_in_cell
        rng.shuffle(world)
        for name, run in systems.items():
            r.flushall()
            cl = tallies[name].add_world(world, run(r, world))
            cell = tallies[name].found[key]
            for d in docs_in_cell:
                cell[0] += 1
                cell[1] += cl.find(d.id) == cl.find(d.family)
    world = base_docs + tmpl_docs
    rng.shuffle(world)
    for name, run in systems.items():
        r.flushall()
        cl = tallies[name].add_world(world, run(r, world))
        tallies[name].same_subject = sum(cl.find(a) == cl.find(b) for a, b, _ in negatives)
    world = base_docs + tmpl_docs + copies
    rng.shuffle(world)
    for name, run in systems.items():
        r.flushall()
        res = run(r, world)
        cl = clusters(res["links"])
        found = sum(cl.find(d.id) == cl.find(d.family) for d in copies)
        tallies[name].mixed = {**res, "n": len(world), "recall": found / len(copies)}
    report(title, tallies, len(base_docs), len(copies), negatives, texts)
    return tallies


def report(title, tallies: dict[str, Tally], bases: int, copies: int, negatives, texts) -> None:
    names = list(tallies)
    first = tallies[names[0]]
    print(f"\n== {title}: {bases} bases, {copies} copies; recall = share of copies in their base's cluster")
    print(f"{'edit':34} {'param':>6} {'copies':>6} " + " ".join(f"{n:>10}" for n in names))
    keys = list(first.found)
    for k in keys:
        n = first.found[k][0]
        print(f"{k[0]:34} {k[1]:>6} {n:6d} " + " ".join(f"{tallies[m].found[k][1] / n:10.3f}" for m in names))
    light = [
        k
        for k in keys
        if (k[0].startswith("words changed") and 0 <= _num(k[1]) <= 5)
        or k[0] in ("retitled", "header+footer", "paragraph added")
    ]
    rows = [
        ("recall, <=5% words changed (alone or +retitle/footer/paragraph)", light),
        ("recall, 8% words changed", [k for k in keys if k == ("words changed", "8%")]),
        ("recall, teasers of >=10 words", [k for k in keys if k[0] == "teaser, words" and _num(k[1]) >= 10]),
        (
            "recall, first-sentence teasers of >=10 words",
            [k for k in keys if k[0] == "teaser, first sentence" and _num(k[1]) >= 10],
        ),
        ("recall, 3% character noise", [k for k in keys if k == ("character noise", "3%")]),
    ]
    print("figures:")
    for label, ks in rows:
        print(f"  {label:66} " + " ".join(f"{recall(tallies[m].found, ks):10.4f}" for m in names))
    line = lambda label, f: print(f"  {label:66} " + " ".join(f(tallies[m]) for m in names))  # noqa: E731
    line("precision (links within a family / all links, every world)", lambda t: f"{t.precision:10.4f}")
    line("links", lambda t: f"{t.links:10d}")
    line("template-story pairs linked", lambda t: f"{t.templates:10d}")
    line(f"same-subject pairs (top {len(negatives)} by TF-IDF cosine) clustered", lambda t: f"{t.same_subject:10d}")
    line("mixed world (all copies together): recall", lambda t: f"{t.mixed['recall']:10.4f}")
    for m in names:
        res = tallies[m].mixed
        n = res["n"]
        print(
            f"  {m}, mixed world of {n}: {n / (res['sig_s'] + res['index_s']):.0f} articles/s signature+index "
            f"(signatures {n / res['sig_s']:.0f}/s, index {n / res['index_s']:.0f}/s), "
            f"{res['bytes'] / n:.0f} B/article in Redis, kinds {dict(res['kinds'])}"
        )
        for a, b, k, sim in tallies[m].wrong[:5]:
            print(f"    wrong link {a} -> {b} ({k} {sim:.3f}): {texts[a][:60]!r} / {texts[b][:60]!r}")


def stream(real, size: int, rng: random.Random) -> list[Doc]:
    """A feed-like stream: real and corpus articles, about one in ten followed somewhere by an edited copy."""
    bases = (real + corpus_bases(10**6, rng))[:size]
    vocab = sorted({w.lower() for _, _, t in bases for w in re.findall(r"[A-Za-z]{3,}", t)})
    ed = Editor(rng, vocab, [t for _, _, t in bases])
    docs = [Doc(f"s{k}", f"s{k}", "", "", clean(t)) for k, (_, _, t) in enumerate(bases)]
    for k, (_, _, t) in enumerate(bases):
        if rng.random() < 0.1:
            edit, param, copy = rng.choice(variants(ed, t))
            docs.append(Doc(f"s{k}c", f"s{k}", edit, param, clean(copy)))
    rng.shuffle(docs)
    return docs


def _server_cpu(r: redis.Redis) -> float:
    cpu = r.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def throughput(systems, r: redis.Redis, port: int, h: MinHasher, docs: list[Doc], datasketch: int) -> None:
    """Articles/s (signature + index) and Redis bytes per article on a stream, and datasketch on its opening.

    Wall-clock rates follow whatever else the machine runs; CPU seconds (this process's, plus the
    Redis server's) much less, so both are printed.
    """
    n = len(docs)
    print(f"\n== stream of {n} articles (about one in ten with an edited copy): cost")
    for name, run in systems.items():
        r.flushall()
        before = _server_cpu(r)
        res = run(r, docs)
        server = _server_cpu(r) - before
        cpu = res["sig_cpu"] + res["index_cpu"] + server
        print(
            f"  {name}: {n / (res['sig_s'] + res['index_s']):.0f} articles/s signature+index, wall clock "
            f"(signatures {n / res['sig_s']:.0f}/s, index {n / res['index_s']:.0f}/s); "
            f"{n / cpu:.0f} articles per CPU second (signatures {n / res['sig_cpu']:.0f}, index: client "
            f"{n / res['index_cpu']:.0f}, Redis {n / server:.0f}); {res['bytes'] / n:.0f} B/article in Redis"
        )
    if datasketch:
        part = docs[:datasketch]
        m = len(part)
        r.flushall()
        ours = systems["chosen"](r, part)
        r.flushall()
        ds = run_datasketch(r, port, part, h)
        t_ours = m / (ours["sig_s"] + ours["index_s"])
        print(
            f"  against datasketch MinHashLSH with Redis storage on the first {m} (same signatures and bands): "
            f"feedsift {t_ours:.0f} articles/s, {ours['bytes'] / m:.0f} B/article; datasketch "
            f"{m / ds['total_s']:.0f} articles/s, {ds['bytes'] / m:.0f} B/article; ratio: throughput "
            f"{t_ours / (m / ds['total_s']):.1f}x, bytes {ours['bytes'] / ds['bytes']:.2f}x"
        )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--corpus-bases", type=int, default=300)
    ap.add_argument("--templates", type=int, default=60, help="stories per template")
    ap.add_argument("--negatives", type=int, default=100, help="same-subject pairs checked")
    ap.add_argument("--previous", default="bd263f8", help="git commit of the previous index")
    ap.add_argument("--stream", type=int, default=3000, help="articles in the stream that measures cost")
    ap.add_argument("--datasketch", type=int, default=1000, help="texts in the datasketch comparison (0: skip)")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--threshold", type=float, default=Verdict.near, help="near: estimated Jaccard of 3-shingles")
    ap.add_argument("--names", type=float, default=Verdict.names, help="near: share of names and numbers")
    ap.add_argument("--excerpt", type=float, default=Verdict.excerpt, help="excerpt: share of opening words")
    args = ap.parse_args(argv)

    rng = random.Random(args.seed)
    try:
        previous = load_previous(args.previous)
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        print(f"previous index at {args.previous} not readable from git ({exc}); compared with nothing")
        previous = None
    print("base texts:")
    sets = []
    real = real_bases(args.data)
    if real:
        sets.append(("real articles", real))
    sets.append(("written corpus", corpus_bases(args.corpus_bases, rng)))
    for title, bases in sets:
        print(f"  {title}: {len(bases)} bases")
    h = MinHasher()
    print(
        f"chosen: {h.num_perm} permutations, {h.bands}x{h.rows} bands, {h.shingle}-shingles, {h.name_perm} name minimums; "
        f"near >= {args.threshold} with names >= {args.names}, excerpt >= {args.excerpt}"
    )

    with EmbeddedRedis() as server:
        r = redis.Redis(port=server.port)
        verdict = Verdict(near=args.threshold, names=args.names, excerpt=args.excerpt)
        systems = {"chosen": lambda r, docs: run_current(r, docs, "now:", verdict=verdict)}
        if previous:
            systems["previous"] = lambda r, docs: run_previous(r, docs, "old:", previous)
        for title, bases in sets:
            base_docs, tmpl_docs, copies, name = build(bases, templates(rng, args.templates), rng)
            negatives = [(name[a], name[b], c) for a, b, c in same_subject_pairs(bases, args.negatives)]
            evaluate(title, systems, r, base_docs, tmpl_docs, copies, negatives, rng)
        throughput(systems, r, server.port, h, stream(real, args.stream, rng), args.datasketch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
