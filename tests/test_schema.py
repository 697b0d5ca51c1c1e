"""The README documents exactly the keys and settings the code uses."""

import re
from dataclasses import fields
from pathlib import Path

import pytest

from feedsift.workers.article import FIELDS, NOT_STORED, Article
from feedsift.workers.keys import SCHEMA, Keys
from feedsift.workers.settings import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_readme_schema_table_matches_code():
    documented = re.findall(r"^\| `feedsift:([^`]+)` \| (\w+) \|", README, re.M)
    assert documented == [(pattern, kind) for pattern, kind, _ in SCHEMA]


def test_readme_lists_every_article_field():
    """The article row of the README's table names the fields of the one Article type, in order."""
    row = re.search(r"^\| `feedsift:article:<id>` \| hash \| one article: ([^|]+) \|", README, re.M)
    assert row and tuple(f.strip() for f in row.group(1).split(",")) == FIELDS
    assert set(FIELDS) | set(NOT_STORED) == {f.name for f in fields(Article)}


def test_readme_lists_every_setting():
    documented = set(re.findall(r"^\| `(FEEDSIFT_\w+)` \|", README, re.M))
    assert documented == {f"FEEDSIFT_{f.name.upper()}" for f in fields(Settings)}


def test_keys_follow_the_prefix():
    k = Keys("x:")
    assert k.article("a1") == "x:article:a1" and k.feed_articles("f") == "x:feed:f:articles"
    assert k.topic("sport") == "x:topic:sport" and k.cluster("c") == "x:cluster:c" and k.dedup("seq") == "x:{dedup}:seq"


def test_settings_from_environment():
    s = Settings.from_env(
        {"FEEDSIFT_BATCH_SIZE": "7", "FEEDSIFT_ALLOW_PRIVATE_NETWORKS": "yes", "FEEDSIFT_PREFIX": "p:", "OTHER": "1"}
    )
    assert (s.batch_size, s.allow_private_networks, s.prefix, s.max_redirects) == (7, True, "p:", 5)


@pytest.mark.parametrize("name, value", [("FEEDSIFT_BATCH_SIZE", "many"), ("FEEDSIFT_ALLOW_PRIVATE_NETWORKS", "maybe")])
def test_bad_settings_are_named(name, value):
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: value})


@pytest.mark.parametrize(
    "name, value, says",
    [
        ("FEEDSIFT_ALLOW_ENDPOINTS", "localhost", "is not an ip:port"),
        ("FEEDSIFT_BATCH_SIZE", "0", "out of range"),
        ("FEEDSIFT_DEDUP_THRESHOLD", "1.5", "out of range"),
        ("FEEDSIFT_REDIS_URL", "http://127.0.0.1:6379", "not a redis://"),
        ("FEEDSIFT_PREFIX", "a b", "must be non-empty"),
    ],
)
def test_settings_are_checked_when_read_not_when_used(name, value, says):
    with pytest.raises(ValueError, match=f"{name}.*{says}"):
        Settings.from_env({name: value})
