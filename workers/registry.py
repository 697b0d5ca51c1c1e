"""Topic model versions in Redis: publish, list, choose the current one, load one.

A version's artifact (the .npz bytes) lives in `model:artifact:<version>`, its
header (parameters, thresholds, figures, date) as JSON in `model:versions`,
and `model:current` names the version workers use. Without `model:current`
workers use the bundled artifact. Publishing writes all three in one
MULTI/EXEC, so a worker never sees a current version without its artifact.
"""

from __future__ import annotations

import json

import redis

from feedsift.models.topics import TopicModel, read_header
from feedsift.workers.keys import Keys, text

BUNDLED = "bundled"


def publish(r: redis.Redis, keys: Keys, model: TopicModel, make_current: bool = True) -> str:
    blob = model.to_bytes()  # sets the version in the header
    version = model.version
    pipe = r.pipeline(transaction=True)
    pipe.set(keys.model_artifact(version), blob)
    pipe.hset(keys.model_versions, version, json.dumps(read_header(blob)))
    if make_current:
        pipe.set(keys.model_current, version)
    pipe.execute()
    return version


def current(r: redis.Redis, keys: Keys) -> str | None:
    return text(r.get(keys.model_current)) or None


def versions(r: redis.Redis, keys: Keys) -> list[dict]:
    """Headers of the published versions, oldest first, each with its `version`."""
    out = []
    for version, header in r.hgetall(keys.model_versions).items():
        h = json.loads(header)
        h["version"] = text(version)
        out.append(h)
    return sorted(out, key=lambda h: (h.get("meta", {}).get("trained_at", ""), h["version"]))


def use(r: redis.Redis, keys: Keys, version: str, bundled_version: str | None = None) -> str:
    """Makes `version` current; `bundled` (or the bundled model's own version) goes back to the bundled model."""
    if version in (BUNDLED, bundled_version):
        r.delete(keys.model_current)
        return BUNDLED
    if not r.hexists(keys.model_versions, version) or not r.exists(keys.model_artifact(version)):
        known = ", ".join(h["version"] for h in versions(r, keys)) or "none"
        raise ValueError(f"no published model {version!r} (published: {known})")
    r.set(keys.model_current, version)
    return version


def load(r: redis.Redis, keys: Keys, version: str) -> TopicModel | None:
    blob = r.get(keys.model_artifact(version))
    return TopicModel.from_bytes(blob) if blob else None
