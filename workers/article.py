"""The one article type: parsed from a feed, sent in a batch as JSON, processed, stored as a hash.

Every step uses `Article`; its fields are the hash's fields (`FIELDS`, the
list the README's schema table gives), so a field added here reaches the
task messages, Redis and the CLI in one edit.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime

from feedsift.models.text import summary as opening


def iso(ts: float | str | None) -> str:
    """Epoch seconds as an ISO 8601 UTC string ("" for none): how times are written in Redis."""
    if ts in (None, ""):
        return ""
    return datetime.fromtimestamp(float(ts), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(text: str) -> float:
    """The inverse of `iso` (0.0 for "")."""
    if not text:
        return 0.0
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


#: Fields a batch message carries (the task API); the rest are set by processing.
MESSAGE_FIELDS = ("id", "feed", "url", "guid", "title", "published", "text", "content_hash", "source_hash", "updated")


@dataclass(frozen=True)
class Article:
    id: str
    feed: str
    url: str = ""
    guid: str = ""
    title: str = ""
    #: Publication time, epoch seconds (the feed's date, else when it was fetched).
    published: float = 0.0
    #: Clean text (markup, boilerplate and furniture removed).
    text: str = ""
    content_hash: str = ""
    #: Hash of the entry as the feed sent it (title and body before cleaning): a re-polled entry
    #: whose hash is stored is dropped before any cleaning.
    source_hash: str = ""
    #: Stored before with other content under the same id.
    updated: bool = False
    # -- set by processing ----------------------------------------------------
    topics: tuple[str, ...] = ()
    #: Topic -> probability, rounded to 4 places.
    scores: dict[str, float] = field(default_factory=dict)
    #: Version of the topic model that tagged it.
    model: str = ""
    processed_at: float = 0.0
    # -- set by the duplicate index --------------------------------------------
    duplicate_of: str = ""
    duplicate_kind: str = ""
    similarity: float | None = None
    cluster: str = ""

    # -- the task API's JSON form -------------------------------------------------
    def to_message(self) -> dict:
        out = {name: getattr(self, name) for name in MESSAGE_FIELDS}
        if not self.updated:
            del out["updated"]
        else:
            out["updated"] = 1
        return out

    @classmethod
    def from_message(cls, data: object) -> Article:
        """An article object of a batch; a malformed one is a ValueError naming what is wrong."""
        if not isinstance(data, dict):
            raise ValueError(f"an article is a JSON object, not {type(data).__name__}")
        try:
            return cls(
                id=_text(data, "id", required=True),
                feed=_text(data, "feed", required=True),
                url=_text(data, "url"),
                guid=_text(data, "guid"),
                title=_text(data, "title"),
                published=float(data.get("published") or 0.0),
                text=_text(data, "text"),
                content_hash=_text(data, "content_hash"),
                source_hash=_text(data, "source_hash"),
                updated=bool(data.get("updated")),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"malformed article {str(data.get('id', '?'))[:40]!r}: {exc}") from None

    # -- the Redis hash ---------------------------------------------------------------
    def to_record(self) -> dict[str, str]:
        """Flat string fields, as `redis-cli HGETALL` shows them, the text last. The id is the key's; the
        hashes are not stored (`seen` keeps the source hash, the content is its title and text). Duplicate
        fields are the index's to write; they and `updated` are absent when empty (a field costs its name
        again in every article)."""
        out = {
            "feed": self.feed,
            "url": self.url,
            "guid": self.guid,
            "title": self.title,
            "published": iso(self.published),
            "topics": ",".join(self.topics),
            "scores": json.dumps(self.scores, separators=(",", ":")),
            "model": self.model,
            "processed_at": iso(self.processed_at),
        }
        if self.updated:
            out["updated"] = "1"
        out["text"] = self.text
        return out

    @classmethod
    def from_record(cls, record: dict[str, str]) -> Article:
        similarity = record.get("similarity", "")
        return cls(
            id=record.get("id", ""),
            feed=record.get("feed", ""),
            url=record.get("url", ""),
            guid=record.get("guid", ""),
            title=record.get("title", ""),
            published=epoch(record.get("published", "")),
            text=record.get("text", ""),
            updated=record.get("updated") == "1",
            topics=tuple(t for t in record.get("topics", "").split(",") if t),
            scores=json.loads(record["scores"]) if record.get("scores") else {},
            model=record.get("model", ""),
            processed_at=epoch(record.get("processed_at", "")),
            duplicate_of=record.get("duplicate_of", ""),
            duplicate_kind=record.get("duplicate_kind", ""),
            similarity=float(similarity) if similarity else None,
            cluster=record.get("cluster", ""),
        )

    @property
    def summary(self) -> str:
        """The opening of the text, for lists: derived, not stored (it would store the text twice)."""
        return opening(self.text or self.title)

    def with_(self, **changes) -> Article:
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return {**asdict(self), "summary": self.summary}


#: The article hash's fields, in the order the README lists them.
FIELDS: tuple[str, ...] = (
    "feed",
    "url",
    "guid",
    "title",
    "published",
    "topics",
    "scores",
    "duplicate_of",
    "duplicate_kind",
    "similarity",
    "cluster",
    "model",
    "processed_at",
    "updated",
    "text",
)
#: Article fields its hash does not hold: the id is in the key, the source hash in `seen`, and the
#: content hash is recomputed from the stored title and text when it is needed.
NOT_STORED: tuple[str, ...] = ("id", "content_hash", "source_hash")
assert set(FIELDS) | set(NOT_STORED) == {f.name for f in fields(Article)}, "FIELDS and Article disagree"


def _text(data: dict, name: str, required: bool = False) -> str:
    value = data.get(name, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValueError(f"{name} is a JSON {type(value).__name__}, not a string")
    if required and not value:
        raise ValueError(f"{name} is missing")
    return value
