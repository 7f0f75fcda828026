"""A cache recorded under older rules is checked again (gitmail.core.verdicts.RULES).

The cache keeps a verdict per message. When gitmail's rules change (session 16 made the
signature and header checks stricter: a re-wrapped signature or an ``encoding`` header
that an older gitmail called good is not good now), a verdict recorded by the older code
would otherwise be shown for ever. Each test writes an older cache's verdicts into a real
cache (the rows as the older code wrote them, and no recorded rules version, as every cache
before this change), then runs the real CLI against a real ``git daemon``.
"""

from __future__ import annotations

import json
import sqlite3

import pygit2
import pytest

from gitmail.api.session import session
from gitmail.core import cache, refs
from gitmail.core import directory as dirmod
from gitmail.core import objects
from gitmail.core.objects import signed_commit
from gitmail.core.store import write_message_commit
from tests.conftest import Org, org  # noqa: F401 (fixture)
from tests.core import forge as core_forge
from gitmail.core.repo import open_repo
from gitmail.core.verdicts import RULES
from tests.sync import forge
from tests.sync.conftest import NetOrg, unguarded  # noqa: F401 (fixture)
from tests.trust.test_messages_differential import _resigned, rewrapped

INBOX = refs.mail_path("alex", "max")
MAILBOX = "refs/heads/gitmail/mail/alex/max"


def _db(net: NetOrg) -> sqlite3.Connection:
    return cache.connect(open_repo(net.clones["alex"]), "alex")


def _as_older_code(net: NetOrg, rows: dict[str, tuple[str, int]]) -> None:
    """Rewrite alex's cache as an older gitmail left it: ``oid -> (status, dup)``, no rules version."""
    db = _db(net)
    with db:
        for oid, (status, dup) in rows.items():
            assert db.execute("UPDATE msg SET status=?, detail='', dup=? WHERE oid=?", (status, dup, oid)).rowcount == 1
        db.execute("DELETE FROM meta WHERE key='rules'")
        db.execute("UPDATE tally SET total=?, unread=?, urgent=?", cache.scan_counts(db))
    db.close()


def _rows(net: NetOrg) -> dict[str, tuple[str, int]]:
    db = _db(net)
    try:
        return {r["oid"]: (r["status"], r["dup"]) for r in db.execute("SELECT oid, status, dup FROM msg")}
    finally:
        db.close()


def _push(net: NetOrg, oid: str) -> None:
    code, out = forge.push(net.clones["max"], oid, MAILBOX)
    assert code == 0, out


def test_a_verdict_of_good_recorded_by_older_rules_is_checked_again_and_nothing_is_new(unguarded: NetOrg) -> None:
    net = unguarded
    net.ok("max", "send", "alex", "before")
    net.ok("max", "sync")
    net.ok("alex", "sync")
    before = json.loads(net.ok("alex", "list", "--json").out)["messages"][0]
    net.ok("alex", "read", before["id"][:12])
    # max's genuine message G, re-wrapped with a byte after the signature: good to the older
    # rules, bad to git verify-commit and to these rules. Only the re-wrap is pushed.
    g = forge.signed(net.clones["max"], "alex", "max", forge.key_of("max"), body="genuine, rewrapped")
    tip = forge.tip(net.clones["max"], INBOX)
    assert tip is not None
    hostile = _resigned(net, tip, lambda b: b + b"\0")
    assert hostile != g
    _push(net, hostile)
    net.ok("alex", "sync")
    assert _rows(net)[hostile] == ("bad-signature", 0)
    _as_older_code(net, {hostile: ("good", 0)})
    db = _db(net)
    assert not cache.fresh(open_repo(net.clones["alex"]), "alex", db)  # older rules: never fresh
    db.close()

    res = json.loads(net.ok("alex", "sync", "--json").out)
    assert res["new"] == [], res  # re-checked in place: no mail is new
    assert any("recorded as genuine fails this" in p for p in res["problems"]), res["problems"]
    rows = _rows(net)
    assert rows[hostile][0] == "bad-signature", rows
    listed = {m["commit"]: m for m in json.loads(net.ok("alex", "list", "--all", "--json").out)["messages"]}
    assert listed[hostile]["status"] == "bad-signature"
    assert listed[before["commit"]]["read"] is True  # the read flag stayed
    db = _db(net)
    try:
        assert cache._tally(db) == cache.scan_counts(db)
        assert cache._rules_of(db) == RULES
    finally:
        db.close()
    again = json.loads(net.ok("alex", "sync", "--json").out)
    assert not any("recorded as genuine" in p for p in again["problems"])  # said once


def test_de_duplication_is_done_again_for_the_copies_whose_verdict_changed(unguarded: NetOrg) -> None:
    """Two copies of one Message-ID: the genuine G, then H above it, a re-wrap of a second
    genuine commit of the same message. An older cache that had them the other way round (H
    good and shown, G bad and hidden) shows G, and only G, after the re-check."""
    net = unguarded
    clone = net.clones["max"]
    r = open_repo(clone)
    author = dirmod.load(r).members["max"]
    msg = forge.message("max", ["alex"], "one message, two copies")
    genuine = write_message_commit(r.pg, msg, author, forge.key_of("max"), forge.tip(clone, INBOX))
    hostile = rewrapped(r.pg, write_message_commit(r.pg, msg, author, forge.key_of("max"), genuine),
                        lambda b: b + b"\0")
    _push(net, hostile)
    net.ok("alex", "sync")
    rows = _rows(net)
    assert rows[genuine] == ("good", 0) and rows[hostile] == ("bad-signature", 1), rows
    _as_older_code(net, {genuine: ("bad-signature", 1), hostile: ("good", 0)})
    assert [m["commit"] for m in json.loads(net.ok("alex", "list", "--json").out)["messages"]] == [genuine]
    rows = _rows(net)
    assert rows[genuine] == ("good", 0) and rows[hostile] == ("bad-signature", 1), rows
    db = _db(net)
    try:
        assert cache._tally(db) == cache.scan_counts(db)
    finally:
        db.close()


def test_a_recorded_commit_missing_from_the_object_database_indexes_the_mailbox_again(unguarded: NetOrg) -> None:
    net = unguarded
    net.ok("max", "send", "alex", "one")
    net.ok("max", "send", "alex", "two")
    net.ok("max", "sync")
    net.ok("alex", "sync")
    good = dict(_rows(net))
    db = _db(net)
    with db:
        db.execute("UPDATE msg SET oid=? WHERE ordinal=1 AND path=?", ("0" * 40, INBOX))
        db.execute("DELETE FROM meta WHERE key='rules'")
    db.close()
    net.ok("alex", "sync")
    assert _rows(net) == good  # the mailbox indexed again from its verified tip: nothing lost


def test_a_cache_under_these_rules_is_not_checked_again(unguarded: NetOrg) -> None:
    """The re-check costs a first sync's checks: it runs only when the rules changed. A
    recorded verdict is local state like any other row (the cache is the member's own)."""
    net = unguarded
    net.ok("max", "send", "alex", "one")
    net.ok("max", "sync")
    net.ok("alex", "sync")
    db = _db(net)
    try:
        assert cache._rules_of(db) == RULES
        assert cache.fresh(open_repo(net.clones["alex"]), "alex", db)
        db.execute("INSERT OR REPLACE INTO meta VALUES ('rules', 'x')")  # unreadable: the oldest rules
        assert cache._rules_of(db) == 1
        assert not cache.fresh(open_repo(net.clones["alex"]), "alex", db)
    finally:
        db.close()


def test_an_encrypted_message_is_opened_or_closed_as_its_new_verdict_says(org: Org) -> None:
    """An encrypted message is opened (subject and plaintext in the row, the search index) only
    when good. Two copies of max's encrypted message: the genuine G and, above it, H, a
    re-wrap of a second genuine commit of it. An older cache that called H good (opened and
    shown) and G bad (closed, hidden) ends with G opened and shown and H closed and hidden;
    both leave the search index, which then finds the subject on G."""
    org.ok("max", "send", "alex", "the launch code is zebra quartz", "--subject", "secret plan")
    clone = org.clones["max"]
    pg = pygit2.Repository(str(clone))
    g = core_forge.tip(clone, "alex", "max")
    assert g is not None
    c = objects.commit(pg, g)
    twin = signed_commit(pg, c.author, c.committer, c.message, c.tree_id, [g], core_forge.key_of(org, "max").sign)
    h = rewrapped(pg, twin, lambda b: b + b"\0")
    core_forge.push_commit(clone, "alex", "max", h)
    org.ok("alex", "sync")
    org.ok("alex", "search", "secret")  # the search index holds every row's text now
    db = cache.connect(open_repo(org.clones["alex"]), "alex")
    cols = "status, dup, subject, plaintext IS NOT NULL"
    try:
        assert tuple(db.execute(f"SELECT {cols} FROM msg WHERE oid=?", (g,)).fetchone()) == ("good", 0, "secret plan", 1)
        assert tuple(db.execute(f"SELECT {cols} FROM msg WHERE oid=?", (h,)).fetchone()) == ("bad-signature", 1, "", 0)
        # The older code's rows: H good, opened and shown; G bad, closed, hidden.
        opened = db.execute("SELECT plaintext FROM msg WHERE oid=?", (g,)).fetchone()[0]
        with db:
            db.execute("UPDATE msg SET status='good', detail='', dup=0, subject='secret plan', plaintext=? WHERE oid=?",
                       (opened, h))
            db.execute("UPDATE msg SET status='bad-signature', dup=1, subject='', plaintext=NULL WHERE oid=?", (g,))
            db.execute("DELETE FROM meta WHERE key='rules'")
            db.execute("UPDATE tally SET total=?, unread=?, urgent=?", cache.scan_counts(db))
    finally:
        db.close()
    # The re-check, as a command's refresh runs it (in-process: to look at the search index
    # before sync brings it up to date again).
    s = session(org.clones["alex"])
    assert not cache.fresh(s.repo, s.me, s.db)
    problems = cache.ingest(s.repo, s.me, s.db, s.directory)
    assert any("recorded as genuine fails this" in p for p in problems), problems
    db = s.db
    assert tuple(db.execute(f"SELECT {cols} FROM msg WHERE oid=?", (g,)).fetchone()) == ("good", 0, "secret plan", 1)
    assert tuple(db.execute(f"SELECT {cols} FROM msg WHERE oid=?", (h,)).fetchone()) == ("bad-signature", 1, "", 0)
    assert cache._tally(db) == cache.scan_counts(db)
    # The rows whose verdict changed left the search index, to be indexed again from their text now.
    low = db.execute("SELECT MIN(rowid) FROM msg WHERE oid IN (?, ?)", (g, h)).fetchone()[0]
    assert int(db.execute("SELECT value FROM meta WHERE key='fts_rowid'").fetchone()[0]) < low
    assert cache.search_pending(db)
    db.close()
    found = json.loads(org.ok("alex", "search", "secret", "--json").out)["messages"]
    assert [m["commit"] for m in found] == [g]


def test_a_re_check_interrupted_goes_on_where_it_stopped(unguarded: NetOrg, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each batch is committed with the progress: a command stopped meanwhile (Ctrl-C, a hook's
    time limit) keeps the work done, and the next one checks only the rest. In-process, with
    batches of one message and Ctrl-C after the first batch is committed."""
    net = unguarded
    clone = net.clones["max"]
    r = open_repo(clone)
    author = dirmod.load(r).members["max"]
    tip = forge.tip(clone, INBOX)
    hostile: list[str] = []
    for body in ("first forgery", "second forgery"):
        genuine = write_message_commit(r.pg, forge.message("max", ["alex"], body), author, forge.key_of("max"), tip)
        tip = rewrapped(r.pg, genuine, lambda b: b + b"\0")
        hostile.append(tip)
    _push(net, hostile[-1])
    net.ok("alex", "sync")
    _as_older_code(net, {h: ("good", 0) for h in hostile})
    monkeypatch.setattr(cache, "BATCH", 1)
    real = cache._checkpoint

    def interrupted(db: sqlite3.Connection) -> None:
        real(db)
        raise KeyboardInterrupt

    monkeypatch.setattr(cache, "_checkpoint", interrupted)
    s = session(net.clones["alex"])
    with pytest.raises(KeyboardInterrupt):
        cache.ingest(s.repo, s.me, s.db, s.directory)
    s.db.close()
    assert _rows(net) == {hostile[0]: ("bad-signature", 0), hostile[1]: ("good", 0)}  # the first batch stayed
    monkeypatch.setattr(cache, "_checkpoint", real)
    s = session(net.clones["alex"])
    progress = json.loads(s.db.execute("SELECT value FROM meta WHERE key='recheck'").fetchone()[0])
    assert progress == {"rules": RULES, "path": INBOX, "ordinal": 1, "no_longer_good": 1}
    # Proof that the first message is not checked again: its row, written back to "good"
    # meanwhile, stays as it is (a re-check from the start would find it bad again).
    with s.db:
        s.db.execute("UPDATE msg SET status='good', detail='' WHERE oid=?", (hostile[0],))
    problems = cache.ingest(s.repo, s.me, s.db, s.directory)
    assert any(p.startswith("2 messages recorded as genuine fail this") for p in problems), problems
    assert _rows(net) == {hostile[0]: ("good", 0), hostile[1]: ("bad-signature", 0)}
    assert s.db.execute("SELECT value FROM meta WHERE key='recheck'").fetchone() is None
    assert cache._rules_of(s.db) == RULES and cache._tally(s.db) == cache.scan_counts(s.db)
    s.db.close()


def test_a_message_judged_dated_in_the_future_is_checked_again_when_its_day_comes(
        unguarded: NetOrg, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/protocol.md §4 refuses a date more than a day past the reader's clock, the one
    verdict that depends on when it is given. alex's clock is two days behind when max's
    message arrives: malformed, and the cache kept that for good, after the clock was fixed
    (list showed "(unreadable message)", verify --all said good). Now the cache notes the
    date and checks the message again once the clock has come within a day of it."""
    from datetime import timedelta

    from gitmail.core import rules

    net = unguarded
    sent = json.loads(net.ok("max", "send", "alex", "quarterly numbers", "--json").out)
    real = rules.clock
    monkeypatch.setattr(rules, "clock", lambda: real() - timedelta(days=2))  # alex's laptop, booted without NTP
    net.ok("alex", "sync")
    got = json.loads(net.ok("alex", "list", "--json").out)["messages"]
    assert [m["status"] for m in got] == ["malformed"], got
    assert [r[0] for r in _db(net).execute("SELECT detail FROM msg")] == [f"date {sent['date']} {rules.FUTURE_WORDS}"]
    monkeypatch.setattr(rules, "clock", real)  # the clock is right again
    net.ok("alex", "sync")
    got = json.loads(net.ok("alex", "list", "--json").out)["messages"]
    assert [(m["id"], m["status"], m["subject"]) for m in got] == [(sent["id"], "good", "quarterly numbers")], got
    shown = json.loads(net.ok("alex", "read", sent["id"][:12], "--json").out)["messages"]
    assert [(m["status"], m["body"]) for m in shown] == [("good", "quarterly numbers")]
    assert _db(net).execute("SELECT value FROM meta WHERE key='future'").fetchone() is None
