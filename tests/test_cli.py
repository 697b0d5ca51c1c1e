"""The feedsift command against a real worker and Redis."""

from __future__ import annotations

import json

from feedsift.workers.embedded import free_port
from tests.harness import EXAMPLES, feedsift


def test_submit_file_wait_then_read_back(service_env, r, worker):
    done = feedsift(service_env, "submit", str(EXAMPLES / "pitchside.rdf"), "--wait")
    assert done.returncode == 0, done.stderr
    assert "8 new article(s) stored from 1 feed(s)" in done.stdout
    rows = json.loads(feedsift(service_env, "articles", "--json").stdout)
    assert len(rows) == 8 and all("topics" in row and "text" not in row for row in rows)
    sport = json.loads(feedsift(service_env, "articles", "--topic", "sport", "--json").stdout)
    assert sport and all("sport" in row["topics"].split(",") for row in sport)
    one = json.loads(feedsift(service_env, "show", rows[0]["id"], "--json").stdout)
    assert one["id"] == rows[0]["id"] and one["text"]
    feeds = json.loads(feedsift(service_env, "feeds", "--json").stdout)
    assert len(feeds) == 1 and feeds[0]["articles"] == "8" and feeds[0]["last_status"] == "200"
    table = feedsift(service_env, "articles").stdout
    assert rows[0]["id"] in table


def test_seed_feed_topics(service_env, r, worker, shared_data):
    """The feed this project was specified from: 5 articles; the anthem story is sport, the Accords story diplomacy."""
    done = feedsift(service_env, "submit", str(shared_data / "seed-kazakhstan-feed.xml"), "--wait")
    assert done.returncode == 0, done.stderr
    rows = {row["title"]: row for row in json.loads(feedsift(service_env, "articles", "--json").stdout)}
    assert len(rows) == 5
    anthem = next(row for title, row in rows.items() if "anthem" in title.lower())
    accords = next(row for title, row in rows.items() if "abraham accords" in title.lower())
    assert "sport" in anthem["topics"].split(",")
    assert "diplomacy" in accords["topics"].split(",")
    stored = r.hgetall(f"fstest:article:{accords['id']}")
    assert stored[b"title"].decode() == accords["title"] and stored[b"model"]


def test_bad_targets_are_refused_at_once(service_env, r):
    for target, message in (("ftp://example.org/feed", "only http and https"), ("/no/such/feed.xml", "no such file")):
        done = feedsift(service_env, "submit", target)
        assert done.returncode == 2 and message in done.stderr


def test_unreachable_redis_is_one_clear_line(service_env):
    env = {**service_env, "FEEDSIFT_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    done = feedsift(env, "articles", timeout=60)
    assert done.returncode == 3
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("cannot reach Redis at redis://127.0.0.1:")
    assert "Traceback" not in done.stderr


def test_bad_setting_stops_cli_and_worker_in_one_line(service_env):
    """A malformed setting is refused when a process starts, naming the variable, not fetch by fetch later."""
    env = {**service_env, "FEEDSIFT_ALLOW_ENDPOINTS": "localhost"}
    for args in (("articles",), ("worker", "--concurrency", "1")):
        done = feedsift(env, *args, timeout=60)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode != 0, args
        assert len(lines) == 1 and "FEEDSIFT_ALLOW_ENDPOINTS: 'localhost' is not an ip:port" in lines[0], done.stderr
