"""The README's first command: `feedsift demo` on the embedded Redis, as a newcomer runs it."""

import os
import re
import subprocess
import sys

from tests.harness import ROOT


def test_demo_runs_on_its_own_redis():
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDSIFT_")}
    env["COLUMNS"] = "160"
    done = subprocess.run(
        [sys.executable, "-m", "feedsift.workers.cli", "demo", "--no-serve"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert re.search(r"started a private Redis at redis://127\.0\.0\.1:\d+/0", done.stdout)
    assert "32 new article(s) stored from 3 feed(s); 0 feed error(s)" in done.stdout
    assert "near" in done.stdout  # the syndicated copies are flagged in the table
    assert "HGETALL feedsift:article:" in done.stdout
