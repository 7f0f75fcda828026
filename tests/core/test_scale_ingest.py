"""Issue 16, items 2 and 4: verification in bounded batches that resume after a crash, an
incremental ``gitmail verify`` against a full ``verify --all``, the worker pool's verdicts, and
the libsodium ed25519 check."""

from __future__ import annotations

import json
import os
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest

from gitmail.core import cache, refs, store
from gitmail.core.repo import open_repo
from tests.conftest import Org, git
from tests.core.forge import make_message, push_commit, tip, write_unsigned


def _chain(clone: Path, ref: str) -> list[str]:
    """Commit ids of ``ref``, oldest first."""
    return git("rev-list", "--reverse", "--first-parent", ref, cwd=clone).stdout.split()


def _count_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the id of every commit :func:`store.check_message` is asked about (in-process)."""
    seen: list[str] = []
    real = store.check_message

    def counting(pg: Any, c: Any, *a: Any, **kw: Any) -> Any:
        seen.append(c if isinstance(c, str) else str(c.id))
        return real(pg, c, *a, **kw)

    monkeypatch.setattr(store, "check_message", counting)
    return seen


def test_interrupted_ingest_keeps_whole_batches_and_resumes(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    from gitmail.api.session import session

    for i in range(7):
        org.ok("max", "send", "alex", f"m{i}")
    clone = org.clones["alex"]
    git("fetch", "-q", "origin", cwd=clone)
    path = refs.mail_path("alex", "max")
    oids = _chain(clone, f"refs/remotes/origin/{path}")
    assert len(oids) == 7
    monkeypatch.setattr(cache, "BATCH", 3)
    real = cache._index_batch
    calls = [0]

    def crash_on_second(*a: Any, **kw: Any) -> None:
        calls[0] += 1
        if calls[0] == 2:
            raise KeyboardInterrupt  # the user's ^C half-way through a first sync
        real(*a, **kw)

    monkeypatch.setattr(cache, "_index_batch", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        session(clone, "alex").refresh()
    repo = open_repo(clone)
    # the first batch (the three oldest) is kept, and the verified ref moved with it
    assert repo.ref_target(refs.verified(path)) == oids[2]
    db = cache.connect(repo, "alex")
    assert [r[0] for r in db.execute("SELECT oid FROM msg ORDER BY ordinal")] == oids[:3]
    assert not cache.fresh(repo, "alex", db)
    monkeypatch.setattr(cache, "_index_batch", real)
    checked = _count_checks(monkeypatch)
    session(clone, "alex").refresh()
    assert checked == oids[3:]  # resumed: nothing checked twice
    assert [tuple(r) for r in db.execute("SELECT oid, ordinal, status FROM msg ORDER BY ordinal")] == [
        (o, i, "good") for i, o in enumerate(oids, start=1)]
    assert repo.ref_target(refs.verified(path)) == oids[-1]
    listing = json.loads(org.ok("alex", "list", "--json", "-n", "100").out)
    assert listing["total"] == 7 and all(m["verified"] for m in listing["messages"])


def test_batches_index_the_same_rows_as_one_batch(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    """Copies of one Message-ID across batch boundaries are de-duplicated as within one batch."""
    from gitmail.api.session import session

    clone = org.clones["max"]
    base = tip(clone, "alex", "max")
    bad = make_message("max", "alex", "same id, unsigned first")
    parent = base
    for _ in range(3):  # three unsigned copies of one message, then the genuine one
        parent = write_unsigned(clone, bad, parent)
    from gitmail.core.repo import open_repo as _open
    from gitmail.core.signing import load_key
    from gitmail.core.store import write_message_commit
    from gitmail.core import directory as dirmod

    r = _open(clone)
    good = write_message_commit(r.pg, bad, dirmod.load(r).members["max"], load_key(r.key_path("max")), parent)
    push_commit(clone, "alex", "max", good)
    alex = org.clones["alex"]
    git("fetch", "-q", "origin", cwd=alex)

    def rows() -> list[tuple[Any, ...]]:
        db = cache.connect(open_repo(alex), "alex")
        return [tuple(x) for x in db.execute("SELECT ordinal, oid, status, dup FROM msg ORDER BY ordinal")]

    session(alex, "alex").refresh()
    one = rows()
    assert [(s, d) for _, _, s, d in one] == [("unsigned", 1), ("unsigned", 1), ("unsigned", 1), ("good", 0)]
    (open_repo(alex).data_dir / "cache" / "alex.sqlite3").unlink()
    git("update-ref", "-d", refs.verified(refs.mail_path("alex", "max")), cwd=alex)
    monkeypatch.setattr(cache, "BATCH", 1)
    session(alex, "alex").refresh()
    assert rows() == one


def _tamper_blob(clone: Path, ref: str) -> str:
    """Rewrite the loose message.json object of the commit at ``ref`` in place (what a disk fault
    or an intruder with write access to .git could do); return the commit id."""
    oid = git("rev-parse", ref, cwd=clone).stdout.strip()
    blob = git("rev-parse", f"{ref}:message.json", cwd=clone).stdout.strip()
    loose = clone / ".git" / "objects" / blob[:2] / blob[2:]
    assert loose.exists()  # a small fetch is unpacked into loose objects (transfer.unpackLimit)
    os.chmod(loose, 0o644)
    data = zlib.decompress(loose.read_bytes()).split(b"\0", 1)[1]
    forged = data.replace(b"\"require_ack\":false", b"\"require_ack\":true")
    assert forged != data
    loose.write_bytes(zlib.compress(b"blob %d\0" % len(forged) + forged))
    return oid


def test_verify_checks_only_new_and_all_rechecks_everything(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    from gitmail import api

    org.ok("max", "send", "alex", "pay 100 to the usual account")
    org.ok("max", "send", "alex", "second")
    org.ok("alex", "sync")
    alex = org.clones["alex"]
    path = refs.mail_path("alex", "max")
    first = _chain(alex, f"refs/remotes/origin/{path}")[0]
    assert _tamper_blob(alex, f"refs/remotes/origin/{path}~1") == first
    v = json.loads(org.ok("alex", "verify", "--json").out)  # nothing new: the recorded verdicts
    assert v["ok"] is True and v["messages"] == 2 and v["good"] == 2
    r = org.as_("alex", "verify", "--all", "--json")
    assert r.code == 7
    assert [b["oid"] for b in json.loads(r.out)["bad"]] == [first]  # the tampered old commit
    # a new bad message arrives: the default verify checks it, and only it
    clone = org.clones["max"]
    unsigned = write_unsigned(clone, make_message("max", "alex", "unsigned"), tip(clone, "alex", "max"))
    push_commit(clone, "alex", "max", unsigned)
    git("fetch", "-q", "origin", cwd=alex)
    checked = _count_checks(monkeypatch)
    rep = api.verify(alex, as_="alex")
    assert checked == [unsigned]
    assert [(f.oid, f.status) for f in rep.findings] == [(unsigned, "unsigned")]
    assert (rep.messages, rep.good) == (3, 2)


def test_verify_all_reports_the_same_verdicts_as_the_pool(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker pool gives exactly the in-process verdicts (good and bad commits mixed)."""
    from gitmail import api

    clone = org.clones["max"]
    for i in range(3):
        org.ok("max", "send", "alex", f"good {i}")
    unsigned = write_unsigned(clone, make_message("max", "alex", "unsigned"), tip(clone, "alex", "max"))
    push_commit(clone, "alex", "max", unsigned)
    org.ok("max", "send", "alex", "good after")
    org.ok("alex", "sync")
    alex = org.clones["alex"]
    in_process = api.verify(alex, as_="alex", all_=True)
    monkeypatch.setattr(store, "PARALLEL_MIN", 1)
    monkeypatch.setattr(store, "_CHUNK", 2)
    pooled = api.verify(alex, as_="alex", all_=True)
    assert pooled.findings == in_process.findings and [f.oid for f in pooled.findings] == [unsigned]
    assert (pooled.messages, pooled.good) == (in_process.messages, in_process.good)
    # and the ingest through the pool indexes the same rows
    repo = open_repo(alex)
    db = cache.connect(repo, "alex")
    before = [tuple(x) for x in db.execute("SELECT ordinal, oid, id, status, detail, dup FROM msg ORDER BY path, ordinal")]
    (repo.data_dir / "cache" / "alex.sqlite3").unlink()
    from gitmail.api.session import session

    session(alex, "alex").refresh()
    db = cache.connect(repo, "alex")
    assert [tuple(x) for x in db.execute("SELECT ordinal, oid, id, status, detail, dup FROM msg ORDER BY path, ordinal")] == before


# -- the ed25519 check (libsodium) ---------------------------------------------------------------

L = 2**252 + 27742317777372353535851937790883648493  # the order of the ed25519 base point


def test_ed25519_valid_agrees_with_openssl_on_honest_and_altered_signatures() -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    from gitmail.core.signing import ed25519_valid

    def openssl(pub: bytes, sig: bytes, data: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(pub).verify(sig, data)
        except InvalidSignature:
            return False
        return True

    for i in range(20):
        k = Ed25519PrivateKey.generate()
        pub = k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        data = os.urandom(i * 13)
        sig = k.sign(data)
        cases = [(pub, sig, data), (pub, sig, data + b"x"), (pub, bytes([sig[0] ^ 1]) + sig[1:], data),
                 (pub, sig[:32] + bytes([sig[32] ^ 4]) + sig[33:], data)]
        # S + L: the same point equation, a non-canonical S that both refuse (signature malleability)
        s = int.from_bytes(sig[32:], "little") + L
        if s < 2**256:
            cases.append((pub, sig[:32] + s.to_bytes(32, "little"), data))
        for p, sg, d in cases:
            assert ed25519_valid(p, sg, d) == openssl(p, sg, d), (i, sg.hex())
        assert ed25519_valid(pub, sig, data)
        assert not ed25519_valid(pub, sig[:63], data) and not ed25519_valid(pub, sig + b"\0", data)
        assert not ed25519_valid(pub[:31], sig, data)


def test_ed25519_valid_refuses_a_small_order_key() -> None:
    """The identity point as a key with R = identity and S = 0 passes the bare equation for every
    message; libsodium refuses small-order keys (docs/protocol.md §7)."""
    from gitmail.core.signing import ed25519_valid

    identity = (1).to_bytes(32, "little")
    assert not ed25519_valid(identity, identity + bytes(32), b"any message at all")


# -- steady state: work per sync proportional to what arrived (issue 16, item 3) -----------------

_SCANS = ("SCAN msg", "USING INDEX msg_list", "USING INDEX msg_unread", "USING COVERING INDEX msg_list",
          "USING COVERING INDEX msg_unread")


def _plans(db: Any, statements: list[str]) -> list[tuple[str, str]]:
    """``(statement, plan step)`` of every recorded statement on ``msg`` that walks many of its rows."""
    out = []
    for sql in statements:
        head = sql.lstrip().split(None, 1)[0].upper()
        if head not in ("SELECT", "UPDATE", "DELETE") or " msg" not in sql:
            continue
        for step in db.execute("EXPLAIN QUERY PLAN " + sql):
            if any(s in step[3] for s in _SCANS):
                out.append((sql, step[3]))
    return out


def test_ingest_of_a_new_message_reads_no_other_row(org: Org) -> None:
    """A sync bringing one message into a full mailbox: every statement on the rows goes by rowid,
    Message-ID or (mailbox, ordinal), never through a scan of the inbox (it was: the de-duplication
    UPDATE and the read-state reset walked every inbox row through the msg_unread index)."""
    from gitmail.api.session import session

    for i in range(4):
        org.ok("max", "send", "alex", f"old {i}")
    org.ok("alex", "sync")
    first = json.loads(org.ok("alex", "list", "--json").out)["messages"][-1]["id"]
    org.ok("alex", "read", first)  # a read state, applied to what arrives
    org.ok("max", "send", "alex", "new")
    alex = org.clones["alex"]
    git("fetch", "-q", "origin", cwd=alex)
    s = session(alex, "alex")
    db = s.db
    before = cache.max_rowid(db)
    statements: list[str] = []
    db.set_trace_callback(statements.append)
    s.refresh()
    upto = cache.max_rowid(db)
    cache.new_inbox_count(db, before, upto)
    list(cache.new_inbox_pages(db, before, upto))
    list(cache.new_unread_pages(db, before))
    db.set_trace_callback(None)
    assert any("INSERT OR REPLACE INTO msg" in x for x in statements)
    assert _plans(db, statements) == []
    assert json.loads(org.ok("alex", "list", "--json").out)["unread"] == 4  # the read state still applies


def test_apply_state_to_new_rows_matches_the_full_form() -> None:
    """The rowid form of apply_state (bisection over the state's ranges) sets exactly the flags the
    full form sets, for overlapping and unsorted ranges, inbox and sent rows."""
    import random
    import sqlite3

    from gitmail.core.model import MailboxState, State

    rnd = random.Random(16)
    for _ in range(30):
        dbs = []
        st = State(mailboxes={p: MailboxState(
            read=[tuple(sorted((rnd.randint(1, 40), rnd.randint(1, 40)))) for _ in range(rnd.randint(0, 5))],
            archived=[tuple(sorted((rnd.randint(1, 40), rnd.randint(1, 40)))) for _ in range(rnd.randint(0, 3))])
            for p in ("gitmail/mail/a/b", "gitmail/mail/a/c")})
        rows = [(p, o, rnd.randint(0, 1), rnd.randint(0, 1), rnd.randint(0, 1)) for p in ("gitmail/mail/a/b", "gitmail/mail/a/c", "gitmail/mail/x/y")
                for o in range(1, 41)]
        rnd.shuffle(rows)
        since = rnd.randint(0, len(rows))
        for form in ("full", "since"):
            db = cache.prepare(sqlite3.connect(":memory:", isolation_level=None))
            cache.insert_rows(db, ("path", "ordinal", "inbox", "read", "archived"), rows)
            if form == "full":
                # the reference: the full form restricted to the rows after ``since``
                keep = {r[0]: (r[1], r[2]) for r in db.execute("SELECT rowid, read, archived FROM msg WHERE rowid <= ?", (since,))}
                cache.apply_state(db, st)
                db.executemany("UPDATE msg SET read=?, archived=? WHERE rowid=?", [(a, b, k) for k, (a, b) in keep.items()])
            else:
                cache.apply_state(db, st, since=since) if since else cache.apply_state(db, st)
            dbs.append([tuple(r) for r in db.execute("SELECT rowid, read, archived FROM msg ORDER BY rowid")])
            if form == "since":  # (the reference form restores flags behind the tally's back)
                assert cache.scan_counts(db) == (cache.inbox_counts(db)[1], *cache.unread_counts(db))
        assert dbs[0] == dbs[1]


# -- a forged commit inside a big batch (issue 16 item 4: the fast ingest keeps every check) -------


def _big_mailbox(org: Org, tmp_path: Path, n: int, bad: dict[int, str]) -> tuple[Path, list[str]]:
    """``n`` messages from max on alex's mailbox, written straight into alex's clone (the bulk
    writer) and set as its remote-tracking tip; message ``i`` in ``bad`` is forged: ``stranger``
    (signed by a key no member holds), ``tampered`` (message.json altered after signing: the
    Message-ID no longer matches) or ``impostor`` (alex's genuine signature on a message that
    claims to be from max). Returns the clone and the commit ids, oldest first."""
    from gitmail.core import bulk
    from gitmail.core import directory as dirmod
    from gitmail.core.model import Message, format_date, utcnow
    from gitmail.core.repo import open_repo
    from tests.core.forge import key_of, stranger_key

    alex = org.clones["alex"]
    repo = open_repo(alex)
    members = dirmod.load(repo).members
    keys = {"max": key_of(org, "max"), "alex": key_of(org, "alex"), "stranger": stranger_key(tmp_path)}
    pack = bulk.PackWriter()
    date = format_date(utcnow())
    oids: list[str] = []
    parent = None
    for i in range(n):
        m = Message(**{"from": "max"}, to=["alex"], date=date, subject=f"bulk {i}", body=f"message {i}")
        m.id = m.compute_id()
        kind = bad.get(i)
        signer = keys["stranger" if kind == "stranger" else "alex" if kind == "impostor" else "max"]
        blob = m.to_blob().replace(b"message ", b"MESSAGE ") if kind == "tampered" else None
        parent = bulk.message_commit(pack, m, members["max"], signer, parent, 1_700_000_000 + i, sealed=blob)
        oids.append(parent.hex())
    pack.finish(repo)
    git("update-ref", f"refs/remotes/origin/{refs.mail_path('alex', 'max')}", oids[-1], cwd=alex)
    return alex, oids


def test_forged_commits_inside_a_batch_of_ten_thousand_are_refused(
        org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A first ingest of 10,001 commits (one batch through the worker pool, handed over part by
    part) with forged commits in the middle: each forged one is indexed as not good and never shown
    as verified mail, every other one is good, and the rows are exactly those of the in-process
    check (one part per batch, no pool)."""
    from gitmail.api.session import session

    n = 10_001
    bad = {17: "tampered", 5_000: "stranger", 5_001: "impostor", 9_999: "tampered"}
    alex, oids = _big_mailbox(org, tmp_path, n, bad)
    assert cache.BATCH <= n - 1 and store.PARALLEL_MIN < cache.BATCH  # the pool path, two batches

    def rows() -> list[tuple[Any, ...]]:
        db = cache.connect(open_repo(alex), "alex")
        return [tuple(x) for x in db.execute(
            "SELECT ordinal, oid, id, status, detail, dup FROM msg WHERE path=? ORDER BY ordinal",
            (refs.mail_path("alex", "max"),))]

    session(alex, "alex").refresh()
    pooled = rows()
    assert [r[1] for r in pooled] == oids
    assert {i: r[3] for i, r in enumerate(pooled) if r[3] != "good"} == {
        17: "malformed", 5_000: "unknown-sender", 5_001: "wrong-signer", 9_999: "malformed"}
    assert "Message-ID does not match" in pooled[17][4] and "signed by alex" in pooled[5_001][4]
    assert open_repo(alex).ref_target(refs.verified(refs.mail_path("alex", "max"))) == oids[-1]
    listing = json.loads(org.ok("alex", "list", "--json", "-n", "20000").out)
    assert listing["total"] == n
    assert sorted(m["subject"] for m in listing["messages"] if not m["verified"]) == sorted(f"bulk {i}" for i in bad)
    # the same rows when every batch is checked in-process, as one part
    (open_repo(alex).data_dir / "cache" / "alex.sqlite3").unlink()
    git("update-ref", "-d", refs.verified(refs.mail_path("alex", "max")), cwd=alex)
    monkeypatch.setattr(store, "PARALLEL_MIN", 10**9)
    session(alex, "alex").refresh()
    assert rows() == pooled


def test_thread_trace_and_reply_lookups_use_their_partial_indexes() -> None:
    """The trace, thread and reply indexes hold only rows that have one (a bulk ingest writes
    three B-trees fewer per message); every lookup by them still goes through its index."""
    import sqlite3

    db = sqlite3.connect(":memory:")
    db.row_factory = sqlite3.Row
    db.executescript(cache._DDL)
    mid = "ab" * 32
    db.executemany("INSERT INTO msg(path, ordinal, id, thread, in_reply_to, trace_id, inbox, sent, type, status,"
                   " recipients, require_ack, dup) VALUES (?,?,?,?,?,?,1,1,?,'good','[]',1,0)",
                   [("p", i, f"{i:064x}", mid if i % 9 == 0 else None, mid if i % 5 == 0 else None,
                     "t1" if i % 7 == 0 else None, "ack" if i % 5 == 0 else "text") for i in range(3000)])
    statements: list[str] = []
    db.set_trace_callback(statements.append)
    cache.thread_rows(db, mid)
    cache.trace_rows(db, "t1", mid)
    cache.has_trace(db, "t1")
    cache.sent_ack_of(db, mid)
    db.set_trace_callback(None)
    asking = [cache.Row.of(r) for r in db.execute("SELECT * FROM msg WHERE ordinal < 3")]
    db.set_trace_callback(statements.append)
    cache._with_acks(db, asking)
    db.set_trace_callback(None)
    used = {ix for sql in statements if sql.lstrip().upper().startswith("SELECT")
            for step in db.execute("EXPLAIN QUERY PLAN " + sql) for ix in ("msg_thread", "msg_trace", "msg_reply")
            if f"INDEX {ix} " in step[3]}
    assert used == {"msg_thread", "msg_trace", "msg_reply"}
    assert not [sql for sql in statements if sql.lstrip().upper().startswith("SELECT") and " msg" in sql
                and any(step[3].startswith("SCAN msg") for step in db.execute("EXPLAIN QUERY PLAN " + sql))]


def test_new_rows_come_in_pages_that_share_equal_values_and_equal_the_plain_rows(monkeypatch: Any) -> None:
    """What a first sync lists (every new inbox row) comes a page at a time (never every row at
    once: issue 16 item 2), keeps equal values once per page and no per-row dict, and is exactly
    the rows read one by one, in the same order."""
    import sqlite3

    db = sqlite3.connect(":memory:")
    db.row_factory = sqlite3.Row
    db.executescript(cache._DDL)
    db.executemany(
        "INSERT INTO msg(path, ordinal, oid, id, sender, recipients, date, subject, summary, priority, prank, type,"
        " status, detail, inbox, sent, dup, require_ack, n_attach, attach_size) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,1,0,0,0,0,0)",
        [(f"gitmail/mail/alex/{s}", i, f"{i:040x}", f"{i:064x}", s, json.dumps(["alex"] if i % 3 else ["alex", "max"]),
          f"2026-11-29T10:00:{i % 60:02d}.000000Z", f"s{i}", "", "normal" if i % 4 else "urgent", 2 if i % 4 else 0,
          "text", "good" if i % 5 else "unsigned", "" if i % 5 else "unsigned")
         for i in range(1, 301) for s in ("max",)])
    [rows] = list(cache.new_inbox_pages(db, 0, 300))
    plain = cache._with_acks(db, [cache.Row.of(r) for r in db.execute(
        "SELECT * FROM msg WHERE rowid > 0 AND +inbox=1 AND +dup=0 ORDER BY prank, date, rowid")])
    assert rows == plain and len(rows) == 300 and cache.new_inbox_count(db, 0, 300) == 300
    monkeypatch.setattr(cache, "NEW_PAGE", 7)
    pages = list(cache.new_inbox_pages(db, 0, 300))
    assert [len(p) for p in pages] == [7] * 42 + [6]
    assert [r for p in pages for r in p] == plain
    assert [r.ordinal for p in cache.new_inbox_pages(db, 10, 20) for r in p] == \
        [r.ordinal for r in plain if 10 < r.ordinal <= 20]  # the rows a sync indexed: (since, upto]
    monkeypatch.setattr(cache, "NEW_PAGE", 500)
    assert not hasattr(rows[0], "__dict__")
    assert len({id(r.recipients) for r in rows}) == 2 and len({id(r.path) for r in rows}) == 1


def test_sync_lists_new_mail_lazily_and_streams_its_json(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sync's new mail is a count and a listing read from the cache a page at a time, never a
    list of every new row (issue 16 item 2: about 1 KB a message, over 300 MB at a million);
    ``sync --json`` writes it as it is read, the same text as one dump of the whole result."""
    from gitmail import api
    from gitmail.api.audit import NewMail, SyncResult

    monkeypatch.setattr(cache, "NEW_PAGE", 2)
    for i in range(4):
        org.ok("max", "send", "alex", f"body {i}", "--subject", f"n° {i}")
    org.ok("max", "send", "alex", "now", "--subject", "urgent one", "--priority", "urgent")
    res = api.sync(org.clones["alex"])
    assert isinstance(res.new, NewMail) and len(res.new) == 5
    pages = list(res.new.pages())
    assert [len(p) for p in pages] == [2, 2, 1]
    rows = [r for p in pages for r in p]
    assert [r.subject for r in rows] == ["urgent one", "n° 0", "n° 1", "n° 2", "n° 3"]  # most urgent, then oldest
    assert res.new.head(3) == rows[:3] and list(res.new) == rows
    assert len(api.sync(org.clones["alex"]).new) == 0

    def whole(self: SyncResult) -> Any:
        raise AssertionError("sync --json built the whole list of new messages")

    monkeypatch.setattr(SyncResult, "model", whole)
    for i in range(3):
        org.ok("max", "send", "alex", f"more {i}", "--subject", f"ü {i}")
    out = org.ok("alex", "sync", "--json").out
    data = json.loads(out)
    assert [m["subject"] for m in data["new"]] == ["ü 0", "ü 1", "ü 2"]
    assert out == json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    empty = org.ok("alex", "sync", "--json").out
    assert json.loads(empty)["new"] == [] and empty == json.dumps(json.loads(empty), ensure_ascii=False, indent=2) + "\n"
    text = org.ok("max", "send", "alex", "x").out and org.ok("alex", "sync").out
    assert "1 new message" in text


def test_the_first_pygit2_handle_has_bounded_pack_windows_and_cache(org: Org) -> None:
    """Opening the repository caps libgit2's pack mappings and object cache before anything is
    read (issue 16 item 2: with the defaults, 1 GiB windows up to 8 GiB, every page of the pack
    a first sync's walk touched stayed resident, about 0.4 KB a message). In a fresh process:
    the settings are process-wide."""
    import subprocess
    import sys

    from gitmail.core.objects import CACHE_BYTES, MAPPED_BYTES, WINDOW_BYTES

    probe = ("import sys, pygit2\n"
             "from gitmail.core.repo import open_repo\n"
             "r = open_repo(sys.argv[1]); r.pg.path\n"
             "s = pygit2.settings\n"
             "print(s.mwindow_size, s.mwindow_mapped_limit, s.cached_memory[1])\n")
    out = subprocess.run([sys.executable, "-c", probe, str(org.clones["alex"])], capture_output=True, text=True,
                         check=True).stdout.split()
    assert [int(x) for x in out] == [WINDOW_BYTES, MAPPED_BYTES, CACHE_BYTES]


def test_the_new_mail_notice_counts_pages_and_never_holds_every_row(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client hooks' notice after a plain ``git pull`` summarises what arrived (how many, from
    whom, the newest) while reading the new rows a page at a time: a first pull of a big mailbox
    never builds a list of them (issue 16 item 2)."""
    from gitmail import hooks

    monkeypatch.setattr(cache, "NEW_PAGE", 2)
    pages: list[int] = []
    real = cache.new_unread_pages

    def recorded(db: Any, since: int) -> Any:
        for page in real(db, since):
            pages.append(len(page))
            yield page

    monkeypatch.setattr(cache, "new_unread_pages", recorded)
    for i in range(5):
        org.ok("max", "send", "alex", f"body {i}", "--subject", f"subject {i}", "--plain")
    git("fetch", "-q", "origin", cwd=org.clones["alex"])
    text = hooks.notice(org.clones["alex"])
    assert pages == [2, 2, 1]
    assert text is not None and text.startswith("📬 5 new messages from max; newest (")
    assert text.endswith('): "subject 4"  Run: gitmail read')
    assert hooks.notice(org.clones["alex"]) is None


def test_an_ingest_leaves_the_collector_as_it_found_it(
    org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ingest pauses the garbage collector for itself only: it is on again afterwards,
    after an error too."""
    import gc

    from gitmail.api.session import session

    org.ok("max", "send", "alex", "one")
    git("fetch", "-q", "origin", cwd=org.clones["alex"])
    s = session(org.clones["alex"], "alex")
    assert gc.isenabled()
    cache.ingest(s.repo, "alex", s.db, s.directory)
    assert gc.isenabled()
    assert [r["subject"] for r in s.db.execute("SELECT subject FROM msg")] == ["one"]

    class Boom(Exception):
        pass

    def fail(*a: Any, **kw: Any) -> Any:
        raise Boom

    org.ok("max", "send", "alex", "two")
    git("fetch", "-q", "origin", cwd=org.clones["alex"])
    monkeypatch.setattr(cache, "_index_path", fail)
    with pytest.raises(Boom):
        cache.ingest(s.repo, "alex", s.db, s.directory)
    assert gc.isenabled()


def _rewrite_loose(clone: Path, oid: str, content: bytes, kind: bytes) -> None:
    """Replace the loose object ``oid`` with other bytes under the same id (what a disk fault or
    an intruder with write access to .git could do)."""
    loose = clone / ".git" / "objects" / oid[:2] / oid[2:]
    assert loose.exists()  # a small fetch is unpacked into loose objects (transfer.unpackLimit)
    os.chmod(loose, 0o644)
    loose.write_bytes(zlib.compress(kind + b" %d\0" % len(content) + content))


def test_objects_altered_on_disk_are_reported_without_libgit2_rehashing_them(org: Org) -> None:
    """gitmail reads objects as git does, without hashing each one again against its id
    (``objects.configure_reads``): an object altered on disk under its old id is still caught by
    what the message rules bind: a tree swapped for another message's, a commit whose signed
    text was changed."""
    org.ok("max", "send", "alex", "first")
    org.ok("max", "send", "alex", "second")
    org.ok("max", "send", "alex", "third")
    org.ok("alex", "sync")
    alex = org.clones["alex"]
    path = refs.mail_path("alex", "max")
    first, second, third = _chain(alex, f"refs/remotes/origin/{path}")
    # The first message's tree now holds the second message's content (a good message itself).
    tree1 = git("rev-parse", f"{first}^{{tree}}", cwd=alex).stdout.strip()
    tree2 = git("rev-parse", f"{second}^{{tree}}", cwd=alex).stdout.strip()
    raw2 = subprocess.run(["git", "cat-file", "tree", tree2], cwd=alex, capture_output=True, check=True).stdout
    _rewrite_loose(alex, tree1, raw2, b"tree")
    # The third commit's text changed in place; its signature no longer covers it.
    raw3 = subprocess.run(["git", "cat-file", "commit", third], cwd=alex, capture_output=True, check=True).stdout
    assert b"\nPriority: normal\n" in raw3
    _rewrite_loose(alex, third, raw3.replace(b"\nPriority: normal\n", b"\nPriority: urgent\n", 1), b"commit")
    r = org.as_("alex", "verify", "--all", "--json")
    assert r.code == 7, r.err
    bad = {b["oid"]: (b["status"], b["detail"]) for b in json.loads(r.out)["bad"]}
    assert set(bad) == {first, third}, bad
    assert bad[first][0] == "malformed" and "disagrees" in bad[first][1]
    assert bad[third][0] == "bad-signature"
