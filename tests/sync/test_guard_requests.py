"""The guard's index of requests (gitmail/guard/requests.py): a response is checked against
what arrived since the last push, never wrongly accepted, and a refused push leaves nothing
in the index."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pygit2
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gitmail.core import refs
from gitmail.core.model import Message, format_date, utcnow
from gitmail.core.msgtypes import REQUEST_TYPES
from gitmail.core.store import commit_message
from gitmail.guard.requests import FILE, Requests, request_of
from tests.agents.test_protocol import forge_response
from tests.conftest import git
from tests.sync.conftest import NetOrg

PQ = '{"question": "deploy?"}'
RAW_HEAD = b"tree " + b"0" * 40 + b"\nauthor a <a@b> 1 +0000\ncommitter a <a@b> 1 +0000\n\n"


def _index(net: NetOrg) -> sqlite3.Connection:
    return sqlite3.connect(net.bare / "gitmail" / FILE)


def _tip(net: NetOrg, path: str) -> str:
    return git("rev-parse", refs.head(path), cwd=net.bare).stdout.strip()


class Counting:
    """A real repository whose object reads are counted (what a walk costs)."""

    def __init__(self, pg: pygit2.Repository) -> None:
        self._pg = pg
        self.reads = 0

    def read(self, oid: Any) -> Any:
        self.reads += 1
        return self._pg.read(oid)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pg, name)


def test_the_index_keeps_what_the_server_holds_and_answers_from_it(net: NetOrg) -> None:
    """alex asks max twelve questions; max answers the first. The guard's index then holds
    the asking mailbox's accepted tip and the twelve requests; reading the line again after
    two more commits reads only those two. A forged answer (bob) is still refused with the
    index in place, and so is an answer to a request id the index never saw."""
    net.join("bob")
    for name in ("alex", "bob"):
        net.ok(name, "sync")
    asked = [json.loads(net.ok("alex", "send", "max", f"q{i}", "--type", "question", "--payload", PQ, "--json").out)
             for i in range(12)]
    net.ok("max", "sync")
    net.ok("max", "respond", asked[0]["short_id"], "--answer", "yes")
    path = refs.mail_path("max", "alex")
    db = _index(net)
    assert db.execute("SELECT tip FROM walked WHERE path=?", (path,)).fetchone() == (_tip(net, path),)
    rows = db.execute("SELECT type, rid FROM req WHERE path=? ORDER BY rowid", (path,)).fetchall()
    assert rows == [("question", a["request_id"]) for a in asked]

    net.ok("alex", "send", "max", "more", "--type", "question", "--payload", PQ)
    net.ok("alex", "send", "max", "plain note")
    pg = Counting(pygit2.Repository(str(net.bare)))
    reqs = Requests(pg, lambda p: _tip(net, p))  # type: ignore[arg-type]
    old = reqs.candidates(path, _tip(net, path), "question", asked[5]["request_id"])
    # The two new commits, each read for its parent and its trailers, and the tip the file
    # was read up to; the whole line of fourteen costs two reads a commit.
    assert pg.reads == 2 * 2 + 1 and len(old) == 1
    whole = Counting(pygit2.Repository(str(net.bare)))
    Requests(whole, lambda p: None)._read(path, _tip(net, path), use_file=False)  # type: ignore[arg-type]
    assert whole.reads == 2 * 14
    assert db.execute("SELECT tip FROM walked WHERE path=?", (path,)).fetchone() == (_tip(net, path),)
    assert reqs.candidates(path, _tip(net, path), "question", "never-asked") == []
    reqs.close()

    code, out = forge_response(net, "bob", ["alex"], "approved", asked[3]["request_id"])
    assert code != 0 and "none with request_id" in out, out
    net.ok("max", "respond", asked[7]["short_id"], "--answer", "also yes")


def test_an_index_from_another_line_is_read_again(net: NetOrg) -> None:
    """A ``walked`` tip that is not on the mailbox's line (a copied or damaged file) is not
    trusted: the line is read whole and the path's rows replaced."""
    asked = json.loads(net.ok("alex", "send", "max", "q", "--type", "question", "--payload", PQ, "--json").out)
    path = refs.mail_path("max", "alex")
    (net.bare / "gitmail").mkdir(exist_ok=True)
    db = _index(net)
    db.execute("CREATE TABLE IF NOT EXISTS walked(path TEXT PRIMARY KEY, tip TEXT NOT NULL)")
    db.execute("CREATE TABLE IF NOT EXISTS req(path TEXT NOT NULL, type TEXT NOT NULL, rid TEXT NOT NULL, "
               "oid TEXT NOT NULL, UNIQUE(path, type, rid, oid))")
    db.execute("INSERT INTO walked VALUES (?, ?)", (path, "1" * 40))
    db.execute("INSERT INTO req VALUES (?, 'question', 'stale', ?)", (path, "2" * 40))
    db.commit()
    net.ok("max", "sync")
    net.ok("max", "respond", asked["short_id"], "--answer", "yes")
    assert db.execute("SELECT tip FROM walked WHERE path=?", (path,)).fetchone() == (_tip(net, path),)
    assert db.execute("SELECT rid FROM req WHERE path=?", (path,)).fetchall() == [(asked["request_id"],)]


def test_a_refused_push_leaves_its_requests_out_of_the_index(net: NetOrg) -> None:
    """One push carries a question on mail/max/alex, max's answer to it and a third ref the
    guard refuses. The push is refused whole and the question is not on the server, so the
    index must not name it: read from the index, a later push of the answer alone is refused."""
    from gitmail import api
    from gitmail.core import sync
    from gitmail.core.store import write_message_commit

    net.ok("alex", "send", "max", "first", "--type", "question", "--payload", PQ)
    net.ok("max", "sync")
    net.ok("max", "respond", json.loads(net.ok("max", "list", "--json").out)["messages"][0]["short_id"],
           "--answer", "ok")  # the index now holds mail/max/alex up to its tip
    a, m = api.session(net.clones["alex"]), api.session(net.clones["max"])
    sync.fetch(a.repo)
    ask_path, answer_path = refs.mail_path("max", "alex"), refs.mail_path("alex", "max")
    q = Message(**{"from": "alex"}, to=["max"], date=format_date(utcnow()), subject="q2", body="q2",
                type="question", request_id="rid-quarantined", payload={"question": "q2"})
    q.id = q.compute_id()
    q_oid = write_message_commit(a.repo.pg, q, a.member, a.signer, a.repo.ref_target(refs.tracking(ask_path, a.repo.remote)))
    ans = Message(**{"from": "max"}, to=["alex"], date=format_date(utcnow()), subject="a2", body="a2",
                  type="answer", request_id="rid-quarantined", in_reply_to=q.id, thread=q.id,
                  payload={"answer": "a2"})
    ans.id = ans.compute_id()
    sync.fetch(m.repo)
    ans_oid = write_message_commit(m.repo.pg, ans, m.member, m.signer,
                                   m.repo.ref_target(refs.tracking(answer_path, m.repo.remote)))
    # max's clone needs alex's question to push both: copy the object over.
    git("fetch", "-q", str(net.clones["alex"]), q_oid, cwd=net.clones["max"])
    bad = f"{q_oid}:refs/heads/gitmail/mail/nobody/max"
    p = git("push", "--atomic", net.url, f"{q_oid}:{refs.head(ask_path)}", f"{ans_oid}:{refs.head(answer_path)}",
            bad, cwd=net.clones["max"], check=False)
    assert p.returncode != 0 and "nobody" in p.stdout + p.stderr, p.stdout + p.stderr
    rids = [r[0] for r in _index(net).execute("SELECT rid FROM req WHERE path=?", (ask_path,))]
    assert "rid-quarantined" not in rids and len(rids) == 1
    p = git("push", net.url, f"{ans_oid}:{refs.head(answer_path)}", cwd=net.clones["max"], check=False)
    assert p.returncode != 0 and "none with request_id 'rid-quarantined'" in p.stdout + p.stderr, p.stdout + p.stderr
    # With the question on the server, the same answer goes.
    git("push", net.url, f"{q_oid}:{refs.head(ask_path)}", cwd=net.clones["max"])
    git("push", net.url, f"{ans_oid}:{refs.head(answer_path)}", cwd=net.clones["max"])


_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=60)
_rid = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(typ=st.sampled_from(["text", "answer", "question", "shutdown_request", "plan_approval_request",
                            "plan_approval_response"]),
       rid=st.one_of(st.none(), _rid), subject=_text, body=_text, trace=st.one_of(st.none(), _rid),
       to=st.lists(st.sampled_from(["bob", "cy", "dee"]), min_size=1, max_size=3, unique=True))
def test_request_of_reads_what_the_writer_renders(typ: str, rid: Any, subject: str, body: str, trace: Any,
                                                  to: list[str]) -> None:
    """Differential with the writer (store.commit_message, docs/protocol.md §6): the index
    names a commit as a request exactly when its message is one, whatever the subject and
    body hold, including lines shaped like trailers."""
    from pydantic import ValidationError

    body = f"{body}\nType: question\nRequest-Id: forged\n\n{body}"
    try:
        msg = Message(**{"from": "alex"}, to=to, date=format_date(utcnow()), subject=subject, body=body,
                      type=typ, request_id=rid, trace_id=trace)
    except ValidationError:
        assume(False)
    raw = RAW_HEAD + commit_message(msg).encode()
    want = (typ, rid) if typ in REQUEST_TYPES and rid is not None else None
    assert request_of(raw) == want


@given(st.binary(max_size=300))
def test_request_of_takes_any_bytes(raw: bytes) -> None:
    """Hostile commit bytes give a request or None, never an error."""
    got = request_of(raw)
    assert got is None or (got[0] in REQUEST_TYPES and isinstance(got[1], str))


def test_request_of_reads_only_the_last_paragraph() -> None:
    body = b"Type: question\nRequest-Id: in-body\n\nMessage-Id: <x@gitmail>\nType: text\n"
    assert request_of(RAW_HEAD + body) is None
    two = b"s\n\nMessage-Id: <x@gitmail>\nType: question\nRequest-Id: a\nType: answer\nRequest-Id: b\n"
    assert request_of(RAW_HEAD + two) == ("question", "a")
    assert request_of(RAW_HEAD + b"s\n\nType: question\nRequest-Id: \xff\n") is None
