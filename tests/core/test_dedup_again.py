"""De-duplication has two copies: the ingest's incremental rule (``cache._index_batch``: a good
copy shown hides later copies and hides earlier copies that are not good) and the whole rule
the re-check under new rules applies (``cache.dedup_again``: the first good copy by rowid, else
the first copy). These tests index random arrivals through the real ``_index_batch`` into a
real cache and require ``dedup_again`` to find nothing to change (hypothesis), and check the
whole rule on hand-made cases.
"""

from __future__ import annotations

import sqlite3
from types import SimpleNamespace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitmail.core import cache
from gitmail.core.store import Brief, Check

PATHS = [("gitmail/mail/alex/max", "max"), ("gitmail/mail/alex/sam", "sam")]
IDS = ["a1", "a2", "a3"]  # few, so copies of one Message-ID meet
STATUSES = ["good", "bad-signature", "malformed", "unknown-sender"]


def _brief(mid: str, sender: str) -> Brief:
    return Brief(mid, sender, ["alex"], "2026-11-30T00:00:00Z", "s", "s", "normal", "text", None, None, None, False,
                 0, 0, None, None, None)


def _db() -> sqlite3.Connection:
    return cache.prepare(sqlite3.connect(":memory:", isolation_level=None))


def _index(db: sqlite3.Connection, arrivals: list[tuple[int, list[tuple[str, str, bool]]]]) -> None:
    """Each arrival: a part of commits on one mailbox, ``(Message-ID, status, readable)`` each."""
    repo = SimpleNamespace(pg=None)  # only an encrypted message needs the object database
    counts = {p: 0 for p, _ in PATHS}
    for k, part in arrivals:
        path, sender = PATHS[k]
        oids = [f"{path}-{counts[path] + i}" for i in range(len(part))]
        verdicts = [(_brief(mid, sender) if readable else None, Check(status)) for mid, status, readable in part]
        cache._index_batch(repo, db, path, "alex", sender, oids, verdicts, counts[path], True, False, None)  # type: ignore[arg-type]
        counts[path] += len(part)


def _flags(db: sqlite3.Connection) -> dict[Any, int]:
    return {(r[0], r[1]): r[2] for r in db.execute("SELECT path, ordinal, dup FROM msg")}


part = st.tuples(st.integers(0, len(PATHS) - 1),
                 st.lists(st.tuples(st.sampled_from(IDS), st.sampled_from(STATUSES), st.booleans()),
                          min_size=1, max_size=6))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(part, min_size=1, max_size=8))
def test_the_whole_rule_finds_nothing_to_change_after_the_incremental_one(arrivals: list[Any]) -> None:
    db = _db()
    _index(db, arrivals)
    before = _flags(db)
    with db:
        cache.dedup_again(db, IDS)
    assert _flags(db) == before


def test_the_whole_rule_shows_the_first_good_copy_else_the_first() -> None:
    db = _db()
    _index(db, [(0, [("a1", "bad-signature", True), ("a2", "malformed", True)]),
                (1, [("a1", "good", True), ("a2", "unknown-sender", True), ("a1", "good", True)])])
    # As an older cache might have left them: every flag the wrong way round.
    db.execute("UPDATE msg SET dup = 1 - dup")
    with db:
        cache.dedup_again(db, ["a1", "a2"])
    shown = [tuple(r) for r in db.execute("SELECT id, status, path, ordinal FROM msg WHERE dup=0 ORDER BY rowid")]
    assert shown == [("a2", "malformed", "gitmail/mail/alex/max", 2), ("a1", "good", "gitmail/mail/alex/sam", 1)]
    assert db.execute("SELECT COUNT(*) FROM msg WHERE dup=1").fetchone()[0] == 3
