"""The baseline of bench/pipeline.py: a Celery task that does nothing, through the same broker settings.

celery -A noop_app worker   (run from bench/, with FEEDSIFT_* pointing at the benchmark's Redis)
"""

from __future__ import annotations

from celery import Celery

from feedsift.workers.app import celery_config

app = Celery("feedsift-bench-noop")
app.config_from_object(
    {
        **celery_config(),
        "task_routes": {"bench.noop": {"queue": "noop"}},
        "task_default_queue": "noop",
        "beat_schedule": {},
    }
)


@app.task(name="bench.noop")
def noop(article: dict) -> None:
    """Takes an article message and drops it: what Celery and the broker cost per message, nothing else."""
