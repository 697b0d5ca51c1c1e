"""Hostile URLs and documents through the task API: each ends as a stored, readable error (or capped data).

The worker here runs as in production, private networks refused, except for
the one endpoint of the local feed server (FEEDSIFT_ALLOW_ENDPOINTS), so the
real address check runs on every refused URL and redirect. A `Listener` on
other loopback ports counts connections: refused targets must see none.
"""

from __future__ import annotations

import base64
import gzip
import uuid

import pytest

from feedsift.workers.app import app
from feedsift.workers.feeds import feed_id
from tests.harness import Listener, Worker, job_finished, send_job, wait_for

ENTITY_MARKER = "s3cr3t-" + uuid.uuid4().hex


def rss(items: str, prolog: str = "", title: str = "Hostile") -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?>{prolog}<rss version="2.0"><channel><title>{title}</title>'
        f"<link>http://{uuid.uuid4().hex[:10]}.hostile.example/</link>{items}</channel></rss>"
    ).encode()


def item(n: int, text: str = "", title: str = "") -> str:
    return (
        f"<item><title>{title or f'Story {n}'}</title><guid>h-{n}</guid><link>http://hostile.example/{n}</link>"
        f"<description>{text or f'Body of story number {n} about nothing in particular.'}</description></item>"
    )


@pytest.fixture(scope="module")
def listeners():
    made = [Listener("127.0.0.1")]
    try:
        made.append(Listener("::1", made[0].port))
    except OSError:
        pass
    yield made
    for listener in made:
        listener.close()


@pytest.fixture(scope="module")
def hostile_worker(service_env, feed_server, tmp_path_factory):
    port = feed_server.httpd.server_address[1]
    env = {
        **service_env,
        "FEEDSIFT_ALLOW_PRIVATE_NETWORKS": "0",
        "FEEDSIFT_ALLOW_ENDPOINTS": f"127.0.0.1:{port}",
        "FEEDSIFT_FETCH_RETRIES": "0",
        "FEEDSIFT_FETCH_DEADLINE": "4",
        "FEEDSIFT_READ_TIMEOUT": "2",
    }
    w = Worker(env, tmp_path_factory.mktemp("hostile"), f"hostile{uuid.uuid4().hex[:6]}").wait_ready()
    yield w
    w.stop()


def run(ctx, calls, timeout: float = 90):
    job = send_job(ctx, app, calls)
    wait_for(lambda: job_finished(ctx, job), timeout=timeout, message=f"job {job}")
    return job


def fetch_calls(urls):
    return [("feedsift.fetch_feed", [u], {}) for u in urls]


def ingest_call(doc: bytes, source: str):
    return ("feedsift.ingest_feed", [base64.b64encode(doc).decode(), source], {"encoding": "base64"})


def stored_error(ctx, locator: str) -> tuple[str, str, list[dict]]:
    """(last_status, last_error) of the feed and its entries in the error stream."""
    state = ctx.store.feed(feed_id(locator))
    errors = [e for e in ctx.store.errors(count=1000) if e["feed"] == feed_id(locator)]
    return state.get("last_status", ""), state.get("last_error", ""), errors


def assert_error(ctx, locator: str, kind: str, *words: str) -> str:
    status, message, errors = stored_error(ctx, locator)
    assert status == kind, (locator, status, message)
    for w in words:
        assert w in message, (locator, message)
    assert [e["kind"] for e in errors] == [kind] and errors[0]["message"] == message
    assert not ctx.store.article_ids(feed=feed_id(locator))
    return message


def every_stored_value(r) -> bytes:
    out = []
    for key in r.scan_iter(match="fstest:*"):
        kind = r.type(key)
        if kind == b"hash":
            out += [k + b"=" + v for k, v in r.hgetall(key).items()]
        elif kind == b"stream":
            out += [b"".join(k + v for k, v in fields.items()) for _, fields in r.xrange(key)]
        elif kind == b"string":
            out.append(r.get(key))
        elif kind == b"list":
            out += r.lrange(key, 0, -1)
    return b"\n".join(out)


# -- URLs refused before connecting ------------------------------------------------------


def test_refused_urls_stored_and_never_connected(ctx, r, hostile_worker, listeners):
    other = listeners[0].port
    urls = {
        "file:///etc/passwd": "scheme 'file'",
        "ftp://127.0.0.1/feed.xml": "scheme 'ftp'",
        f"gopher://127.0.0.1:{other}/_GET": "scheme 'gopher'",
        "data:text/xml;base64,PHJzcy8+": "scheme 'data'",
        "http://169.254.169.254/latest/meta-data/": "169.254.169.254",
        "http://10.1.2.3/feed.xml": "10.1.2.3",
        "http://192.168.0.1/feed.xml": "192.168.0.1",
        "http://0.0.0.0/": "0.0.0.0",
        f"http://127.0.0.1:{other}/feed.xml": "127.0.0.1",
        f"http://[::1]:{other}/feed.xml": "::1",
        f"http://[::ffff:127.0.0.1]:{other}/": "127.0.0.1",
        f"http://2130706433:{other}/": "127.0.0.1",
        f"http://0177.0.0.1:{other}/": "127.0.0.1",
        f"http://0x7f.1:{other}/": "127.0.0.1",
        f"http://localhost:{other}/feed.xml": "localhost resolves to a refused address",
        "http://[fe80::1]/": "fe80::1",
        "http://224.0.0.1/": "224.0.0.1",
        "http://[::]/": "::",
    }
    run(ctx, fetch_calls(urls))
    for url, words in urls.items():
        assert_error(ctx, url, "blocked", words)
    assert sum(listener.accepted for listener in listeners) == 0


def test_redirects_into_refused_targets_stored(ctx, r, hostile_worker, feed_server, listeners):
    other, tag = listeners[0].port, uuid.uuid4().hex
    targets = [
        f"http://127.0.0.1:{other}/feed.xml",
        f"http://localhost:{other}/",
        f"http://[::1]:{other}/",
        "http://169.254.169.254/latest/meta-data/iam/",
        "http://10.0.0.5/internal.xml",
        "file:///etc/passwd",
        f"http://0x7f000001:{other}/",
    ]
    urls = [feed_server.add(f"/{tag}/r{i}", b"", status=302, headers={"Location": t}) for i, t in enumerate(targets)]
    final = feed_server.add(f"/{tag}/feed.xml", rss(item(1)))
    for i in range(6):
        feed_server.add(f"/{tag}/hop{i + 1}", b"", status=301, headers={"Location": f"/{tag}/hop{i}" if i else final})
    too_many, five = f"{feed_server.base}/{tag}/hop6", f"{feed_server.base}/{tag}/hop5"
    run(ctx, fetch_calls(urls + [too_many, five]))
    for url in urls:
        assert_error(ctx, url, "blocked")
    assert_error(ctx, too_many, "permanent", "more than 5 redirects")
    assert ctx.store.feed(feed_id(five))["last_status"] == "200" and len(ctx.store.article_ids(feed=feed_id(five))) == 1
    assert sum(listener.accepted for listener in listeners) == 0
    assert len(feed_server.hits(f"/{tag}/r0")) == 1  # the allowed first hop was fetched once, the target never


# -- caps -------------------------------------------------------------------------------


def test_caps_on_time_bytes_entries_and_length(ctx, r, hostile_worker, feed_server):
    tag = uuid.uuid4().hex

    def slow_headers(wfile):
        import time

        for byte in b"HTTP/1.1 200 OK\r\nX-Drip: " + b"a" * 1000:
            wfile.write(bytes([byte]))
            time.sleep(0.25)

    def slow_body(wfile):
        import time

        wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: 1000000\r\n\r\n")
        for _ in range(1000):
            wfile.write(b"<")
            time.sleep(0.25)

    def silent(wfile):
        import time

        time.sleep(30)

    bomb = gzip.compress(b" " * (100 << 20), compresslevel=9)
    long_text = "word " * 40_000  # 200,000 characters
    urls = {
        "headers": feed_server.add(f"/{tag}/slow-headers", b"", raw=slow_headers),
        "body": feed_server.add(f"/{tag}/slow-body", b"", raw=slow_body),
        "silent": feed_server.add(f"/{tag}/silent", b"", raw=silent),
        "bomb": feed_server.add(f"/{tag}/bomb.xml", bomb, headers={"Content-Encoding": "gzip"}),
        "big": feed_server.add(f"/{tag}/big.xml", rss(item(0, "x" * (11 << 20)))),
        "many": feed_server.add(f"/{tag}/many.xml", rss("".join(item(n) for n in range(1200)))),
        "long": feed_server.add(f"/{tag}/long.xml", rss(item(1, long_text, title="T" * 5000) + item(2))),
    }
    import time

    start = time.monotonic()
    run(ctx, fetch_calls(urls.values()), timeout=120)
    assert time.monotonic() - start < 60
    assert_error(ctx, urls["headers"], "transient", "fetch deadline of 4s")
    assert_error(ctx, urls["body"], "transient", "fetch deadline of 4s")
    assert_error(ctx, urls["silent"], "transient", "timed out")
    assert_error(ctx, urls["bomb"], "permanent", "larger after decompression than the limit of 10485760 bytes")
    assert_error(ctx, urls["big"], "permanent", "larger than the limit of 10485760 bytes")

    many = feed_id(urls["many"])
    assert len(ctx.store.article_ids(feed=many, limit=5000)) == 1000
    state = ctx.store.feed(many)
    assert state["last_status"] == "200" and "1200 entries, only the first 1000 read" in state["last_error"]
    assert any(e["feed"] == many and e["kind"] == "warning" for e in ctx.store.errors(count=100))

    long_ids = ctx.store.article_ids(feed=feed_id(urls["long"]))
    assert len(long_ids) == 2
    longest = max(ctx.store.articles(long_ids), key=lambda a: len(a["text"]))
    assert 99_000 < len(longest["text"]) <= 100_000 and len(longest["title"]) == 2000


# -- documents --------------------------------------------------------------------------

LAUGHS = "".join(f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10 if i else "lol"}">' for i in range(10))


def test_entity_attacks_are_harmless(ctx, r, hostile_worker, listeners, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text(ENTITY_MARKER)
    other = listeners[0].port
    body = item(1, "before &x; after", title="t &x;")
    docs = {
        "laughs": rss(item(1, "&l9;", title="&l9;"), prolog=f"<!DOCTYPE rss [{LAUGHS}]>"),
        "laughs-after-padding": rss(
            item(1, "&l9;", title="&l9;"), prolog="<!--" + "p" * 100_000 + f"--><!DOCTYPE rss [{LAUGHS}]>"
        ),
        "laughs-utf16": rss(item(1, "&l9;"), prolog=f"<!DOCTYPE rss [{LAUGHS}]>")
        .decode()
        .replace("utf-8", "utf-16")
        .encode("utf-16"),
        "file-entity": rss(body, prolog=f'<!DOCTYPE rss [<!ENTITY x SYSTEM "file://{secret}">]>'),
        "url-entity": rss(body, prolog=f'<!DOCTYPE rss [<!ENTITY x SYSTEM "http://127.0.0.1:{other}/x">]>'),
        "external-dtd": rss(body, prolog=f'<!DOCTYPE rss SYSTEM "file://{secret}">'),
        "external-dtd-url": rss(body, prolog=f'<!DOCTYPE rss SYSTEM "http://127.0.0.1:{other}/rss.dtd">'),
        "parameter-entity": rss(body, prolog=f'<!DOCTYPE rss [<!ENTITY % p SYSTEM "file://{secret}"> %p;]>'),
    }
    run(ctx, [ingest_call(doc, f"upload:{name}") for name, doc in docs.items()])
    for name in ("laughs", "file-entity", "url-entity", "parameter-entity"):
        assert_error(ctx, f"upload:{name}", "not_a_feed", "declares XML entities")
    for name in docs:  # the rest either refused or read without expanding anything
        status, message, _ = stored_error(ctx, f"upload:{name}")
        assert status in ("200", "not_a_feed"), (name, status, message)
    stored = every_stored_value(r)
    assert ENTITY_MARKER.encode() not in stored
    assert b"lollollol" not in stored
    assert max((len(v) for v in stored.split(b"\n")), default=0) < 200_000
    assert sum(listener.accepted for listener in listeners) == 0
    assert hostile_worker.proc.poll() is None


def test_not_feeds_give_clear_errors(ctx, r, hostile_worker, feed_server):
    whole = rss("".join(item(n) for n in range(1, 4)))
    truncated = whole[: whole.index(b"<item>", whole.index(b"h-2")) + 20]  # items 1 and 2 whole, 3 cut short
    docs = {
        "html": (
            b"<!DOCTYPE html><html><head><title>Home</title></head><body><p>Welcome</p></body></html>",
            "HTML page",
        ),
        "empty": (b"", "empty document"),
        "blank": (b"   \n\t  ", "empty document"),
        "binary": (bytes(range(256)) * 40, "binary data"),
        "json-feed": (b'{"version": "https://jsonfeed.org/version/1.1", "title": "J", "items": []}', "JSON"),
        "text": (b"just some words, no markup at all", "not a feed"),
        "truncated-head": (whole[:60], "malformed feed"),
    }
    calls = [ingest_call(doc, f"upload:{name}") for name, (doc, _) in docs.items()]
    calls.append(ingest_call(truncated, "upload:truncated"))
    calls.append(("feedsift.ingest_feed", [12345, "upload:number"], {}))
    calls.append(("feedsift.ingest_feed", ["%%%not base64", "upload:b64"], {"encoding": "base64"}))
    calls.append(("feedsift.fetch_feed", [None], {}))
    html_url = feed_server.add(f"/{uuid.uuid4().hex}/page.html", docs["html"][0], headers={"Content-Type": "text/html"})
    calls.append(("feedsift.fetch_feed", [html_url], {}))
    run(ctx, calls)
    for name, (_, words) in docs.items():
        assert_error(ctx, f"upload:{name}", "not_a_feed", words)
    assert_error(ctx, html_url, "not_a_feed", "HTML page")
    assert_error(ctx, "upload:number", "not_a_feed", "not a string")
    assert_error(ctx, "upload:b64", "not_a_feed", "not valid base64")
    assert_error(ctx, "None", "blocked", "scheme")

    # a truncated feed: what could be recovered is stored AND a warning says the feed was malformed
    fid = feed_id("upload:truncated")
    titles = sorted(a["title"] for a in ctx.store.articles(ctx.store.article_ids(feed=fid)))
    assert titles[:2] == ["Story 1", "Story 2"]
    state = ctx.store.feed(fid)
    assert state["last_status"] == "200" and state["last_error"].startswith("malformed feed")
    assert [e["kind"] for e in ctx.store.errors(count=1000) if e["feed"] == fid] == ["warning"]
    assert hostile_worker.proc.poll() is None
