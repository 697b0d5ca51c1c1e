"""The `feedsift` command: parse arguments, call the client, render tables or JSON."""

from __future__ import annotations

import argparse
import json
import os
import sys

import redis
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from feedsift.workers import queues, tables
from feedsift.workers.settings import get_settings

console = Console()
err = Console(stderr=True, soft_wrap=True)


def _client():
    from feedsift.workers.client import Client

    return Client()


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def submit(targets: list[str], wait: bool, timeout: float) -> int:
    """Sends each URL to `fetch_feed` and each file to `ingest_feed`; optionally waits for every article."""
    client = _client()
    job, sent = client.submit(targets)
    console.print(f"submitted {sent} feed(s) as job {job}")
    if not wait:
        return 0
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as bar:
        feed_bar = bar.add_task("feeds fetched", total=sent)
        art_bar = bar.add_task("articles stored", total=None)

        def show(p) -> None:
            bar.update(feed_bar, completed=p.feeds_done)
            all_read = p.feeds_done >= sent
            bar.update(art_bar, completed=p.stored, total=max(p.articles, 1) if all_read else None)

        try:
            p = client.wait(job, timeout, on_progress=show)
        except TimeoutError as exc:
            err.print(f"[red]{exc}; is a worker running? (feedsift worker)[/]")
            return 1
    console.print(f"{p.stored} new article(s) stored from {sent} feed(s); {p.errors} feed error(s)")
    for e in client.errors(limit=p.errors) if p.errors else ():
        err.print(f"  [yellow]{e.get('kind')}[/] {e.get('url') or e.get('feed')}: {e.get('message')}")
    return 0


def articles(topic, feed, duplicates, limit, as_json) -> int:
    client = _client()
    client.check_filters(topic, feed)  # a filter naming nothing is an error naming what there is, not an empty table
    rows = client.articles(topic=topic, feed=feed, duplicates=duplicates, limit=limit)
    if as_json:
        _print_json([{k: v for k, v in tables.record(a).items() if k != "text"} for a in rows])
    else:
        console.print(tables.articles(rows))
    return 0


def show(article_id: str, as_json: bool) -> int:
    client = _client()
    article = client.article(article_id)
    if article is None:
        err.print(f"[red]no article {article_id}[/]")
        return 1
    if as_json:
        _print_json(tables.record(article))
    else:
        console.print(tables.article(article, client.cluster(article.cluster) if article.cluster else []))
    return 0


def feeds(as_json: bool) -> int:
    rows = _client().feeds()
    if as_json:
        _print_json(rows)
    else:
        console.print(tables.feeds(rows))
    return 0


def duplicates(limit: int, as_json: bool) -> int:
    """Duplicate clusters, newest first: the canonical (earliest-seen) article, then each member."""
    clusters = _client().clusters(limit=limit)
    if as_json:
        _print_json(clusters)
        return 0
    console.print(tables.clusters(clusters))
    console.print(f"{len(clusters)} clusters, {sum(len(c['members']) for c in clusters)} duplicates")
    return 0


def errors(limit: int, as_json: bool) -> int:
    rows = _client().errors(limit=limit)
    if as_json:
        _print_json(rows)
    else:
        console.print(tables.errors(rows))
    return 0


def train(data: str | None, with_starter: bool, out: str | None, eval_path: str | None) -> int:
    """Without --data: rebuilds the bundled model from the starter corpus (training part; scored on the held-out
    part). With --data: trains on the user's rows (plus the whole starter corpus with --with-starter) and publishes
    the version to Redis as current, or only saves it with --out."""
    from pathlib import Path

    from feedsift.workers import retrain
    from feedsift.workers.context import bundled_model_path

    say = err.print
    if not data:
        if eval_path:
            raise ValueError("--eval goes with --data; the bundled model is scored on the corpus's held-out part")
        model = retrain.bundled(say)
        console.print(tables.scores("cross-validated (out-of-fold, training part)", model.meta_["cv"]))
        held = model.meta_["held_out"]
        console.print(tables.scores(f"held-out corpus part ({held['rows']} articles)", held))
        target = Path(out) if out else bundled_model_path()
        console.print(f"model {model.save(target)} saved to {target}")
        return 0
    model = retrain.on_data(data, with_starter, eval_path, say)
    console.print(tables.scores("cross-validated (out-of-fold)", model.meta_["cv"]))
    if "cv_user" in model.meta_:
        user = model.meta_["cv_user"]
        console.print(tables.scores("cross-validated, your articles only", user))
    if eval_path:
        console.print(tables.scores(eval_path, model.meta_["eval"]))
    if out:
        console.print(f"model {model.save(out)} saved to {out} (not published)")
        return 0
    version = _client().publish_model(model)
    console.print(f"model {version} published and current; workers switch to it on their next batch")
    return 0


def evaluate(data: str, model_path: str | None, as_json: bool) -> int:
    from feedsift.workers import retrain
    from feedsift.workers.context import bundled_model_path

    version, result = retrain.evaluate(data, model_path or bundled_model_path())
    if as_json:
        _print_json({"model": version, **result})
        return 0
    console.print(tables.scores(f"{data} ({result['rows']} articles, model {version})", result))
    for table in tables.evaluation(result):
        console.print(table)
    return 0


def models(action: str | None, version: str | None, as_json: bool) -> int:
    """Lists published topic model versions with their figures, or (`use VERSION`) makes one current."""
    client = _client()
    if action == "use":
        if not version:
            raise ValueError("models use needs a VERSION (or `bundled`)")
        chosen, bundled = client.use_model(version)
        console.print(f"workers use {'the bundled model' if bundled else 'model'} {chosen} from their next batch")
        return 0
    rows = client.models()
    if as_json:
        _print_json(rows)
    else:
        console.print(tables.models(rows))
    return 0


def explain(article_id: str, top: int, as_json: bool) -> int:
    """Per topic, the probability an article got and the terms that pushed it up or down."""
    why = _client().explain(article_id, top=top)
    if why is None:
        err.print(f"[red]no article {article_id}[/]")
        return 1
    if as_json:
        _print_json(why)
        return 0
    if why["note"]:
        err.print(f"[yellow]{why['note']}[/]")
    console.print(tables.explanation(why))
    return 0


def subscribe(url: str, every: str | None) -> int:
    """Subscribes a feed URL: fetched now, then on its own schedule (run `celery beat` for the schedule)."""
    from feedsift.workers.errors import BlockedURLError
    from feedsift.workers.schedule import parse_every

    try:
        job, fid = _client().subscribe(url, parse_every(every) if every else None)
    except BlockedURLError as exc:
        err.print(f"[red]{url}: {exc}[/]")
        return 2
    console.print(f"subscribed feed {fid}; first fetch is job {job}")
    return 0


def unsubscribe(ref: str) -> int:
    client = _client()
    fid = client.feed_id_of(ref)
    if not client.unsubscribe(fid):
        err.print(f"[red]no feed {ref}[/]")
        return 1
    console.print(f"unsubscribed feed {fid}; its articles stay")
    return 0


def resume(ref: str) -> int:
    client = _client()
    fid = client.feed_id_of(ref)
    if not client.resume(fid):
        err.print(f"[red]no subscription {ref}[/]")
        return 1
    console.print(f"feed {fid} resumed; it is polled again from now")
    return 0


def serve(host: str, port: int) -> int:
    """Runs the HTTP API and the dashboard on uvicorn."""
    from feedsift.workers.api import serve as run

    run(host, port)
    return 0


def worker(queue_names: str, concurrency: int | None, pool: str, loglevel: str) -> int:
    """Replaces this process with a Celery worker on feedsift's queues."""
    argv = queues.worker_argv(queue_names, concurrency, pool, loglevel, name=f"feedsift-{os.getpid()}@%h")
    os.execv(sys.executable, argv)
    return 0  # not reached


COMMANDS = {
    "submit": lambda a: submit(a.targets, a.wait, a.timeout),
    "worker": lambda a: worker(a.queues, a.concurrency, a.pool, a.loglevel),
    "articles": lambda a: articles(a.topic, a.feed, a.duplicates, a.limit, a.json),
    "show": lambda a: show(a.id, a.json),
    "feeds": lambda a: feeds(a.json),
    "errors": lambda a: errors(a.limit, a.json),
    "duplicates": lambda a: duplicates(a.limit, a.json),
    "train": lambda a: train(a.data, a.with_starter, a.out, a.eval_path),
    "models": lambda a: models(a.action, a.version, a.json),
    "explain": lambda a: explain(a.id, a.top, a.json),
    "evaluate": lambda a: evaluate(a.data, a.model, a.json),
    "demo": lambda a: _demo(a.serve),
    "subscribe": lambda a: subscribe(a.url, a.every),
    "unsubscribe": lambda a: unsubscribe(a.feed),
    "resume": lambda a: resume(a.feed),
    "serve": lambda a: serve(a.host, a.port),
}


def _demo(serve: bool | None) -> int:
    from feedsift.workers.demo import run

    return run(serve=serve)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="feedsift", description="Topic tagging and near-duplicate detection for news feeds."
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("submit", help="submit feed URLs or feed files")
    s.add_argument("targets", nargs="+", metavar="URL|FILE")
    s.add_argument("--wait", action="store_true", help="wait until every new article is stored")
    s.add_argument("--timeout", type=float, default=600, help="seconds to wait at most (default 600)")

    su = sub.add_parser("subscribe", help="poll a feed URL on its own schedule")
    su.add_argument("url")
    su.add_argument("--every", help="interval between polls: 15m, 2h, 1d (default FEEDSIFT_POLL_INTERVAL)")
    un = sub.add_parser("unsubscribe", help="stop polling a feed and forget it (its articles stay)")
    un.add_argument("feed", metavar="URL|ID")
    re_ = sub.add_parser("resume", help="poll a paused subscription again")
    re_.add_argument("feed", metavar="URL|ID")
    sv = sub.add_parser("serve", help="run the HTTP API and the dashboard")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)

    w = sub.add_parser("worker", help="start a Celery worker on the fetch and process queues")
    w.add_argument("--queues", default=",".join(queues.ALL))
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
        return COMMANDS[args.command](args)
    except redis.ConnectionError as exc:
        err.print(f"[red]cannot reach Redis at {get_settings().redis_url}: {exc}[/]")
        return 3
    except (ValueError, OSError) as exc:
        err.print(f"[red]{exc}[/]")
        return 2


if __name__ == "__main__":
    sys.exit(main())
