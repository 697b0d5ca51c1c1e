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

from feedsift.models.minhash import MinHasher
from feedsift.models.topics import TopicModel
from feedsift.workers import registry
from feedsift.workers.index import DuplicateIndex
from feedsift.workers.keys import Keys
from feedsift.workers.rediscluster import Cluster
from feedsift.workers.settings import Settings, get_settings
from feedsift.workers.store import Store

log = logging.getLogger(__name__)

BUNDLED_MODEL = "artifacts/topics.npz"
MODELS_KEPT = 3


def bundled_model_path() -> Path:
    return Path(str(resources.files("feedsift.models").joinpath(BUNDLED_MODEL)))


def connect(settings: Settings, url: str | None = None) -> redis.Redis | Cluster:
    """The results' Redis (a cluster client when `redis_cluster` is set), or the plain Redis at `url`."""
    options = {
        "socket_connect_timeout": settings.redis_connect_timeout,
        "socket_timeout": settings.redis_socket_timeout or None,
        "socket_keepalive": True,
        "health_check_interval": 30,
    }
    if url is None and settings.redis_cluster:
        return Cluster.from_url(settings.redis_url, **options)
    return redis.Redis.from_url(url or settings.redis_url, **options)


class Context:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.keys = Keys(settings.prefix, settings.redis_cluster)
        self._model: TopicModel | None = None
        self._model_version: str | None = None
        self._loaded: dict[str, TopicModel] = {}  # version -> model, least recently used first
        self._missing: set[str] = set()

    @cached_property
    def redis(self) -> redis.Redis | Cluster:
        return connect(self.settings)

    @cached_property
    def broker_redis(self) -> redis.Redis:
        """The Redis holding the queues (the results' one unless `broker_url` names another)."""
        s = self.settings
        return connect(s, s.broker_url) if s.broker_url and not s.amqp else self.redis

    @cached_property
    def store(self) -> Store:
        return Store(self.redis, self.keys, self.settings.errors_maxlen, self.settings.job_ttl)

    @cached_property
    def hasher(self) -> MinHasher:
        return MinHasher()

    @cached_property
    def index(self) -> DuplicateIndex:
        s = self.settings
        return DuplicateIndex(
            self.redis, self.keys, self.hasher, s.dedup_threshold, s.dedup_window_days, s.dedup_names, s.dedup_excerpt
        )

    def model(self) -> TopicModel:
        """The current model: a pinned path, else the version published in Redis, else the bundled one.

        Called once per batch. The check is one GET of `model:current`; a model
        is loaded only when that names a version other than the one in hand, and
        the last few loaded versions are kept so a roll-back is instant. A
        current version whose artifact is missing falls back to the bundled
        model and is tried again on the next batch.
        """
        if self.settings.model_path:
            if self._model is None:
                self._model = TopicModel.load(self.settings.model_path)
                self._model_version = self._model.version
            return self._model
        wanted = registry.current(self.redis, self.keys) or registry.BUNDLED
        if self._model is not None and wanted == self._model_version:
            return self._model
        model = self._loaded.get(wanted) or self._load(wanted)
        if model is None:
            if wanted not in self._missing:
                log.error("model %s is current but its artifact is missing; using the bundled model", wanted)
                self._missing.add(wanted)
            wanted, model = registry.BUNDLED, self._loaded.get(registry.BUNDLED) or self._load(registry.BUNDLED)
        self._loaded.pop(wanted, None)
        self._loaded[wanted] = model
        while len(self._loaded) > MODELS_KEPT:
            self._loaded.pop(next(iter(self._loaded)))
        if wanted != self._model_version:
            log.info("topic model %s in use", model.version)
        self._model, self._model_version = model, wanted
        return model

    def _load(self, version: str) -> TopicModel | None:
        """A version's model; None when its artifact is missing or of a format this release cannot read
        (then the bundled model serves, and the error says so once)."""
        if version == registry.BUNDLED:
            return TopicModel.load(bundled_model_path())
        try:
            return registry.load(self.redis, self.keys, version)
        except ValueError as exc:
            if version not in self._missing:
                log.error("model %s cannot be read (%s); retrain it or `feedsift models use` another", version, exc)
            return None

    def model_of(self, version: str) -> TopicModel | None:
        """A given version (for explaining what it did): published in Redis, or the bundled one if it has that version."""
        if version:
            model = self._loaded.get(version) or self._load(version)
            if model is not None:
                return model
            bundled = self._loaded.get(registry.BUNDLED) or TopicModel.load(bundled_model_path())
            if bundled.version == version:
                return bundled
        return None


@lru_cache(maxsize=1)
def context() -> Context:
    return Context(get_settings())
