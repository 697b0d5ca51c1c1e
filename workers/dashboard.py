"""The dashboard: one server-rendered page (Jinja2, no front-end build) that refetches itself every few seconds."""

from __future__ import annotations

import time
from functools import lru_cache

from feedsift.workers.article import iso
from feedsift.workers.client import Client
from feedsift.workers.schemas import ArticleOut, Feed

COLOURS = {"diplomacy": "#2e90fa", "sport": "#12b76a", "politics": "#f79009"}
#: Milliseconds between two refreshes of the page.
REFRESH_MS = 5_000
#: Drawing size of the chart, in SVG units.
WIDTH, HEIGHT = 900, 160


@lru_cache(maxsize=1)
def _template():
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("feedsift.workers", "templates"), autoescape=select_autoescape())
    return env.get_template("dashboard.html")


def render(client: Client, days: int = 14, latest: int = 30) -> str:
    page = client.page(limit=latest)
    feeds = [Feed.of(row) for row in client.feeds()]
    return _template().render(
        total=client.state_counts()["articles"],
        model=client.current_model(),
        now=iso(time.time()),
        queues=client.queue_depths(),
        # the days up to the newest article (today on a live service; still a chart for an archive)
        chart=chart(client.tags_per_day(days, now=page.articles[0].published if page.articles else None)),
        colours=COLOURS,
        articles=[ArticleOut.of(a) for a in page.articles],
        clusters=client.clusters(limit=10),
        feeds=feeds,
        refresh_ms=REFRESH_MS,
    )


def chart(tags: dict) -> dict:
    """Grouped bars, one group a day, one bar a topic, scaled to the busiest bar."""
    days, topics = tags["days"], list(tags["topics"])
    top = max([1] + [n for counts in tags["topics"].values() for n in counts])
    left, group = 30, (WIDTH - 30) / max(1, len(days))
    width = max(1.0, (group - 6) / max(1, len(topics)))
    bars, labels = [], []
    for d, day in enumerate(days):
        for t, topic in enumerate(topics):
            n = tags["topics"][topic][d]
            h = round(HEIGHT * n / top, 1)
            x = round(left + d * group + 3 + t * width, 1)
            bars.append({"x": x, "y": round(HEIGHT - h, 1), "w": round(width - 1, 1), "h": h, "n": n})
            bars[-1] |= {"topic": topic, "day": day}
        labels.append({"x": round(left + (d + 0.5) * group, 1), "text": day[5:]})
    return {"bars": bars, "labels": labels, "topics": topics, "top": top, "width": WIDTH, "height": HEIGHT}
