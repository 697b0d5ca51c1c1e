"""A network namespace for one worker, joined to the host by a veth pair that a test cuts and restores.

Redis and RabbitMQ listen on the host's loopback only, so a `socat` on the
host end of the pair forwards each port the worker needs: inside, the worker
reaches them at `host_ip`. Cutting the link (`ip link set ... down`) is a
network partition: nothing is closed, packets just stop, as when a cable or a
switch fails. Needs root.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
import uuid

from tests.brokers import listening


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class Netns:
    def __init__(self):
        tag = uuid.uuid4().hex[:8]
        self.name, self.host_if, self.inner_if = f"fs-{tag}", f"fsh{tag}", f"fsn{tag}"
        net = f"10.{random.randint(64, 250)}.{random.randint(0, 255)}"
        self.host_ip, self.inner_ip = f"{net}.1", f"{net}.2"
        self.forwarders: list[subprocess.Popen] = []
        ip("netns", "add", self.name)
        try:
            ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.inner_if)
            ip("link", "set", self.inner_if, "netns", self.name)
            ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            ip("link", "set", self.host_if, "up")
            for args in (
                ("addr", "add", f"{self.inner_ip}/30", "dev", self.inner_if),
                ("link", "set", self.inner_if, "up"),
                ("link", "set", "lo", "up"),
            ):
                ip("netns", "exec", self.name, "ip", *args)
        except Exception:
            self.close()
            raise

    @property
    def prefix(self) -> list[str]:
        """Runs a command inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def forward(self, port: int) -> str:
        """Makes the host's 127.0.0.1:`port` reachable from inside at `host_ip`:`port`; returns that address."""
        self.forwarders.append(
            subprocess.Popen(
                ["socat", f"TCP-LISTEN:{port},bind={self.host_ip},fork,reuseaddr", f"TCP:127.0.0.1:{port}"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        deadline = time.monotonic() + 10
        while not listening(port, self.host_ip):
            if time.monotonic() > deadline:
                raise RuntimeError(f"socat does not listen on {self.host_ip}:{port}")
            time.sleep(0.05)
        return f"{self.host_ip}:{port}"

    def cut(self) -> None:
        ip("link", "set", self.host_if, "down")

    def restore(self) -> None:
        ip("link", "set", self.host_if, "up")

    def close(self) -> None:
        for proc in self.forwarders:  # socat and the copy it forked for each connection
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)  # takes its peer with it
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
