"""The README documents exactly the keys and settings the code uses."""

import re
from dataclasses import fields
from pathlib import Path

import pytest

from feedsift.workers.keys import SCHEMA, Keys
from feedsift.workers.settings import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_readme_schema_table_matches_code():
    documented = re.findall(r"^\| `feedsift:([^`]+)` \| (\w+) \|", README, re.M)
    assert documented == [(pattern, kind) for pattern, kind, _ in SCHEMA]


def test_readme_lists_every_setting():
    documented = set(re.findall(r"^\| `(FEEDSIFT_\w+)` \|", README, re.M))
    assert documented == {f"FEEDSIFT_{f.name.upper()}" for f in fields(Settings)}


def test_keys_follow_the_prefix():
    k = Keys("x:")
    assert k.article("a1") == "x:article:a1" and k.feed_articles("f") == "x:feed:f:articles"
    assert k.topic("sport") == "x:topic:sport" and k.cluster("c") == "x:cluster:c" and k.dedup("seq") == "x:dedup:seq"


def test_settings_from_environment():
    s = Settings.from_env(
        {"FEEDSIFT_BATCH_SIZE": "7", "FEEDSIFT_ALLOW_PRIVATE_NETWORKS": "yes", "FEEDSIFT_PREFIX": "p:", "OTHER": "1"}
    )
    assert (s.batch_size, s.allow_private_networks, s.prefix, s.max_redirects) == (7, True, "p:", 5)


@pytest.mark.parametrize("name, value", [("FEEDSIFT_BATCH_SIZE", "many"), ("FEEDSIFT_ALLOW_PRIVATE_NETWORKS", "maybe")])
def test_bad_settings_are_named(name, value):
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: value})
