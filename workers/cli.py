"""The `feedsift` command: parse arguments, call the library, print tables or JSON."""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import redis
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from feedsift.workers.settings import get_settings

console = Console()
err = Console(stderr=True, soft_wrap=True)


def _ctx():
    from feedsift.workers.context import context

    return context()


def _send(name: str, args: list, kwargs: dict) -> None:
    from feedsift.workers.app import app

    app.send_task(name, args=args, kwargs=kwargs)


def submit(targets: list[str], wait: bool, timeout: float) -> int:
    """Sends each URL to `fetch_feed` and each file to `ingest_feed`; optionally waits for every article."""
    ctx = _ctx()
    sends = []
    for target in dict.fromkeys(targets):  # a feed named twice is one feed of the submission
        scheme = urlsplit(target).scheme.lower()
        if scheme in ("http", "https"):
            sends.append(("feedsift.fetch_feed", [target], {}))
        elif Path(target).is_file():
            data = Path(target).read_bytes()
            if len(data) > ctx.settings.max_feed_bytes:
                err.print(
                    f"[red]{target}: larger than FEEDSIFT_MAX_FEED_BYTES ({ctx.settings.max_feed_bytes} bytes)[/]"
                )
                return 2
            source = "file://" + str(Path(target).resolve())
            sends.append(("feedsift.ingest_feed", [base64.b64encode(data).decode(), source], {"encoding": "base64"}))
        elif scheme and len(scheme) > 1:
            err.print(f"[red]{target}: only http and https URLs are fetched[/]")
            return 2
        else:
            err.print(f"[red]{target}: no such file[/]")
            return 2
    job = uuid.uuid4().hex[:12]
    ctx.store.job_add(job, feeds=len(sends))
    for name, args, kwargs in sends:
        _send(name, args, {**kwargs, "job": job})
    console.print(f"submitted {len(sends)} feed(s) as job {job}")
    if not wait:
        return 0
    return _wait(ctx, job, len(sends), timeout)


def _wait(ctx, job: str, feeds: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as bar:
        feed_bar = bar.add_task("feeds fetched", total=feeds)
        art_bar = bar.add_task("articles stored", total=None)
        while True:
            p = ctx.store.job_progress(job)
            bar.update(feed_bar, completed=p.get("feeds_done", 0))
            bar.update(
                art_bar, completed=p["stored"], total=max(p["articles"], 1) if p.get("feeds_done", 0) >= feeds else None
            )
            if p.get("feeds_done", 0) >= feeds and p["stored"] >= p["articles"]:
                break
            if time.monotonic() > deadline:
                err.print(f"[red]gave up waiting after {timeout:.0f}s: {p}; is a worker running? (feedsift worker)[/]")
                return 1
            time.sleep(0.2)
    p = ctx.store.job_progress(job)
    console.print(f"{p['stored']} new article(s) stored from {feeds} feed(s); {p.get('errors', 0)} feed error(s)")
    if p.get("errors"):
        for e in ctx.store.errors(count=p["errors"]):
            err.print(f"  [yellow]{e.get('kind')}[/] {e.get('url') or e.get('feed')}: {e.get('message')}")
    return 0


def articles(topic, feed, duplicates, limit, as_json) -> int:
    store = _ctx().store
    rows = store.articles(store.article_ids(topic=topic, feed=feed, duplicates=duplicates, limit=limit))
    if as_json:
        print(json.dumps([{k: v for k, v in r.items() if k != "text"} for r in rows], indent=2, ensure_ascii=False))
        return 0
    console.print(article_table(rows))
    return 0


def article_table(rows: list[dict]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("id", no_wrap=True, min_width=16)
    table.add_column("published", no_wrap=True, width=10)
    table.add_column("title", overflow="fold", ratio=3, min_width=10)
    table.add_column("topics", overflow="fold", ratio=1, min_width=9)
    table.add_column("duplicate of", overflow="fold", ratio=1, min_width=16)
    for r in rows:
        dup = (
            f"{r['duplicate_of']} {r.get('duplicate_kind', '')} {r.get('similarity', '')}"
            if r.get("duplicate_of")
            else ""
        )
        table.add_row(r.get("id", ""), r.get("published", "")[:10], r.get("title", ""), r.get("topics", "") or "-", dup)
    return table


def show(article_id: str, as_json: bool) -> int:
    store = _ctx().store
    record = store.article(article_id)
    if not record:
        err.print(f"[red]no article {article_id}[/]")
        return 1
    if as_json:
        print(json.dumps(record, indent=2, ensure_ascii=False))
        return 0
    table = Table(show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for k, v in record.items():
        table.add_row(k, v if k != "text" else (v[:600] + ("…" if len(v) > 600 else "")))
    if record.get("cluster"):
        table.add_row("cluster members", ", ".join(store.cluster(record["cluster"])))
    console.print(table)
    return 0


def feeds(as_json: bool) -> int:
    rows = _ctx().store.feeds()
    if as_json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    table = Table()
    for col in ("id", "title", "url", "stored", "last fetch", "status", "error"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            r["id"],
            r.get("title", ""),
            r.get("url", ""),
            r["articles"],
            r.get("last_fetch", ""),
            r.get("last_status", ""),
            r.get("last_error", "")[:80],
        )
    console.print(table)
    return 0


def duplicates(limit: int, as_json: bool) -> int:
    """Duplicate clusters, newest first: the canonical (earliest-seen) article, then each member."""
    clusters = _ctx().store.clusters(limit=limit)
    if as_json:
        print(json.dumps(clusters, indent=2, ensure_ascii=False))
        return 0
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("cluster", "id", "kind", "similarity", "duplicate of", "title"):
        table.add_column(col, overflow="fold")
    for c in clusters:
        table.add_row(c["canonical"], c["canonical"], "canonical", "", "", c["title"])
        for m in c["members"]:
            table.add_row("", m["id"], m["kind"], m["similarity"], m["duplicate_of"], m["title"])
    console.print(table)
    console.print(f"{len(clusters)} clusters, {sum(len(c['members']) for c in clusters)} duplicates")
    return 0


def errors(limit: int, as_json: bool) -> int:
    rows = _ctx().store.errors(count=limit)
    if as_json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    table = Table()
    for col in ("time", "kind", "feed", "url", "message"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r.get("time", ""), r.get("kind", ""), r.get("feed", ""), r.get("url", ""), r.get("message", ""))
    console.print(table)
    return 0


def train(data: str | None, with_starter: bool, out: str | None, eval_path: str | None) -> int:
    """Without --data: rebuilds the bundled model from the starter corpus (training part; scored on the held-out part).
    With --data: trains on the user's rows (plus the whole starter corpus with --with-starter) and publishes the
    version to Redis as current, or only saves it with --out."""
    from feedsift.models.topics import load_jsonl
    from feedsift.models.training import corpus
    from feedsift.models.training import evaluate as score
    from feedsift.models.training import train as fit
    from feedsift.workers.context import bundled_model_path

    if not data:
        if eval_path:
            raise ValueError("--eval goes with --data; the bundled model is scored on the corpus's held-out part")
        rows, held = corpus()
        err.print(f"training the bundled model on {len(rows)} corpus articles ({len(held)} held out) …")
        model = fit(rows)
        model.meta_["data"] = f"starter corpus, training part ({len(rows)} articles)"
        model.meta_["held_out"] = _figures(score(model, held))
        _print_scores("cross-validated (out-of-fold, training part)", model.meta_["cv"])
        _print_scores(f"held-out corpus part ({len(held)} articles)", model.meta_["held_out"])
        target = Path(out) if out else bundled_model_path()
        version = model.save(target)
        console.print(f"model {version} saved to {target}")
        return 0
    user = load_jsonl(data)
    rows = list(user)
    if with_starter:
        train_part, held = corpus()
        rows += train_part + held
    err.print(
        f"training on {len(user)} labelled articles from {data}"
        + (f" and {len(rows) - len(user)} corpus articles" if with_starter else "")
        + " …"
    )
    model = fit(rows)
    model.meta_["data"] = f"{Path(data).name} ({len(user)} articles)" + (
        f" + starter corpus ({len(rows) - len(user)})" if with_starter else ""
    )
    _print_scores("cross-validated (out-of-fold)", model.meta_["cv"])
    if with_starter:
        from feedsift.models.topics import labels, scores

        model.meta_["cv_user"] = scores(
            labels(user, model.topics), model.oof_[: len(user)] >= model.thresholds_, model.topics
        )
        _print_scores(f"cross-validated, your {len(user)} articles only", model.meta_["cv_user"])
    if eval_path:
        model.meta_["eval"] = {"data": Path(eval_path).name, **_figures(score(model, load_jsonl(eval_path)))}
        _print_scores(f"{eval_path}", model.meta_["eval"])
    if out:
        version = model.save(out)
        console.print(f"model {version} saved to {out} (not published)")
        return 0
    from feedsift.workers import registry

    ctx = _ctx()
    version = registry.publish(ctx.redis, ctx.keys, model)
    console.print(f"model {version} published and current; workers switch to it on their next batch")
    return 0


def _figures(result: dict) -> dict:
    """The scores of an evaluation without its per-article lists (for a model's header)."""
    return {k: v for k, v in result.items() if k not in ("confusions", "mixups")}


def evaluate(data: str, model_path: str | None, as_json: bool) -> int:
    from feedsift.models.topics import TopicModel, load_jsonl
    from feedsift.models.training import evaluate as score
    from feedsift.workers.context import bundled_model_path

    model = TopicModel.load(model_path or bundled_model_path())
    result = score(model, load_jsonl(data))
    if as_json:
        print(json.dumps({"model": model.version, **result}, indent=2))
        return 0
    _print_scores(f"{data} ({result['rows']} articles, model {model.version})", result)
    lengths = Table(title="micro-F1 by length")
    for col in ("length", "articles", "micro-F1", "macro-F1"):
        lengths.add_column(col)
    for name, v in result["by_length"].items():
        lengths.add_row(name, str(v["rows"]), f"{v['micro_f1']:.3f}", f"{v['macro_f1']:.3f}")
    console.print(lengths)
    if result["mixups"]:
        mix = Table(title="label sets confused (labelled -> predicted)")
        for col in ("labelled", "predicted", "articles"):
            mix.add_column(col)
        for m in result["mixups"][:10]:
            mix.add_row(m["labelled"], m["predicted"], str(m["count"]))
        console.print(mix)
    if result["confusions"]:
        table = Table(title="costliest mistakes (most confident wrong calls)")
        for col in ("id", "topic", "error", "p", "title"):
            table.add_column(col, overflow="fold")
        for m in result["confusions"][:10]:
            table.add_row(m["id"], m["topic"], m["error"], str(m["probability"]), m["title"])
        console.print(table)
    return 0


def models(action: str | None, version: str | None, as_json: bool) -> int:
    """Lists published topic model versions with their figures, or (`use VERSION`) makes one current."""
    from feedsift.models.topics import TopicModel
    from feedsift.workers import registry
    from feedsift.workers.context import bundled_model_path

    ctx = _ctx()
    bundled = TopicModel.load(bundled_model_path())
    if action == "use":
        chosen = registry.use(ctx.redis, ctx.keys, version, bundled.version)
        if chosen == registry.BUNDLED:
            console.print(f"workers use the bundled model {bundled.version} from their next batch")
        else:
            console.print(f"workers use model {chosen} from their next batch")
        return 0
    current = registry.current(ctx.redis, ctx.keys)
    rows = [{**h, "current": h["version"] == current} for h in registry.versions(ctx.redis, ctx.keys)]
    rows.insert(0, {**bundled.header(), "version": bundled.version, "bundled": True, "current": current is None})
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title="topic models (* = current)")
    table.add_column("")
    table.add_column("version", no_wrap=True)
    for col in ("trained", "data", "CV micro-F1", "CV F1 d/s/p", "eval micro-F1"):
        table.add_column(col, overflow="fold")
    for h in rows:
        meta, cv = h.get("meta", {}), h.get("meta", {}).get("cv", {})
        evaluated = meta.get("eval") or meta.get("held_out") or {}
        per_topic = "/".join(f"{cv[t]['f1']:.2f}" for t in h["topics"] if t in cv)
        table.add_row(
            "*" if h["current"] else "",
            h["version"] + (" (bundled)" if h.get("bundled") else ""),
            meta.get("trained_at", "")[:16],
            meta.get("data", ""),
            f"{cv.get('micro_f1', 0):.3f}",
            per_topic,
            f"{evaluated['micro_f1']:.3f}" if evaluated else "",
        )
    console.print(table)
    return 0


def explain(article_id: str, top: int, as_json: bool) -> int:
    """Per topic, the probability an article got and the terms that pushed it up or down, by the version that tagged it."""
    ctx = _ctx()
    record = ctx.store.article(article_id)
    if not record:
        err.print(f"[red]no article {article_id}[/]")
        return 1
    model = ctx.model_of(record.get("model", ""))
    note = ""
    if model is None:
        model = ctx.model()
        note = f"model {record.get('model') or '?'} that tagged it is gone; explained with the current model {model.version}"
    why = model.explain(model.document(record.get("title", ""), record.get("text", "")), top=top)
    if as_json:
        print(
            json.dumps(
                {"id": article_id, "model": model.version, "note": note, "topics": why}, indent=2, ensure_ascii=False
            )
        )
        return 0
    if note:
        err.print(f"[yellow]{note}[/]")
    table = Table(title=f"{record.get('title', '')[:80]} — model {model.version}")
    for col in ("topic", "p", "threshold", "tag", "pushed up by", "pushed down by"):
        table.add_column(col, overflow="fold")
    for topic, v in why.items():
        table.add_row(
            topic,
            f"{v['probability']:.3f}",
            f"{v['threshold']:.2f}",
            "yes" if v["tagged"] else "no",
            ", ".join(f"{t} +{w:.2f}" for t, w in v["up"]),
            ", ".join(f"{t} {w:.2f}" for t, w in v["down"]),
        )
    console.print(table)
    return 0


def _print_scores(title: str, s: dict) -> None:
    table = Table(title=title)
    for col in ("topic", "precision", "recall", "F1", "support"):
        table.add_column(col)
    for topic, v in s.items():
        if isinstance(v, dict) and "precision" in v:
            table.add_row(topic, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", str(v["support"]))
    table.add_row("micro", "", "", f"{s['micro_f1']:.3f}", "")
    table.add_row("macro", "", "", f"{s['macro_f1']:.3f}", "")
    console.print(table)


def worker(queues: str, concurrency: int | None, pool: str, loglevel: str) -> int:
    """Replaces this process with a Celery worker on feedsift's queues."""
    args = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "feedsift.workers.app",
        "worker",
        "-Q",
        queues,
        "-P",
        pool,
        "-l",
        loglevel,
        "-n",
        f"feedsift-{os.getpid()}@%h",
    ]
    if concurrency:
        args += ["-c", str(concurrency)]
    os.execv(sys.executable, args)
    return 0  # not reached


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="feedsift", description="Topic tagging and near-duplicate detection for news feeds."
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("submit", help="submit feed URLs or feed files")
    s.add_argument("targets", nargs="+", metavar="URL|FILE")
    s.add_argument("--wait", action="store_true", help="wait until every new article is stored")
    s.add_argument("--timeout", type=float, default=600, help="seconds to wait at most (default 600)")

    w = sub.add_parser("worker", help="start a Celery worker on the fetch and process queues")
    w.add_argument("--queues", default="fetch,process")
    w.add_argument("--concurrency", type=int, default=None, help="processes (default: one per core)")
    w.add_argument("--pool", default="prefork")
    w.add_argument("--loglevel", default="INFO")

    a = sub.add_parser("articles", help="list stored articles, newest first")
    a.add_argument("--topic")
    a.add_argument("--feed")
    a.add_argument("--duplicates", action="store_true", help="only articles flagged as duplicates")
    a.add_argument("--limit", type=int, default=100)
    a.add_argument("--json", action="store_true")

    sh = sub.add_parser("show", help="show one article")
    sh.add_argument("id")
    sh.add_argument("--json", action="store_true")

    f = sub.add_parser("feeds", help="list feeds and their fetch state")
    f.add_argument("--json", action="store_true")

    du = sub.add_parser("duplicates", help="duplicate clusters: each canonical article and its duplicates")
    du.add_argument("--limit", type=int, default=100, help="clusters shown at most (newest first)")
    du.add_argument("--json", action="store_true")

    e = sub.add_parser("errors", help="latest errors")
    e.add_argument("--limit", type=int, default=50)
    e.add_argument("--json", action="store_true")

    t = sub.add_parser("train", help="train the topic model")
    t.add_argument("--data", help="labelled JSONL (title, text, diplomacy, sport, politics)")
    t.add_argument("--with-starter", action="store_true", help="train on the starter corpus too")
    t.add_argument(
        "--out",
        help="save the artifact here (without --data default: the bundled model; with --data: instead of publishing)",
    )
    t.add_argument(
        "--eval", dest="eval_path", metavar="FILE", help="labelled JSONL to score the new model on (with --data)"
    )

    mo = sub.add_parser("models", help="list published topic models, or `models use VERSION` to switch (roll back)")
    mo.add_argument("action", nargs="?", choices=["use"])
    mo.add_argument("version", nargs="?", help="a published version, or `bundled`")
    mo.add_argument("--json", action="store_true")

    ex = sub.add_parser("explain", help="why an article got its topics: probability and the terms that pushed it")
    ex.add_argument("id")
    ex.add_argument("--top", type=int, default=8, help="terms per direction (default 8)")
    ex.add_argument("--json", action="store_true")

    ev = sub.add_parser("evaluate", help="score the topic model on labelled JSONL")
    ev.add_argument("--data", required=True)
    ev.add_argument("--model", help="artifact path (default: the bundled model)")
    ev.add_argument("--json", action="store_true")

    d = sub.add_parser("demo", help="run the whole service on the example feeds")
    d.add_argument(
        "--serve",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep Redis and the worker running after the demo (default: when run in a terminal)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        get_settings()
        if args.command == "submit":
            return submit(args.targets, args.wait, args.timeout)
        if args.command == "worker":
            return worker(args.queues, args.concurrency, args.pool, args.loglevel)
        if args.command == "articles":
            return articles(args.topic, args.feed, args.duplicates, args.limit, args.json)
        if args.command == "show":
            return show(args.id, args.json)
        if args.command == "feeds":
            return feeds(args.json)
        if args.command == "errors":
            return errors(args.limit, args.json)
        if args.command == "duplicates":
            return duplicates(args.limit, args.json)
        if args.command == "train":
            return train(args.data, args.with_starter, args.out, args.eval_path)
        if args.command == "models":
            if args.action == "use" and not args.version:
                raise ValueError("models use needs a VERSION (or `bundled`)")
            return models(args.action, args.version, args.json)
        if args.command == "explain":
            return explain(args.id, args.top, args.json)
        if args.command == "evaluate":
            return evaluate(args.data, args.model, args.json)
        if args.command == "demo":
            from feedsift.workers.demo import run

            return run(serve=args.serve)
    except redis.ConnectionError as exc:
        err.print(f"[red]cannot reach Redis at {get_settings().redis_url}: {exc}[/]")
        return 3
    except (ValueError, OSError) as exc:
        err.print(f"[red]{exc}[/]")
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
