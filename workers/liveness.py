"""Liveness: a worker holds the messages it took only while it shows signs of life.

kombu's Redis transport records each message a worker takes in `unacked`, with
the time it was taken in `unacked_index`, and every worker puts back on its
queue a message whose time is older than the visibility timeout. That time is
not left to age here: every heartbeat (a fifth of the visibility timeout) each
worker sets it to now for every message it still holds. So

- a message held by a live worker never ages past the timeout, however long its
  task runs or its countdown waits: it is not delivered again;
- a worker that dies (killed, frozen, cut off from Redis) stops renewing; its
  messages age past the timeout and are put back by the next look of any
  worker, one look every `restore_interval`: within the visibility timeout
  plus one restore interval of the worker's last heartbeat.

The putting back is kombu's: one worker at a time under a lock, each message
moved from `unacked` to its queue in one transaction watching `unacked`, so a
message is put back once. Renewal only updates what is still recorded
(ZADD XX), so a message acknowledged meanwhile is not brought back to life.

RabbitMQ needs none of this: a consumer's connection that closes or stops
answering heartbeats returns its messages at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

import redis
from celery import bootsteps

from feedsift.workers.keys import Keys

log = logging.getLogger(__name__)


def renew(client: redis.Redis, keys: Keys, tags: Iterable[str], now: float | None = None) -> int:
    """Sets the time of each still-unacknowledged message to now; returns how many were renewed."""
    now = time.time() if now is None else now
    scores = dict.fromkeys(tags, now)
    if not scores:
        return 0
    return client.zadd(keys.unacked_index, scores, xx=True, ch=True)


def held(consumer) -> list[str]:
    """Delivery tags of the messages the worker's consumer holds (taken and not yet acknowledged)."""
    channel = getattr(getattr(consumer, "task_consumer", None), "channel", None)
    delivered = getattr(getattr(channel, "qos", None), "_delivered", None)
    return list(delivered or ())  # one C-level copy, safe against the event loop adding or removing tags


class Heartbeat(bootsteps.StartStopStep):
    """Renews the worker's hold on its messages every heartbeat.

    From a daemon thread of its own with its own Redis connection: a busy event
    loop, a task on the solo pool or a pool process being forked does not delay
    it. It is not stopped with the worker: during a warm shutdown the running
    tasks still hold their messages, so it beats until the process ends.
    """

    def start(self, worker):
        from feedsift.workers.context import context

        settings, keys = context().settings, context().keys
        if settings.amqp:
            return
        # a reply later than a heartbeat is a missed heartbeat, not a hang
        client = redis.Redis.from_url(
            settings.broker, socket_connect_timeout=settings.heartbeat, socket_timeout=settings.heartbeat
        )
        threading.Thread(
            target=self.beat, args=(worker, client, keys, settings.heartbeat), name="feedsift-heartbeat", daemon=True
        ).start()

    @staticmethod
    def beat(worker, client: redis.Redis, keys: Keys, interval: float) -> None:
        failing = False
        while True:
            time.sleep(interval)
            try:
                renew(client, keys, held(getattr(worker, "consumer", None)))
                if failing:
                    log.info("heartbeats reach Redis again")
                failing = False
            except Exception as exc:  # Redis unreachable, tags changed while copied...: a missed beat, never the last
                if not failing:
                    log.warning(
                        "heartbeat missed (messages held here go back to their queue "
                        "if this lasts the visibility timeout): %s",
                        exc,
                    )
                failing = True
