"""Redelivery: a task message that is nowhere is sent again.

kombu's Redis transport takes a message off its queue with BRPOP and only then
records it as unacknowledged. A worker killed between the two loses that
message for good: no visibility timeout brings it back, and for an uploaded
feed nothing else holds the document. So every feedsift message is also
written to `pending` (task id -> the call) before it is published and removed
when its task ends for good (done, failed, dead-lettered; not when it is
retried). Every worker sweeps, one at a time under a lock: a pending call
older than the visibility timeout that is neither queued nor held by any
worker is published again under the same task id. The tasks are idempotent,
so a false alarm costs one repeated run, never a doubled article.

Messages sent by other Celery clients (not through this app) are covered by
kombu's own redelivery only. With RabbitMQ as the broker the window does not
exist (a message is with the broker until acknowledged), so no ledger is kept.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable

import redis
from celery import bootsteps
from celery.signals import before_task_publish, task_postrun

from feedsift.workers import queues
from feedsift.workers.keys import Keys

log = logging.getLogger(__name__)

#: Tasks whose messages are tracked; the beat's poll is sent again by the beat itself.
TRACKED = frozenset(queues.ROUTES) - {"feedsift.poll_feeds"}
#: kombu's priority sub-queues are named queue + "\x06\x16" + step.
PRIORITY_STEPS = (0, 3, 6, 9)
#: A message's task id in kombu's JSON envelope (bodies are base64, headers plain JSON).
TASK_ID = re.compile(rb'"id":\s*"([^"]+)"')

Send = Callable[[str, dict], None]


def remember(client: redis.Redis, keys: Keys, task_id: str, call: dict, now: float | None = None) -> None:
    pipe = client.pipeline(transaction=True)
    pipe.hset(keys.pending, task_id, json.dumps(call))
    pipe.zadd(keys.pending_since, {task_id: time.time() if now is None else now})
    pipe.execute()


def forget(client: redis.Redis, keys: Keys, task_id: str) -> None:
    pipe = client.pipeline(transaction=True)
    pipe.hdel(keys.pending, task_id)
    pipe.zrem(keys.pending_since, task_id)
    pipe.execute()


def _queue_keys(keys: Keys) -> Iterable[str]:
    for name in queues.ALL:
        for step in PRIORITY_STEPS:
            yield keys.queue(name) + (f"\x06\x16{step}" if step else "")


def sweep(client: redis.Redis, keys: Keys, timeout: float, send: Send, now: float | None = None) -> list[str]:
    """Sends again every pending call older than `timeout` that no queue and no worker holds; returns their ids.

    Queues, the unacknowledged messages and the pending calls are read in one
    transaction, so a message cannot slip between them unseen: a task that
    ended was removed from `pending` before its message was acknowledged. The
    ones found in place are not looked at again for another `timeout`.
    """
    now = time.time() if now is None else now
    due = [t.decode() for t in client.zrangebyscore(keys.pending_since, "-inf", now - timeout)]
    if not due:
        return []
    pipe = client.pipeline(transaction=True)
    queue_keys = list(_queue_keys(keys))
    for key in queue_keys:
        pipe.lrange(key, 0, -1)
    pipe.hvals(keys.unacked)
    pipe.hmget(keys.pending, due)
    *held, calls = pipe.execute()
    present = {m.group(1).decode() for messages in held for raw in messages if (m := TASK_ID.search(raw))}
    found, lost, ended = {}, [], []
    for task_id, raw in zip(due, calls):
        if raw is None:
            ended.append(task_id)
        elif task_id in present:
            found[task_id] = now
        else:
            lost.append((task_id, raw))
    pipe = client.pipeline(transaction=False)
    if found:
        pipe.zadd(keys.pending_since, found)
    if ended:
        pipe.zrem(keys.pending_since, *ended)
    pipe.execute()
    sent = []
    for task_id, raw in lost:
        try:
            call = json.loads(raw)
        except ValueError:
            log.error("pending call %s is not JSON; dropped", task_id)
            forget(client, keys, task_id)
            continue
        log.warning("message %s (%s) was lost by a worker that died; sending it again", task_id, call.get("task"))
        send(task_id, call)
        sent.append(task_id)
    return sent


# -- wiring into Celery ---------------------------------------------------------------
def _context():
    from feedsift.workers.context import context

    return context()


@before_task_publish.connect
def _on_publish(sender=None, body=None, headers=None, **_):
    if sender not in TRACKED or not headers:
        return
    ctx = _context()
    if ctx.settings.amqp:
        return
    args, kwargs = (
        (body[0], body[1]) if isinstance(body, (list, tuple)) else (body.get("args", []), body.get("kwargs", {}))
    )
    remember(ctx.broker_redis, ctx.keys, headers["id"], {"task": sender, "args": list(args), "kwargs": dict(kwargs)})


@task_postrun.connect
def _on_end(sender=None, task_id=None, state=None, **_):
    if getattr(sender, "name", None) not in TRACKED or state not in ("SUCCESS", "FAILURE"):
        return
    ctx = _context()
    if ctx.settings.amqp:
        return
    try:
        forget(ctx.broker_redis, ctx.keys, task_id)
    except redis.RedisError as exc:  # the message may then run once more: harmless
        log.warning("could not clear pending call %s: %s", task_id, exc)


class Sweeper(bootsteps.StartStopStep):
    """Runs `sweep` on the worker's timer, as often as kombu looks for unacknowledged messages."""

    requires = {"celery.worker.components:Timer"}  # noqa: RUF012 (Celery reads it as a set)

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.tref = None

    def start(self, worker):
        settings = _context().settings
        if settings.amqp:
            return
        self.interval = settings.restore_interval
        self.app = worker.app
        self.tref = worker.timer.call_repeatedly(self.interval, self.run)

    def stop(self, worker):
        if self.tref is not None:
            self.tref.cancel()

    def run(self):
        ctx = _context()
        try:
            if not ctx.broker_redis.set(ctx.keys.pending_lock, "1", nx=True, px=int(self.interval * 1000 * 0.9)):
                return
            sweep(ctx.broker_redis, ctx.keys, ctx.settings.visibility_timeout, self.send)
        except redis.RedisError as exc:
            log.warning("redelivery sweep skipped: %s", exc)

    def send(self, task_id: str, call: dict) -> None:
        self.app.send_task(call["task"], args=call.get("args", []), kwargs=call.get("kwargs", {}), task_id=task_id)
