"""The HTTP API as a client sees it: a real uvicorn server, real Redis and a real worker."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from feedsift.workers.context import context
from feedsift.workers.embedded import free_port
from feedsift.workers.feeds import feed_id
from tests.harness import EXAMPLES, ROOT, wait_for

KEY = "k-" + "7" * 30
WRITE_METHODS = {"post", "put", "patch", "delete"}


class ApiServer:
    """`feedsift serve` in a subprocess on a free port, its log kept for failures."""

    def __init__(self, env: dict, log_dir: Path, name: str = "api"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{name}.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115 (open for the process's life)
        argv = [sys.executable, "-m", "feedsift.workers.cli", "serve", "--port", str(self.port)]
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"API server exited: {self.log_path.read_text()[-3000:]}")
            try:
                httpx.get(self.url + "/openapi.json", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError(f"API server not up: {self.log_path.read_text()[-3000:]}")

    def client(self, key: str | None = KEY) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def api(service_env, tmp_path_factory):
    """Keys needed for writes and reads; private addresses allowed (the feeds are served locally)."""
    env = {**service_env, "FEEDSIFT_API_KEYS": f"other-key,{KEY}", "FEEDSIFT_MAX_FEED_BYTES": "100000"}
    server = ApiServer(env, tmp_path_factory.mktemp("api"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def open_api(service_env, tmp_path_factory):
    """Reads open to all; private addresses refused, as in production."""
    env = {**service_env, "FEEDSIFT_API_KEYS": KEY, "FEEDSIFT_API_PUBLIC_READ": "1"}
    env["FEEDSIFT_ALLOW_PRIVATE_NETWORKS"] = "0"
    server = ApiServer(env, tmp_path_factory.mktemp("open-api"), "open-api")
    yield server
    server.stop()


def finished(http: httpx.Client, job: str) -> dict:
    def done():
        p = http.get(f"/jobs/{job}").json()
        return p if p["finished"] else None

    return wait_for(done, timeout=120, message=f"job {job}")


def test_every_write_route_refuses_a_missing_or_wrong_key(api, r):
    schema = httpx.get(api.url + "/openapi.json").json()
    writes = [(m, p) for p, ops in schema["paths"].items() for m in ops if m in WRITE_METHODS]
    assert {(m, p) for m, p in writes} == {
        ("post", "/feeds"),
        ("delete", "/feeds/{feed_id}"),
        ("post", "/feeds/{feed_id}/resume"),
        ("post", "/models/{version}/use"),
    }
    bodies = {"/feeds": {"url": "http://127.0.0.1:9/feed.xml"}}
    for method, path in writes:
        url = path.replace("{feed_id}", feed_id("http://127.0.0.1:9/feed.xml")).replace("{version}", "bundled")
        for key in (None, "wrong", KEY[:-1], ""):
            with api.client(key) as http:
                answer = http.request(method.upper(), url, json=bodies.get(path))
            assert answer.status_code == 401, (method, path, key, answer.text)
            assert answer.headers["www-authenticate"] == "Bearer"
        # every write route documents its 401 and its key
        assert "401" in schema["paths"][path][method]["responses"]
        assert schema["paths"][path][method]["security"] == [{"HTTPBearer": []}]
    keys = context().keys
    assert not r.exists(keys.feeds, keys.feeds_due), "a refused write changed nothing"


def test_reads_need_a_key_unless_public(api, open_api, r):
    with api.client(None) as anon, api.client() as keyed:
        for path in ("/articles", "/feeds", "/models", "/metrics", "/"):
            assert anon.get(path).status_code == 401, path
            assert keyed.get(path).status_code == 200, path
        assert anon.get("/health").status_code == 200  # for load balancers
        # a browser is asked for the key, and may give it as the password of HTTP Basic
        assert anon.get("/").headers["www-authenticate"] == 'Basic realm="feedsift"'
        assert anon.get("/", auth=("anyone", KEY)).status_code == 200
        assert anon.get("/", auth=("anyone", "wrong")).status_code == 401
        assert anon.get("/articles", auth=("anyone", KEY)).status_code == 200
    with open_api.client(None) as anon:
        assert anon.get("/articles").status_code == 200
        assert anon.post("/feeds", json={"url": "https://example.org/feed.xml"}).status_code == 401


def test_subscribe_then_page_through_articles(api, r, worker, feed_server):
    url = feed_server.add("/api/herald.xml", (EXAMPLES / "steppe-herald.xml").read_bytes())
    with api.client() as http:
        answer = http.post("/feeds", json={"url": url, "every": 600})
        assert answer.status_code == 202, answer.text
        job, fid = answer.json()["job"], answer.json()["feed"]
        assert fid == feed_id(url)
        progress = finished(http, job)
        assert progress["stored"] > 10 and progress["errors"] == 0
        feed = http.get(f"/feeds/{fid}").json()
        assert feed["subscribed"] and feed["every"] == 600 and feed["last_status"] == "200"
        assert feed["next_due"] and feed["paused"] is None and feed["articles"] == progress["stored"]

        seen, cursor, pages = [], None, 0
        while True:
            page = http.get("/articles", params={"limit": 4, **({"cursor": cursor} if cursor else {})}).json()
            seen += page["items"]
            pages += 1
            cursor = page["next"]
            if not cursor:
                break
        ids = [a["id"] for a in seen]
        assert len(ids) == len(set(ids)) == progress["stored"] and pages == -(-len(ids) // 4)
        times = [a["published"] for a in seen]
        assert times == sorted(times, reverse=True)

        since = sorted(times)[len(times) // 2]
        recent = http.get("/articles", params={"since": since, "limit": 500}).json()["items"]
        assert recent and all(a["published"] >= since for a in recent)
        assert len(recent) == sum(1 for t in times if t >= since)

        sport = http.get("/articles", params={"topic": "sport", "feed": fid, "limit": 500}).json()["items"]
        assert all("sport" in a["topics"] for a in sport)
        assert len(sport) == sum(1 for a in seen if "sport" in a["topics"])

        unknown = http.get("/articles", params={"topic": "sports"})
        assert unknown.status_code == 422 and "'diplomacy', 'sport' or 'politics'" in unknown.text
        unknown = http.get("/articles", params={"feed": "0" * 12})
        assert unknown.status_code == 404 and f"known feeds: {fid}" in unknown.json()["detail"]

        one = http.get(f"/articles/{ids[0]}").json()
        assert one["text"] and one["explanation"]["topics"].keys() == {"diplomacy", "sport", "politics"}
        assert http.get("/articles/ffff").status_code == 404

        assert http.delete(f"/feeds/{fid}").status_code == 204
        assert http.get(f"/feeds/{fid}").status_code == 404
        assert r.zscore(context().keys.feeds_due, fid) is None
        assert http.get(f"/articles/{ids[0]}").status_code == 200  # its articles stay


def test_upload_a_document_and_read_its_clusters(api, r, worker):
    document = (EXAMPLES / "global-wire.atom").read_text()
    with api.client() as http:
        answer = http.post("/feeds", json={"document": document, "source": "upload:wire"})
        assert answer.status_code == 202, answer.text
        assert http.get(f"/feeds/{answer.json()['feed']}").json()["url"] == "upload:wire"  # known at once
        lone = http.post("/feeds", content=b'{"document": "<rss/>", "source": "\\ud800"}')
        assert lone.status_code == 422, lone.text
        progress = finished(http, answer.json()["job"])
        assert progress["stored"] > 0
        for other in ("steppe-herald.xml", "pitchside.rdf"):
            job = http.post("/feeds", json={"document": (EXAMPLES / other).read_text(), "source": other}).json()["job"]
            finished(http, job)
        dups = http.get("/articles", params={"duplicates": True, "limit": 500}).json()["items"]
        assert dups, "the example feeds carry near-duplicates"
        cluster = http.get(f"/clusters/{dups[0]['cluster']}").json()
        assert dups[0]["id"] in {m["id"] for m in cluster["members"]}
        assert http.get("/clusters/abc").status_code == 404
        assert http.get("/jobs/abc").status_code == 404


def test_limits_and_the_url_guard(api, open_api, r):
    with api.client() as http:
        big = http.post("/feeds", json={"document": "<rss>" + "x" * 150_000 + "</rss>", "source": "big"})
        assert big.status_code == 413 and "100000 bytes" in big.json()["detail"]
        huge = http.post("/feeds", content=b'{"document": "' + b"x" * 300_000 + b'"}')
        assert huge.status_code == 413 and "request body larger" in huge.json()["detail"]

        def chunks():
            for _ in range(40):
                yield b"x" * 10_000

        streamed = http.post("/feeds", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413
        assert http.post("/feeds", json={"url": "ftp://example.org/feed"}).status_code == 422  # by the schema
        both = http.post("/feeds", json={"url": "https://example.org/f", "document": "x", "source": "y"})
        assert both.status_code == 422
    with open_api.client() as http:
        for url in ("http://127.0.0.1:8000/feed", "http://10.1.2.3/feed", "http://[::1]/f", "http://localhost/f"):
            refused = http.post("/feeds", json={"url": url})
            assert refused.status_code == 400, (url, refused.text)
            assert "refused" in refused.text or "loopback" in refused.text, (url, refused.text)
    assert not r.exists(context().keys.feeds_due)


def test_health_models_and_metrics(api, r, worker):
    with api.client() as http:
        health = http.get("/health").json()
        assert health["ok"] and health["redis"] and health["broker"] and health["workers"]
        models = http.get("/models").json()
        assert [m["current"] for m in models] == [True] and models[0]["bundled"]
        assert http.post("/models/nope/use").status_code == 404
        used = http.post("/models/bundled/use").json()
        assert used["bundled"] and used["version"] == models[0]["version"]
        text = http.get("/metrics").text
    assert 'feedsift_queue_depth{queue="fetch"}' in text and 'feedsift_queue_depth{queue="process"}' in text
    assert f'feedsift_model_info{{version="{models[0]["version"]}"}} 1.0' in text


@pytest.mark.slow
def test_schemathesis_finds_nothing(api, r, worker, feed_server, tmp_path):
    """Every operation of the schema, with a key: no server error, every response as documented."""
    url = feed_server.add("/api/pitchside.rdf", (EXAMPLES / "pitchside.rdf").read_bytes())
    with api.client() as http:
        finished(http, http.post("/feeds", json={"url": url}).json()["job"])
    config = tmp_path / "schemathesis.toml"
    # A feed URL is checked beyond what a schema can say (it must parse, and not point into our network):
    # POST /feeds answers a documented 400 to a string the schema allows and no URL parser reads.
    config.write_text(
        "[generation]\nmax-examples = 12\n\n"
        '[[operations]]\ninclude-path-regex = "^/feeds$"\ninclude-method = "POST"\n'
        'checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]\n'
    )
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("st")),
            "--config-file",
            str(config),
            "run",
            api.url + "/openapi.json",
            "--checks",
            "all",
            "--header",
            f"Authorization: Bearer {KEY}",
            "--workers",
            "1",
            "--seed",
            "1",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    print(run.stdout[-3000:])
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "Selected: 14/14" in run.stdout and "Tested: 14" in run.stdout
    generated, passed = re.search(r"(\d+) generated, (\d+) passed", run.stdout).groups()
    assert int(generated) > 100 and generated == passed


def test_compose_file_runs_the_api():
    compose = shutil.which("docker-compose")
    if not compose:
        pytest.skip("docker-compose is not installed (.ci/run installs it)")
    env = {"PATH": os.environ.get("PATH", ""), "FEEDSIFT_API_KEYS": KEY}
    argv = [compose, "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml")]
    services = subprocess.run([*argv, "config", "--services"], capture_output=True, text=True, env=env, timeout=60)
    assert services.returncode == 0, services.stderr
    assert {"api", "redis", "worker", "beat"} <= set(services.stdout.split())
    config = subprocess.run([*argv, "config"], capture_output=True, text=True, env=env, timeout=60).stdout
    api = config[config.index("\n  api:") :].split("\n  beat:")[0]
    assert "- serve" in api and "127.0.0.1:8000:8000" in api
    assert f"FEEDSIFT_API_KEYS: {KEY}" in api
