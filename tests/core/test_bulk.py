"""Batches: one pack, the same signed commits as single sends."""

from __future__ import annotations

import json
from pathlib import Path

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


def test_a_reused_pack_writer_writes_whole_valid_packs(tmp_path: Path) -> None:
    """#16: finish() used to keep its offset and seen-set, so a second pack from the same
    writer had wrong offsets ("unknown object type 0") and skipped objects it had already
    written elsewhere. Each pack is checked by stock git (`git verify-pack`, `git cat-file`)."""
    from gitmail.core import bulk
    from gitmail.core.repo import open_repo

    git("init", "--quiet", "--bare", str(tmp_path / "r.git"))
    repo = open_repo(tmp_path / "r.git")
    w = bulk.PackWriter()
    first = [w.add(3, b"blob %d\n" % i) for i in range(5)]
    w.finish(repo)
    # The second pack repeats one object of the first and adds new ones.
    second = [w.add(3, b"blob 2\n")] + [w.add(3, b"other %d\n" % i * 50) for i in range(5)]
    w.finish(repo)
    packs = sorted((tmp_path / "r.git" / "objects" / "pack").glob("*.idx"))
    assert len(packs) == 2
    for idx in packs:
        git("verify-pack", str(idx))
    for oid in first + second:
        assert git("cat-file", "-t", oid.hex(), cwd=tmp_path / "r.git").stdout.strip() == "blob"
    counts = sorted(len(git("verify-pack", "-v", str(i)).stdout.splitlines()) for i in packs)
    assert counts[1] - counts[0] == 1  # 6 objects in the second pack (the repeated one included), 5 in the first
