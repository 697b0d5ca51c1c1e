"""Articles, feeds, errors and progress in Redis, under the key schema of `feedsift.workers.keys`.

Every write is idempotent: storing the same batch twice leaves Redis as
storing it once, which is what makes late acknowledgement and re-delivery
safe.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from itertools import pairwise

import redis

from feedsift.models.minhash import Decision
from feedsift.workers.article import FIELDS, Article, iso
from feedsift.workers.feeds import content_hash
from feedsift.workers.keys import Keys, text

#: Characters kept of one error message (the stream is for reading, not for dumps).
ERROR_MESSAGE_CHARS = 2000
#: Every article field, empty: what a field absent from an article hash reads as.
BLANK = dict.fromkeys(FIELDS, "")


def batch_name(article_ids: list[str]) -> str:
    """A batch's field in a submission's progress: the same articles, the same name, so a batch run twice
    (redelivered) counts once."""
    return hashlib.blake2b("\n".join(article_ids).encode(), digest_size=8).hexdigest()


def _record(article_id: str, raw: dict) -> dict[str, str]:
    """An article hash as a record of every field, its id (the key's) first; {} for no hash."""
    return {"id": article_id, **BLANK, **{text(k): text(v) for k, v in raw.items()}} if raw else {}


class Store:
    def __init__(self, client: redis.Redis, keys: Keys, errors_maxlen: int = 10_000, job_ttl: int = 7 * 86400):
        self.r, self.keys = client, keys
        self.errors_maxlen, self.job_ttl = errors_maxlen, job_ttl

    def compact_articles(self, wanted: int) -> str:
        """A warning when the server keeps article hashes in its large encoding ("" when it is fine, or
        when the server does not let us read its configuration, as some managed services do not)."""
        try:
            found = self.r.config_get("hash-max-*-value")
        except redis.ResponseError:
            return ""
        values = [int(v) for v in found.values() if str(v).isdigit()]
        if values and max(values) < wanted:
            return (
                f"Redis keeps hash values over {max(values)} bytes in its large encoding: each article costs about "
                f"1.4 KB more; set hash-max-listpack-value {wanted} (README, Memory)"
            )
        return ""

    # -- feeds --------------------------------------------------------------
    def feed(self, feed_id: str) -> dict[str, str]:
        return {text(k): text(v) for k, v in self.r.hgetall(self.keys.feed(feed_id)).items()}

    def register_feed(self, feed_id: str, url: str) -> dict[str, str]:
        """Makes the feed known (a no-op when it is) and returns its hash, in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hsetnx(self.keys.feed(feed_id), "url", url)
        pipe.zadd(self.keys.feeds, {feed_id: time.time()}, nx=True)
        pipe.hgetall(self.keys.feed(feed_id))
        return {text(k): text(v) for k, v in pipe.execute()[-1].items()}

    def feed_read(self, feed_id: str, job: str | None, error: bool = False, **fields) -> None:
        """Records a read of the feed (its fields) and, for a submission, that this feed of it is done."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(self.keys.feed(feed_id), mapping={k: text(v) for k, v in fields.items()})
        if job:
            self._job_feed_done(pipe, job, feed_id, error)
        pipe.execute()

    @staticmethod
    def boilerplate_of(state: dict[str, str]) -> list[str]:
        """The feed's boilerplate lines learned on earlier polls (a JSON list in its feed hash `state`)."""
        raw = state.get("boilerplate")
        try:
            lines = json.loads(raw) if raw else []
        except ValueError:
            return []
        return [x for x in lines if isinstance(x, str)] if isinstance(lines, list) else []

    def feeds(self) -> list[dict[str, str]]:
        ids = [text(i) for i in self.r.zrange(self.keys.feeds, 0, -1)]
        pipe = self.r.pipeline(transaction=False)
        for fid in ids:
            pipe.hgetall(self.keys.feed(fid))
            pipe.zcard(self.keys.feed_articles(fid))
        replies = pipe.execute()
        out = []
        for fid, state, count in zip(ids, replies[::2], replies[1::2]):
            row = {"id": fid, **{text(k): text(v) for k, v in state.items()}}
            row["articles"] = str(count)
            out.append(row)
        return out

    # -- articles -------------------------------------------------------------
    def known_sources(self, sources: dict[str, str]) -> set[str]:
        """Of {article id: source hash}, the ids stored from that very source (a re-poll's unchanged entries)."""
        if not sources:
            return set()
        ids = list(sources)
        return {i for i, stored in zip(ids, self.r.hmget(self.keys.seen, ids)) if stored and text(stored) == sources[i]}

    def unseen(self, articles: list[Article]) -> list[Article]:
        """Articles never stored, or stored with other content (then marked updated). One whose source
        changed but whose clean content did not (a tracking parameter in its markup) is not processed
        again; its new source hash is remembered so the next poll drops it before cleaning. The stored
        content is compared by the hash of its title and text, read only for such changed sources."""
        if not articles:
            return []
        k = self.keys
        seen = self.r.hmget(k.seen, [a.id for a in articles])
        out, changed = [], []
        for article, stored in zip(articles, seen):
            if stored is None:
                out.append(article)
            elif text(stored) != (article.source_hash or article.content_hash):
                changed.append(article)
        if changed:
            pipe = self.r.pipeline(transaction=False)
            for a in changed:
                pipe.hmget(k.article(a.id), "title", "text")
            same = {}
            for a, (title, body) in zip(changed, pipe.execute()):
                if content_hash(text(title), text(body)) == a.content_hash:
                    same[a.id] = a.source_hash or a.content_hash
                else:
                    out.append(a.with_(updated=True))
            if same:
                self.r.hset(k.seen, mapping=same)
        return out

    def article(self, article_id: str) -> dict[str, str]:
        """The article's fields ({} when there is none); a field absent from the hash reads as ""."""
        return _record(article_id, self.r.hgetall(self.keys.article(article_id)))

    def article_ids(
        self, topic: str | None = None, feed: str | None = None, duplicates: bool = False, limit: int = 100
    ) -> list[str]:
        """Newest first; filters intersect."""
        sources = [self.keys.topic(topic)] if topic else []
        if feed:
            sources.append(self.keys.feed_articles(feed))
        if duplicates:
            sources.append(self.keys.duplicates)
        if not sources:
            sources = [self.keys.articles]
        if len(sources) == 1:
            return [text(i) for i in self.r.zrevrange(sources[0], 0, limit - 1)]
        ranked = None
        for key in sources:
            scored = {text(m): s for m, s in self.r.zrange(key, 0, -1, withscores=True)}
            ranked = scored if ranked is None else {m: s for m, s in ranked.items() if m in scored}
        return [m for m, _ in sorted(ranked.items(), key=lambda kv: -kv[1])][:limit]

    def articles(self, ids: Iterable[str]) -> list[dict[str, str]]:
        pipe = self.r.pipeline(transaction=False)
        ids = list(ids)
        for i in ids:
            pipe.hgetall(self.keys.article(i))
        return [_record(i, h) for i, h in zip(ids, pipe.execute()) if h]

    def cluster(self, canonical_id: str) -> list[str]:
        """The cluster's article ids, in publication order."""
        return [text(m) for m in self.r.zrange(self.keys.cluster(canonical_id), 0, -1)]

    def clusters(self, limit: int = 100) -> list[dict]:
        """Duplicate clusters whose newest duplicate is among the latest flagged, newest first:
        {"canonical", "title", "members": [{"id", "duplicate_of", "kind", "similarity", "title"}]}."""
        fields = ("cluster", "duplicate_of", "duplicate_kind", "similarity", "title")
        roots: list[str] = []
        for start in range(0, self.r.zcard(self.keys.duplicates), 1000):
            ids = [text(i) for i in self.r.zrevrange(self.keys.duplicates, start, start + 999)]
            pipe = self.r.pipeline(transaction=False)
            for i in ids:
                pipe.hget(self.keys.article(i), "cluster")
            for root in pipe.execute():
                root = text(root)
                if root and root not in roots:
                    roots.append(root)
            if len(roots) >= limit:
                break
        roots = roots[:limit]
        pipe = self.r.pipeline(transaction=False)
        for root in roots:
            pipe.zrange(self.keys.cluster(root), 0, -1)
        members = [[text(m) for m in ms] for ms in pipe.execute()]
        pipe = self.r.pipeline(transaction=False)
        for root, ms in zip(roots, members):
            for i in [root] + ms:
                pipe.hmget(self.keys.article(i), fields)
        replies = iter(pipe.execute())
        out = []
        for root, ms in zip(roots, members):
            head = dict(zip(fields, (text(v) for v in next(replies))))
            rows = []
            for i in ms:
                f = dict(zip(fields, (text(v) for v in next(replies))))
                if i != root:
                    rows.append(
                        {
                            "id": i,
                            "duplicate_of": f["duplicate_of"],
                            "kind": f["duplicate_kind"],
                            "similarity": f["similarity"],
                            "title": f["title"],
                        }
                    )
            out.append({"canonical": root, "title": head["title"], "members": rows})
        return out

    def save_batch(self, articles: list[Article], job: str | None = None, decisions: Iterable[Decision] = ()) -> None:
        """Writes processed articles with their indexes in one pipeline; an updated article loses the
        topics it no longer has. Writing the same batch twice leaves Redis as writing it once."""
        k = self.keys
        updated = [a.id for a in articles if a.updated]
        previous: dict[str, list[str]] = {}
        if updated:
            pipe = self.r.pipeline(transaction=False)
            for aid in updated:
                pipe.hget(k.article(aid), "topics")
            previous = {aid: text(t).split(",") for aid, t in zip(updated, pipe.execute())}
        pipe = self.r.pipeline(transaction=False)
        for a in articles:
            for topic in previous.get(a.id, ()):
                if topic and topic not in a.topics:
                    pipe.zrem(k.topic(topic), a.id)
            pipe.hset(k.article(a.id), mapping=a.to_record())
            pipe.zadd(k.articles, {a.id: a.published})
            pipe.zadd(k.feed_articles(a.feed), {a.id: a.published})
            for topic in a.topics:
                pipe.zadd(k.topic(topic), {a.id: a.published})
            pipe.hset(k.seen, a.id, a.source_hash or a.content_hash)
        self.apply_decisions(pipe, list(decisions), {a.id: a.published for a in articles}, set(updated))
        pipe.execute()
        if job and articles:
            # only once all of the batch is written: a pipeline that failed in part (a cluster master lost
            # mid-batch) raises above, and the batch, tried again, is counted when it is whole
            pipe = self.r.pipeline(transaction=False)
            self._job_batches(pipe, k.job_done(job), [[a.id for a in articles]])
            pipe.execute()

    def apply_decisions(
        self, pipe, decisions: list[Decision], published: dict[str, float], updated: set[str] = frozenset()
    ) -> None:
        """Queues on `pipe` what the duplicate index decided: the article fields, its cluster, the duplicates zset.

        The index only returns decisions (its keys share one cluster slot, these do not). Clusters an
        article leaves, and the publication times of articles outside `published` that a cluster or
        `duplicates` lists, are read first, with one round trip. An article of the batch (`published`)
        that the index numbered now and that is not `updated` has no earlier verdict to undo: nothing is
        read or removed for it. Applying the same decisions twice leaves Redis as applying them once.
        """
        if not decisions:
            return
        k = self.keys
        first = {d.article_id for d in decisions if d.new and d.article_id in published and d.article_id not in updated}
        judged = [d.article_id for d in decisions if d.article_id not in first]
        listed = {x for d in decisions if d.duplicate_of for x in (d.article_id, d.cluster)}
        earlier = sorted(listed - set(published))
        read = self.r.pipeline(transaction=False)
        for aid in judged:
            read.hget(k.article(aid), "cluster")
        for aid in earlier:
            read.zscore(k.articles, aid)
        replies = read.execute() if judged or earlier else []
        before = dict(zip(judged, map(text, replies)))
        scores = {**dict(zip(earlier, replies[len(judged) :])), **published}
        for d in decisions:
            aid, previous = d.article_id, before.get(d.article_id, "")
            if aid in first and not d.duplicate_of:
                continue  # alone, as it was never anything else
            if d.duplicate_of:
                if previous and previous not in (d.cluster, aid):
                    pipe.zrem(k.cluster(previous), aid)
                self._cluster_add(pipe, d.cluster, aid, scores)
                pipe.hset(k.article(d.cluster), "cluster", d.cluster)
                fields = {"duplicate_of": d.duplicate_of, "duplicate_kind": d.kind, "cluster": d.cluster}
                pipe.hset(k.article(aid), mapping={**fields, "similarity": f"{d.similarity:.4f}"})
                if scores.get(aid) is not None:
                    pipe.zadd(k.duplicates, {aid: scores[aid]})
            else:
                if previous and previous != aid:  # a canonical keeps its own cluster
                    pipe.zrem(k.cluster(previous), aid)
                    pipe.hset(k.article(aid), "cluster", "")
                pipe.zrem(k.duplicates, aid)
                pipe.hdel(k.article(aid), "duplicate_of", "duplicate_kind", "similarity")  # absent reads as ""

    def _cluster_add(self, pipe, root: str, aid: str, scores: dict[str, float | None]) -> None:
        """Lists `aid` and the canonical `root` in the cluster by publication time. A canonical not stored
        yet (its batch is being written by another worker) takes the duplicate's time until a later
        duplicate finds it stored; an article no longer stored is not listed."""
        key, root_time, dup_time = self.keys.cluster(root), scores.get(root), scores.get(aid)
        if root_time is not None:
            pipe.zadd(key, {root: root_time})
        elif dup_time is not None:
            pipe.zadd(key, {root: dup_time}, nx=True)  # not stored yet: never over its own time
        if dup_time is not None:
            pipe.zadd(key, {aid: dup_time})

    def page(
        self, sources: list[str], limit: int, since: float | None = None, after: tuple[float, str] | None = None
    ) -> list[tuple[str, float]]:
        """(id, score) of members of every source, newest first, after the cursor `after` (score, id) and
        not older than `since`. Walks the smallest source by rank and checks the others with ZMSCORE."""
        pipe = self.r.pipeline(transaction=False)
        for key in sources:
            pipe.zcard(key)
        sizes = pipe.execute()
        lead = sources[sizes.index(min(sizes))]
        others = [key for key in sources if key != lead]
        start = 0
        if after is not None:
            pipe.zrevrank(lead, after[1])
            pipe.zscore(lead, after[1])
            rank, score = pipe.execute()
            # from the cursor's article, or from its score when that article is gone
            start = rank + 1 if rank is not None and score == after[0] else self.r.zcount(lead, f"({after[0]}", "+inf")
        out: list[tuple[str, float]] = []
        step = max(2 * limit, 100)
        while len(out) < limit:
            chunk = [(text(m), s) for m, s in self.r.zrevrange(lead, start, start + step - 1, withscores=True)]
            if not chunk:
                break
            start += len(chunk)
            reached_since = since is not None and chunk[-1][1] < since
            if after is not None:
                chunk = [(m, s) for m, s in chunk if s < after[0] or (s == after[0] and m < after[1])]
            if since is not None:
                chunk = [(m, s) for m, s in chunk if s >= since]
            if chunk and others:
                for key in others:
                    pipe.zmscore(key, [m for m, _ in chunk])
                present = pipe.execute()
                chunk = [c for n, c in enumerate(chunk) if all(p[n] is not None for p in present)]
            out.extend(chunk)
            if reached_since:
                break
        return out[:limit]

    def older_than(self, cutoff: float, limit: int) -> list[str]:
        """Ids of the oldest articles published before `cutoff` (epoch seconds)."""
        return [text(i) for i in self.r.zrangebyscore(self.keys.articles, "-inf", f"({cutoff}", start=0, num=limit)]

    def remove_articles(self, ids: list[str]) -> None:
        """Deletes articles with their memberships (topics, feed, duplicates, cluster) and `seen` entries; a
        cluster left with one article is deleted. The duplicate index is not touched."""
        k = self.keys
        pipe = self.r.pipeline(transaction=False)
        for i in ids:
            pipe.hmget(k.article(i), "feed", "topics", "cluster")
        records = pipe.execute()
        clusters = set()
        for i, (feed, topics, cluster) in zip(ids, records):
            feed, topics, cluster = text(feed), text(topics), text(cluster)
            if feed:
                pipe.zrem(k.feed_articles(feed), i)
            for topic in filter(None, topics.split(",")):
                pipe.zrem(k.topic(topic), i)
            if cluster:
                pipe.zrem(k.cluster(cluster), i)
                clusters.add(cluster)
            pipe.delete(k.article(i))
        pipe.zrem(k.articles, *ids)
        pipe.zrem(k.duplicates, *ids)
        pipe.hdel(k.seen, *ids)
        pipe.execute()
        clusters = sorted(clusters)
        for c in clusters:
            pipe.zrange(k.cluster(c), 0, -1)
        gone = set(ids)
        for c, members in zip(clusters, pipe.execute()):
            if len(members) <= 1:
                pipe.delete(k.cluster(c))
                for m in {text(x) for x in members} - gone:
                    pipe.hset(k.article(m), "cluster", "")
        pipe.execute()

    def article_count(self) -> int:
        return self.r.zcard(self.keys.articles)

    def has_feed(self, feed_id: str) -> bool:
        return self.r.zscore(self.keys.feeds, feed_id) is not None

    def feed_ids(self, limit: int = 1000) -> list[str]:
        return [text(i) for i in self.r.zrange(self.keys.feeds, 0, limit - 1)]

    def feed_row(self, feed_id: str) -> dict[str, str] | None:
        """One feed as `feeds` lists it, None if unknown."""
        if not self.has_feed(feed_id):
            return None
        return {"id": feed_id, **self.feed(feed_id), "articles": str(self.r.zcard(self.keys.feed_articles(feed_id)))}

    def cluster_rows(self, canonical_id: str) -> dict | None:
        """One duplicate cluster as `clusters` lists it, None if there is none."""
        members = self.cluster(canonical_id)
        if not members:
            return None
        fields = ("duplicate_of", "duplicate_kind", "similarity", "title")
        pipe = self.r.pipeline(transaction=False)
        for i in [canonical_id, *members]:
            pipe.hmget(self.keys.article(i), fields)
        head, *rows = [dict(zip(fields, map(text, reply))) for reply in pipe.execute()]
        return {
            "canonical": canonical_id,
            "title": head["title"],
            "members": [
                {"id": i, "duplicate_of": f["duplicate_of"], "kind": f["duplicate_kind"]}
                | {"similarity": f["similarity"], "title": f["title"]}
                for i, f in zip(members, rows)
                if i != canonical_id
            ],
        }

    def counts_between(self, keys: list[str], edges: list[float]) -> list[list[int]]:
        """Per key, members scored in each interval [edges[i], edges[i+1])."""
        pipe = self.r.pipeline(transaction=False)
        for key in keys:
            for lo, hi in pairwise(edges):
                pipe.zcount(key, lo, f"({hi}")
        replies, n = pipe.execute(), len(edges) - 1
        return [replies[i * n : (i + 1) * n] for i in range(len(keys))]

    def job_known(self, job: str) -> bool:
        return bool(self.r.exists(self.keys.job(job)))

    def queue_depths(self, names: list[str]) -> dict[str, int]:
        pipe = self.r.pipeline(transaction=False)
        for name in names:
            pipe.llen(self.keys.queue(name))
        return dict(zip(names, pipe.execute()))

    # -- errors ---------------------------------------------------------------
    def record_error(self, feed_id: str, url: str, kind: str, message: str) -> None:
        fields = {"time": iso(time.time()), "feed": feed_id, "url": url, "kind": kind}
        fields["message"] = message[:ERROR_MESSAGE_CHARS]
        self.r.xadd(self.keys.errors, fields, maxlen=self.errors_maxlen, approximate=True)

    def errors(self, count: int = 50) -> list[dict[str, str]]:
        return [
            {"entry": text(eid), **{text(k): text(v) for k, v in fields.items()}}
            for eid, fields in self.r.xrevrange(self.keys.errors, count=count)
        ]

    def dead_letter(self, payload: dict) -> None:
        self.r.rpush(self.keys.deadletter, json.dumps(payload))

    # -- submission progress ------------------------------------------------
    def job_add(self, job: str, **counts: int) -> None:
        pipe = self.r.pipeline(transaction=False)
        for field, n in counts.items():
            pipe.hincrby(self.keys.job(job), field, n)
        pipe.expire(self.keys.job(job), self.job_ttl)
        pipe.execute()

    def _job_feed_done(self, pipe, job: str, fid: str, error: bool) -> None:
        """Marks a feed of the submission read; a message run twice (redelivered) marks it once."""
        pipe.hset(self.keys.job_feeds(job), fid, "error" if error else "ok")
        pipe.expire(self.keys.job_feeds(job), self.job_ttl)

    def job_expect(self, job: str, batches: list[list[str]]) -> None:
        """Records the batches (article ids) a submission enqueued: one field per batch, not per article."""
        if batches:
            pipe = self.r.pipeline(transaction=False)
            self._job_batches(pipe, self.keys.job_articles(job), batches)
            pipe.execute()

    def _job_batches(self, pipe, key: str, batches: list[list[str]]) -> None:
        pipe.hset(key, mapping={batch_name(ids): len(ids) for ids in batches})
        pipe.expire(key, self.job_ttl)

    def job_stored(self, job: str) -> int:
        """Articles of the submission stored so far."""
        return sum(map(int, self.r.hvals(self.keys.job_done(job))))

    def job_progress(self, job: str) -> dict[str, int]:
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(self.keys.job(job))
        pipe.hvals(self.keys.job_feeds(job))
        pipe.hvals(self.keys.job_articles(job))
        pipe.hvals(self.keys.job_done(job))
        state, outcomes, expected, done = pipe.execute()
        out = {text(k): int(v) for k, v in state.items()}
        out["feeds_done"], out["errors"] = len(outcomes), sum(1 for o in outcomes if o == b"error")
        out["articles"], out["stored"] = sum(map(int, expected)), sum(map(int, done))
        return out
