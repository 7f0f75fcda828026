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
from pathlib import Path

from gitmail.core import cache, refs
from gitmail.core import directory as dirmod
from gitmail.core.store import write_message_commit
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
    assert any("recorded as genuine are not" in p for p in res["problems"]), res["problems"]
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
