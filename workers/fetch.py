"""The guarded HTTP fetcher: the only code that opens connections to submitted URLs.

Strangers choose the URLs, so every hop is checked before connecting: the
scheme must be http(s), the name is resolved here and every address it
resolves to must be public, and the connection then goes to the address
that was checked (no second lookup an attacker could answer differently).
Redirects go through the same check. Bodies are read in small pieces
against a byte cap (after decompression) and a wall-clock deadline.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.exceptions import (
    DecodeError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    ConnectTimeoutError,
    SSLError,
)

from workers.errors import BlockedURLError, PermanentFetchError, TransientFetchError
from workers.settings import Settings

_CHUNK = 64 * 1024
_REDIRECTS = {301, 302, 303, 307, 308}


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


def check_address(ip: str, allow_private: bool) -> None:
    """Refuses addresses a stranger's URL must not reach."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.is_unspecified or addr.is_multicast:
        raise BlockedURLError(f"address {addr} is not allowed")
    if allow_private:
        return
    if not addr.is_global or addr.is_reserved or addr.is_link_local or addr.is_loopback or addr.is_private:
        raise BlockedURLError(f"address {addr} is private, loopback, link-local or reserved")


def resolve(host: str, port: int, allow_private: bool) -> str:
    """Resolves `host` and returns an address to connect to, if every answer is allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TransientFetchError(f"cannot resolve {host}: {exc}") from exc
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise TransientFetchError(f"cannot resolve {host}")
    for ip in addresses:
        check_address(ip, allow_private)
    return addresses[0]


def check_url(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise BlockedURLError(f"scheme {scheme or '(none)'!r} is not allowed; only http and https")
    if not parts.hostname:
        raise BlockedURLError(f"URL has no host: {url!r}")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise BlockedURLError(f"bad port in {url!r}") from exc
    return scheme, parts.hostname, port


def fetch(url: str, settings: Settings, etag: str = "", modified: str = "") -> FetchResult:
    """GETs a feed, following at most `max_redirects` checked redirects."""
    deadline = time.monotonic() + settings.fetch_deadline
    for _hop in range(settings.max_redirects + 1):
        result = _get_once(url, settings, etag, modified, deadline)
        if result.status in _REDIRECTS:
            location = result.headers.get("location")
            if not location:
                raise PermanentFetchError(f"HTTP {result.status} without Location from {url}")
            url = urljoin(url, location)
            continue
        return result
    raise PermanentFetchError(f"more than {settings.max_redirects} redirects")


def _get_once(url: str, settings: Settings, etag: str, modified: str, deadline: float) -> FetchResult:
    scheme, host, port = check_url(url)
    ip = resolve(host, port, settings.allow_private_networks)
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default_port = 443 if scheme == "https" else 80
    host_header = host if port == default_port else f"{host}:{port}"
    if ":" in host and not host.startswith("["):
        host_header = f"[{host}]" if port == default_port else f"[{host}]:{port}"
    headers = {
        "Host": host_header,
        "User-Agent": settings.user_agent,
        "Accept": "application/rss+xml, application/atom+xml, application/rdf+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5",
        "Accept-Encoding": "gzip, deflate",
    }
    if etag:
        headers["If-None-Match"] = etag
    if modified:
        headers["If-Modified-Since"] = modified
    timeout = urllib3.Timeout(connect=settings.connect_timeout, read=settings.read_timeout)
    if scheme == "https":
        pool = urllib3.HTTPSConnectionPool(ip, port, timeout=timeout, retries=False, server_hostname=host, assert_hostname=host, cert_reqs="CERT_REQUIRED")
    else:
        pool = urllib3.HTTPConnectionPool(ip, port, timeout=timeout, retries=False)
    try:
        resp = pool.urlopen("GET", path, headers=headers, redirect=False, retries=False, preload_content=False, decode_content=True)
        try:
            result = FetchResult(url=url, status=resp.status, headers={k.lower(): v for k, v in resp.headers.items()})
            if resp.status in _REDIRECTS or resp.status == 304:
                return result
            if resp.status == 429 or resp.status >= 500:
                raise TransientFetchError(f"HTTP {resp.status} from {url}")
            if resp.status >= 400 or resp.status < 200:
                raise PermanentFetchError(f"HTTP {resp.status} from {url}")
            result.body = _read_capped(resp, settings.max_feed_bytes, deadline)
            result.etag = resp.headers.get("etag", "")
            result.modified = resp.headers.get("last-modified", "")
            return result
        finally:
            resp.release_conn()
            resp.close()
    except (ConnectTimeoutError, ReadTimeoutError, NewConnectionError, ProtocolError) as exc:
        raise TransientFetchError(f"{type(exc).__name__} fetching {url}: {exc}") from exc
    except SSLError as exc:
        raise PermanentFetchError(f"TLS error fetching {url}: {exc}") from exc
    except DecodeError as exc:
        raise PermanentFetchError(f"corrupt compressed body from {url}") from exc
    except HTTPError as exc:
        raise TransientFetchError(f"{type(exc).__name__} fetching {url}: {exc}") from exc
    finally:
        pool.close()


def _read_capped(resp, limit: int, deadline: float) -> bytes:
    declared = resp.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PermanentFetchError(f"feed is larger than the limit of {limit} bytes ({declared} declared)")
    chunks, total = [], 0
    while True:
        if time.monotonic() > deadline:
            raise TransientFetchError("download took longer than the fetch deadline")
        chunk = resp.read1(_CHUNK, decode_content=True)
        if not chunk:
            break
        total += len(chunk)
        if total > limit:
            raise PermanentFetchError(f"feed is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
