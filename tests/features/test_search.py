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
from tests.conftest import Org, run


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
