"""The guarded fetcher on its own: what it refuses before connecting, and what it cuts off.

Only 127.0.0.1 is ever connected to; every other address in these tests must
be refused before a socket connects, which the `no_connect` guard asserts.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
import tracemalloc
import uuid
import zlib

import pytest

from feedsift.workers.errors import BlockedURLError, PermanentFetchError, TransientFetchError
from feedsift.workers.fetch import check_address, fetch
from feedsift.workers.settings import Settings

RSS = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><link>http://example.org/</link>
<item><title>One</title><guid>1</guid><description>Body one.</description></item></channel></rss>"""


class Connections:
    """Records every socket connect; only `allowed` (ip, port) pairs really connect, others fail the test."""

    def __init__(self, allowed=()):
        self.allowed, self.attempts = set(allowed), []

    def install(self, monkeypatch):
        real = socket.socket.connect
        guard = self

        def connect(sock, address):
            guard.attempts.append(address[:2])
            if tuple(address[:2]) not in guard.allowed:
                raise AssertionError(f"connection attempted to {address}")
            return real(sock, address)

        monkeypatch.setattr(socket.socket, "connect", connect)
        return self


@pytest.fixture
def no_connect(monkeypatch):
    return Connections().install(monkeypatch)


def strict(**kw) -> Settings:
    return Settings(allow_private_networks=False, **kw)


def port_of(feed_server) -> int:
    return feed_server.httpd.server_address[1]


# -- refused before any connection ------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://127.0.0.1/feed.xml",
        "gopher://127.0.0.1:70/_GET",
        "data:text/xml,<rss/>",
        "javascript:alert(1)",
        "dict://127.0.0.1:11211/",
        "/etc/passwd",
        "feed.xml",
        "//127.0.0.1/feed",
        "",
        "http:///nohost",
        "http://[::1",
        "http://example.org:99999/",
        "http://exa mple.org/",
        "http://example.org/\r\nX: y",
    ],
)
def test_bad_schemes_and_malformed_urls_refused(url, no_connect):
    with pytest.raises(BlockedURLError):
        fetch(url, Settings(allow_private_networks=True))
    assert no_connect.attempts == []


PRIVATE = [
    "127.0.0.1",
    "127.1",
    "127.255.255.254",
    "2130706433",
    "0177.0.0.1",
    "0x7f.1",
    "0x7f000001",
    "017700000001",
    "0.0.0.0",
    "0",
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "192.0.0.1",
    "198.18.0.1",
    "192.0.2.1",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "[::1]",
    "[::]",
    "[fe80::1]",
    "[fc00::1]",
    "[fd12:3456::1]",
    "[ff02::1]",
    "[2001:db8::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:169.254.169.254]",
    "[::ffff:10.0.0.1]",
    "[::ffff:0.0.0.0]",
    "[::127.0.0.1]",
    "[64:ff9b::a9fe:a9fe]",
    "[64:ff9b::7f00:1]",
    "[2002:7f00:1::1]",
    "[2002:a9fe:a9fe::]",
    "[2001:0:4136:e378:8000:63bf:3fff:fdd2]",
    "[::ffff:7f00:1]",
]


@pytest.mark.parametrize("host", PRIVATE)
def test_private_loopback_link_local_multicast_reserved_addresses_refused(host, no_connect):
    for url in (f"http://{host}/feed.xml", f"https://{host}:8443/feed.xml"):
        with pytest.raises(BlockedURLError) as info:
            fetch(url, strict())
        assert "address" in str(info.value)
    assert no_connect.attempts == []


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "[::]", "224.0.0.1", "[ff02::1]", "[::ffff:0.0.0.0]", "[::ffff:224.0.0.1]"]
)
def test_unspecified_and_multicast_refused_even_when_private_networks_allowed(host, no_connect):
    with pytest.raises(BlockedURLError):
        fetch(f"http://{host}/", Settings(allow_private_networks=True))
    assert no_connect.attempts == []


def test_public_addresses_pass_the_check():
    for ip in ("93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:93.184.216.34", "2002:5db8:d822::1"):
        check_address(ip, allow_private=False)


def test_names_resolving_to_private_addresses_refused(no_connect, monkeypatch):
    with pytest.raises(BlockedURLError, match="localhost resolves to a refused address"):
        fetch("http://localhost/feed", strict())
    answers = {
        "metadata.example": ["169.254.169.254"],
        "mixed.example": ["93.184.216.34", "10.0.0.7"],  # one private answer is enough to refuse
        "v6.example": ["2606:4700:4700::1111", "::1"],
    }

    def fake_getaddrinfo(host, port, *args, **kw):
        family = lambda ip: socket.AF_INET6 if ":" in ip else socket.AF_INET  # noqa: E731
        return [(family(ip), socket.SOCK_STREAM, 6, "", (ip, port)) for ip in answers[host]]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    for host in answers:
        with pytest.raises(BlockedURLError, match=f"{host} resolves to a refused address"):
            fetch(f"http://{host}/feed.xml", strict())
    assert no_connect.attempts == []


def test_allowed_endpoint_is_exact(feed_server, monkeypatch):
    """FEEDSIFT_ALLOW_ENDPOINTS lets one ip:port through; the same address on another port stays refused."""
    port = port_of(feed_server)
    url = feed_server.add(f"/{uuid.uuid4().hex}/ok.xml", RSS)
    guard = Connections(allowed={("127.0.0.1", port)}).install(monkeypatch)
    assert fetch(url, strict(allow_endpoints=f"127.0.0.1:{port}")).body == RSS
    with pytest.raises(BlockedURLError):
        fetch(f"http://127.0.0.1:{port + 1}/x", strict(allow_endpoints=f"127.0.0.1:{port}"))
    with pytest.raises(BlockedURLError):
        fetch(url, strict(allow_endpoints=f"[::1]:{port}"))
    with pytest.raises(ValueError, match="FEEDSIFT_ALLOW_ENDPOINTS: 'localhost' is not an ip:port"):
        strict(allow_endpoints="localhost")  # refused when the settings are read, not fetch by fetch
    assert guard.attempts == [("127.0.0.1", port)]


# -- redirects --------------------------------------------------------------------------


def redirect(feed_server, path: str, location: str, status: int = 302) -> str:
    return feed_server.add(path, b"", status=status, headers={"Location": location})


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{other}/feed.xml",
        "http://localhost:{other}/feed.xml",
        "http://[::1]:{port}/feed.xml",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/feed.xml",
        "http://2130706433:{other}/",
        "http://0x7f.1:{other}/",
        "http://[::ffff:127.0.0.1]:{port}/",
        "http://0.0.0.0:{port}/",
        "file:///etc/passwd",
        "gopher://127.0.0.1:{port}/_x",
        "ftp://127.0.0.1/feed.xml",
    ],
)
def test_redirect_into_refused_target_is_refused_before_connecting(target, feed_server, monkeypatch):
    port = port_of(feed_server)
    location = target.format(port=port, other=port + 1)
    start = redirect(feed_server, f"/{uuid.uuid4().hex}/start", location, status=301)
    guard = Connections(allowed={("127.0.0.1", port)}).install(monkeypatch)
    with pytest.raises(BlockedURLError):
        fetch(start, strict(allow_endpoints=f"127.0.0.1:{port}"))
    assert guard.attempts == [("127.0.0.1", port)]  # the first hop only


def test_redirects_followed_up_to_the_cap(feed_server):
    tag = uuid.uuid4().hex
    final = feed_server.add(f"/{tag}/feed.xml", RSS)
    for i in range(6):  # /6 -> /5 -> ... -> /1 -> feed: six redirects from /6, five from /5
        redirect(feed_server, f"/{tag}/{i + 1}", f"/{tag}/{i}" if i else final, status=(301, 302, 303, 307, 308)[i % 5])
    settings = Settings(allow_private_networks=True)
    before = len(feed_server.requests)
    result = fetch(f"{feed_server.base}/{tag}/5", settings)
    assert result.body == RSS and result.url == final
    with pytest.raises(PermanentFetchError, match="more than 5 redirects"):
        fetch(f"{feed_server.base}/{tag}/6", settings)
    assert len(feed_server.requests) - before == 6 + 6  # five redirects + the feed, then six hops refused at the 7th


# -- time-outs and the deadline ---------------------------------------------------------


class RawServer:
    """A listening socket on 127.0.0.1 whose connections are answered by `handler(conn)` in a thread."""

    def __init__(self, handler, backlog: int = 16, accept: bool = True):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        if accept:
            threading.Thread(target=self._loop, args=(handler,), daemon=True).start()

    def _loop(self, handler):
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(handler, conn), daemon=True).start()

    def _serve(self, handler, conn):
        try:
            handler(conn, self.stop)
        except OSError:
            pass
        finally:
            conn.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/feed.xml"

    def close(self):
        self.stop.set()
        self.sock.close()


def trickle(data: bytes, every: float):
    def handler(conn, stop):
        for i in range(len(data)):
            if stop.wait(every):
                return
            conn.sendall(data[i : i + 1])
        stop.wait(120)

    return handler


@pytest.fixture
def raw_server():
    servers = []

    def make(handler, **kw):
        servers.append(RawServer(handler, **kw))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


FAST = {"allow_private_networks": True, "connect_timeout": 1.0, "read_timeout": 1.5, "fetch_deadline": 3.0}


def timed_fetch(url: str, **kw):
    start = time.monotonic()
    with pytest.raises(TransientFetchError) as info:
        fetch(url, Settings(**{**FAST, **kw}))
    return str(info.value), time.monotonic() - start


def test_silent_server_hits_the_read_timeout(raw_server):
    server = raw_server(lambda conn, stop: stop.wait(60))
    message, took = timed_fetch(server.url, fetch_deadline=30.0)
    assert "timed out" in message and took < 10


def test_server_trickling_its_headers_is_cut_off_at_the_deadline(raw_server):
    """Each byte comes well within the read time-out; only the wall-clock deadline stops it."""
    server = raw_server(trickle(b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"a" * 10_000, every=0.2))
    message, took = timed_fetch(server.url)
    assert "fetch deadline" in message and took < 10


def test_server_trickling_its_body_is_cut_off_at_the_deadline(raw_server):
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: 100000\r\n\r\n"
    server = raw_server(lambda conn, stop: (conn.sendall(head), trickle(RSS * 1000, every=0.2)(conn, stop)))
    message, took = timed_fetch(server.url)
    assert "fetch deadline" in message and took < 10


def test_connect_timeout(raw_server):
    """A listener whose backlog is full and that never accepts: SYNs go unanswered."""
    server = raw_server(None, backlog=0, accept=False)
    fillers = []
    for _ in range(8):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", server.port))
        fillers.append(s)
    time.sleep(0.2)
    try:
        message, took = timed_fetch(server.url, fetch_deadline=30.0)
        assert "timed out" in message and took < 10
    finally:
        for s in fillers:
            s.close()


# -- byte caps --------------------------------------------------------------------------


def test_declared_length_over_the_cap_refused(feed_server):
    url = feed_server.add(f"/{uuid.uuid4().hex}/big.xml", b"x" * 5000)
    with pytest.raises(PermanentFetchError, match="larger than the limit of 4096 bytes"):
        fetch(url, Settings(allow_private_networks=True, max_feed_bytes=4096))


def test_endless_body_without_length_cut_at_the_cap(raw_server):
    def endless(conn, stop):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nConnection: close\r\n\r\n")
        end = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < end:
            conn.sendall(b"<x>" * 20000)

    server = raw_server(endless)
    with pytest.raises(PermanentFetchError, match="larger than the limit of 1048576 bytes"):
        fetch(server.url, Settings(allow_private_networks=True, max_feed_bytes=1 << 20))


def test_gzip_bomb_refused_without_expanding(feed_server):
    """About 200 KB of gzip that expands to 200 MB: refused at the 10 MB cap, memory stays near the cap."""
    bomb = gzip.compress(b"\0" * (200 << 20), compresslevel=9)
    assert len(bomb) < 1 << 20
    url = feed_server.add(
        f"/{uuid.uuid4().hex}/bomb.xml", bomb, headers={"Content-Encoding": "gzip", "Content-Type": "application/xml"}
    )
    settings = Settings(allow_private_networks=True)
    assert settings.max_feed_bytes == 10 * 1024 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(PermanentFetchError, match="larger after decompression than the limit of 10485760 bytes"):
            fetch(url, settings)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * settings.max_feed_bytes, peak


@pytest.mark.parametrize(
    "coding,encode",
    [
        ("gzip", lambda b: gzip.compress(b)),
        ("x-gzip", lambda b: gzip.compress(b[:100]) + gzip.compress(b[100:])),  # two gzip members
        ("deflate", zlib.compress),
        ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw deflate, as some servers send it
    ],
)
def test_compressed_bodies_decoded(coding, encode, feed_server):
    url = feed_server.add(f"/{uuid.uuid4().hex}/z.xml", encode(RSS), headers={"Content-Encoding": coding})
    assert fetch(url, Settings(allow_private_networks=True)).body == RSS


@pytest.mark.parametrize(
    "coding,body,message",
    [
        ("gzip", b"\x1f\x8b\x08\x00garbage-not-gzip" * 10, "corrupt gzip body"),
        ("br", b"\x0b\x02\x80" + RSS, "unsupported Content-Encoding"),
        ("gzip, br", RSS, "unsupported Content-Encoding"),
    ],
)
def test_bad_or_unknown_encodings_refused(coding, body, message, feed_server):
    url = feed_server.add(f"/{uuid.uuid4().hex}/bad.xml", body, headers={"Content-Encoding": coding})
    with pytest.raises(PermanentFetchError, match=message):
        fetch(url, Settings(allow_private_networks=True))


def test_http_errors_classified(feed_server):
    s = Settings(allow_private_networks=True)
    tag = uuid.uuid4().hex
    for status, kind in (
        (404, PermanentFetchError),
        (410, PermanentFetchError),
        (500, TransientFetchError),
        (503, TransientFetchError),
        (429, TransientFetchError),
    ):
        url = feed_server.add(f"/{tag}/{status}", b"no", status=status)
        with pytest.raises(kind, match=f"HTTP {status}"):
            fetch(url, s)
    with pytest.raises(PermanentFetchError, match="without Location"):
        fetch(feed_server.add(f"/{tag}/noloc", b"", status=302), s)


def test_garbage_instead_of_http_is_an_error(raw_server):
    server = raw_server(lambda conn, stop: conn.sendall(b"\x00\xffthis is not http\r\n\r\n"))
    with pytest.raises((PermanentFetchError, TransientFetchError)):
        fetch(server.url, Settings(**FAST))


def test_connection_refused_is_transient():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(TransientFetchError, match="cannot connect"):
            fetch(f"http://127.0.0.1:{port}/", Settings(allow_private_networks=True))
