"""Model versions as part of the service: publish with `feedsift train --data`, switch running workers, roll back, explain.

Real Redis, real celery worker processes, the real CLI in a subprocess.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from feedsift.models.topics import VECTOR_TERM, TopicModel
from feedsift.models.training import train
from feedsift.workers import registry
from feedsift.workers.app import app
from feedsift.workers.context import bundled_model_path
from tests.harness import feedsift, wait_for
from tests.test_topics_unit import rows as toy_rows

SPORT_TEXT = (
    "The striker scored twice in the cup final as the club won the league title; "
    "the coach praised the goalkeeper after the match."
)


def process(r, n: int = 2) -> list[dict]:
    """Sends one batch of fresh articles to the process queue and waits until all are stored."""
    tag = uuid.uuid4().hex[:10]
    batch = [
        {
            "id": f"m{tag}{i}",
            "feed": "fmodels",
            "url": f"http://example.org/{tag}/{i}",
            "guid": f"{tag}-{i}",
            "title": f"Cup final report {i}",
            "published": time.time(),
            "text": SPORT_TEXT,
            "content_hash": f"{tag}{i}",
        }
        for i in range(n)
    ]
    app.send_task("feedsift.process_articles", args=[batch])
    keys = [f"fstest:article:{a['id']}" for a in batch]
    wait_for(lambda: all(r.hget(k, "model") for k in keys), timeout=90, message="the batch to be stored")
    return [{"id": a["id"], **{k.decode(): v.decode() for k, v in r.hgetall(k).items()}} for a, k in zip(batch, keys)]


@pytest.fixture
def user_data(tmp_path):
    path = tmp_path / "labelled.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in toy_rows()))
    return path


def test_train_publish_switch_without_restart_and_roll_back(service_env, r, start_worker, user_data):
    bundled = TopicModel.load(bundled_model_path()).version
    w = start_worker(concurrency=1, queues="process")
    before = process(r)
    assert {a["model"] for a in before} == {bundled}
    children = w.children()

    done = feedsift(service_env, "train", "--data", str(user_data))
    assert done.returncode == 0, done.stderr
    version = r.get("fstest:model:current").decode()
    assert version != bundled and version in done.stdout
    header = json.loads(r.hget("fstest:model:versions", version))
    assert header["meta"]["n_train"] == len(toy_rows()) and header["meta"]["cv"]["micro_f1"] > 0
    assert header["meta"]["data"].startswith("labelled.jsonl") and len(header["thresholds"]) == 3
    assert TopicModel.from_bytes(r.get(f"fstest:model:artifact:{version}")).version == version

    after = process(r)
    assert {a["model"] for a in after} == {version}
    assert w.proc.poll() is None and w.children() == children  # the same processes, no restart

    listed = json.loads(feedsift(service_env, "models", "--json").stdout)
    assert [(m["version"], m["current"]) for m in listed] == [(bundled, False), (version, True)]
    table = feedsift(service_env, "models").stdout
    assert version in table and "(bundled)" in table

    rolled = feedsift(service_env, "models", "use", "bundled")
    assert rolled.returncode == 0 and r.get("fstest:model:current") is None
    assert {a["model"] for a in process(r)} == {bundled}
    assert feedsift(service_env, "models", "use", version).returncode == 0
    assert {a["model"] for a in process(r)} == {version}

    unknown = feedsift(service_env, "models", "use", "20000101-deadbeef")
    assert unknown.returncode == 2 and "no published model" in unknown.stderr
    assert r.get("fstest:model:current").decode() == version

    # explain uses the version that tagged the article, even after the current one changed
    feedsift(service_env, "models", "use", "bundled")
    why = json.loads(feedsift(service_env, "explain", after[0]["id"], "--json").stdout)
    assert why["model"] == version and why["note"] == ""
    sport = why["topics"]["sport"]
    assert sport["probability"] == pytest.approx(json.loads(after[0]["scores"])["sport"], abs=1e-3)
    text_words = set(SPORT_TEXT.lower().replace(";", " ").replace(",", " ").replace(".", " ").split())
    assert sport["up"] and all(
        set(term.split()) <= text_words | {"cup", "final", "report", "0", "1"}
        for term, _ in sport["up"]
        if term != VECTOR_TERM
    )
    shown = feedsift(service_env, "explain", after[0]["id"])
    assert shown.returncode == 0 and sport["up"][0][0] in shown.stdout


def test_train_with_starter_reports_the_users_own_figures_and_out_does_not_publish(service_env, r, user_data, tmp_path):
    target = tmp_path / "mine.npz"
    done = feedsift(
        service_env, "train", "--data", str(user_data), "--with-starter", "--eval", str(user_data), "--out", str(target)
    )
    assert done.returncode == 0, done.stderr
    assert r.get("fstest:model:current") is None and not r.exists("fstest:model:versions")
    model = TopicModel.load(target)
    assert model.meta_["n_train"] > len(toy_rows()) + 1000
    assert model.meta_["cv_user"]["sport"]["support"] == sum(row["sport"] for row in toy_rows())
    assert model.meta_["eval"]["rows"] == len(toy_rows()) and model.meta_["eval"]["data"] == "labelled.jsonl"


def test_explain_unknown_article_and_bad_training_data(service_env, r, tmp_path):
    missing = feedsift(service_env, "explain", "nosuchid")
    assert missing.returncode == 1 and "no article nosuchid" in missing.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"title": "x", "text": "y", "sport": 1}) + "\n")
    done = feedsift(service_env, "train", "--data", str(bad))
    assert done.returncode == 2 and "too few" in done.stderr
    assert r.get("fstest:model:current") is None


def test_context_switches_per_batch_and_survives_a_missing_artifact(ctx, r):
    bundled = TopicModel.load(bundled_model_path()).version
    assert ctx.model().version == bundled
    model = train(toy_rows(), folds=3, n_features=2**14)
    version = registry.publish(ctx.redis, ctx.keys, model)
    assert ctx.model().version == version
    r.set("fstest:model:current", "19990101-00000000")  # current, but no artifact
    assert ctx.model().version == bundled
    assert ctx.model_of(version).version == version and ctx.model_of(bundled).version == bundled
    assert ctx.model_of("19990101-00000000") is None
    registry.use(ctx.redis, ctx.keys, version)
    assert ctx.model().version == version
    with pytest.raises(ValueError, match="no published model"):
        registry.use(ctx.redis, ctx.keys, "19990101-00000000")


def test_a_published_artifact_of_an_older_format_falls_back_to_the_bundled_model(ctx, r):
    """After an upgrade that changes the artifact format, workers keep tagging with the bundled model."""
    bundled = TopicModel.load(bundled_model_path()).version
    old = "20200101-0ldf0rma"
    r.set(ctx.keys.model_artifact(old), b"not an artifact this release reads")
    r.hset(ctx.keys.model_versions, old, json.dumps({"version": old, "topics": [], "meta": {}}))
    r.set(ctx.keys.model_current, old)
    assert ctx.model().version == bundled
    assert ctx.model_of(old) is None
