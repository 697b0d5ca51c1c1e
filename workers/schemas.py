"""What the HTTP API takes and returns, as pydantic models: the OpenAPI schema is built from them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from feedsift.workers.article import Article, iso


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Subscribe(Strict):
    url: str = Field(
        max_length=2000,
        pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9.\[\]:_-]+(/[!-~]*)?$",
        description="http or https URL of the feed; refused (400) when the fetcher would refuse its address",
    )
    every: int | None = Field(
        default=None, ge=60, le=7 * 86400, description="seconds between polls (default FEEDSIFT_POLL_INTERVAL)"
    )


class Upload(Strict):
    document: str = Field(min_length=1, description="the feed document (RSS or Atom), as text")
    source: str = Field(min_length=1, max_length=500, description="a name for the feed (its id is a hash of it)")

    @field_validator("document", "source")
    @classmethod
    def _unicode(cls, value: str) -> str:
        """Text that UTF-8 can carry (JSON may spell a lone surrogate, which no name or document holds)."""
        value.encode("utf-8")  # a UnicodeEncodeError is a ValueError: refused with 422
        return value


class Submitted(BaseModel):
    job: str = Field(description="follow it at /jobs/{job}")
    feed: str = Field(description="the feed's id")


class Problem(BaseModel):
    detail: str


class ArticleOut(BaseModel):
    id: str
    feed: str
    url: str
    title: str
    published: str = Field(description="ISO 8601 UTC")
    summary: str
    topics: list[str]
    scores: dict[str, float]
    duplicate_of: str | None
    duplicate_kind: str | None = Field(description="exact, near or excerpt")
    similarity: float | None
    cluster: str | None
    model: str
    updated: bool

    @classmethod
    def of(cls, a: Article) -> ArticleOut:
        return cls(
            id=a.id,
            feed=a.feed,
            url=a.url,
            title=a.title,
            published=iso(a.published),
            summary=a.summary,
            topics=list(a.topics),
            scores=a.scores,
            duplicate_of=a.duplicate_of or None,
            duplicate_kind=a.duplicate_kind or None,
            similarity=a.similarity,
            cluster=a.cluster or None,
            model=a.model,
            updated=a.updated,
        )


class ArticlePage(BaseModel):
    items: list[ArticleOut]
    next: str | None = Field(description="cursor of the next page; null after the last")


class TopicWhy(BaseModel):
    probability: float
    threshold: float | None = None
    tagged: bool | None = None
    up: list[tuple[str, float]] = Field(description="terms that pushed the probability up, with their weight")
    down: list[tuple[str, float]] = Field(description="terms that pushed it down")


class Explanation(BaseModel):
    model: str
    note: str
    topics: dict[str, TopicWhy]


class ArticleDetail(ArticleOut):
    text: str
    cluster_members: list[str]
    explanation: Explanation | None


class Member(BaseModel):
    id: str
    duplicate_of: str
    kind: str
    similarity: str
    title: str


class Cluster(BaseModel):
    canonical: str
    title: str
    members: list[Member]


class Feed(BaseModel):
    id: str
    url: str
    title: str
    articles: int
    last_fetch: str
    last_status: str
    last_error: str
    subscribed: bool
    every: int | None = Field(description="seconds between polls asked for")
    interval: int | None = Field(description="seconds between polls now, adapted to the feed")
    next_due: str | None
    failures: int
    paused: str | None = Field(description="why polling is paused; null when it is not")

    @classmethod
    def of(cls, row: dict[str, str]) -> Feed:
        def number(name: str) -> int | None:
            value = row.get(name, "")
            return int(float(value)) if value else None

        return cls(
            id=row["id"],
            url=row.get("url", ""),
            title=row.get("title", ""),
            articles=int(row.get("articles") or 0),
            last_fetch=row.get("last_fetch", ""),
            last_status=row.get("last_status", ""),
            last_error=row.get("last_error", ""),
            subscribed=bool(row.get("every")),
            every=number("every"),
            interval=number("interval"),
            next_due=row.get("next_due") or None,
            failures=number("failures") or 0,
            paused=row.get("paused") or None,
        )


class Job(BaseModel):
    job: str
    feeds: int
    feeds_done: int
    errors: int
    articles: int
    stored: int
    finished: bool


class Model(BaseModel):
    version: str
    current: bool
    bundled: bool
    topics: list[str]
    trained_at: str | None
    micro_f1: float | None = Field(description="held-out micro-F1 when the model has one, else cross-validated")


class ModelInUse(BaseModel):
    version: str
    bundled: bool


class Health(BaseModel):
    ok: bool
    redis: bool
    broker: bool
    workers: list[str]
