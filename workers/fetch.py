"""The guarded HTTP fetcher: the only code that opens connections to submitted URLs.

Strangers choose the URLs, so every hop is checked before connecting: the
scheme must be http(s), the name is resolved here and every address it
resolves to must be public (IPv4 addresses embedded in IPv6 ones included),
and the connection then goes to the address that was checked (no second
lookup an attacker could answer differently). Redirects go through the same
check. Bodies are read raw in small pieces and decompressed here, never more
than the byte cap plus one byte at a time, so a compression bomb costs at most
the cap. A watchdog shuts the socket when the deadline for the whole download
passes, so a server trickling its headers or body a byte at a time is cut off
even though each read is quick.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import urljoin, urlsplit

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from feedsift.workers.errors import BlockedURLError, PermanentFetchError, TransientFetchError
from feedsift.workers.settings import Settings

_CHUNK = 16 * 1024
_REDIRECTS = {301, 302, 303, 307, 308}
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass
class FetchResult:
    url: str
    status: int
    body: bytes = b""
    etag: str = ""
    modified: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def not_modified(self) -> bool:
        return self.status == 304


def _embedded_ipv4(addr: Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries (mapped, compatible, 6to4, Teredo, NAT64)."""
    if not isinstance(addr, ipaddress.IPv6Address):
        return []
    out = []
    if addr.sixtofour is not None:
        out.append(addr.sixtofour)
    if addr.teredo is not None:
        out.extend(addr.teredo)
    if any(addr in net for net in _NAT64) or (addr in _IPV4_COMPATIBLE and int(addr) > 1):
        out.append(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    return out


def check_address(ip: str, allow_private: bool) -> None:
    """Refuses addresses a stranger's URL must not reach (raises `BlockedURLError`)."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # ::ffff:a.b.c.d reaches a.b.c.d: judged as that address
    for inner in _embedded_ipv4(addr):
        check_address(str(inner), allow_private)
    if addr.is_unspecified or addr.is_multicast:
        raise BlockedURLError(f"address {addr} is not allowed")
    if allow_private:
        return
    if not addr.is_global or addr.is_reserved or addr.is_link_local or addr.is_loopback or addr.is_private:
        raise BlockedURLError(f"address {addr} is private, loopback, link-local or reserved")


@lru_cache(maxsize=8)
def resolve(host: str, port: int, allow_private: bool, allowed: frozenset = frozenset()) -> str:
    """Resolves `host` and returns an address to connect to, if every answer is allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TransientFetchError(f"cannot resolve {host}: {exc}") from exc
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise TransientFetchError(f"cannot resolve {host}")
    for ip in addresses:
        if (ipaddress.ip_address(ip.split("%", 1)[0]), port) in allowed:
            continue
        try:
            check_address(ip, allow_private)
        except BlockedURLError as exc:
            raise BlockedURLError(f"{host} resolves to a refused address: {exc}" if host != ip else str(exc)) from None
    return addresses[0]


def check_url(url: str) -> tuple[str, str, int]:
    """Scheme, host and port of a URL feedsift may fetch; anything else is `BlockedURLError`."""
    if not isinstance(url, str):
        raise BlockedURLError(f"URL is not a string: {url!r}"[:300])
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise BlockedURLError(f"scheme {scheme or '(none)'!r} is not allowed; only http and https")
        host = parts.hostname
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise BlockedURLError(f"malformed URL {url[:200]!r}: {exc}") from None
    if not host:
        raise BlockedURLError(f"URL has no host: {url[:200]!r}")
    if any(ord(c) < 33 or ord(c) == 127 for c in url.strip()):
        raise BlockedURLError(f"URL contains spaces or control characters: {url[:200]!r}")
    return scheme, host, port


def fetch(url: str, settings: Settings, etag: str = "", modified: str = "") -> FetchResult:
    """GETs a feed, following at most `max_redirects` checked redirects."""
    deadline = time.monotonic() + settings.fetch_deadline
    for _hop in range(settings.max_redirects + 1):
        result = _get_once(url, settings, etag, modified, deadline)
        if result.status in _REDIRECTS:
            location = result.headers.get("location")
            if not location:
                raise PermanentFetchError(f"HTTP {result.status} without Location from {url}")
            try:
                url = urljoin(url, location.strip())
            except ValueError as exc:
                raise PermanentFetchError(f"bad redirect Location {location[:200]!r} from {url}") from exc
            continue
        return result
    raise PermanentFetchError(f"more than {settings.max_redirects} redirects")


class _Watchdog:
    """Shuts a socket down when the download's deadline passes, whatever the socket is waiting for."""

    def __init__(self, deadline: float):
        self.deadline, self.expired, self.sock = deadline, False, None
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock) -> None:
        with self._lock:
            self.sock = sock
            if self.expired:
                self._shut()

    def _fire(self) -> None:
        with self._lock:
            self.expired = True
            self._shut()

    def _shut(self) -> None:
        if self.sock is not None:
            try:
                socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        self._timer.cancel()


def _get_once(url: str, settings: Settings, etag: str, modified: str, deadline: float) -> FetchResult:
    scheme, host, port = check_url(url)
    ip = resolve(host, port, settings.allow_private_networks, settings.endpoints)
    if time.monotonic() >= deadline:
        raise TransientFetchError(f"fetch deadline of {settings.fetch_deadline:g}s passed before connecting to {url}")
    parts = urlsplit(url.strip())
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default_port = 443 if scheme == "https" else 80
    name = f"[{host}]" if ":" in host else host
    headers = {
        "Host": name if port == default_port else f"{name}:{port}",
        "User-Agent": settings.user_agent,
        "Accept": "application/rss+xml, application/atom+xml, application/rdf+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5",
        "Accept-Encoding": "gzip, deflate",
        "Connection": "close",
    }
    if etag:
        headers["If-None-Match"] = etag
    if modified:
        headers["If-Modified-Since"] = modified
    if scheme == "https":
        conn = HTTPSConnection(
            ip,
            port,
            timeout=settings.connect_timeout,
            server_hostname=host,
            assert_hostname=host,
            cert_reqs="CERT_REQUIRED",
        )
    else:
        conn = HTTPConnection(ip, port, timeout=settings.connect_timeout)
    watchdog = _Watchdog(deadline)
    try:
        conn.connect()
        watchdog.watch(conn.sock)
        conn.timeout = settings.read_timeout  # urllib3 applies it to the socket before reading the response
        conn.sock.settimeout(settings.read_timeout)
        conn.request("GET", path, headers=headers, preload_content=False, decode_content=False)
        resp = conn.getresponse()
        try:
            result = FetchResult(url=url, status=resp.status, headers={k.lower(): v for k, v in resp.headers.items()})
            if resp.status in _REDIRECTS or resp.status == 304:
                return result
            if resp.status == 429 or resp.status >= 500:
                raise TransientFetchError(f"HTTP {resp.status} from {url}", resp.headers.get("retry-after", ""))
            if resp.status >= 400 or resp.status < 200:
                raise PermanentFetchError(f"HTTP {resp.status} from {url}")
            result.body = _read_capped(resp, settings.max_feed_bytes, deadline)
            result.etag = resp.headers.get("etag", "")
            result.modified = resp.headers.get("last-modified", "")
            return result
        finally:
            resp.close()
    except (PermanentFetchError, TransientFetchError):
        if watchdog.expired or time.monotonic() >= deadline:
            raise _deadline_error(settings, url) from None
        raise
    except (SSLError, ssl.SSLError) as exc:
        if watchdog.expired:
            raise _deadline_error(settings, url) from None
        raise PermanentFetchError(f"TLS error fetching {url}: {exc}") from exc
    except NewConnectionError as exc:
        if watchdog.expired:
            raise _deadline_error(settings, url) from None
        raise TransientFetchError(f"cannot connect to {url}: {exc}") from exc
    except (TimeoutError, ReadTimeoutError, ConnectTimeoutError) as exc:
        if watchdog.expired:
            raise _deadline_error(settings, url) from None
        raise TransientFetchError(
            f"timed out fetching {url} (connect {settings.connect_timeout:g}s, read {settings.read_timeout:g}s)"
        ) from exc
    except (OSError, ProtocolError, http.client.RemoteDisconnected, http.client.IncompleteRead) as exc:
        if watchdog.expired:
            raise _deadline_error(settings, url) from None
        raise TransientFetchError(f"{type(exc).__name__} fetching {url}: {exc}") from exc
    except (http.client.HTTPException, HTTPError, ValueError) as exc:
        if watchdog.expired:
            raise _deadline_error(settings, url) from None
        raise PermanentFetchError(f"malformed HTTP response from {url}: {type(exc).__name__}: {exc}"[:500]) from exc
    finally:
        watchdog.cancel()
        conn.close()


def _deadline_error(settings: Settings, url: str) -> TransientFetchError:
    return TransientFetchError(f"download of {url} cut off at the fetch deadline of {settings.fetch_deadline:g}s")


class _Decoder:
    """Undoes one Content-Encoding piecewise, never producing more than it is allowed to."""

    def __init__(self, encoding: str):
        codings = [c.strip().lower() for c in encoding.split(",") if c.strip() and c.strip().lower() != "identity"]
        if len(codings) > 1:
            raise PermanentFetchError(f"unsupported Content-Encoding {encoding!r}")
        self.coding = codings[0] if codings else ""
        if self.coding in ("gzip", "x-gzip"):
            self._new = lambda: zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self.coding == "deflate":
            self._new = lambda: zlib.decompressobj(zlib.MAX_WBITS)
        elif self.coding:
            raise PermanentFetchError(f"unsupported Content-Encoding {encoding!r}")
        self._z = self._new() if self.coding else None
        self._started = False

    def decode(self, data: bytes, room: int) -> bytes:
        """Decompresses `data`; raises as soon as the output would exceed `room` bytes."""
        if self._z is None:
            if len(data) > room:
                raise _TooBig()
            return data
        out, produced = [], 0
        while data:
            try:
                piece = self._z.decompress(data, room - produced + 1)
            except zlib.error as exc:
                if self.coding == "deflate" and not self._started:
                    self._z = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, as some servers send
                    self._started = True
                    continue
                raise PermanentFetchError(f"corrupt {self.coding} body: {exc}") from None
            self._started = True
            produced += len(piece)
            if produced > room:
                raise _TooBig()
            out.append(piece)
            if self._z.unconsumed_tail:
                data = self._z.unconsumed_tail
            elif self._z.eof and self._z.unused_data:
                data = self._z.unused_data  # a further gzip member
                self._z = self._new()
            else:
                data = b""
        return b"".join(out)


class _TooBig(Exception):
    pass


def _read_capped(resp, limit: int, deadline: float) -> bytes:
    declared = resp.headers.get("content-length")
    if declared and declared.strip().isdigit() and int(declared) > limit:
        raise PermanentFetchError(f"feed is larger than the limit of {limit} bytes ({declared.strip()} declared)")
    decoder = _Decoder(resp.headers.get("content-encoding", ""))
    chunks, total = [], 0
    try:
        while True:
            if time.monotonic() > deadline:
                raise TransientFetchError("download took longer than the fetch deadline")
            raw = resp.read1(_CHUNK, decode_content=False)
            if not raw:
                break
            chunk = decoder.decode(raw, limit - total)
            total += len(chunk)
            chunks.append(chunk)
    except _TooBig:
        what = "after decompression " if decoder.coding else ""
        raise PermanentFetchError(f"feed is larger {what}than the limit of {limit} bytes") from None
    return b"".join(chunks)
