"""The README's first command: `feedsift demo` on the embedded Redis, as a newcomer runs it."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.slow
def test_demo_runs_from_an_installed_wheel(tmp_path):
    """`pip install .` then `feedsift demo` from an unrelated directory: everything the demo needs is in the wheel,
    and nothing called `workers` or `models` lands in site-packages. (The wheel goes into a fresh venv with
    `--no-deps`; its dependencies are borrowed from the test venv through a path file, not downloaded again.)"""
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = wheels.glob("feedsift-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)], check=True, timeout=300)
    site = Path(
        subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], text=True)
    )
    site = Path(str(site).strip())
    installed = {p.name for p in site.iterdir()}
    assert "feedsift" in installed and not installed & {"workers", "models", "examples"}, installed
    deps = next(p for p in map(Path, sys.path) if p.name == "site-packages" and (p / "celery").is_dir())
    (site / "borrowed-deps.pth").write_text(f"{deps}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FEEDSIFT_", "PYTHON"))}
    env["COLUMNS"] = "160"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        [venv / "bin" / "feedsift", "demo", "--no-serve"],
        env=env,
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "32 new article(s) stored from 3 feed(s); 0 feed error(s)" in done.stdout
    where = subprocess.check_output(
        [python, "-c", "import feedsift.workers.cli as c; print(c.__file__)"], text=True, cwd=elsewhere, env=env
    )
    assert where.startswith(str(site)), where
