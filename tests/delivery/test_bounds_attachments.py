"""Bounded attachments (issue 12, items 5 and 12): a count and a total per message, checked by
the sender, the guard and the reader with one rule; identical content saved once; org settings
validated; a lowered limit applies to what is sent after it (docs/protocol.md §13)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from gitmail.core import attachments
from gitmail.core.model import OrgPolicy
from tests.attachments.conftest import files_under, set_policy
from tests.conftest import Org, git
from tests.sync.conftest import NetOrg, _net_org, guard_runtime  # noqa: F401  (autouse: the guard's sockets)

MIB = 2**20
ATTACHMENT_EXIT = 11


@pytest.fixture
def net(tmp_path: Path) -> Iterator[NetOrg]:
    """max and alex on a real ``git daemon`` with the guard installed."""
    yield from _net_org(tmp_path, guard=True)


def _clear(org: Org) -> None:
    set_policy(org, encryption="off")


def _craft(org: Org, sender: str, recipient: str, entries: list[dict[str, Any]], tree: dict[str, bytes]) -> tuple[str, int, str]:
    """A genuinely signed message with any attachment entries and tree, pushed with plain git
    (a hostile sender skipping gitmail's checks); ``(Message-ID, push exit code, output)``."""
    from gitmail import api
    from gitmail.core import refs, sync
    from gitmail.core.model import Attachment, Message, format_date, utcnow
    from gitmail.core.store import write_message_commit

    s = api.session(org.clones[sender])
    repo, pg = s.repo, s.repo.pg
    extra = {p: (str(pg.create_blob(data)), 0o100644) for p, data in tree.items()}
    msg = Message(**{"from": sender}, to=[recipient], date=format_date(utcnow()), subject="crafted", body="x",
                  attachments=[Attachment(**a) for a in entries])
    msg.id = msg.compute_id()
    path = refs.mail_path(recipient, sender)
    sync.fetch(repo)
    oid = write_message_commit(pg, msg, s.member, s.signer, repo.ref_target(refs.tracking(path, repo.remote)), extra)
    r = git("push", org.url, f"{oid}:{refs.head(path)}", cwd=org.clones[sender], check=False)
    return msg.id, r.returncode, r.stdout + r.stderr


def _one_blob_many_entries(n: int, data: bytes) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    oid = hashlib.sha256(data).hexdigest()
    entries = [{"name": f"copy{i}.bin", "size": len(data), "oid": oid, "storage": "blob",
                "path": f"attachments/{i}-copy{i}.bin"} for i in range(1, n + 1)]
    return entries, {str(e["path"]): data for e in entries}


def test_bounds_guard_refuses_many_entries_of_one_blob(net: NetOrg) -> None:
    """The issue's attack, scaled: 60 entries naming one 1 MiB blob (a ~1 MiB push) is 60 MiB to
    write for the reader. Each entry is under the per-attachment limit; the count and the total
    are not: the guard refuses it."""
    _clear(net)
    entries, tree = _one_blob_many_entries(60, os.urandom(MIB))
    _, code, out = _craft(net, "max", "alex", entries, tree)
    assert code != 0, out
    assert "60 attachments; the limit is 20 per message" in out
    assert "attachments total 62914560 bytes" in out and "the limit is 52428800 bytes per message" in out
    # Within the bounds, the same shape goes through.
    entries, tree = _one_blob_many_entries(3, os.urandom(1000))
    _, code, out = _craft(net, "max", "alex", entries, tree)
    assert code == 0, out


def test_bounds_guard_counts_the_tree_not_only_the_declared_entries(net: NetOrg) -> None:
    """One declared entry, but 25 tree blobs under attachments/: refused before anything is
    counted, as files no entry of the message describes (docs/protocol.md §6), whether in a
    folder of their own or beside the declared one."""
    _clear(net)
    entries, tree = _one_blob_many_entries(1, b"small")
    for extra in ({f"attachments/extra/{i}.bin": os.urandom(100) for i in range(25)},
                  {f"attachments/{i}.bin": os.urandom(100) for i in range(25)}):
        _, code, out = _craft(net, "max", "alex", entries, {**tree, **extra})
        assert code != 0 and "which no attachment of this message names" in out, out


def test_bounds_reader_refuses_a_message_over_the_bounds(org: Org, tmp_path: Path) -> None:
    """On a server without the guard the reader applies the same rule: nothing written."""
    _clear(org)
    entries, tree = _one_blob_many_entries(50, os.urandom(64 * 1024))
    set_policy(org, attachment_total_limit=2 * MIB)
    mid, code, out = _craft(org, "max", "alex", entries, tree)
    assert code == 0, out  # a plain file remote: no guard
    org.ok("alex", "sync")
    inbox = tmp_path / "in"
    r = org.as_("alex", "read", mid[:12], "--save-dir", str(inbox))
    assert r.code == ATTACHMENT_EXIT, (r.out, r.err)
    assert "50 attachments; the limit is 20 per message" in r.out + r.err
    assert r.out.count("NOT saved") == 50 and "Traceback" not in r.err
    assert files_under(inbox) == []


def test_bounds_identical_content_is_saved_once(org: Org, tmp_path: Path) -> None:
    _clear(org)
    data = os.urandom(5000)
    entries, tree = _one_blob_many_entries(5, data)
    mid, code, out = _craft(org, "max", "alex", entries, tree)
    assert code == 0, out
    org.ok("alex", "sync")
    inbox = tmp_path / "in"
    r = org.ok("alex", "read", mid[:12], "--save-dir", str(inbox))
    assert files_under(inbox) == ["copy1.bin"]
    assert r.out.count(f"saved to {inbox / 'copy1.bin'}") == 5
    assert (inbox / "copy1.bin").read_bytes() == data


def test_bounds_identical_encrypted_content_is_sealed_and_saved_once(org: Org, tmp_path: Path) -> None:
    one, two = tmp_path / "a.txt", tmp_path / "b.txt"
    one.write_bytes(b"same content\n" * 100)
    two.write_bytes(one.read_bytes())
    org.ok("max", "send", "alex", "twice", "--encrypt", "--attach", str(one), "--attach", str(two))
    clone = org.clones["max"]
    tree = git("ls-tree", "-r", "refs/remotes/origin/gitmail/mail/alex/max", "attachments", cwd=clone).stdout.split("\n")
    blobs = {line.split()[2] for line in tree if line}
    assert len(blobs) == 1  # one ciphertext for both entries
    org.ok("alex", "sync")
    inbox = tmp_path / "in"
    org.ok("alex", "read", "--save-dir", str(inbox))
    assert files_under(inbox) == ["a.txt"]


def test_bounds_sender_refuses_too_many_or_too_big_together(org: Org, tmp_path: Path) -> None:
    _clear(org)
    files = []
    for i in range(21):
        f = tmp_path / f"f{i}.txt"
        f.write_text(f"file {i}\n")
        files.append(str(f))
    before = git("for-each-ref", cwd=org.clones["max"]).stdout
    r = org.as_("max", "send", "alex", "many", *[x for f in files for x in ("--attach", f)])
    assert r.code == ATTACHMENT_EXIT and r.err == "gitmail: cannot attach 21 files: the org's limit is 20 per message\n"
    set_policy(org, attachment_limit=2000, attachment_total_limit=3000)
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"a" * 1500)
    b.write_bytes(b"b" * 1600)
    before = git("for-each-ref", cwd=org.clones["max"]).stdout
    r = org.as_("max", "send", "alex", "big", "--attach", str(a), "--attach", str(b))
    assert r.code == ATTACHMENT_EXIT, (r.out, r.err)
    assert "together 3.0 KB, over the org's limit of 2.9 KB per message" in r.err and len(r.err.splitlines()) == 1
    assert git("for-each-ref", cwd=org.clones["max"]).stdout == before  # nothing written
    org.ok("max", "send", "alex", "fits", "--attach", str(a))


@pytest.mark.parametrize("setting", ["attachment_limit=-1", "attachment_limit=0", "attachment_count_limit=0",
                                     "attachment_total_limit=-5", "body_limit=0", "attachment_count_limit=1001",
                                     "attachment_limit=10MB"])
def test_bounds_org_settings_are_validated(org: Org, setting: str) -> None:
    before = git("for-each-ref", cwd=org.url).stdout
    r = org.as_("max", "org", setting)
    key = setting.split("=")[0]
    assert r.code == 2 and r.err.startswith(f"gitmail: policy {key}: ") and len(r.err.splitlines()) == 1, r.err
    assert git("for-each-ref", cwd=org.url).stdout == before


def test_bounds_a_directory_with_a_bad_setting_is_refused_on_read(org: Org) -> None:
    """An org.json that bypassed ``gitmail org`` (a hand-made commit, validly signed by the
    admin) is malformed: clones keep the last good directory."""
    from gitmail.core import directory as dirmod
    from gitmail.core.repo import open_repo

    set_policy(org, attachment_limit=-1)  # model_copy: no validation, as a hand-made org.json
    d = dirmod.load(open_repo(org.clones["alex"]))
    assert d.policy.attachment_limit == OrgPolicy().attachment_limit
    r = org.as_("alex", "verify", "--all")
    assert r.code == 7 and "malformed directory" in r.out and "attachment_limit: Input should be greater than or equal to 1" in r.out, (r.out, r.err)


def test_bounds_a_directory_with_a_bad_setting_is_refused_by_the_guard(net: NetOrg) -> None:
    from gitmail import api
    from gitmail.core import admin
    from gitmail.core import directory as dirmod

    s = api.session(net.clones["max"])

    def mutate(d: dirmod.Directory) -> dirmod.Directory:
        d.policy = d.policy.model_copy(update={"attachment_count_limit": 0})
        return d

    with pytest.raises(Exception) as e:
        admin.change(s.repo, s.signer, s.member, mutate, "a bad limit")
    assert "refused" in str(e.value) and "malformed directory" in str(e.value) and "attachment_count_limit" in str(e.value)


def test_bounds_lowering_the_limit_keeps_earlier_attachments_readable(org: Org, tmp_path: Path) -> None:
    """A limit applies to what is sent after it changes: the reader applies the widest limit
    the directory ever had; the sender and the guard the current one."""
    _clear(org)
    f = tmp_path / "report.bin"
    f.write_bytes(os.urandom(5000))
    org.ok("max", "send", "alex", "before", "--attach", str(f))
    org.ok("max", "org", "attachment_limit=1000")
    org.ok("alex", "sync")
    inbox = tmp_path / "in"
    r = org.ok("alex", "read", "--save-dir", str(inbox))
    assert "NOT saved" not in r.out and (inbox / "report.bin").read_bytes() == f.read_bytes()
    r = org.as_("max", "send", "alex", "after", "--attach", str(f))
    assert r.code == ATTACHMENT_EXIT and "over the org's limit of 1000 B per attachment" in r.err


def test_bounds_read_bounds_is_the_widest_in_history(org: Org) -> None:
    from gitmail.core import directory as dirmod
    from gitmail.core.repo import open_repo

    org.ok("max", "org", "attachment_count_limit=50")
    org.ok("max", "org", "attachment_count_limit=5", "attachment_limit=1000")
    repo = open_repo(org.clones["max"])
    d = dirmod.load(repo)
    b = attachments.read_bounds(repo.pg, d.tip)
    assert (d.policy.attachment_count_limit, d.policy.attachment_limit) == (5, 1000)
    assert b == attachments.Bounds(10 * MIB, 50, 50 * MIB)


def test_bounds_problems_unit() -> None:
    b = attachments.Bounds(100, 3, 250)
    assert attachments.bounds_problems([("a", 100), ("b", 100)], b) == []
    assert attachments.bounds_problems([("a", 101)], b) == ["attachment a is 101 bytes (101 B); the limit is 100 bytes per attachment"]
    assert attachments.bounds_problems([("a", 1)] * 4, b) == ["4 attachments; the limit is 3 per message"]
    assert attachments.bounds_problems([("a", 90)] * 3, b) == ["attachments total 270 bytes (270 B); the limit is 250 bytes per message"]
    # The total is never below the per-attachment limit.
    assert attachments.Bounds.of(OrgPolicy(attachment_limit=100 * MIB)).total == 100 * MIB


def test_lfs_pointers_are_read_with_the_one_lfs_parser(tmp_path: Path) -> None:
    """A reader and the guard take an LFS attachment's file through lfs.parse_pointer: only the
    pointer to exactly the declared object and size passes; a blob that starts like a pointer
    but is not one (a size with a leading zero, no size, keys out of order) and a plain file
    are refused, whatever size they would claim."""
    import pygit2

    from gitmail.core import lfs
    from gitmail.core.attachments import GITATTRIBUTES
    from gitmail.core.model import Attachment, Message
    from gitmail.core.store import _tree_as_git_reads_it, layout_problem

    pg = pygit2.init_repository(str(tmp_path / "r"), bare=True)
    oid = "ab" * 32
    blobs = {
        "ok": lfs.format_pointer(oid, 5 * MIB),
        "plain": b"just a file\n",
        "size-leading-zero": f"version {lfs.POINTER_VERSION}\noid sha256:{oid}\nsize 05242880\n".encode(),
        "no-size": f"version {lfs.POINTER_VERSION}\noid sha256:{oid}\n".encode(),
        "keys-unsorted": f"version {lfs.POINTER_VERSION}\nsize {5 * MIB}\noid sha256:{oid}\n".encode(),
        "other-size": lfs.format_pointer(oid, 5 * MIB + 1),
    }
    seen = {}
    for name, data in blobs.items():
        inner = pg.TreeBuilder()
        inner.insert(f"1-{name}", pg.create_blob(data), pygit2.enums.FileMode.BLOB)
        top = pg.TreeBuilder()
        top.insert("message.json", pg.create_blob(b"{}"), pygit2.enums.FileMode.BLOB)
        top.insert(".gitattributes", pg.create_blob(GITATTRIBUTES), pygit2.enums.FileMode.BLOB)
        top.insert("attachments", inner.write(), pygit2.enums.FileMode.TREE)
        msg = Message(**{"from": "alex"}, to=["max"], date="2026-01-01T00:00:00Z", subject="s", attachments=[
            Attachment(name=name, size=5 * MIB, oid=oid, storage="lfs", path=f"attachments/1-{name}")])
        seen[name] = layout_problem(pg, _tree_as_git_reads_it(pg, str(top.write())), msg)
    assert seen == {"ok": None, **{n: f"attachments/1-{n} is not the LFS pointer its entry declares (oid and size)"
                                   for n in blobs if n != "ok"}}
