"""feedparser's own test corpus (from its source distribution on PyPI) through `ingest_feed` on a real worker.

Every XML file must end as stored articles, a stored error, or a valid feed
without entries; no task may crash and the worker must stay up. The sdist is
downloaded once with pip into pytest's cache; without network the test skips.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import feedparser
import pytest

from feedsift.workers.app import app
from feedsift.workers.feeds import feed_id
from tests.harness import job_finished, send_job, wait_for


def corpus_dir(cache: Path) -> Path:
    version = feedparser.__version__
    target = cache / f"feedparser-{version}"
    if not (target / "tests").is_dir():
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-binary",
                ":all:",
                "--no-deps",
                "-q",
                f"feedparser=={version}",
                "-d",
                str(cache),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        archives = sorted(cache.glob(f"feedparser-{version}.tar.gz"))
        if done.returncode != 0 or not archives:
            pytest.skip(f"cannot download the feedparser {version} sdist: {done.stderr.strip()[-300:]}")
        with tarfile.open(archives[0]) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and "/tests/" in m.name]
            tar.extractall(cache, members=members, filter="data")
    if not (target / "tests").is_dir():
        pytest.skip(f"the feedparser {version} sdist has no tests/ folder")
    return target / "tests"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_feedparser_corpus_never_crashes_a_worker(ctx, r, worker, request):
    root = corpus_dir(Path(request.config.cache.mkdir("feedparser-sdist")))
    files = sorted(p for p in root.rglob("*.xml") if p.is_file())
    assert len(files) > 1000
    calls = [
        (
            "feedsift.ingest_feed",
            [base64.b64encode(p.read_bytes()).decode(), f"fp:{p.relative_to(root)}"],
            {"encoding": "base64"},
        )
        for p in files
    ]
    job = send_job(ctx, app, calls)
    wait_for(lambda: job_finished(ctx, job), timeout=800, interval=1, message="feedparser's corpus")
    outcome, kinds = Counter(), Counter()
    for p in files:
        state = ctx.store.feed(feed_id(f"fp:{p.relative_to(root)}"))
        status = state.get("last_status", "")
        assert status, f"{p}: no stored outcome"
        if status == "200":
            outcome[
                "with articles" if int(state.get("articles") or 0) else "feed read, no entry with a title or text"
            ] += 1
        else:
            assert state.get("last_error"), p
            outcome["stored error"] += 1
            kinds[status] += 1
    print(
        f"\nfeedparser {feedparser.__version__} corpus: {len(files)} XML files: {dict(outcome)}; errors by kind: {dict(kinds)}"
    )
    assert sum(outcome.values()) == len(files)
    assert kinds.get("internal", 0) == 0, "an unexpected exception while reading a feed"
    assert worker.proc.poll() is None
    log = worker.log_path.read_text()
    assert "raised unexpected" not in log and "WorkerLostError" not in log
    assert r.llen(ctx.keys.deadletter) == 0
