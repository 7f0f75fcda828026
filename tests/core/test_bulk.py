"""Batches: one pack, the same signed commits as single sends."""

from __future__ import annotations

import json

from gitmail import api
from tests.conftest import Org, git


def test_batch_is_delivered_verified_and_in_order(org: Org) -> None:
    drafts = [api.Draft(to=["alex"], body=f"batch message {i}") for i in range(50)]
    msgs = [r.stored for r in api.send_batch(org.clones["max"], drafts, encrypt=False) if r.stored is not None]
    assert len({m.id for m in msgs}) == 50
    org.ok("alex", "sync")
    listing = json.loads(org.ok("alex", "list", "--json", "--limit", "100").out)
    assert listing["total"] == 50 and listing["unread"] == 50
    assert all(m["verified"] for m in listing["messages"])
    v = git("verify-commit", "origin/gitmail/mail/alex/max", cwd=org.clones["alex"])
    assert 'Good "git" signature for max' in v.stderr
    log = git("log", "--format=%s", "origin/gitmail/mail/alex/max", cwd=org.clones["alex"]).stdout.split("\n")
    assert log[0] == "batch message 49" and log[49] == "batch message 0"
    assert git("fsck", "--strict", cwd=org.clones["max"]).returncode == 0


def test_batch_follows_the_encryption_policy(org: Org) -> None:
    msgs = [r.stored for r in api.send_batch(org.clones["max"], [api.Draft(to=["alex"], body=f"secret {i}") for i in range(3)]) if r.stored is not None]
    assert len(msgs) == 3 and all(m.encrypted is not None and m.body == "" for m in msgs)
    org.ok("alex", "sync")
    got = json.loads(org.ok("alex", "read", "--json").out)["messages"]
    assert sorted(m["body"] for m in got) == ["secret 0", "secret 1", "secret 2"]
    assert all(m["verified"] and m["encrypted"] for m in got)
