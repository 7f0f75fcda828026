"""Compressed objects far larger than what was pushed ("zip bombs") are refused unread.

zlib packs a run of one byte about a thousand to one, so a push of well under a megabyte can
hold a ``message.json`` or a commit of many megabytes (a gigabyte in a few). Reading such an
object whole takes that much memory in every reader and in the guard. gitmail reads an
object's size from its header first (``gitmail.core.objects.object_size``) and refuses one over
its bound without inflating it. Each test pushes the bomb with plain git to a real
``git daemon``, then measures the peak memory of a separate Python process that runs gitmail's
own check on it (``ru_maxrss``): the reading code before this change grew by the object's size
twice over (libgit2's buffer and Python's copy).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pygit2
import pytest

from gitmail.core import objects, refs
from gitmail.core.model import MAX_BLOB
from gitmail.core.repo import open_repo
from tests.conftest import run
from tests.sync import forge
from tests.sync.conftest import NetOrg, guard_runtime, net, unguarded  # noqa: F401 (fixtures)
from tests.trust.test_hostile_messages import MAILBOX, Ctx, build_ctx, raw_signed_commit

BOMB = 48 * 1024 * 1024  # bytes inflated; about 48 KB compressed
GROWTH_MAX_MB = 24  # a reader that inflates the bomb grows by twice BOMB


def _bomb_message(clone: Path, parent: str) -> str:
    """max's signed commit whose message.json is BOMB bytes of spaces."""
    c = build_ctx(clone, parent)
    tb = c.pg.TreeBuilder()
    tb.insert("message.json", c.pg.create_blob(b" " * BOMB), pygit2.enums.FileMode.BLOB)
    return raw_signed_commit(c.pg, str(tb.write()), parent, c.author, "bomb\n", c.signer)


def _bomb_commit(clone: Path, parent: str) -> str:
    """max's signed commit whose message is over objects.MAX_COMMIT bytes (a message.json of its own)."""
    c = build_ctx(clone, parent)
    tb = c.pg.TreeBuilder()
    tb.insert("message.json", c.pg.create_blob(b"{}"), pygit2.enums.FileMode.BLOB)
    return raw_signed_commit(c.pg, str(tb.write()), parent, c.author, "x" * (objects.MAX_COMMIT + 1) + "\n", c.signer)


def _check_in_a_fresh_process(clone: Path, oid: str, rcpt: str = "alex", sender: str = "max") -> tuple[str, str, float]:
    """``(status, detail, MB the peak memory grew by)`` of check_message on ``oid``, in a new Python."""
    code = f"""
import json, resource
import pygit2
import pytest
from gitmail.core import directory
from gitmail.core.objects import collect
from gitmail.core.repo import open_repo
from gitmail.core.store import check_message
r = open_repo({str(clone)!r}); d = directory.load(r); pg = r.pg
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
collect(pg, {oid!r})  # the walk reads each commit's parents
msg, check = check_message(pg, {oid!r}, {rcpt!r}, {sender!r}, d)
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps([check.status, check.detail, grown]))
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    status, detail, grown = json.loads(p.stdout)
    return status, detail, grown


def _push_bomb(net: NetOrg, make: "Callable[[Path, str], str]") -> tuple[str, int, str]:
    """max sends alex "before" and alex syncs; then max pushes ``make(clone, tip)`` on top of it
    with plain git. Returns the bomb's id and git push's exit code and output."""
    net.ok("max", "send", "alex", "before")
    net.ok("alex", "sync")
    clone = net.clones["max"]
    tip = forge.tip(clone, refs.mail_path("alex", "max"))
    assert tip is not None
    bomb = make(clone, tip)
    code, out = forge.push(clone, bomb, MAILBOX)
    return bomb, code, out


def test_a_message_json_bomb_is_malformed_unread_and_the_mailbox_lives_on(unguarded: NetOrg) -> None:
    net = unguarded
    bomb, code, out = _push_bomb(net, _bomb_message)
    assert code == 0, out
    net.ok("max", "sync")
    net.ok("max", "send", "alex", "after")
    r = net.as_("alex", "sync")
    assert r.code == 0, r.err
    listed = {m["commit"]: m for m in json.loads(net.ok("alex", "list", "--all", "--json").out)["messages"]}
    assert listed[bomb]["status"] == "malformed"
    assert sorted(m["subject"] for m in listed.values() if m["status"] == "good") == ["after", "before"]
    status, detail, grown = _check_in_a_fresh_process(net.clones["alex"], bomb)
    assert status == "malformed" and f"{BOMB} bytes, over the {MAX_BLOB}" in detail, detail
    assert grown < GROWTH_MAX_MB, f"the check grew the reader by {grown:.0f} MB"


def test_the_guard_refuses_a_message_json_bomb_with_its_size(net: NetOrg) -> None:
    _, code, out = _push_bomb(net, _bomb_message)
    assert code != 0 and "push refused" in out and f"{BOMB} bytes, over the {MAX_BLOB}" in out, out


def test_a_commit_bomb_is_not_read_and_the_verified_copy_is_kept(unguarded: NetOrg, tmp_path: Path) -> None:
    """A commit over MAX_COMMIT bytes is neither parsed nor followed: on a mailbox the line ends
    there, so the update is not taken and the verified copy is kept, saying why; a new clone
    takes nothing of that mailbox; ``verify --all`` says its history cannot be read (the guard
    refuses such a commit outright)."""
    net = unguarded
    bomb, code, out = _push_bomb(net, _bomb_commit)
    assert code == 0, out
    r = net.as_("alex", "sync")
    assert r.code == 0 and "the history below it cannot be read; kept the verified copy" in r.err, r.err
    assert [m["subject"] for m in json.loads(net.ok("alex", "list", "--json").out)["messages"]] == ["before"]
    v = net.as_("alex", "verify", "--all", "--json")
    assert v.code == 7 and any("the history below it cannot be read" in p for p in json.loads(v.out)["problems"]), v.out
    second = tmp_path / "alex-2"
    run("init", "--name", "alex", "--org", net.url, "--repo", str(second))
    r = run("sync", "--repo", str(second))
    assert "the history below it cannot be read" in r.err, r.err
    assert json.loads(run("list", "--all", "--json", "--repo", str(second)).out)["messages"] == []
    status, detail, grown = _check_in_a_fresh_process(net.clones["alex"], bomb)
    assert status == "malformed" and f"bytes, over the {objects.MAX_COMMIT}" in detail, detail
    assert grown < GROWTH_MAX_MB, f"the walk and check grew the reader by {grown:.0f} MB"
    assert objects.parent_ids(open_repo(net.clones["alex"]).pg, bomb) == []


def test_the_guard_refuses_a_commit_bomb(net: NetOrg) -> None:
    _, code, out = _push_bomb(net, _bomb_commit)
    assert code != 0 and "push refused" in out and f"over the {objects.MAX_COMMIT}" in out, out


def test_the_layout_check_reads_headers_not_blobs(tmp_path: Path) -> None:
    """A reader (and the guard) checks that a blob attachment holds its declared size by the
    object's header: a bomb under attachments/ costs no memory, and a size that disagrees
    with the header by one byte is refused."""
    pg = pygit2.init_repository(str(tmp_path / "r"), bare=True)
    inner = pg.TreeBuilder()
    inner.insert("1-big.bin", pg.create_blob(b"\0" * BOMB), pygit2.enums.FileMode.BLOB)
    top = pg.TreeBuilder()
    top.insert("message.json", pg.create_blob(b"{}"), pygit2.enums.FileMode.BLOB)
    top.insert("attachments", inner.write(), pygit2.enums.FileMode.TREE)
    tree = str(top.write())
    code = f"""
import json, resource, sys, pygit2
from gitmail.core.model import Attachment, Message
from gitmail.core.store import _tree_as_git_reads_it, layout_problem
pg = pygit2.Repository({str(tmp_path / "r")!r})
root = _tree_as_git_reads_it(pg, {tree!r})
def msg(size):
    return Message(**{{"from": "alex"}}, to=["max"], date="2026-01-01T00:00:00Z", subject="s",
                   attachments=[Attachment(name="big.bin", size=size, oid="ab" * 32, path="attachments/1-big.bin")])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = [layout_problem(pg, root, msg({BOMB})), layout_problem(pg, root, msg({BOMB} - 1))]
print(json.dumps([out, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024]))
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    (same, off_by_one), grown = json.loads(p.stdout)
    assert same is None, same
    assert off_by_one == f"attachments/1-big.bin holds {BOMB} bytes; its entry declares {BOMB - 1}", off_by_one
    assert grown < GROWTH_MAX_MB, f"the layout check grew by {grown:.0f} MB"


def test_the_object_type_numbers_are_git_s() -> None:
    assert (objects.COMMIT, objects.TREE, objects.BLOB) == (
        pygit2.enums.ObjectType.COMMIT, pygit2.enums.ObjectType.TREE, pygit2.enums.ObjectType.BLOB)


def test_a_directory_tree_over_the_bound_is_not_read(unguarded: NetOrg, monkeypatch: pytest.MonkeyPatch) -> None:
    """The directory's trees are sized first too (a member can push a directory commit). With
    the bound lowered below this org's real root tree, the directory is refused as malformed,
    naming the size, and nothing of the tree is read."""
    from gitmail.core import directory as dirmod
    from gitmail.errors import VerificationError

    r = open_repo(unguarded.clones["alex"])
    tip = r.ref_target(refs.tracking(refs.DIRECTORY, r.remote))
    assert tip is not None
    c = objects.commit(r.pg, tip)
    assert dirmod.from_tree(r.pg, c).members  # as it is: fine
    size = r.pg.odb.read_header(c.tree_id)[1]
    monkeypatch.setattr(objects, "MAX_TREE", size - 1)
    with pytest.raises(VerificationError, match=f"is {size} bytes, over the {size - 1} a reader reads"):
        dirmod.from_tree(r.pg, c)


def directory_ctx(org: NetOrg) -> "tuple[str, Ctx]":
    """The directory tip max's clone has fetched, and a context for writing as max on it."""
    clone = org.clones["max"]
    r = open_repo(clone)
    d_tip = r.ref_target(refs.tracking(refs.DIRECTORY, r.remote))
    assert d_tip is not None
    return d_tip, build_ctx(clone, d_tip)


def mail_goes_on_and_init_refuses(org: NetOrg, tmp_path: Path, why: str) -> None:
    """After a hostile directory commit: max's next message reaches alex, and a new member's
    init refuses in one line, saying the directory cannot be changed and ``why``."""
    org.ok("max", "send", "alex", "still here")
    org.ok("alex", "sync")
    assert [m["subject"] for m in json.loads(org.ok("alex", "list", "--json").out)["messages"]] == ["still here"]
    fresh = run("init", "--name", "bob", "--org", org.url, "--repo", str(tmp_path / "bob"))
    assert fresh.code != 0 and "Traceback" not in fresh.err and len(fresh.err.strip().splitlines()) == 1, fresh.err
    assert "the org's directory cannot be changed" in fresh.err and why in fresh.err, fresh.err


def _directory_bomb(org: NetOrg) -> tuple[int, str]:
    """max pushes, with plain git, a commit over MAX_COMMIT bytes on top of the directory."""
    clone = org.clones["max"]
    r = open_repo(clone)
    d_tip = r.ref_target(refs.tracking(refs.DIRECTORY, r.remote))
    assert d_tip is not None
    c = build_ctx(clone, d_tip)
    bomb = raw_signed_commit(c.pg, str(objects.commit(c.pg, d_tip).tree_id), d_tip, c.author,
                             "x" * (objects.MAX_COMMIT + 1) + "\n", c.signer)
    return forge.push(clone, bomb, "refs/heads/gitmail/directory")


def test_a_directory_commit_bomb_is_not_read(unguarded: NetOrg, tmp_path: Path) -> None:
    """A commit over MAX_COMMIT bytes on the directory ref: a clone keeps its verified
    directory and says why, and mail goes on; a new member's init refuses in one line."""
    org = unguarded
    code, out = _directory_bomb(org)
    assert code == 0, out
    s = org.as_("alex", "sync")
    assert s.code == 0 and f"over the {objects.MAX_COMMIT} a reader reads" in s.err, s.err
    mail_goes_on_and_init_refuses(org, tmp_path, f"over the {objects.MAX_COMMIT}")


def test_the_guard_refuses_a_directory_commit_bomb(net: NetOrg) -> None:
    code, out = _directory_bomb(net)
    assert code != 0 and "push refused" in out and f"over the {objects.MAX_COMMIT}" in out, out


def _directory_tree_bomb(org: NetOrg) -> tuple[str, str, int, int, str]:
    """max pushes, with plain git, a signed directory commit that adds ``members/zz``: a tree of
    about BOMB bytes (one entry repeated, so it packs to well under a megabyte). Returns the
    directory tip before it, the bomb commit, the big tree's size, and git push's exit code and output."""
    d_tip, c = directory_ctx(org)
    pg = c.pg
    blob = pg.create_blob(b"x")
    entries = b"".join(b"100644 " + b"f" * 40 + b"%08d" % i + b"\0" + blob.raw for i in range(BOMB // 60))
    big = pg.odb.write(pygit2.enums.ObjectType.TREE, entries)
    root = objects.commit(pg, d_tip).tree
    members = pg.TreeBuilder(root["members"].id) if "members" in root else pg.TreeBuilder()
    members.insert("zz", big, pygit2.enums.FileMode.TREE)
    top = pg.TreeBuilder(root)
    top.insert("members", members.write(), pygit2.enums.FileMode.TREE)
    bomb = raw_signed_commit(pg, str(top.write()), d_tip, c.author, "register zz\n", c.signer)
    code, out = forge.push(org.clones["max"], bomb, "refs/heads/gitmail/directory")
    return d_tip, bomb, pg.odb.read_header(big)[1], code, out


def test_a_directory_tree_bomb_is_not_read_and_mail_goes_on(unguarded: NetOrg, tmp_path: Path) -> None:
    """A folder under ``members/`` of 48 MB (packed: well under one): a clone keeps its verified
    directory and names the folder and its size; mail goes on; a new member's init refuses in
    one line. The directory's diff reads the folder's size from its header and nothing more:
    peak memory of a fresh process verifying the commit grows by less than the bomb (the diff
    before this change read the folder whole, through libgit2)."""
    org = unguarded
    before, bomb, size, code, out = _directory_tree_bomb(org)
    assert code == 0, out
    assert size > objects.MAX_TREE
    s = org.as_("alex", "sync")
    assert s.code == 0 and f"is {size} bytes, over the {objects.MAX_TREE} a reader reads" in s.err, s.err
    assert f"directory commit {bomb[:10]} rejected" in s.err and "members/zz: " in s.err, s.err
    mail_goes_on_and_init_refuses(org, tmp_path, f"over the {objects.MAX_TREE}")

    script = f"""
import json, resource
from gitmail.core import directory
from gitmail.core.repo import open_repo
pg = open_repo({str(org.clones["max"])!r}).pg
L, probs = directory.ledger_at(pg, {before!r})
assert not probs, probs
grown_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
after, probs = directory.advance(pg, L, {bomb!r})
print(json.dumps([after.tip, probs, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - grown_before) / 1024]))
"""
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    tip, probs, grown = json.loads(p.stdout)
    assert tip == before and len(probs) == 1 and "members/zz: " in probs[0], probs
    assert grown < GROWTH_MAX_MB, f"verifying the commit grew peak memory by {grown:.0f} MB"


def test_the_guard_refuses_a_directory_tree_bomb(net: NetOrg) -> None:
    _, _, size, code, out = _directory_tree_bomb(net)
    assert code != 0 and "push refused" in out and "members/zz: " in out and f"is {size} bytes" in out, out
