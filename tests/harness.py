"""Real parts for service tests: a private redis-server, celery worker processes, a local HTTP server."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import redis

from feedsift.workers.client import Client, Progress
from feedsift.workers.queues import ALL, worker_argv

ROOT = Path(__file__).resolve().parent.parent
#: Key prefix of every test's data (the service's default is left alone).
PREFIX = "fstest:"
EXAMPLES = ROOT / "examples" / "feeds"


def clean(client: redis.Redis, prefix: str) -> None:
    """Deletes feedsift's data and any message an earlier test left queued or unacknowledged (a worker
    stopped right after its last task may not have acknowledged it), but keeps kombu's bindings."""
    bindings = prefix + "queue:_kombu."
    batch = []
    for key in client.scan_iter(match=prefix + "*", count=1000):
        if not key.decode().startswith(bindings):
            batch.append(key)
        if len(batch) >= 500:
            client.delete(*batch)
            batch = []
    if batch:
        client.delete(*batch)


class Worker:
    """A `celery worker` subprocess (prefork) on feedsift's queues, its log kept for failures."""

    def __init__(
        self,
        env: dict,
        log_dir: Path,
        name: str,
        concurrency: int = 2,
        queue_names: str = ",".join(ALL),
        prefix: tuple[str, ...] = (),
    ):
        self.log_path = log_dir / f"worker-{name}.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115 (open for the process's life)
        argv = worker_argv(queue_names, concurrency, "prefork", "INFO", name=f"{name}@%h")
        self.proc = subprocess.Popen(
            [*prefix, *argv, "--without-heartbeat"],  # prefix: e.g. `ip netns exec NAME`
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> Worker:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_path.read_text()[-3000:]}")
            if " ready." in self.log_path.read_text():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready: {self.log_path.read_text()[-3000:]}")

    def children(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def stop(self, kill: bool = False) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9 if kill else 15)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self.log.close()


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    headers: dict = field(default_factory=dict)
    etag: str = ""
    #: Writes the whole raw response itself (status line included) to the socket file: slow or broken servers.
    raw: object = None


class FeedServer:
    """Serves registered paths on 127.0.0.1; answers If-None-Match with 304; logs every request."""

    def __init__(self):
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, dict]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append((self.path, dict(self.headers)))
                route = server.routes.get(self.path)
                if route is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if route.raw is not None:
                    self.close_connection = True
                    try:
                        route.raw(self.wfile)
                    except OSError:
                        pass
                    return
                if route.etag and self.headers.get("If-None-Match") == route.etag:
                    self.send_response(304)
                    self.send_header("ETag", route.etag)
                    self.end_headers()
                    return
                self.send_response(route.status)
                for k, v in route.headers.items():
                    self.send_header(k, v)
                if route.etag:
                    self.send_header("ETag", route.etag)
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                self.wfile.write(route.body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def add(self, path: str, body: bytes, **kw) -> str:
        self.routes[path] = Route(body=body, **kw)
        return self.base + path

    def hits(self, path: str) -> list[dict]:
        return [h for p, h in self.requests if p == path]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def wait_for(predicate, timeout: float = 60, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def feedsift(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The `feedsift` command, run as a user runs it, with the given environment."""
    return subprocess.run(
        [sys.executable, "-m", "feedsift.workers.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def send_job(ctx, app, calls: list[tuple[str, list, dict]]) -> str:
    """Sends task calls as one submission (a job) through the client, with the given Celery app."""
    return Client(ctx, app).send(calls)


def job_finished(ctx, job: str) -> Progress | None:
    """The job's progress once every feed is done and every enqueued article stored, else None."""
    p = Client(ctx).progress(job)
    return p if p.finished else None


class Listener:
    """A socket listening on `host` that only counts the connections made to it (it never answers)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        import socket

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()
