"""Tables for people: how the CLI shows what the client returns."""

from __future__ import annotations

from rich import box
from rich.table import Table

from feedsift.workers.article import Article, iso


def articles(rows: list[Article]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("id", no_wrap=True, min_width=16)
    table.add_column("published", no_wrap=True, width=10)
    table.add_column("title", ratio=1, min_width=16)  # wrapped at word boundaries
    table.add_column("topics", no_wrap=True)
    table.add_column("duplicate of", no_wrap=True)
    for a in rows:
        dup = f"{a.duplicate_of}\n{a.duplicate_kind} {a.similarity:.4f}" if a.duplicate_of else ""
        table.add_row(a.id, iso(a.published)[:10], a.title, "\n".join(a.topics) or "-", dup)
    return table


def article(a: Article, cluster: list[str], text_chars: int = 600) -> Table:
    table = Table(show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for k, v in record(a).items():
        table.add_row(k, v if k != "text" else (v[:text_chars] + ("…" if len(v) > text_chars else "")))
    if a.cluster:
        table.add_row("cluster members", ", ".join(cluster))
    return table


def feeds(rows: list[dict]) -> Table:
    """Each feed's fetch state and, when subscribed, its health, interval and next poll."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("id", no_wrap=True)
    table.add_column("feed", overflow="fold", ratio=3, min_width=12)
    table.add_column("stored", justify="right", min_width=6)
    table.add_column("polls (UTC)", no_wrap=True)
    table.add_column("health", overflow="fold", ratio=2, min_width=10)
    for r in rows:
        polls = f"last {_minute(r.get('last_fetch', '')) or 'never'}"
        if r.get("every"):
            upcoming = "paused" if r.get("paused") else _minute(r.get("next_due", "")) or "-"
            polls += f"\nnext {upcoming}\nevery {_duration(r['every'])}"
        table.add_row(
            r["id"],
            "\n".join(x for x in (r.get("title", ""), r.get("url", "")) if x),
            r["articles"],
            polls,
            _health(r),
        )
    return table


def _health(r: dict) -> str:
    if r.get("paused"):
        return f"[red]paused[/]: {r['paused']}"
    status, error = r.get("last_status", ""), r.get("last_error", "")[:120]
    failures = int(r.get("failures") or 0)
    if not status:
        return "not fetched yet"
    if status in ("200", "304"):
        return "[green]ok[/]" + (f" ({error})" if error else "")
    return f"[yellow]{failures} failure(s)[/]: {status} {error}".rstrip()


def _minute(iso_time: str) -> str:
    """2026-12-04T03:48:00Z as 2026-12-04 03:48 (UTC)."""
    return iso_time[:16].replace("T", " ")


def _duration(seconds: str) -> str:
    if not seconds:
        return ""
    s = int(float(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size and s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"


def clusters(rows: list[dict]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("cluster", "id", "kind", "similarity", "duplicate of", "title"):
        table.add_column(col, overflow="fold")
    for c in rows:
        table.add_row(c["canonical"], c["canonical"], "canonical", "", "", c["title"])
        for m in c["members"]:
            table.add_row("", m["id"], m["kind"], m["similarity"], m["duplicate_of"], m["title"])
    return table


def errors(rows: list[dict]) -> Table:
    table = Table()
    for col in ("time", "kind", "feed", "url", "message"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r.get("time", ""), r.get("kind", ""), r.get("feed", ""), r.get("url", ""), r.get("message", ""))
    return table


def scores(title: str, s: dict) -> Table:
    table = Table(title=title)
    for col in ("topic", "precision", "recall", "F1", "support"):
        table.add_column(col)
    for topic, v in s.items():
        if isinstance(v, dict) and "precision" in v:
            table.add_row(
                topic, f"{v['precision']:.3f}", f"{v['recall']:.3f}", _f1(v["f1"], v.get("f1_ci")), str(v["support"])
            )
    table.add_row("micro", "", "", _f1(s["micro_f1"], s.get("micro_f1_ci")), "")
    table.add_row("macro", "", "", _f1(s["macro_f1"], s.get("macro_f1_ci")), "")
    return table


def _f1(value: float, ci: list | None) -> str:
    """F1 with its bootstrap 95% interval where the evaluation gives one."""
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def evaluation(result: dict) -> list[Table]:
    """An evaluation's other tables: by length, label sets confused, costliest mistakes."""
    out = []
    lengths = Table(title="micro-F1 by length")
    for col in ("length", "articles", "micro-F1", "macro-F1"):
        lengths.add_column(col)
    for name, v in result["by_length"].items():
        lengths.add_row(name, str(v["rows"]), _f1(v["micro_f1"], v.get("micro_f1_ci")), f"{v['macro_f1']:.3f}")
    out.append(lengths)
    if result["mixups"]:
        mix = Table(title="label sets confused (labelled -> predicted)")
        for col in ("labelled", "predicted", "articles"):
            mix.add_column(col)
        for m in result["mixups"][:10]:
            mix.add_row(m["labelled"], m["predicted"], str(m["count"]))
        out.append(mix)
    if result["confusions"]:
        table = Table(title="costliest mistakes (most confident wrong calls)")
        for col in ("id", "topic", "error", "p", "title"):
            table.add_column(col, overflow="fold")
        for m in result["confusions"][:10]:
            table.add_row(m["id"], m["topic"], m["error"], str(m["probability"]), m["title"])
        out.append(table)
    return out


def models(rows: list[dict]) -> Table:
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
    return table


def explanation(why: dict) -> Table:
    table = Table(title=f"{why['title'][:80]} — model {why['model']}")
    for col in ("topic", "p", "threshold", "tag", "pushed up by", "pushed down by"):
        table.add_column(col, overflow="fold")
    for topic, v in why["topics"].items():
        table.add_row(
            topic,
            f"{v['probability']:.3f}",
            f"{v['threshold']:.2f}",
            "yes" if v["tagged"] else "no",
            ", ".join(f"{t} +{w:.2f}" for t, w in v["up"]),
            ", ".join(f"{t} {w:.2f}" for t, w in v["down"]),
        )
    return table


def _duplicate_fields(a: Article) -> dict[str, str]:
    return {
        "duplicate_of": a.duplicate_of,
        "duplicate_kind": a.duplicate_kind,
        "similarity": "" if a.similarity is None else f"{a.similarity:.4f}",
        "cluster": a.cluster,
    }


def record(a: Article) -> dict[str, str]:
    """Every field of an article as the Redis hash spells it, its id first and its text last (the JSON the
    CLI prints)."""
    fields = {"id": a.id} | a.to_record() | _duplicate_fields(a)
    fields["text"] = fields.pop("text")
    return fields
