"""The HTTP API: a thin layer over the client, a key on every write, reads open only when configured.

`feedsift serve` runs it on uvicorn; OpenAPI at /docs. Route handlers are
plain functions (FastAPI runs them in its thread pool, the client is
synchronous); each translates the client's answers and errors into HTTP.
"""

import base64
import hmac
import json
import re
from datetime import datetime
from enum import Enum
from typing import Annotated

import redis
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.routing import Match

from feedsift.workers import schemas
from feedsift.workers.client import Client, TooLarge, UnknownFilter
from feedsift.workers.errors import BlockedURLError
from feedsift.workers.settings import Settings, get_settings

#: The pattern of a page cursor: the last article's score (epoch seconds) and id.
CURSOR = r"^-?\d{1,17}(\.\d{1,17})?:[0-9a-f]{1,64}$"
ID = r"^[0-9a-f]{1,64}$"

bearer = HTTPBearer(auto_error=False, description="one of FEEDSIFT_API_KEYS")


def _problem(status: int, what: str) -> dict:
    return {status: {"model": schemas.Problem, "description": what}}


UNAUTHORIZED = _problem(401, "no API key, or a wrong one")
NOT_FOUND = _problem(404, "no such resource")
BAD = _problem(400, "a filter, cursor or URL that cannot be used")
#: What a submission's answer leads to (OpenAPI links: clients and schemathesis follow them).
SUBMITTED_LINKS = {
    "job": {"operationId": "get_job", "parameters": {"job_id": "$response.body#/job"}},
    "feed": {"operationId": "get_feed", "parameters": {"feed_id": "$response.body#/feed"}},
}


def key_matches(settings: Settings, authorization: str) -> bool:
    """`Bearer KEY`, or Basic credentials whose password is a key (what a browser sends), against every key
    in constant time."""
    scheme, _, value = authorization.strip().partition(" ")
    given = value.strip()
    if scheme.lower() == "basic":
        try:
            given = base64.b64decode(given, validate=True).decode().partition(":")[2]
        except ValueError:
            return False
    elif scheme.lower() != "bearer":
        return False
    found = False
    for key in settings.api_key_list:
        found |= hmac.compare_digest(given.encode(), key.encode())
    return found and bool(given)


def create_app(settings: Settings | None = None, client: Client | None = None) -> FastAPI:
    settings = settings or get_settings()
    client = client or Client()

    def write_access(request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if not key_matches(settings, request.headers.get("authorization", "")):
            raise HTTPException(
                401, "a valid API key is needed: Authorization: Bearer KEY", {"WWW-Authenticate": "Bearer"}
            )

    def page_access(request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        """As for reads, but a browser is asked for the key (as the password) when it has none."""
        if not key_matches(settings, request.headers.get("authorization", "")):
            raise HTTPException(401, "a valid API key is needed", {"WWW-Authenticate": 'Basic realm="feedsift"'})

    # reads declare the key only when they need it, so the schema says what the server does
    read = [] if settings.api_public_read else [Depends(write_access)]
    write = [Depends(write_access)]

    app = FastAPI(
        title="feedsift",
        version="1",
        summary="Topic tagging and near-duplicate detection for news feeds",
        description="Writes need `Authorization: Bearer KEY` (FEEDSIFT_API_KEYS); reads too unless "
        "FEEDSIFT_API_PUBLIC_READ=1.",
    )
    app.add_middleware(BodyLimit, limit=settings.api_body_limit)
    # the topics of the models known when the server starts; an unknown one is refused, naming them
    Topic = Enum("Topic", {t: t for t in _topics(client)}, type=str)

    @app.middleware("http")
    async def allow_header(request: Request, call_next):
        """A 405 lists every method the path has (Starlette lists those of the first route only)."""
        response = await call_next(request)
        if response.status_code == 405:
            methods = set()
            for route in app.router.routes:
                if route.matches(request.scope)[0] != Match.NONE:
                    methods |= getattr(route, "methods", set())
            response.headers["allow"] = ", ".join(sorted(methods))
        return response

    @app.exception_handler(UnknownFilter)
    @app.exception_handler(BlockedURLError)
    def _bad(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(redis.ConnectionError)
    @app.exception_handler(redis.TimeoutError)
    def _redis_down(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"Redis unreachable: {exc}"}, status_code=503)

    @app.exception_handler(TooLarge)
    def _large(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=413)

    # -- feeds ------------------------------------------------------------------------
    @app.post(
        "/feeds",
        status_code=202,
        dependencies=write,
        response_model=schemas.Submitted,
        responses={
            202: {"links": SUBMITTED_LINKS, "description": "sent: follow the job"},
            **UNAUTHORIZED,
            **BAD,
            **_problem(413, "body or document too large"),
        },
        tags=["feeds"],
    )
    def submit(body: schemas.Subscribe | schemas.Upload) -> schemas.Submitted:
        """Subscribes a feed URL (fetched now, then on its own schedule), or ingests one feed document."""
        if isinstance(body, schemas.Subscribe):
            job, fid = client.subscribe(body.url, body.every)
        else:
            job, fid = client.ingest(body.document, body.source)
        return schemas.Submitted(job=job, feed=fid)

    @app.get("/feeds", dependencies=read, response_model=list[schemas.Feed], responses=UNAUTHORIZED, tags=["feeds"])
    def feeds() -> list[schemas.Feed]:
        """Every feed with its fetch state and, when subscribed, its schedule and health."""
        return [schemas.Feed.of(row) for row in client.feeds()]

    @app.get(
        "/feeds/{feed_id}",
        operation_id="get_feed",
        dependencies=read,
        response_model=schemas.Feed,
        responses={**UNAUTHORIZED, **NOT_FOUND},
        tags=["feeds"],
    )
    def feed(feed_id: Annotated[str, Path(pattern=ID)]) -> schemas.Feed:
        return schemas.Feed.of(_found(client.feed(feed_id), "feed"))

    @app.delete(
        "/feeds/{feed_id}",
        status_code=204,
        dependencies=write,
        responses={**UNAUTHORIZED, **NOT_FOUND},
        tags=["feeds"],
    )
    def unsubscribe(feed_id: Annotated[str, Path(pattern=ID)]) -> Response:
        """Stops polling the feed and forgets it; its articles stay."""
        _found(client.unsubscribe(feed_id), "feed")
        return Response(status_code=204)

    @app.post(
        "/feeds/{feed_id}/resume",
        dependencies=write,
        response_model=schemas.Feed,
        responses={**UNAUTHORIZED, **NOT_FOUND},
        tags=["feeds"],
    )
    def resume(feed_id: Annotated[str, Path(pattern=ID)]) -> schemas.Feed:
        """Polls a paused subscription again, from now."""
        _found(client.resume(feed_id), "subscription")
        return schemas.Feed.of(_found(client.feed(feed_id), "feed"))

    # -- articles ---------------------------------------------------------------------
    @app.get(
        "/articles",
        dependencies=read,
        response_model=schemas.ArticlePage,
        responses={**UNAUTHORIZED, **BAD, **_problem(404, "no such feed")},
        tags=["articles"],
    )
    def articles(
        topic: Topic | None = None,
        feed: Annotated[str | None, Query(pattern=ID, description="a feed id; an unknown one is a 404")] = None,
        duplicates: bool = False,
        since: Annotated[
            str | None,
            Query(json_schema_extra={"format": "date-time"}, description="RFC 3339, e.g. 2026-12-01T00:00:00Z"),
        ] = None,
        cursor: Annotated[str | None, Query(pattern=CURSOR, description="`next` of the previous page")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> schemas.ArticlePage:
        """Stored articles, newest first, a page at a time; filters intersect."""
        after = _instant(since) if since is not None else None
        if feed and not client.feed(feed):
            raise HTTPException(404, str(_unknown(client, feed=feed)))
        page = client.page(topic.value if topic else None, feed, duplicates, after, cursor, limit)
        return schemas.ArticlePage(items=[schemas.ArticleOut.of(a) for a in page.articles], next=page.next)

    @app.get(
        "/articles/{article_id}",
        dependencies=read,
        response_model=schemas.ArticleDetail,
        responses={**UNAUTHORIZED, **NOT_FOUND},
        tags=["articles"],
    )
    def article(article_id: Annotated[str, Path(pattern=ID)]) -> schemas.ArticleDetail:
        """One article with its text, its duplicate cluster and why it got its topics."""
        a = _found(client.article(article_id), "article")
        why = client.explain(article_id)
        return schemas.ArticleDetail(
            **schemas.ArticleOut.of(a).model_dump(),
            text=a.text,
            cluster_members=client.cluster(a.cluster) if a.cluster else [],
            explanation=schemas.Explanation(**why) if why else None,
        )

    @app.get(
        "/clusters/{canonical_id}",
        dependencies=read,
        response_model=schemas.Cluster,
        responses={**UNAUTHORIZED, **NOT_FOUND},
        tags=["articles"],
    )
    def cluster(canonical_id: Annotated[str, Path(pattern=ID)]) -> schemas.Cluster:
        """A duplicate cluster: its canonical (earliest-seen) article and each duplicate."""
        return schemas.Cluster(**_found(client.cluster_of(canonical_id), "cluster"))

    @app.get(
        "/jobs/{job_id}",
        operation_id="get_job",
        dependencies=read,
        response_model=schemas.Job,
        responses={**UNAUTHORIZED, **NOT_FOUND},
        tags=["feeds"],
    )
    def job(job_id: Annotated[str, Path(pattern=ID)]) -> schemas.Job:
        """How far a submission is: feeds read, articles stored."""
        p = _found(client.job(job_id), "job")
        return schemas.Job(
            job=job_id,
            feeds=p.feeds,
            feeds_done=p.feeds_done,
            errors=p.errors,
            articles=p.articles,
            stored=p.stored,
            finished=p.finished,
        )

    # -- models -----------------------------------------------------------------------
    @app.get("/models", dependencies=read, response_model=list[schemas.Model], responses=UNAUTHORIZED, tags=["models"])
    def models() -> list[schemas.Model]:
        """The bundled topic model and every published version; `current` marks the one workers use."""
        return [_model(row) for row in client.models()]

    @app.post(
        "/models/{version}/use",
        dependencies=write,
        response_model=schemas.ModelInUse,
        responses={**UNAUTHORIZED, **NOT_FOUND},
        tags=["models"],
    )
    def use_model(version: Annotated[str, Path(max_length=100)]) -> schemas.ModelInUse:
        """Makes a published version (or `bundled`) current; workers switch on their next batch."""
        try:
            chosen, bundled = client.use_model(version)
        except ValueError as exc:
            raise HTTPException(404, str(exc)) from None
        return schemas.ModelInUse(version=chosen, bundled=bundled)

    # -- dashboard --------------------------------------------------------------------
    @app.get(
        "/",
        dependencies=[] if settings.api_public_read else [Depends(page_access)],
        response_class=Response,
        responses={**UNAUTHORIZED, 200: {"content": {"text/html": {"schema": {"type": "string"}}}}},
        tags=["dashboard"],
    )
    def dashboard() -> HTMLResponse:
        """Tags per day, the latest articles, duplicate clusters and feed health; refreshes itself."""
        from feedsift.workers.dashboard import render

        return HTMLResponse(render(client))

    # -- operations -------------------------------------------------------------------
    @app.get(
        "/health",
        response_model=schemas.Health,
        responses={503: {"model": schemas.Health, "description": "Redis or the broker does not answer"}},
        tags=["operations"],
    )
    def health(response: Response) -> schemas.Health:
        """Open to all (for load balancers): whether Redis and the broker answer, and which workers do."""
        state = client.health()
        ok = state["redis"] and state["broker"]
        response.status_code = 200 if ok else 503
        return schemas.Health(ok=ok, **state)

    @app.get(
        "/metrics",
        dependencies=read,
        responses={**UNAUTHORIZED, 200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
        response_class=Response,
        tags=["operations"],
    )
    def metrics() -> Response:
        """Prometheus metrics: this process's and, read at scrape time, the queues, articles and model."""
        from feedsift.workers import metrics as m

        body, content_type = m.exposition(client)
        return Response(body, media_type=content_type)

    return app


_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\d)[Tt ](\d\d:\d\d:\d\d)(\.\d+)?([Zz]|[+-]\d\d:\d\d)")


def _instant(value: str) -> float:
    """An RFC 3339 date-time as epoch seconds (422 for anything else, numbers included)."""
    match = _RFC3339.fullmatch(value.strip())
    try:
        if not match:
            raise ValueError(value)
        day, clock, fraction, zone = match.groups()
        zone = "+00:00" if zone in "Zz" else zone
        return datetime.fromisoformat(f"{day}T{clock}{(fraction or '')[:7]}{zone}").timestamp()
    except (ValueError, OverflowError):
        error = {"type": "datetime_from_date_parsing", "loc": ("query", "since"), "input": value}
        raise RequestValidationError([{**error, "msg": "Input should be an RFC 3339 date-time"}]) from None


def _topics(client: Client) -> list[str]:
    try:
        return client.topics()
    except redis.RedisError:  # Redis not up yet: the bundled model's topics
        return client.topics(published=False)


def _unknown(client: Client, **filters) -> Exception:
    try:
        client.check_filters(**filters)
    except UnknownFilter as exc:
        return exc
    return UnknownFilter("unknown filter")


def _found(value, what: str):
    if not value:
        raise HTTPException(404, f"no such {what}")
    return value


def _model(row: dict) -> schemas.Model:
    meta = row.get("meta", {})
    figures = meta.get("held_out") or meta.get("cv") or {}
    return schemas.Model(
        version=row["version"],
        current=bool(row.get("current")),
        bundled=bool(row.get("bundled")),
        topics=list(row.get("topics", [])),
        trained_at=meta.get("trained_at"),
        micro_f1=figures.get("micro_f1"),
    )


class BodyLimit:
    """Refuses a request body over `limit` bytes with 413, before the route reads it: by its declared length
    at once, and by counting when it is sent in chunks."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await self._refuse(send)
        if declared is None and scope["method"] in ("POST", "PUT", "PATCH"):
            chunks, size = [], 0
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                if size > self.limit:
                    return await self._refuse(send)
                if not message.get("more_body"):
                    break
            body, replayed = b"".join(chunks), False

            async def receive():  # the body, already read, given to the route once
                nonlocal replayed
                if replayed:
                    return {"type": "http.disconnect"}
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, receive, send)

    async def _refuse(self, send) -> None:
        body = json.dumps({"detail": f"request body larger than {self.limit} bytes"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    import uvicorn

    uvicorn.run(create_app(), host=host, port=port, log_level="info", access_log=False)
