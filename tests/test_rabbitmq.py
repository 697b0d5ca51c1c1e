"""RabbitMQ as the broker, as the broker itself reports it: durable quorum queues, publisher confirms,
one message at a time per worker process, counted per consumer."""

from __future__ import annotations

import pytest

from tests.brokers import rabbitmqctl
from tests.harness import job_finished, send_job, wait_for
from tests.test_faults import feeds, ingest_calls


def rows(*args: str) -> list[list[str]]:
    return [line.split("\t") for line in rabbitmqctl(*args, "--no-table-headers").splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.parametrize("broker", ["rabbitmq"], indirect=True)
def test_queues_channels_and_consumers_as_declared(ctx, r, broker, start_worker):
    vhost = broker.url.rsplit("/", 1)[1]
    start_worker(concurrency=2, env=broker.env)
    job = send_job(ctx, broker.app, ingest_calls(feeds(2, 10, seed=21)))
    wait_for(lambda: job_finished(ctx, job), timeout=60, message="a small job")

    queues = {
        name: (kind, durable) for name, kind, durable in rows("list_queues", "-p", vhost, "name", "type", "durable")
    }
    assert queues["fetch"] == queues["process"] == ("quorum", "true")

    senders = [c for c in rows("list_channels", "vhost", "confirm") if c[0] == vhost]
    assert ["true"] in [c[1:] for c in senders]  # publisher confirms on the sender's channel

    consumers = {
        queue: rest
        for queue, *rest in rows("list_consumers", "-p", vhost, "queue_name", "ack_required", "prefetch_count")
    }
    # each queue's consumer acknowledges by hand (late), two messages at most for two processes, per consumer
    assert consumers["fetch"] == consumers["process"] == ["true", "2"]
    assert {c[1] for c in rows("list_channels", "vhost", "global_prefetch_count") if c[0] == vhost} == {"0"}
