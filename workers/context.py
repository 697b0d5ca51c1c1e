"""What a worker process holds: one Redis client, the store, the index and the topic model.

Built lazily on first use, after Celery has forked, so no connection is
shared between processes. The model is re-checked at most once per batch:
publishing a new version in Redis switches every worker without a restart.
"""

from __future__ import annotations

import logging
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path

import redis

from models.minhash import MinHasher
from models.topics import TopicModel
from workers.index import DuplicateIndex
from workers.keys import Keys
from workers.settings import Settings, get_settings
from workers.store import Store

log = logging.getLogger(__name__)

BUNDLED_MODEL = "artifacts/topics.npz"


def bundled_model_path() -> Path:
    return Path(str(resources.files("models").joinpath(BUNDLED_MODEL)))


def connect(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_keepalive=True, health_check_interval=30)


class Context:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.keys = Keys(settings.prefix)
        self._model: TopicModel | None = None
        self._model_version: str | None = None

    @cached_property
    def redis(self) -> redis.Redis:
        return connect(self.settings)

    @cached_property
    def store(self) -> Store:
        return Store(self.redis, self.keys)

    @cached_property
    def hasher(self) -> MinHasher:
        return MinHasher()

    @cached_property
    def index(self) -> DuplicateIndex:
        return DuplicateIndex(self.redis, self.keys, self.hasher, self.settings.dedup_threshold, self.settings.dedup_window_days)

    def model(self) -> TopicModel:
        """The current model: a pinned path, else the version published in Redis, else the bundled one."""
        if self.settings.model_path:
            if self._model is None:
                self._model = TopicModel.load(self.settings.model_path)
            return self._model
        current = self.redis.get(self.keys.model_current)
        wanted = current.decode() if current else "bundled"
        if self._model is None or wanted != self._model_version:
            self._model = self._load(wanted)
            self._model_version = wanted
            log.info("topic model %s loaded", self._model.version)
        return self._model

    def _load(self, version: str) -> TopicModel:
        if version != "bundled":
            blob = self.redis.get(self.keys.model_artifact(version))
            if blob:
                return TopicModel.from_bytes(blob)
            log.error("model %s is current but its artifact is missing; using the bundled model", version)
        return TopicModel.load(bundled_model_path())


@lru_cache(maxsize=1)
def context() -> Context:
    return Context(get_settings())
