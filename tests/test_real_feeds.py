"""Captured real feeds (read by path from the shared evaluation data, never copied here) all go through the worker.

Each file ends with stored articles, or with a clear stored error (JSON Feed,
an HTML page, a deliberately broken file), or, for a valid feed without
entries, a feed state saying 200 with no articles. Per-file counts are printed.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from feedsift.workers.app import app
from feedsift.workers.feeds import feed_id
from tests.harness import job_finished, send_job, wait_for


def real_feed_files(root: Path) -> list[Path]:
    out = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        if path.suffix in (".xml", ".rss", ".atom"):
            out.append(path)
        elif (
            path.suffix == ".json" and "jsonfeed" in path.parent.name and not path.name.endswith(".serde.json")
        ):  # JSON Feed documents, not expected outputs
            out.append(path)
    return out


@pytest.mark.slow
def test_real_feeds_ingest(ctx, r, worker, shared_data):
    root = shared_data / "real-feeds"
    if not root.is_dir():
        pytest.skip(f"no real feeds at {root}")
    files = real_feed_files(root)
    assert len(files) > 50
    calls = [
        (
            "feedsift.ingest_feed",
            [base64.b64encode(p.read_bytes()).decode(), f"real:{p.relative_to(root)}"],
            {"encoding": "base64"},
        )
        for p in files
    ]
    job = send_job(ctx, app, calls)
    wait_for(lambda: job_finished(ctx, job), timeout=240, interval=0.5, message="the real feeds")
    rows, empty, failed = [], [], []
    for p in files:
        source = f"real:{p.relative_to(root)}"
        state = ctx.store.feed(feed_id(source))
        status, error = state.get("last_status", ""), state.get("last_error", "")
        # articles read from the file; one already stored from another file (same guid and site) is stored once
        count = int(state.get("articles") or 0)
        assert len(ctx.store.article_ids(feed=feed_id(source), limit=100_000)) <= count
        rows.append((str(p.relative_to(root)), count, status, error[:90]))
        assert status, f"{source}: no stored outcome"
        if status == "200":
            if count == 0:
                empty.append(source)
        else:
            assert error and count == 0, source
            failed.append(source)
            assert any(e["feed"] == feed_id(source) and e["message"] == error for e in ctx.store.errors(count=1000))
    print(f"\n{'file':<70} {'articles':>8}  status  note")
    for name, count, status, error in rows:
        print(f"{name:<70} {count:>8}  {status:<6}  {error}")
    with_articles = sum(1 for _, c, _, _ in rows if c)
    print(
        f"{len(rows)} files: {with_articles} with articles, {len(failed)} with a stored error, {len(empty)} valid but empty"
    )
    for p in files:  # the JSON Feeds and the HTML page are refused with a clear reason
        if p.suffix == ".json":
            assert "JSON Feed is not supported" in ctx.store.feed(feed_id(f"real:{p.relative_to(root)}"))["last_error"]
    html = [p for p in files if p.name == "unrecognized.rss"]
    for p in html:
        assert "HTML page" in ctx.store.feed(feed_id(f"real:{p.relative_to(root)}"))["last_error"]
    assert with_articles >= len(files) * 3 // 4
    assert worker.proc.poll() is None
    log = worker.log_path.read_text()
    assert "raised unexpected" not in log and "InternalError" not in log
