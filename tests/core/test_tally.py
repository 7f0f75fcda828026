"""The inbox tally (issue 16 item 3): counts kept by triggers, always equal to a scan of the rows.

``gitmail list`` and the new-mail counts read three numbers from the ``tally`` table
instead of counting the inbox, so they cost the same at a million messages as at ten.
The tally is a second copy of the rule "shown / unread / urgent" (the first is the
scan, :func:`gitmail.core.cache.scan_counts`): these tests keep the two equal under
every kind of write the cache sees, with random sequences (hypothesis), a cache of
the previous schema, and a real org.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Optional

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitmail.core import cache
from tests.conftest import Org

PATHS = ["gitmail/mail/alex/max", "gitmail/mail/alex/sam", "gitmail/mail/*/max"]
IDS = ["a1", "a2", "a3"]  # few, so copies of one Message-ID meet
# The columns the rule reads, with every value the indexer writes (a type is the sender's word).
COLUMNS = ("path", "ordinal", "id", "inbox", "dup", "archived", "read", "type", "status", "prank")
row = st.tuples(
    st.sampled_from(PATHS), st.integers(0, 6), st.sampled_from(IDS),
    *(st.sampled_from(v) for v in ([0, 1], [0, 1], [0, 1], [0, 1], ["text", "ack", "task", "ACK", "ack "],
                                   ["good", "bad", "unknown-signer"], [0, 1, 2, 3])),
)
ranges = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)).map(sorted).map(tuple), max_size=3)


def fresh_db() -> sqlite3.Connection:
    return cache.prepare(sqlite3.connect(":memory:", isolation_level=None))


def counts(db: sqlite3.Connection) -> tuple[int, int, int]:
    unread, total = cache.inbox_counts(db)
    unread2, urgent = cache.unread_counts(db)
    assert unread == unread2
    return total, unread, urgent


# Every write the cache makes to its rows, through the functions that make it.
op = st.one_of(
    st.tuples(st.just("insert"), st.lists(row, min_size=1, max_size=8)),  # replaces a row at the same place
    st.tuples(st.just("rollback"), st.lists(row, min_size=1, max_size=3)),  # an ingest that fails mid-batch
    st.tuples(st.just("flag"), st.sampled_from(PATHS), st.lists(st.integers(0, 6), max_size=4),
              st.sampled_from(cache.FLAGS), st.booleans()),
    st.tuples(st.just("drop"), st.sampled_from(PATHS)),
    st.tuples(st.just("hide"), st.sampled_from(IDS)),
    st.tuples(st.just("state"), st.dictionaries(st.sampled_from(PATHS), st.tuples(ranges, ranges), max_size=3),
              st.integers(0, 40)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, max_size=25))
def test_the_tally_equals_a_scan_after_any_sequence_of_writes(ops: list[Any]) -> None:
    from gitmail.core.model import MailboxState, State

    db = fresh_db()
    for o in ops:
        kind = o[0]
        if kind == "insert":
            cache.insert_rows(db, COLUMNS, o[1])
        elif kind == "rollback":
            db.execute("BEGIN")
            cache.insert_rows(db, COLUMNS, o[1])
            db.execute("ROLLBACK")
        elif kind == "flag":
            cache.set_flag_rows(db, {o[1]: o[2]}, o[3], o[4])
        elif kind == "drop":
            cache._drop_rows(db, o[1])
        elif kind == "hide":
            cache.hide_bad_copies(db, o[1])
        else:  # the state blob's flags: the full form, or the form for rows after a rowid
            state = State(mailboxes={p: MailboxState(read=list(r), archived=list(a)) for p, (r, a) in o[1].items()})
            since = min(o[2], cache.max_rowid(db))
            cache.apply_state(db, state, since=since)
        assert counts(db) == cache.scan_counts(db), o


def test_rows_of_different_columns_go_through_one_connection() -> None:
    """The staging table holds every column of ``msg``: a connection that wrote rows of some
    columns can write rows of others (it once kept the first caller's columns)."""
    db = fresh_db()
    cache.insert_rows(db, COLUMNS, [(PATHS[0], 0, "a1", 1, 0, 0, 0, "text", "good", 0)])
    cache.insert_rows(db, cache.ROW_COLUMNS, [tuple(
        {"path": PATHS[0], "ordinal": 1, "id": "a2", "inbox": 1, "dup": 0, "type": "text", "status": "good",
         "prank": 2, "sent": 0, "encrypted": 0}.get(c) for c in cache.ROW_COLUMNS)])
    assert counts(db) == cache.scan_counts(db) == (2, 2, 1)


def test_a_flag_set_while_another_process_writes_is_counted_against_the_rows_it_finds(tmp_path: Any) -> None:
    """Two connections (two processes) on one cache: while one holds a write that deletes a
    mailbox's rows, the other marks some of them read. The mark waits for the whole write
    (count, write and count again in one ``BEGIN IMMEDIATE``), so it counts the rows as they
    are after it: none. Counting before waiting would take their share out twice."""
    import threading

    f = tmp_path / "c.sqlite3"
    one = cache.prepare(sqlite3.connect(f, isolation_level=None, check_same_thread=False))
    cache.insert_rows(one, COLUMNS, [(PATHS[0], i, f"m{i}", 1, 0, 0, 0, "text", "good", 2) for i in range(5)])
    two = cache.prepare(sqlite3.connect(f, isolation_level=None, timeout=20, check_same_thread=False))
    one.execute("BEGIN IMMEDIATE")
    cache._drop_rows(one, PATHS[0])
    marker = threading.Thread(target=cache.set_flag_rows, args=(two, {PATHS[0]: [0, 1, 2]}, "read", True))
    marker.start()
    marker.join(0.5)  # it waits for the lock (before the fix: it had counted, and waited to write)
    one.execute("COMMIT")
    marker.join(20)
    assert not marker.is_alive()
    assert counts(two) == cache.scan_counts(two) == (0, 0, 0)
    assert counts(one) == (0, 0, 0)


def test_a_cache_of_the_previous_schema_gains_a_tally_that_matches_its_rows(tmp_path: Any) -> None:
    """Version 8 caches (no tally) are migrated in place with one scan, not rebuilt from git."""
    f = tmp_path / "c.sqlite3"
    old = sqlite3.connect(f, isolation_level=None)
    old.executescript(cache._DDL)
    old.execute("PRAGMA user_version=8")
    old.executemany(f"INSERT INTO msg({', '.join(COLUMNS)}) VALUES ({','.join('?' * len(COLUMNS))})",
                    [("gitmail/mail/alex/max", i, f"m{i}", 1, 0, i % 5 == 0, i % 3 == 0,
                      "ack" if i % 7 == 0 else "text", "good" if i % 4 else "bad", i % 4) for i in range(200)])
    old.close()
    db = cache.prepare(sqlite3.connect(f, isolation_level=None))
    assert db.execute("PRAGMA user_version").fetchone()[0] == cache.SCHEMA
    assert db.execute("SELECT COUNT(*) FROM msg").fetchone()[0] == 200  # kept, not rebuilt
    expected = cache.scan_counts(db)
    assert expected[0] > expected[1] > expected[2] > 0
    assert counts(db) == expected
    cache.set_flag_rows(db, {"gitmail/mail/alex/max": list(range(50))}, "read", True)  # and kept from then on
    assert counts(db) == cache.scan_counts(db)
    db.close()
    again = cache.prepare(sqlite3.connect(f, isolation_level=None))  # a second open changes nothing
    assert counts(again) == cache.scan_counts(again)


def test_the_tally_matches_a_scan_through_real_mail_reads_archives_and_a_revoked_key(org: Org) -> None:
    """A real org: sync, read, archive, mark unread, and a revoked key (the sender's old mail
    dropped from the cache and indexed again): after each, the tally is what a scan says."""
    from gitmail import api
    from gitmail.api.session import session

    alex = org.clones["alex"]
    ids = [api.send(org.clones["max"], ["alex"], f"note {i}", priority="urgent" if i % 2 else "normal").message.id
           for i in range(6)]

    def check(expect_unread: Optional[int] = None) -> None:
        s = session(alex)
        s.refresh()
        got = counts(s.db)
        assert got == cache.scan_counts(s.db)
        if expect_unread is not None:
            assert got[1] == expect_unread

    api.sync(alex)
    check(6)
    api.read(alex, ids[:2])
    check(4)
    api.archive(alex, [ids[2]])
    check(3)
    api.mark(alex, [ids[0]], read=False)
    check(4)
    listing = api.mailbox(alex)
    assert (listing.unread, listing.total) == (4, 5)
    assert api.unread_count(alex) == (4, 2)

    # max's old key is revoked: alex's cache drops every row max signed with it and indexes
    # them again (now flagged), keeping the flags alex set; the tally follows.
    api.rotate_key(org.clones["max"])
    api.revoke_key(org.clones["max"])
    api.send(org.clones["max"], ["alex"], "with the new key")
    api.sync(alex)
    s = session(alex)
    s.refresh()
    statuses = {r[0] for r in s.db.execute("SELECT status FROM msg WHERE inbox=1")}
    assert "good" in statuses and len(statuses) > 1  # the old messages are no longer good
    check(5)


def test_forged_copies_and_a_replay_of_a_genuine_message_are_counted_once(org: Org) -> None:
    """The attacker's moves on alex's mailbox (a file org, no guard to stop them): an unsigned
    copy of max's message pushed first (shown, unread, flagged), then the genuine signed one
    with the same Message-ID (the forged copy is hidden behind it), then the genuine commit's
    content replayed as a second copy. Each step is counted as the scan counts it: one
    message, unread, never two."""
    from gitmail import api
    from gitmail.api.session import session
    from gitmail.core import directory as dirmod
    from gitmail.core.repo import open_repo
    from gitmail.core.store import write_message_commit
    from tests.core.forge import key_of, make_message, push_commit, tip, write_unsigned

    alex, clone = org.clones["alex"], org.clones["max"]
    m = make_message("max", "alex", "pay the invoice", priority="urgent")
    repo = open_repo(clone)
    max_entry, max_key = dirmod.load(repo).members["max"], key_of(org, "max")

    def state() -> tuple[tuple[int, int, int], set[str]]:
        api.sync(alex)
        s = session(alex)
        s.refresh()
        assert counts(s.db) == cache.scan_counts(s.db)
        shown = {r[0] for r in s.db.execute("SELECT status FROM msg WHERE inbox=1 AND dup=0")}
        return counts(s.db), shown

    forged = write_unsigned(clone, m, tip(clone, "alex", "max"))
    push_commit(clone, "alex", "max", forged)
    assert state() == ((1, 1, 1), {"unsigned"})
    genuine = write_message_commit(repo.pg, m, max_entry, max_key, forged)
    push_commit(clone, "alex", "max", genuine)
    assert state() == ((1, 1, 1), {"good"})
    replay = write_message_commit(repo.pg, m, max_entry, max_key, genuine)
    push_commit(clone, "alex", "max", replay)
    assert state() == ((1, 1, 1), {"good"})
    api.read(alex, [m.id])
    assert state() == ((1, 0, 0), {"good"})


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(row, min_size=1, max_size=12))
def test_the_one_row_unread_rule_equals_the_sql_one(rows: list[Any]) -> None:
    """``views.is_unread`` (the listing's ``*`` mark, one row in Python) is a second copy of
    the rule :data:`gitmail.core.cache.UNREAD` the counts and ``list --unread`` use in SQL:
    for every row, the two agree."""
    from gitmail.api.views import is_unread

    db = fresh_db()
    cache.insert_rows(db, (*COLUMNS, "recipients"), [(*r, "[]") for r in rows])
    seen = 0
    for r in db.execute(f"SELECT *, (inbox=1 AND {cache.UNREAD}) AS unread_sql FROM msg"):
        assert is_unread(cache.Row.of(r)) == bool(r["unread_sql"]), dict(r)
        seen += 1
    assert seen == db.execute("SELECT COUNT(*) FROM msg").fetchone()[0] > 0
