"""The bulk writer's speed paths (issue 14 item 7): pack entries made by hand, and a delivery
round that takes what the writer knows instead of reading its commits back."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from gitmail import api
from tests.conftest import Org, git


def test_pack_entries_are_what_zlib_and_git_read_back(org: Org) -> None:
    """The deflated objects and entry headers the bulk writer makes by hand: zlib inflates
    them at every size (up to 300 KB), headers match dulwich's, and git
    reads a pack holding a 150 KB object (git fsck --strict, cat-file)."""
    import os
    import zlib

    from dulwich.object_format import DEFAULT_OBJECT_FORMAT
    from dulwich.pack import pack_object_header

    from gitmail.api.send import prepare
    from gitmail.api.session import session
    from gitmail.core import bulk

    for n in (0, 1, 1000, 0xFFFE, 0xFFFF, 0x10000, 0x1FFFE, 0x1FFFF, 0x20000, 300_000):
        raw = os.urandom(n)
        assert zlib.decompress(bulk._deflate(raw)) == raw, n
    for t in (1, 2, 3):
        for size in (0, 1, 15, 16, 127, 128, 2047, 2048, 65536, 10**9, 2**40 + 3):
            assert bulk._header(t, size) == bytes(pack_object_header(t, None, size, DEFAULT_OBJECT_FORMAT))
    s = session(org.clones["max"])
    big = os.urandom(150_000)
    p = prepare(s, api.Draft(to=["alex"], body="a big extra file"), False)
    tip = bulk.write_chain(s.repo, [(p.stored, p.blob, {"extra.bin": big})], s.member, s.signer, None)
    assert tip is not None
    clone = org.clones["max"]
    assert git("fsck", "--strict", "--no-dangling", cwd=clone).returncode == 0
    out = subprocess.run(["git", "cat-file", "blob", f"{tip}:extra.bin"], cwd=clone, capture_output=True, check=True)
    assert out.stdout == big
    assert git("verify-commit", tip, cwd=clone).returncode == 0


def test_delivery_reads_back_nothing_the_bulk_writer_wrote(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch's delivery round takes each commit's Message-ID, parent and attachments from the
    bulk writer (issue 14 item 7: reading every message back was over a third of an import),
    and still delivers each message exactly once, verified by the recipient."""
    from gitmail.core import objects, store

    reads: list[str] = []
    real_read, real_commit = store.read_message, objects.commit

    def read_message(pg: Any, c: Any) -> Any:
        reads.append(str(c.id))
        return real_read(pg, c)

    def commit(pg: Any, oid: Any) -> Any:
        reads.append(str(oid))
        return real_commit(pg, oid)

    monkeypatch.setattr(store, "read_message", read_message)
    monkeypatch.setattr(objects, "commit", commit)
    results = api.send_batch(org.clones["max"], [api.Draft(to=["alex"], body=f"m {i}") for i in range(30)],
                             encrypt=False)
    assert [r.outcome for r in results] == ["delivered"] * 30
    assert reads == []
    from gitmail.core import sync

    assert not sync._WRITTEN  # all delivered: the memo is emptied
    monkeypatch.undo()
    org.ok("alex", "sync")
    listing = json.loads(org.ok("alex", "list", "--json", "--limit", "100").out)
    assert listing["total"] == 30 and all(m["verified"] for m in listing["messages"])
    assert sorted(m["id"] for m in listing["messages"]) == sorted(r.message.id for r in results)


def test_the_writers_memo_agrees_with_reading_the_commits(org: Org) -> None:
    """queued_chain from the bulk writer's memo is exactly queued_chain read from git."""
    from gitmail.core import refs, sync
    from gitmail.core.repo import open_repo

    api.send(org.clones["max"], ["alex"], "one before", encrypt=False)
    api.send_batch(org.clones["max"], [api.Draft(to=["alex"], body=f"q {i}") for i in range(12)], deliver=False)
    r = open_repo(org.clones["max"])
    path = refs.mail_path("alex", "max")
    remembered = sync.queued_chain(r, path)
    assert len(remembered) == 12 and all(oid in sync._WRITTEN for oid, _ in remembered)
    sync._WRITTEN.clear()
    assert sync.queued_chain(open_repo(org.clones["max"]), path) == remembered
