"""The CLI speaks to people: filters that name nothing are errors naming what there is; long titles wrap at words."""

from __future__ import annotations

import json
import re

from tests.harness import EXAMPLES
from tests.test_cli import feedsift


def test_unknown_topic_or_feed_is_an_error_listing_the_known_ones(service_env, r, worker):
    assert feedsift(service_env, "submit", str(EXAMPLES / "global-wire.atom"), "--wait").returncode == 0
    sports = feedsift(service_env, "articles", "--topic", "sports")
    assert sports.returncode == 2 and sports.stdout == ""
    assert "unknown topic 'sports'; known topics: diplomacy, sport, politics" in sports.stderr
    feed = feedsift(service_env, "feeds", "--json")
    fid = re.search(r'"id": "(\w+)"', feed.stdout).group(1)
    nowhere = feedsift(service_env, "articles", "--feed", "nowhere")
    assert nowhere.returncode == 2 and f"unknown feed 'nowhere'; known feeds: {fid}" in nowhere.stderr
    assert feedsift(service_env, "articles", "--topic", "sport", "--feed", fid).returncode == 0


def test_long_titles_wrap_at_word_boundaries(service_env, r, worker):
    assert feedsift(service_env, "submit", str(EXAMPLES / "steppe-herald.xml"), "--wait").returncode == 0
    titles = [a["title"] for a in json.loads(feedsift(service_env, "articles", "--json").stdout)]
    table = feedsift({**service_env, "COLUMNS": "80"}, "articles").stdout
    lines = [line for line in table.splitlines() if line.strip()]
    start, end = lines[0].index("title"), lines[0].index("topics")
    cells = [line[start:end].strip() for line in lines[2:]]
    words = {w for t in titles for w in t.split()}
    pieces = [p for cell in cells for p in cell.split()]
    assert pieces and all(p in words for p in pieces), [p for p in pieces if p not in words]
    assert len(cells) > len(titles)  # titles did wrap onto further lines
