"""The Celery application. Configuration comes from `Settings`, read when Celery first needs it."""

from __future__ import annotations

import logging
import sys

from celery import Celery
from celery.signals import worker_ready
from kombu import Exchange, Queue

from feedsift.workers import queues
from feedsift.workers.keys import Keys
from feedsift.workers.liveness import Heartbeat
from feedsift.workers.redelivery import Sweeper  # importing it also connects its publish and task-end hooks
from feedsift.workers.settings import Settings, get_settings


def celery_config() -> dict:
    try:
        s = get_settings()
    except ValueError as exc:  # a worker with a bad setting refuses to start, in one line
        sys.exit(f"feedsift: {exc}")
    return {
        **broker_config(s),
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": queues.FETCH,
        "task_routes": {name: {"queue": queue} for name, queue in queues.ROUTES.items()},
        "beat_schedule": beat_schedule(s),
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
    }


def beat_schedule(s) -> dict:
    """Due subscriptions are looked for every tick; old articles removed every few minutes, when kept for a while."""
    out = {}
    if s.poll_interval > 0:
        out["poll-feeds"] = {"task": "feedsift.poll_feeds", "schedule": float(s.schedule_tick)}
    if s.retention_days > 0:
        out["expire-articles"] = {"task": "feedsift.expire_articles", "schedule": 300.0}
    return out


def broker_config(s: Settings) -> dict:
    """Redis: kombu's transport; workers renew their hold on what they took (`liveness`), so the visibility
    timeout only runs out for a dead worker. RabbitMQ: durable quorum queues, publisher confirms, one message
    per consumer at a time; a consumer whose connection closes, or misses heartbeats for about the visibility
    timeout, gives its messages back. Topic exchanges let countdowns use RabbitMQ's delayed delivery."""
    if not s.amqp:
        return {
            "broker_url": s.broker,
            "broker_connection_retry_on_startup": True,
            "broker_transport_options": {
                "visibility_timeout": s.visibility_timeout,
                # look for messages whose hold lapsed often enough that they come back soon after the timeout
                "unacked_restore_interval": s.restore_interval,
                "unacked_restore_throttle": 1,
                # a worker killed while it puts messages back lets the next one do it a look later, not
                # after kombu's 5 minutes (two looks at once are safe: each move watches `unacked`)
                "unacked_mutex_expire": s.restore_interval,
                "global_keyprefix": Keys(s.prefix).queue_prefix,
            },
        }
    quorum = {"x-queue-type": "quorum"}
    return {
        "broker_url": s.broker,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {"confirm_publish": True},
        # RabbitMQ gives up on a silent consumer after two missed heartbeats: about the visibility timeout
        "broker_heartbeat": max(1, s.visibility_timeout // 2),
        "task_queues": [
            Queue(name, Exchange(name, type="topic"), routing_key=name, durable=True, queue_arguments=quorum)
            for name in queues.ALL
        ],
        "worker_detect_quorum_queues": True,  # per-consumer prefetch: quorum queues have no global QoS
    }


app = Celery("feedsift", include=["feedsift.workers.tasks"])
app.add_defaults(celery_config)
app.steps["worker"].add(Sweeper)
app.steps["worker"].add(Heartbeat)


@worker_ready.connect
def _check_redis_encoding(**_) -> None:
    """Says once, at start, when the Redis server would store every article in its large encoding."""
    from feedsift.workers.context import context
    from feedsift.workers.embedded import COMPACT_HASH_VALUE

    try:
        advice = context().store.compact_articles(COMPACT_HASH_VALUE)
    except Exception as exc:  # a check, never a reason not to start
        advice = f"could not read the Redis configuration: {exc}"
    if advice:
        logging.getLogger(__name__).warning(advice)
