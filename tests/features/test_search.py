"""gitmail search: FTS5 over subject, body, sender and attachment names, encrypted mail included."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitmail.api.search import fts_expression
from gitmail.core import cache
from tests.conftest import Org, recorded, run


def _hits(org: Org, who: str, *args: str) -> list[dict[str, Any]]:
    r = org.ok(who, "search", *args, "--json")
    hits: list[dict[str, Any]] = json.loads(r.out)["messages"]
    return hits


def test_search_finds_body_subject_sender_and_files(org: Org, tmp_path: Path) -> None:
    csv = tmp_path / "domain-research.csv"
    csv.write_text("a,b\n")
    org.ok("max", "send", "alex", "the quarterly numbers are attached", "--subject", "Budget", "--attach", str(csv))
    org.ok("max", "send", "alex", "lunch at noon?", "--subject", "Food")
    org.ok("alex", "sync")
    assert [h["subject"] for h in _hits(org, "alex", "quarterly")] == ["Budget"]
    assert [h["subject"] for h in _hits(org, "alex", "budget")] == ["Budget"]  # case-insensitive
    assert [h["subject"] for h in _hits(org, "alex", "domain-research")] == ["Budget"]  # attachment name
    assert {h["subject"] for h in _hits(org, "alex", "max")} == {"Budget", "Food"}  # sender
    assert [h["subject"] for h in _hits(org, "alex", "quart*")] == ["Budget"]  # prefix
    assert _hits(org, "alex", "quarterly", "lunch") == []  # every word must match
    hit = _hits(org, "alex", "noon")[0]
    assert "**noon**" in hit["snippet"] and hit["verified"] is True
    # Encrypted by default: alex reads the body only after decrypting, and search finds it.
    assert hit["encrypted"] is True
    # The sender's sent mail is searchable too.
    assert [h["subject"] for h in _hits(org, "max", "quarterly")] == ["Budget"]


def test_search_filters(org: Org) -> None:
    org.ok("max", "send", "alex", "deploy freeze at five", "--subject", "Freeze")
    org.ok("alex", "send", "max", "deploy done", "--subject", "Done")
    org.ok("alex", "sync")
    assert [h["subject"] for h in _hits(org, "alex", "deploy", "--from", "max")] == ["Freeze"]
    assert _hits(org, "alex", "deploy", "--since", "2999-01-01") == []
    assert len(_hits(org, "alex", "deploy", "--since", "2000-01-01")) == 2
    assert _hits(org, "alex", "deploy", "--type", "question") == []
    [freeze] = _hits(org, "alex", "freeze")
    org.ok("alex", "archive", freeze["short_id"])
    assert _hits(org, "alex", "freeze") == [] and len(_hits(org, "alex", "freeze", "--all")) == 1


def test_search_rebuilds_after_cache_deleted_and_is_kept_by_sync(org: Org) -> None:
    org.ok("max", "send", "alex", "first zebra")
    org.ok("alex", "sync")
    assert len(_hits(org, "alex", "zebra")) == 1
    for f in (org.clones["alex"] / ".git" / "gitmail" / "cache").glob("*"):
        f.unlink()
    assert len(_hits(org, "alex", "zebra")) == 1
    org.ok("max", "send", "alex", "second zebra")
    org.ok("alex", "sync")
    db = sqlite3.connect(next((org.clones["alex"] / ".git" / "gitmail" / "cache").glob("*.sqlite3")))
    assert db.execute("SELECT COUNT(*) FROM fts WHERE fts MATCH 'zebra'").fetchone()[0] == 2  # sync indexed it
    assert len(_hits(org, "alex", "zebra")) == 2


def test_rows_deleted_from_the_top_of_the_cache_never_hide_new_mail_from_search(org: Org) -> None:
    """Leaving a group drops that mailbox's rows from the cache; when they were the newest,
    SQLite hands their rowids to the next rows, which lie at or below the search index's
    high-water mark. Mail that arrives then must still be found (it was not: importfast's note)."""
    org.ok("max", "group", "create", "ops", "alex")
    org.ok("alex", "sync")
    org.ok("max", "send", "alex", "direct hello")
    org.ok("max", "send", "team:ops", "ops one walrus", "--subject", "ops 1")
    org.ok("max", "send", "team:ops", "ops two walrus", "--subject", "ops 2")
    org.ok("alex", "sync")
    assert len(_hits(org, "alex", "walrus")) == 2  # the index is built, its mark at the group's rows
    org.ok("max", "group", "remove", "ops", "alex")
    org.ok("alex", "sync")  # the group's mailbox leaves alex's view: its rows go
    assert _hits(org, "alex", "walrus") == []
    org.ok("max", "send", "alex", "a zebra arrives", "--subject", "new")
    org.ok("alex", "sync")
    assert [h["subject"] for h in _hits(org, "alex", "zebra")] == ["new"]
    assert [h["subject"] for h in _hits(org, "alex", "hello")] == ["direct hello"]  # kept, not doubled


def test_an_index_whose_entries_are_not_keyed_by_row_is_built_again(org: Org) -> None:
    """An index written before entries carried their row's rowid (joined by Message-ID) is
    dropped and built again at the next search, not joined to whatever rows share its rowids."""
    org.ok("max", "send", "alex", "first zebra", "--subject", "one")
    org.ok("max", "send", "alex", "second okapi", "--subject", "two")
    org.ok("alex", "sync")
    assert [h["subject"] for h in _hits(org, "alex", "zebra")] == ["one"]
    db = sqlite3.connect(next((org.clones["alex"] / ".git" / "gitmail" / "cache").glob("*.sqlite3")))
    entries = db.execute("SELECT id, subject, body, sender, files FROM fts ORDER BY rowid DESC").fetchall()
    db.execute("DELETE FROM fts")
    db.executemany("INSERT INTO fts(id, subject, body, sender, files) VALUES (?,?,?,?,?)", entries)  # rowids swapped
    db.execute("DELETE FROM meta WHERE key='fts_keyed'")
    db.commit()
    assert [(h["subject"], "zebra" in h["snippet"]) for h in _hits(org, "alex", "zebra")] == [("one", True)]
    assert [(h["subject"], "okapi" in h["snippet"]) for h in _hits(org, "alex", "okapi")] == [("two", True)]


def test_hostile_query_and_text(org: Org) -> None:
    org.ok("max", "send", "alex", 'evil \x1b]0;title\x07 "quoted" NEAR(a b) -col:x', "--subject", "x\x1b[2Ky")
    org.ok("alex", "sync")
    for q in ['"', "NEAR(", "-col:x", "a OR", "*", "subject:evil", "'"]:
        r = run("search", "--repo", str(org.clones["alex"]), "--", q)
        assert r.code == 0, (q, r.err)
    r = org.ok("alex", "search", "evil")
    assert "\x1b" not in r.out and "\x07" not in r.out
    r = org.as_("alex", "search", "   ")
    assert r.code == 2 and r.err.startswith("gitmail: empty search query")
    assert org.as_("alex", "search", "x", "--since", "yesterday").code == 2


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=40))
def test_fts_expression_never_breaks_fts5(query: str) -> None:
    """Whatever a user or an agent types, the expression is valid FTS5 (or an empty-query error)."""
    if not "".join(ch for ch in query if ch.isprintable() or ch.isspace()).split():
        with pytest.raises(Exception, match="empty search query"):
            fts_expression(query)
        return
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE t USING fts5(a)")
    db.execute("INSERT INTO t VALUES ('some text')")
    db.execute("SELECT * FROM t WHERE t MATCH ?", (fts_expression(query),)).fetchall()


def test_fts5_is_available_here() -> None:
    assert cache.fts_available()


def test_list_filters_and_priority_order(org: Org) -> None:
    org.ok("max", "send", "alex", "a", "--subject", "low one", "--priority", "low")
    org.ok("max", "send", "alex", "b", "--subject", "urgent one", "--priority", "urgent")
    org.ok("max", "send", "alex", "c", "--subject", "normal one")
    org.ok("alex", "sync")

    def subjects(*args: str) -> list[str]:
        return [m["subject"] for m in json.loads(org.ok("alex", "list", "--json", *args).out)["messages"]]

    assert subjects() == ["normal one", "urgent one", "low one"]
    assert subjects("--sort", "priority") == ["urgent one", "normal one", "low one"]
    assert subjects("--priority", "low") == ["low one"]
    assert subjects("--type", "text", "--since", "2000-01-01") == ["normal one", "urgent one", "low one"]
    assert subjects("--since", "2999-01-01") == []
    assert org.as_("alex", "list", "--priority", "meh").code == 2
    assert org.as_("alex", "list", "--since", "soon").code == 2


def test_plain_list_loads_neither_pydantic_nor_pygit2(org: Org) -> None:
    """The listing fast path (docs/protocol.md §11): after a first refresh, `gitmail list` (and its
    filters) starts no pydantic and no pygit2, as before the filters existed."""
    import subprocess
    import sys

    org.ok("max", "send", "alex", "hello")
    org.ok("alex", "sync")
    code = ("import sys; from gitmail.cli.main import main; rc = main(['list', '--repo', sys.argv[1], '--sort', "
            "'priority', '--since', '2000-01-01']); print(rc, sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('pydantic', 'pygit2')))")
    out = subprocess.run([sys.executable, "-c", code, str(org.clones["alex"])], capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == "0 []", out


# -- the query itself, on a cache built directly (no mailbox needed) -----------------------------

_WORDS = ["alpha", "beta", "gamma", "delta", "report"]


def _cache_db(docs: list[tuple[str, str, int, int, int, int]]) -> sqlite3.Connection:
    """An in-memory cache: ``(id, text, inbox, sent, archived, dup)`` rows, each indexed once."""
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.row_factory = sqlite3.Row
    db.executescript(cache._DDL)
    db.execute(cache._FTS_DDL)
    for n, (mid, text, inbox, sent, archived, dup) in enumerate(docs):
        db.execute("INSERT INTO msg(path, ordinal, oid, id, sender, recipients, date, subject, summary, priority,"
                   " prank, type, status, detail, inbox, sent, dup, archived, require_ack, n_attach, attach_size)"
                   " VALUES (?,?,?,?,?,'[\"alex\"]','2026-01-01T00:00:00',?,'','normal',2,'text','good','',?,?,?,?,0,0,0)",
                   (f"p{inbox}{sent}", n, f"{n:040x}", mid, "max" if n % 3 else "eve", text[:20], inbox, sent, dup,
                    archived))
        db.execute("INSERT INTO fts(rowid, id, subject, body, sender, files) VALUES (last_insert_rowid(),?,?,?,?,'')",
                   (mid, text[:20], text, "max" if n % 3 else "eve"))
    return db


def _reference(db: sqlite3.Connection, match: str, sender: Any, archived: bool, limit: int) -> list[tuple[str, float]]:
    """The search as one SQL query over every hit (what search_query did before it ranked first
    and joined only the best): ``(id, score)``, best first."""
    where, args = ["(m.inbox=1 OR m.sent=1)", "m.dup=0"], [match]
    if not archived:
        where.append("m.archived=0")
    if sender:
        where.append("m.sender=?")
        args.append(sender)
    rows = db.execute(
        "WITH h AS MATERIALIZED (SELECT rowid AS fid, id, bm25(fts) AS score FROM fts WHERE fts MATCH ?),"
        " r AS (SELECT m.id, h.score, ROW_NUMBER() OVER (PARTITION BY m.id ORDER BY h.score, m.inbox DESC)"
        " AS n FROM h JOIN msg m ON m.rowid = h.fid AND m.id = h.id WHERE " + " AND ".join(where) + ")"
        " SELECT id, score FROM r WHERE n = 1 ORDER BY score LIMIT ?", (*args, limit)).fetchall()
    return [(r[0], r[1]) for r in rows]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 30), st.lists(st.sampled_from(_WORDS), min_size=1, max_size=12),
                          st.booleans(), st.booleans(), st.booleans(), st.booleans()), max_size=160),
       st.sampled_from(_WORDS), st.sampled_from([None, "max", "eve"]), st.booleans(), st.integers(1, 30))
def test_ranked_query_agrees_with_joining_every_hit(docs: list[Any], word: str, sender: Any, archived: bool,
                                                    limit: int) -> None:
    """search_query (rank, join only the best hits, snippets for those) gives the same
    messages with the same scores as joining every hit: one per Message-ID, its best copy."""
    db = _cache_db([(f"{mid:064x}", " ".join(ws), int(i), int(s), int(a), int(d)) for mid, ws, i, s, a, d in docs])
    match = fts_expression(word)
    want = _reference(db, match, sender, archived, limit)
    got = cache.search_query(db, match, sender=sender, archived=archived, limit=limit)
    scores = dict(_reference(db, match, sender, archived, 10**6))  # each shown id's best copy's score
    assert [round(scores[r.id], 9) for r, _ in got] == [round(s, 9) for _, s in want]
    if want:  # ties at the cut may pick other messages; above it, the same ones
        last = want[-1][1]
        assert {i for i, s in want if s < last} == {r.id for r, _ in got if scores[r.id] < last}
    assert len({r.id for r, _ in got}) == len(got)
    for r, snip in got:
        assert (r.inbox or r.sent) and (archived or not r.archived) and (sender is None or r.sender == sender)
        assert "\x02" in snip and word in snip.lower()


def test_a_word_in_every_message_ranks_without_a_snippet_for_each() -> None:
    """Issue 14 item 1: a word in all 100,000 messages took 7x `gitmail list` when every hit got a
    snippet and a join. Same run, same database: the query costs at most 6x matching alone
    (it was 15x; the bm25 ranking itself is about 2.5x)."""
    import time

    db = _cache_db([(f"{i:064x}", f"message {i} with the same words as the others", 1, 0, 0, 0) for i in range(20000)])

    def best(f: Any) -> float:
        out = []
        for _ in range(3):
            t = time.process_time()
            f()
            out.append(time.process_time() - t)
        return min(out)

    match = fts_expression("message")
    alone = best(lambda: db.execute("SELECT rowid FROM fts WHERE fts MATCH ?", (match,)).fetchall())
    query = best(lambda: cache.search_query(db, match, limit=20))
    assert len(cache.search_query(db, match, limit=20)) == 20
    assert query <= 6 * alone, (query, alone)


def test_indexing_reads_plain_messages_without_the_model(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    """A first search indexes each plain message from its stored JSON (36 s for 100,000
    through the full reader, ten times this); the text indexed is the reader's."""
    import sys

    from gitmail import api
    from gitmail.api.session import session
    from gitmail.core import store
    from gitmail.core.objects import commit

    api.send_batch(org.clones["max"], [api.Draft(to=["alex"], body=f"plain words number {i}") for i in range(8)],
                   encrypt=False)
    org.ok("alex", "sync")
    reads = recorded(monkeypatch, store, "read_message", lambda pg, c: str(c.id))
    assert len(_hits(org, "alex", "plain", "words")) == 8 and reads == []
    monkeypatch.undo()
    s = session(org.clones["alex"])
    rows = [cache.Row.of(r) for r in s.db.execute("SELECT * FROM msg WHERE inbox=1")]
    stored_text = sys.modules["gitmail.api.search"]._stored_text
    for r in rows:
        m = store.read_message(s.repo.pg, commit(s.repo.pg, r.oid))
        assert stored_text(s, r) == (m.body, " ".join(a.name for a in m.attachments))
