"""A per-member SQLite cache of the verified mailboxes, for fast listing.

The cache is derived data: ``.git/gitmail/cache/<member>.sqlite3`` can be
deleted at any time and is rebuilt from the refs (the verified mailbox refs
and the state ref). The fast path (:func:`fresh`) costs one ``git
for-each-ref`` and one SQLite query and imports neither pygit2 nor pydantic;
only when a tip moved does :func:`ingest` verify and index the new commits.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from gitmail import git
from gitmail.core import refs, view
from gitmail.core.address import to_ref

if TYPE_CHECKING:
    from gitmail.core.directory import Directory
    from gitmail.core.repo import Repo

SCHEMA = 6  # 6: rows of hostile commits, de-duplication that keeps the genuine copy
_DDL = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS refs(path TEXT PRIMARY KEY, seen TEXT, tip TEXT, count INTEGER, included INTEGER);
CREATE TABLE IF NOT EXISTS msg(
  path TEXT, ordinal INTEGER, oid TEXT, id TEXT, sender TEXT, recipients TEXT, date TEXT,
  subject TEXT, summary TEXT, priority TEXT, prank INTEGER, type TEXT, request_id TEXT,
  in_reply_to TEXT, thread TEXT, require_ack INTEGER, n_attach INTEGER, attach_size INTEGER,
  status TEXT, detail TEXT, inbox INTEGER, sent INTEGER, dup INTEGER DEFAULT 0,
  read INTEGER DEFAULT 0, archived INTEGER DEFAULT 0, plaintext TEXT, encrypted INTEGER DEFAULT 0,
  PRIMARY KEY(path, ordinal));
CREATE INDEX IF NOT EXISTS msg_id ON msg(id);
CREATE INDEX IF NOT EXISTS msg_thread ON msg(thread);
CREATE INDEX IF NOT EXISTS msg_reply ON msg(in_reply_to);
CREATE INDEX IF NOT EXISTS msg_list ON msg(inbox, dup, archived, date);
CREATE INDEX IF NOT EXISTS msg_unread ON msg(inbox, dup, archived, read, date);
"""


def connect(repo: "Repo", member: str) -> sqlite3.Connection:
    d = repo.data_dir / "cache"
    if not d.is_dir():
        # Private: it holds decrypted subjects of encrypted mail.
        d.mkdir(mode=0o700, exist_ok=True)
    db = sqlite3.connect(d / f"{to_ref(member)}.sqlite3", timeout=30, isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    ver = db.execute("PRAGMA user_version").fetchone()[0]
    if ver != SCHEMA:
        db.executescript("DROP TABLE IF EXISTS meta; DROP TABLE IF EXISTS refs; DROP TABLE IF EXISTS msg;")
        db.executescript(_DDL)
        db.execute(f"PRAGMA user_version={SCHEMA}")
    return db


def watched_refs(repo: "Repo", member: str) -> dict[str, str]:
    """Current tips of every ref the member's view depends on (one ``for-each-ref``)."""
    t = refs.tracking("", repo.remote)
    return git.for_each_ref(repo.path, [*view.mail_patterns(t, member), f"{t}{refs.DIRECTORY}", refs.state(member)])


def fresh(repo: "Repo", member: str, db: sqlite3.Connection) -> bool:
    """True when nothing the cache depends on has moved since the last ingest."""
    current = watched_refs(repo, member)
    key = json.dumps(sorted(current.items()))
    row = db.execute("SELECT value FROM meta WHERE key='watched'").fetchone()
    return row is not None and row[0] == key


@dataclass
class Row:
    """One message as the cache knows it (no body: read the blob for that)."""

    path: str
    ordinal: int
    oid: str
    id: str
    sender: str
    recipients: list[str]
    date: str
    subject: str
    summary: str
    priority: str
    type: str
    request_id: Optional[str]
    in_reply_to: Optional[str]
    thread: Optional[str]
    require_ack: bool
    n_attach: int
    attach_size: int
    status: str
    detail: str
    inbox: bool
    sent: bool
    read: bool
    archived: bool
    plaintext: Optional[str] = None  # decrypted content of an encrypted message, when kept (docs/protocol.md §9)
    encrypted: bool = False

    @classmethod
    def of(cls, r: sqlite3.Row) -> "Row":
        d: dict[str, Any] = {k: r[k] for k in _ROW_FIELDS}
        d["recipients"] = json.loads(d["recipients"])
        for b in ("require_ack", "inbox", "sent", "read", "archived", "encrypted"):
            d[b] = bool(d[b])
        return cls(**d)


_ROW_FIELDS = tuple(Row.__dataclass_fields__)


def ingest(repo: "Repo", member: str, db: sqlite3.Connection, directory: "Directory") -> list[str]:
    """Verify and index whatever moved; return problems found (rewritten refs, merges).

    For each watched mailbox ref: the remote-tracking tip must descend from the
    verified tip (``refs/gitmail/verified/...``), else the update is rejected
    and reported and the verified tip is kept (so local mail is never lost).
    New commits are checked one by one (:func:`gitmail.core.store.check_message`)
    and indexed with their status; a bad message is kept but never shown as
    genuine.
    """
    db.execute("BEGIN IMMEDIATE")  # one transaction; concurrent ingests queue here
    try:
        problems = _ingest(repo, member, db, directory)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return problems


def _ingest(repo: "Repo", member: str, db: sqlite3.Connection, directory: "Directory") -> list[str]:
    from gitmail.core import state as state_mod

    before = db.execute("SELECT COALESCE(MAX(rowid), 0) FROM msg").fetchone()[0]
    problems: list[str] = []
    current = watched_refs(repo, member)
    t = refs.tracking("", repo.remote)
    my_groups = set(directory.groups_of(member))
    known = {r["path"]: r for r in db.execute("SELECT * FROM refs")}
    for full, tip in sorted(current.items()):
        if not full.startswith(t + refs.MAIL):
            continue
        path = full[len(t) :]
        try:
            rcpt, sender = refs.split_mail_path(path)
        except Exception:
            problems.append(f"{path}: not a valid mailbox ref name")
            continue
        inbox, sent = view.role(member, my_groups, rcpt, sender)
        included = inbox or sent
        prev = known.get(path)
        if prev is not None and prev["seen"] == tip and bool(prev["included"]) == included:
            continue
        if prev is not None and bool(prev["included"]) != included:
            db.execute("DELETE FROM msg WHERE path=?", (path,))
            db.execute("DELETE FROM refs WHERE path=?", (path,))
            prev = None
        vtip, probs = _advance_verified(repo, path, tip)
        problems += probs
        if included and vtip:
            _index_path(repo, member, db, directory, path, rcpt, sender, vtip, prev, inbox, sent)
        count = db.execute("SELECT COUNT(*) FROM msg WHERE path=?", (path,)).fetchone()[0]
        db.execute(
            "INSERT OR REPLACE INTO refs(path, seen, tip, count, included) VALUES (?,?,?,?,?)",
            (path, tip, vtip, count, int(included)),
        )
    st_oid, st = state_mod.load(repo, member)
    known_state = db.execute("SELECT value FROM meta WHERE key='state'").fetchone()
    # The flags of rows already indexed only change when the state blob does.
    apply_state(db, st, since=before if known_state is not None and known_state[0] == (st_oid or "") else 0)
    db.execute("INSERT OR REPLACE INTO meta VALUES ('state', ?)", (st_oid or "",))
    key = json.dumps(sorted(current.items()))
    db.execute("INSERT OR REPLACE INTO meta VALUES ('watched', ?)", (key,))
    return problems


def _advance_verified(repo: "Repo", path: str, tip: str) -> tuple[Optional[str], list[str]]:
    """Move the verified ref of ``path`` to ``tip`` if that is a fast-forward."""
    vref = refs.verified(path)
    old = repo.ref_target(vref)
    if old == tip:
        return old, []
    from gitmail.core.store import chain, extends

    pg = repo.pg
    if old is not None:
        if not extends(pg, tip, old):
            return old, [f"{path}: history was rewritten on the org repo (not a fast-forward); kept the verified copy"]
    elif chain(pg, tip)[1]:
        return None, [f"{path}: history contains a merge; mailbox refs must be linear"]
    with repo.lock():
        repo.set_ref(vref, tip, repo.ref_target(vref), "gitmail: verified")
    return tip, []


def parent_or_none(pg: Any, oid: str) -> Optional[str]:
    """The single parent of ``oid`` (None for a root commit)."""
    from gitmail.core.store import parent_ids

    ps = parent_ids(pg, oid)
    return ps[0] if len(ps) == 1 else None


def _index_path(
    repo: "Repo",
    member: str,
    db: sqlite3.Connection,
    directory: "Directory",
    path: str,
    rcpt: str,
    sender: str,
    vtip: str,
    prev: Optional[sqlite3.Row],
    inbox: bool,
    sent: bool,
) -> None:
    from gitmail.core.model import MAX_INT, PRIORITY_RANK
    from gitmail.core.signing import signers
    from gitmail.core.store import chain, check_message, load_commit

    pg = repo.pg
    stop = prev["tip"] if prev is not None else None
    count = prev["count"] if prev is not None else 0
    oids, _ = chain(pg, vtip, stop)
    if stop is not None and oids and parent_or_none(pg, oids[-1]) != stop:
        # cache out of step with the verified ref: rebuild
        db.execute("DELETE FROM msg WHERE path=?", (path,))
        count = 0
    from gitmail.core.private import Opener, plaintext_json

    opener = Opener(repo, member)
    rows: list[list[Any]] = []
    oids.reverse()
    loaded = [load_commit(pg, o) for o in oids]
    parsed = [c for c in loaded if not isinstance(c, str)]
    keyed = iter(signers(parsed))
    keys = [None if isinstance(c, str) else next(keyed) for c in loaded]
    # Message-IDs shown on this batch (a copy twice in one push is shown once).
    batch_good: set[str] = set()
    for i, (oid, c, key) in enumerate(zip(oids, loaded, keys), start=count + 1):
        msg, check = check_message(pg, c, rcpt, sender, directory, key)
        plaintext = None
        if msg is not None and msg.encrypted is not None and check.good and not isinstance(c, str):
            opened = opener.open(pg, c, msg)
            if opened is None:
                msg = msg.model_copy(update={"subject": "(encrypted message)"})
            else:
                msg = opened[0]
                if opener.keeps_plaintext:
                    plaintext = plaintext_json(*opened)
        dup = 0
        if msg is not None and inbox:
            # De-duplication keeps the genuine copy (docs/protocol.md §7): a good copy
            # already shown hides this one; a good one hides earlier copies that are not good.
            if msg.id in batch_good or db.execute(
                "SELECT 1 FROM msg WHERE id=? AND +inbox=1 AND status='good' AND dup=0 LIMIT 1", (msg.id,)
            ).fetchone() is not None:
                dup = 1
            elif check.good:
                db.execute("UPDATE msg SET dup=1 WHERE id=? AND inbox=1 AND status!='good'", (msg.id,))
                for r in rows:
                    if r[3] == msg.id and r[18] != "good":
                        r[22] = 1
            elif any(r[3] == msg.id and r[22] == 0 for r in rows) or db.execute(
                "SELECT 1 FROM msg WHERE id=? AND +inbox=1 AND dup=0 LIMIT 1", (msg.id,)
            ).fetchone() is not None:
                dup = 1  # a second copy that is not good either: shown once
            if check.good and not dup:
                batch_good.add(msg.id)
        rows.append(
            [
                path, i, oid,
                msg.id if msg else oid,
                msg.from_ if msg else sender,
                json.dumps(msg.to if msg else [rcpt], ensure_ascii=False),
                msg.date if msg else "",
                msg.subject if msg else "(unreadable message)",
                msg.summary if msg else "",
                msg.priority if msg else "normal",
                PRIORITY_RANK.get(msg.priority if msg else "normal", 2),
                msg.type if msg else "text",
                msg.request_id if msg else None,
                msg.in_reply_to if msg else None,
                msg.thread if msg else None,
                int(msg.require_ack) if msg else 0,
                len(msg.attachments) if msg else 0,
                min(sum(a.size for a in msg.attachments), MAX_INT) if msg else 0,
                check.status, check.detail, int(inbox), int(sent), dup, plaintext,
                int(msg is not None and msg.encrypted is not None),
            ]
        )
    db.executemany(
        "INSERT OR REPLACE INTO msg(path, ordinal, oid, id, sender, recipients, date, subject, summary,"
        " priority, prank, type, request_id, in_reply_to, thread, require_ack, n_attach, attach_size,"
        " status, detail, inbox, sent, dup, plaintext, encrypted) VALUES (" + ",".join("?" * 25) + ")",
        rows,
    )


def apply_state(db: sqlite3.Connection, st: Any, since: int = 0) -> None:
    """Set the read/archived columns from a :class:`~gitmail.core.model.State`,
    for the rows written after rowid ``since`` (0: every row)."""
    db.execute("UPDATE msg SET read=0, archived=0 WHERE inbox=1 AND (read=1 OR archived=1) AND rowid > ?", (since,))
    for path, mb in st.mailboxes.items():
        for flag in ("read", "archived"):
            for a, b in getattr(mb, flag):
                db.execute(f"UPDATE msg SET {flag}=1 WHERE path=? AND ordinal BETWEEN ? AND ? AND rowid > ?",
                           (path, a, b, since))
