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
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional, Sequence

from gitmail import git
from gitmail.core import refs, view
from gitmail.core.address import to_ref
from gitmail.core.verdicts import RULES
from gitmail.errors import GitmailError, sqlite_damaged, sqlite_full

if TYPE_CHECKING:
    from pathlib import Path

    from gitmail.core.directory import Directory
    from gitmail.core.repo import Repo
    from gitmail.core.store import Brief, Check, Verdict

# 7: trace_id and the payload hint of open types; 8: the trace, thread and reply indexes hold only
# rows that have one (most have none: a first sync writes three B-trees fewer per message).
# 9: the inbox tally (kept by every write to the rows), so counts never scan the inbox.
# 10: an index of the rows that carry a request_id (a response is related to the request it
# answers on every listing: cache.answers).
# A cache of version 8 gains the tally (one scan), one of 8 or 9 the request index; a cache of
# another version is rebuilt.
SCHEMA = 10
HINT_CHARS = 200  # of an open type's payload (canonical JSON) kept for listings
_DDL = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS refs(path TEXT PRIMARY KEY, seen TEXT, tip TEXT, count INTEGER, included INTEGER);
CREATE TABLE IF NOT EXISTS msg(
  path TEXT, ordinal INTEGER, oid TEXT, id TEXT, sender TEXT, recipients TEXT, date TEXT,
  subject TEXT, summary TEXT, priority TEXT, prank INTEGER, type TEXT, request_id TEXT,
  in_reply_to TEXT, thread TEXT, require_ack INTEGER, n_attach INTEGER, attach_size INTEGER,
  status TEXT, detail TEXT, inbox INTEGER, sent INTEGER, dup INTEGER DEFAULT 0,
  read INTEGER DEFAULT 0, archived INTEGER DEFAULT 0, plaintext TEXT, encrypted INTEGER DEFAULT 0,
  trace_id TEXT, hint TEXT,
  PRIMARY KEY(path, ordinal));
CREATE INDEX IF NOT EXISTS msg_trace ON msg(trace_id) WHERE trace_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS msg_id ON msg(id);
CREATE INDEX IF NOT EXISTS msg_thread ON msg(thread) WHERE thread IS NOT NULL;
CREATE INDEX IF NOT EXISTS msg_reply ON msg(in_reply_to) WHERE in_reply_to IS NOT NULL;
CREATE INDEX IF NOT EXISTS msg_list ON msg(inbox, dup, archived, date);
CREATE INDEX IF NOT EXISTS msg_unread ON msg(inbox, dup, archived, read, date);
"""
_REQUEST_INDEX = "CREATE INDEX IF NOT EXISTS msg_request ON msg(request_id, type) WHERE request_id IS NOT NULL"
_DDL += _REQUEST_INDEX + ";\n"

# What the inbox shows (not archived, one copy per Message-ID), and what of it is unread.
# Unread mail: an inbox copy not read yet. Verified receipts (type ``ack``) never count: they
# answer the member's own --require-ack and need no attention; one that failed verification does
# (issue 14; docs/protocol.md, "Acknowledgements"). views.is_unread is the same rule for one row
# (tests/core/test_tally.py keeps the two equal).
SHOWN = "inbox=1 AND dup=0 AND archived=0"
UNREAD = "read=0 AND (type != 'ack' OR status != 'good')"


def _tally_sums(where: str) -> str:
    """SQL summing the ``(shown, unread, urgent unread)`` of the rows of ``msg`` matching
    ``where`` (NULL counts as false, as in a WHERE clause)."""
    return (f"SELECT COALESCE(SUM(CASE WHEN {SHOWN} THEN 1 ELSE 0 END), 0),"
            f" COALESCE(SUM(CASE WHEN {SHOWN} AND {UNREAD} THEN 1 ELSE 0 END), 0),"
            f" COALESCE(SUM(CASE WHEN {SHOWN} AND {UNREAD} AND prank=0 THEN 1 ELSE 0 END), 0)"
            f" FROM msg WHERE {where}")


# The tally: one row, the inbox's shown, unread and urgent unread messages, so ``list`` and the
# new-mail counts cost the same at a million messages as at ten (issue 16 item 3). It always
# equals :func:`scan_counts`. Every write to ``msg`` goes through :func:`_counted` (or ends in
# :func:`_recount`), which takes the rows it touches out of the tally before and puts them back
# after. Not triggers: a row trigger doubled the cost of indexing a message (measured: 17 -> 50 µs).
_TALLY_DDL = (
    "CREATE TABLE IF NOT EXISTS tally(one INTEGER PRIMARY KEY CHECK (one = 1), total INTEGER NOT NULL,"
    " unread INTEGER NOT NULL, urgent INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO tally VALUES (1, 0, 0, 0)",
)


def _adjust(db: sqlite3.Connection, sign: int, where: str, args: Any = ()) -> None:
    n = db.execute(_tally_sums(where), args).fetchone()
    if any(n):
        db.execute("UPDATE tally SET total=total+?, unread=unread+?, urgent=urgent+?", [sign * int(x) for x in n])


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """The caller's transaction, or a new one (``BEGIN IMMEDIATE``: the write lock first, so a
    count taken at the start is still true at the write) committed at the end, rolled back on
    an error."""
    if db.in_transaction:
        yield
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


@contextmanager
def _counted(db: sqlite3.Connection, where: str, args: Any = ()) -> Iterator[None]:
    """Around a write to the rows of ``msg`` matching ``where`` (a condition the write does
    not change: by path, ordinal, id or rowid): their share leaves the tally before it and
    comes back after it, all in one transaction (so another process's write cannot fall
    between the count and the write)."""
    with _transaction(db):
        _adjust(db, -1, where, args)
        yield
        _adjust(db, +1, where, args)


def _recount(db: sqlite3.Connection) -> None:
    """Set the tally from a scan (after a write to the whole inbox, which is a scan anyway).
    Callers are inside the write's transaction."""
    db.execute("UPDATE tally SET total=?, unread=?, urgent=?", scan_counts(db))


def connect(repo: "Repo", member: str) -> sqlite3.Connection:
    """The member's cache database, prepared (:func:`prepare`).

    In a folder this process cannot write (a read-only mount or backup of a clone), or on a
    full disk, SQLite cannot create the WAL index beside a file in WAL mode and refuses to
    open it; then the file is read as it stands (``immutable``): reading works, and the
    first write fails, naming the cause. A file that is no database is set aside and the
    cache rebuilt. Raises ``sqlite3.Error``.
    """
    import os

    d = repo.data_dir / "cache"
    if not d.is_dir():
        # Private: it holds decrypted subjects of encrypted mail.
        d.mkdir(mode=0o700, exist_ok=True)
    path = d / f"{to_ref(member)}.sqlite3"
    try:
        had = path.stat().st_size > 0  # a cache to read as it stands, should it come to that
    except OSError:
        had = False
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        return prepare(db)
    except sqlite3.DatabaseError as e:
        db.close()
        if sqlite_damaged(e) and os.access(d, os.W_OK):
            # Not a database at all (a truncated or overwritten file): the cache is only a cache
            # of what git holds (read and archive flags included, in refs): set it aside, rebuild.
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.replace(f"{path}{suffix}", f"{path}.damaged{suffix}")
                except OSError:
                    pass
            return prepare(sqlite3.connect(path, timeout=30, isolation_level=None))
        # A full disk, like a read-only folder, keeps SQLite from making the WAL index: an
        # existing cache is still read as it stands (list, search, read --no-mark work).
        if not isinstance(e, sqlite3.OperationalError) or not had or (os.access(d, os.W_OK) and not sqlite_full(e)):
            raise
    return prepare(sqlite3.connect(f"{path.as_uri()}?mode=ro&immutable=1", uri=True, timeout=30,
                                   isolation_level=None))


def prepare(db: sqlite3.Connection) -> sqlite3.Connection:
    """Set up a connection (opened with ``isolation_level=None``) to a cache file: its settings,
    and the schema, made or brought to :data:`SCHEMA`. Returns ``db``."""
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    ver = db.execute("PRAGMA user_version").fetchone()[0]
    if ver in (8, 9):  # the same rows: 8 without the tally (count them once), either without msg_request
        with _transaction(db):
            now = db.execute("PRAGMA user_version").fetchone()[0]
            if now == 8:  # not migrated meanwhile
                db.execute("DROP TABLE IF EXISTS tally")
                _create_tally(db)
            if now in (8, 9):
                db.execute(_REQUEST_INDEX)
                db.execute(f"PRAGMA user_version={SCHEMA}")
    elif ver != SCHEMA:
        db.executescript(
            "DROP TABLE IF EXISTS meta; DROP TABLE IF EXISTS refs; DROP TABLE IF EXISTS msg; DROP TABLE IF EXISTS fts;"
            " DROP TABLE IF EXISTS tally;"
        )
        db.executescript(_DDL)
        _create_tally(db)
        db.execute("INSERT OR REPLACE INTO meta VALUES ('rules', ?)", (str(RULES),))  # nothing recorded yet
        db.execute(f"PRAGMA user_version={SCHEMA}")
    return db


def _create_tally(db: sqlite3.Connection) -> None:
    """Create the tally, starting from a scan of the rows already there."""
    for stmt in _TALLY_DDL:
        db.execute(stmt)
    _recount(db)


def watched_refs(repo: "Repo", member: str) -> dict[str, str]:
    """Current tips of every ref the member's view depends on (one ``for-each-ref``)."""
    from gitmail.core.sync import SENT

    t = refs.tracking("", repo.remote)
    return git.for_each_ref(repo.path, [*view.mail_patterns(t, member), f"{t}{refs.DIRECTORY}", refs.state(member),
                                        f"{t}{refs.packed_path(member)}", f"{SENT}*/{to_ref(member)}"])


def fresh(repo: "Repo", member: str, db: sqlite3.Connection) -> bool:
    """True when nothing the cache depends on has moved since the last ingest."""
    current = watched_refs(repo, member)
    key = json.dumps(sorted(current.items()))
    row = db.execute("SELECT value FROM meta WHERE key='watched'").fetchone()
    return row is not None and row[0] == key and _rules_of(db) == RULES and not _future_due(db)


def _future_due(db: sqlite3.Connection) -> bool:
    """Whether messages judged dated in the future are due to be checked again (:func:`_recheck_future`)."""
    row = db.execute("SELECT value FROM meta WHERE key='future'").fetchone()
    if row is None:
        return False
    from datetime import datetime

    from gitmail.core.rules import MAX_FUTURE, clock  # only then: the rules' import is not on list's fast path

    return datetime.fromisoformat(row[0]) <= clock() + MAX_FUTURE


def indexed_tips(db: sqlite3.Connection) -> dict[str, str]:
    """Mailbox path -> the tip the cache has indexed it up to."""
    return {str(p): str(t) for p, t in db.execute("SELECT path, tip FROM refs WHERE tip IS NOT NULL")}


def _rules_of(db: sqlite3.Connection) -> int:
    """The version of the rules the recorded verdicts were given under (:data:`RULES`; 1 for a
    cache written before versions were recorded)."""
    row = db.execute("SELECT value FROM meta WHERE key='rules'").fetchone()
    return int(row[0]) if row is not None and str(row[0]).isdigit() else 1


@dataclass(slots=True)  # slots: a first sync lists every new row (a quarter of the memory per row)
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
    trace_id: Optional[str] = None
    hint: Optional[str] = None  # an open type's payload: its canonical JSON, cut at HINT_CHARS characters
    # Not columns: the sender asks this member for a receipt they have not sent yet; and, for a
    # verified response in the inbox, whether it answers a request this member sent to its
    # sender (True), one this member sent to others only (False), or none known here (None).
    # Set by the inbox queries below (:func:`_with_acks`, :func:`answers`).
    ack_requested: bool = False
    answers_request: Optional[bool] = None

    @classmethod
    def of(cls, r: sqlite3.Row, shared: Optional[dict[Any, Any]] = None) -> "Row":
        """The row ``r`` of ``msg``. ``shared``: values already made for earlier rows of the same
        listing, reused where equal (the mailbox, sender, recipients, ... of a big arrival)."""
        d: dict[str, Any] = {k: r[k] for k in _ROW_FIELDS}
        if shared is None:
            d["recipients"] = json.loads(d["recipients"])
        else:
            for k in _SHARED_FIELDS:
                d[k] = shared.setdefault((k, d[k]), d[k])
            raw = d["recipients"]
            d["recipients"] = shared.get(raw)
            if d["recipients"] is None:
                d["recipients"] = shared[raw] = json.loads(raw)
        for b in ("require_ack", "inbox", "sent", "read", "archived", "encrypted"):
            d[b] = bool(d[b])
        return cls(**d)


_ROW_FIELDS = tuple(f for f in Row.__dataclass_fields__ if f not in ("ack_requested", "answers_request"))
_SHARED_FIELDS = ("path", "sender", "priority", "type", "status", "detail")  # few distinct values


BATCH = 10_000  # commits verified and indexed per transaction: bounds memory; a crash keeps whole batches


def ingest(repo: "Repo", member: str, db: sqlite3.Connection, directory: "Directory") -> list[str]:
    """Verify and index whatever moved; return problems found (rewritten refs, merges).

    For each watched mailbox ref: the remote-tracking tip must descend from the
    verified tip (``refs/gitmail/verified/...``), else the update is rejected
    and reported and the verified tip is kept (so local mail is never lost).
    New commits are checked (:func:`gitmail.core.store.check_message`) and
    indexed with their status, oldest first, in batches of :data:`BATCH`: each
    batch is one committed transaction that also moves the verified ref to the
    batch's newest commit, so memory stays bounded whatever the history's
    length, and an interrupted ingest resumes after its last whole batch. A bad
    message is kept but never shown as genuine. Ingests of one member's cache
    run one at a time (a lock file beside the database).
    """
    from gitmail.core.workers import collector_paused

    # The collector paused (workers.collector_paused): :func:`_index_range` collects the youngest
    # generation once per batch instead (what the batch allocated, not the whole heap: a full
    # collection took 44 ms in an org of 10,000 members), so what cycles there are (a hostile
    # mailbox checked in this process) stay bounded by a batch.
    with _ingest_lock(repo, member), _transaction(db), collector_paused():
        return _ingest(repo, member, db, directory)


class _ingest_lock:
    """An exclusive ``flock`` on ``cache/<member>.lock`` (released when the process dies)."""

    def __init__(self, repo: "Repo", member: str) -> None:
        self.path = repo.data_dir / "cache" / f"{to_ref(member)}.lock"

    def __enter__(self) -> None:
        import fcntl
        import os

        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        import os

        os.close(self.fd)  # releases the lock


def _checkpoint(db: sqlite3.Connection) -> None:
    """Commit the work so far and start the next transaction (between batches)."""
    db.execute("COMMIT")
    db.execute("BEGIN IMMEDIATE")


def _ingest(repo: "Repo", member: str, db: sqlite3.Connection, directory: "Directory") -> list[str]:
    from gitmail.core import state as state_mod
    from gitmail.core import packed
    from gitmail.core.store import Checker

    watched = watched_refs(repo, member)
    t = refs.tracking("", repo.remote)
    # Inbox pairs the member packed away are read at their packed tips (docs/protocol.md §3).
    entries, problems = packed.advance(repo, member, directory)
    standing: dict[str, list[str]] = {refs.packed_path(member): list(problems)}  # path -> its problems now
    current = dict(watched)
    if entries:
        problems += packed.effective_tips(repo.pg, t, member, entries, current)
    if directory.policy.packing:
        _sent_where_packed(repo, member, t, current, directory)
    my_groups = set(directory.groups_of(member))
    _forget_revoked(db, directory)
    st_oid, st = state_mod.load(repo, member)
    known_state = db.execute("SELECT value FROM meta WHERE key='state'").fetchone()
    same_state = known_state is not None and known_state[0] == (st_oid or "")
    with Checker(repo.pg, directory) as checker:
        if _rules_of(db) != RULES:
            problems += _recheck(repo, member, db, checker)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('rules', ?)", (str(RULES),))
        _recheck_future(repo, member, db, checker)
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
                _drop_rows(db, path)
                db.execute("DELETE FROM refs WHERE path=?", (path,))
                prev = None
            count: Optional[int] = 0  # a mailbox outside the view has no rows
            if included:
                vtip, probs, count = _index_path(repo, member, db, path, rcpt, sender, tip, prev, inbox, sent,
                                                 st, checker)
            else:
                vtip, probs = _advance_verified(repo, path, tip)
            problems += probs
            standing[path] = probs
            if count is None:
                count = db.execute("SELECT COUNT(*) FROM msg WHERE path=?", (path,)).fetchone()[0]
            db.execute(
                "INSERT OR REPLACE INTO refs(path, seen, tip, count, included) VALUES (?,?,?,?,?)",
                (path, tip, vtip, count, int(included)),
            )
    problems += _vanished(db, known, current, t, member, my_groups)
    if not same_state:
        # The flags of rows indexed now were set batch by batch; older rows only change with the state blob.
        apply_state(db, st)
    db.execute("INSERT OR REPLACE INTO meta VALUES ('state', ?)", (st_oid or "",))
    key = json.dumps(sorted(watched.items()))
    db.execute("INSERT OR REPLACE INTO meta VALUES ('watched', ?)", (key,))
    from gitmail.core import problems as probmod

    probmod.record_all(repo, standing)
    return problems


def _sent_where_packed(repo: "Repo", member: str, tracking: str, current: dict[str, str],
                       directory: "Directory") -> None:
    """Put into ``current`` (full remote-tracking ref -> tip, the refs a reader walks) this clone's
    last delivered tip (``refs/gitmail/sent/<r>/<member>``) of each mailbox it delivered to
    whose ref the org repo no longer has: with packing on, its recipient packed it
    (docs/protocol.md §3, "Senders"), so the sent mail is read from what this clone
    delivered. Without it, a message sent just before its recipient packed the pair was
    missing from the sender's sent view (and a response to it answered "no known request")
    until the sender next wrote to that recipient. The commits are verified as any sent
    mail is. A direct mailbox only: a member can pack only their own inbox."""
    from gitmail.core.sync import sent_tips

    for path, tip in sent_tips(repo, member).items():
        full = tracking + path
        if full not in current and refs.split_mail_path(path)[0] in directory.members:
            current[full] = tip


def _vanished(db: sqlite3.Connection, known: dict[str, sqlite3.Row], current: dict[str, str], tracking: str,
              member: str, groups: set[str]) -> list[str]:
    """Report, once each, the inbox mailboxes that left the org repo without being packed.

    A deletion on the org repo (docs/protocol.md §7, "Verification") rejects the update
    like a rewrite: the verified copy and its rows stay. Only the inbox counts: a sent
    mailbox whose ref went is the rewind check's (:func:`gitmail.core.sync.recover`).
    The mailbox's ``seen`` becomes empty, so it is said once and indexed as usual if it
    comes back.
    """
    out = []
    for path, prev in known.items():
        if not prev["seen"] or not prev["included"] or tracking + path in current:
            continue
        try:
            rcpt, sender = refs.split_mail_path(path)
        except GitmailError:
            continue
        if view.role(member, groups, rcpt, sender)[0]:
            out.append(_DELETED.format(path=path))
            db.execute("UPDATE refs SET seen='' WHERE path=?", (path,))
    return out


def _drop_rows(db: sqlite3.Connection, path: str) -> None:
    """Delete the rows of mailbox ``path``, keeping the search index whole.

    SQLite gives a new row the largest rowid plus one, so once the newest rows are
    deleted their rowids come back, at or below the index's high-water mark, where
    :func:`search_pending` would never see them. So when rows at or below the mark go,
    the mark goes back below them and the index entries of every row from there up
    are dropped, to be indexed again (from their current text) by the next search.
    """
    _unindex_from(db, db.execute("SELECT MIN(rowid) FROM msg WHERE path=?", (path,)).fetchone()[0])
    with _counted(db, "path=?", (path,)):
        db.execute("DELETE FROM msg WHERE path=?", (path,))


def _unindex_from(db: sqlite3.Connection, lo: Optional[int]) -> None:
    """Drop the search index's entries of every row from rowid ``lo`` up and move its mark
    below ``lo``, so the next search indexes them again from their current text (None: nothing)."""
    mark = db.execute("SELECT value FROM meta WHERE key='fts_rowid'").fetchone()
    if lo is not None and mark is not None and lo <= int(mark[0]):
        db.execute("DELETE FROM fts WHERE rowid >= ?", (lo,))
        db.execute("INSERT OR REPLACE INTO meta VALUES ('fts_rowid', ?)", (str(lo - 1),))


def _forget_revoked(db: sqlite3.Connection, directory: "Directory") -> None:
    """Drop the indexed mail of senders with a newly revoked key, or whose keys left the
    directory (a removed member), so it is checked again.

    A revoked key invalidates messages it signed long ago (docs/protocol.md §8),
    which the incremental ingest would otherwise never look at again.
    """
    revoked = {k: m.name for m in directory.members.values() for k in m.revoked_keys}
    row = db.execute("SELECT value FROM meta WHERE key='revoked'").fetchone()
    before = set(json.loads(row[0])) if row is not None else set()
    senders = {name for k, name in revoked.items() if k not in before}
    # A member removed from the directory: their keys no member holds now (§7 step 6), so mail
    # recorded as theirs is checked again (it stayed good in the cache while verify --all said
    # unknown-sender). Read only when the directory moved.
    tip = db.execute("SELECT value FROM meta WHERE key='keys_tip'").fetchone()
    if tip is None or tip[0] != (directory.tip or ""):
        held = {k: m.name for m in directory.members.values() for k in m.all_keys()}
        row = db.execute("SELECT value FROM meta WHERE key='held'").fetchone()
        was = json.loads(row[0]) if row is not None else {}
        senders |= {name for k, name in was.items() if k not in held}
        db.execute("INSERT OR REPLACE INTO meta VALUES ('held', ?)", (json.dumps(held, sort_keys=True),))
        db.execute("INSERT OR REPLACE INTO meta VALUES ('keys_tip', ?)", (directory.tip or "",))
    if senders:
        for (path,) in db.execute("SELECT path FROM refs").fetchall():
            try:
                _, sender = refs.split_mail_path(path)
            except Exception:
                continue
            if sender in senders:
                _drop_rows(db, path)
                db.execute("DELETE FROM refs WHERE path=?", (path,))
    db.execute("INSERT OR REPLACE INTO meta VALUES ('revoked', ?)", (json.dumps(sorted(revoked)),))


def _advance_verified(repo: "Repo", path: str, tip: str) -> tuple[Optional[str], list[str]]:
    """Move the verified ref of ``path`` to ``tip`` if the mailbox rule allows it
    (:func:`gitmail.core.objects.mailbox_move_problem`; no message checked: a mailbox outside the
    member's view)."""
    from gitmail.core.objects import collect, mailbox_move_problem

    vref = refs.verified(path)
    old = repo.ref_target(vref)
    if old == tip:
        return old, []
    line, merge = collect(repo.pg, tip, old)
    why = mailbox_move_problem(repo.pg, path, line, merge, old)
    if why is not None:
        return old, [why]
    with repo.lock():
        repo.set_ref(vref, tip, repo.ref_target(vref), "gitmail: verified")
    return tip, []


def _recheck(repo: "Repo", member: str, db: sqlite3.Connection, checker: Any,
             only: Optional[tuple[str, tuple[Any, ...]]] = None) -> list[str]:
    """Check every recorded message again under the current rules (:data:`RULES` differs from
    the version the cache recorded), in place: a row whose verdict changed gets the row the
    ingest writes now (status, detail, and what the message shows), keeping its rowid (so it is
    not new mail), its read and archived flags; de-duplication is done again for the
    Message-IDs concerned (:func:`dedup_again`), the search index forgets those rows' text and
    the tally follows. Batches of :data:`BATCH` commits on the checker's workers, each committed
    with the progress (``meta.recheck``), so a command killed meanwhile (a hook's time limit)
    leaves the work done so far and the next one goes on from there. A mailbox with a recorded
    commit missing from the object database is dropped from the cache, to be indexed again from
    its verified tip. Returns a problem line when messages recorded as good are not good now.

    ``only``: ``(SQL condition, its arguments)``: just the rows matching it, at once (no
    progress kept: a handful of rows, :func:`_recheck_future`)."""
    from gitmail.core.private import Opener
    from gitmail.core.store import check_batches

    pg = repo.pg
    build = _Rows(pg, Opener(repo, member, checker.directory.read_body_limit))
    cols = [c for c in ROW_COLUMNS if c not in ("path", "ordinal", "inbox", "sent", "dup")]
    assign = ", ".join(f"{c}=?" for c in cols)
    at = {c: i for i, c in enumerate(ROW_COLUMNS)}
    row = db.execute("SELECT value FROM meta WHERE key='recheck'").fetchone()
    done = json.loads(row[0]) if row is not None else {}
    if done.get("rules") != RULES:  # none, or a re-check for other rules left unfinished: from the start
        done = {"rules": RULES, "path": "", "ordinal": 0, "no_longer_good": 0}

    def batches() -> Iterator[tuple[list[sqlite3.Row], list[str], str, str]]:
        for (path,) in db.execute("SELECT path FROM refs WHERE included=1 AND path>=? ORDER BY path",
                                  (done["path"],)).fetchall():
            try:
                rcpt, sender = refs.split_mail_path(path)
            except GitmailError:
                continue
            last = done["ordinal"] if path == done["path"] else 0
            while True:
                rows = db.execute("SELECT rowid, * FROM msg WHERE path=? AND ordinal>? ORDER BY ordinal LIMIT ?",
                                  (path, last, BATCH)).fetchall()
                if not rows:
                    break
                last = rows[-1]["ordinal"]
                if not all(r["oid"] in pg for r in rows):
                    _drop_rows(db, path)
                    db.execute("DELETE FROM refs WHERE path=?", (path,))
                    break
                yield rows, [r["oid"] for r in rows], rcpt, sender

    def some() -> Iterator[tuple[list[sqlite3.Row], list[str], str, str]]:
        import itertools

        assert only is not None
        found = db.execute(f"SELECT rowid, * FROM msg WHERE {only[0]} ORDER BY path, ordinal", only[1]).fetchall()
        for path, group in itertools.groupby(found, key=lambda r: r["path"]):
            try:
                rcpt, sender = refs.split_mail_path(path)
            except GitmailError:
                continue
            rows = list(group)
            for i in range(0, len(rows), BATCH):
                part = [r for r in rows[i:i + BATCH] if r["oid"] in pg]
                if part:
                    yield part, [r["oid"] for r in part], rcpt, sender

    for rows, oids, parts in check_batches(checker, batches() if only is None else some()):
        verdicts = (v for part in parts for v in part)
        changes: list[list[Any]] = []
        ids: set[str] = set()  # Message-IDs whose inbox copies are de-duplicated again
        for r, (msg, check) in zip(rows, verdicts):
            if (check.status, check.detail) == (r["status"], r["detail"]):
                continue
            rcpt, sender = refs.split_mail_path(r["path"])
            msg, plaintext = build.opened(r["oid"], msg, check)
            new = build.row(r["path"], r["ordinal"], r["oid"], msg, check, rcpt, sender, bool(r["inbox"]),
                            bool(r["sent"]), r["dup"], plaintext)
            changes.append([*(new[at[c]] for c in cols), r["rowid"]])
            if r["inbox"]:
                ids.update((r["id"], new[at["id"]]))
            done["no_longer_good"] += r["status"] == "good" and not check.good
        if changes:
            # The rows written and every copy de-duplicated again carry one of ``ids``, before and after.
            with _counted(db, "id IN (SELECT value FROM json_each(?))", (json.dumps(sorted(ids)),)):
                db.executemany(f"UPDATE msg SET {assign} WHERE rowid=?", changes)
                dedup_again(db, ids)
            _unindex_from(db, min(c[-1] for c in changes))
        if only is None:
            done.update(path=rows[-1]["path"], ordinal=rows[-1]["ordinal"])
            db.execute("INSERT OR REPLACE INTO meta VALUES ('recheck', ?)", (json.dumps(done),))
        _checkpoint(db)
    if only is None:
        db.execute("DELETE FROM meta WHERE key='recheck'")
    n = done["no_longer_good"]
    if n:
        return [f"{n} {'message' if n == 1 else 'messages'} recorded as genuine {'fails' if n == 1 else 'fail'}"
                f" this gitmail's checks; `gitmail verify` lists {'it' if n == 1 else 'them'}"]
    return []


def _note_future(db: sqlite3.Connection, detail: str) -> None:
    """Remember the earliest date a "lies more than a day in the future" verdict was given for
    (``meta.future``): the verdict depends on the clock, so it is checked again once that date
    is within a day of it (:func:`_recheck_future`)."""
    from gitmail.core.rules import future_claim

    claim = future_claim(detail)
    if claim is None:
        return
    row = db.execute("SELECT value FROM meta WHERE key='future'").fetchone()
    if row is None or claim.isoformat() < row[0]:
        db.execute("INSERT OR REPLACE INTO meta VALUES ('future', ?)", (claim.isoformat(),))


def _recheck_future(repo: "Repo", member: str, db: sqlite3.Connection, checker: Any) -> None:
    """Check again the messages judged dated in the future once the clock has come within a day
    of the earliest such date (docs/protocol.md §4: a reader whose clock was behind, or mail
    sent at the edge of the day allowed, would otherwise keep a good message malformed for
    good). Costs one ``meta`` lookup a sync until then."""
    from gitmail.core.rules import FUTURE_WORDS

    if not _future_due(db):
        return
    cond = ("status='malformed' AND instr(detail, ?) > 0", (FUTURE_WORDS,))
    _recheck(repo, member, db, checker, only=cond)
    db.execute("DELETE FROM meta WHERE key='future'")
    for (detail,) in db.execute(f"SELECT detail FROM msg WHERE {cond[0]}", cond[1]).fetchall():
        _note_future(db, detail)


def dedup_again(db: sqlite3.Connection, ids: Iterable[str]) -> None:
    """De-duplicate the inbox copies of each Message-ID in ``ids`` from scratch (docs/protocol.md
    §7): the first good copy (by rowid, the order they were indexed in) is shown, else the first
    copy; every other copy is hidden (``dup`` 1). The incremental rule of :func:`_index_batch`
    ends in the same flags (tests/core/test_dedup_again.py keeps the two equal). The caller
    keeps the tally (the rows written carry one of ``ids``)."""
    for mid in ids:
        copies = db.execute("SELECT rowid, status FROM msg WHERE id=? AND +inbox=1 ORDER BY rowid", (mid,)).fetchall()
        if copies:
            shown = next((c[0] for c in copies if c[1] == "good"), copies[0][0])
            db.executemany("UPDATE msg SET dup=? WHERE rowid=? AND dup!=?",
                           [(int(c[0] != shown), c[0], int(c[0] != shown)) for c in copies])


_DELETED = "{path}: deleted on the org repo (and not packed); kept the verified copy"


def parent_or_none(pg: Any, oid: str) -> Optional[str]:
    """The single parent of ``oid`` (None for a root commit)."""
    from gitmail.core.objects import parent_ids

    ps = parent_ids(pg, oid)
    return ps[0] if len(ps) == 1 else None


def _index_path(
    repo: "Repo",
    member: str,
    db: sqlite3.Connection,
    path: str,
    rcpt: str,
    sender: str,
    tip: str,
    prev: Optional[sqlite3.Row],
    inbox: bool,
    sent: bool,
    st: Any,
    checker: Any,
) -> tuple[Optional[str], list[str], Optional[int]]:
    """Verify and index mailbox ``path`` up to ``tip``; return the verified tip, the problems
    and the number of rows the mailbox has now (None: not known, count them).

    The new commits (verified tip to ``tip``) must be a fast-forward without merges,
    else nothing new is accepted (the verified tip stays). The commits the cache
    lacks (its tip to the verified tip, usually the same new commits) are
    checked and indexed oldest first, :data:`BATCH` per committed transaction,
    the verified ref moving with each batch. Memory: 20 bytes per new commit
    (:class:`~gitmail.core.objects.OidStack`) plus two batches.
    """
    from gitmail.core.objects import OidStack, collect, mailbox_move_problem

    pg = repo.pg
    vref = refs.verified(path)
    old = repo.ref_target(vref)
    new = OidStack()
    vtip: Optional[str] = old
    if old != tip:
        new, merge = collect(pg, tip, old)
        why = mailbox_move_problem(pg, path, new, merge, old)
        if why is not None and old is not None:
            return old, [why], \
                _index_range(repo, member, db, path, rcpt, sender, old, 0, prev, inbox, sent, st, checker, None)
        if why is not None:
            return None, [why], None
        vtip = tip
    assert vtip is not None
    stop = prev["tip"] if prev is not None else None
    count = _index_range(repo, member, db, path, rcpt, sender, vtip, len(new), prev, inbox, sent, st, checker,
                         new if stop == old else None)
    if repo.ref_target(vref) != vtip:  # nothing left to index (the cache was ahead of a lost verified ref)
        with repo.lock():
            repo.set_ref(vref, vtip, repo.ref_target(vref), "gitmail: verified")
    return vtip, [], count


def _index_range(
    repo: "Repo", member: str, db: sqlite3.Connection, path: str, rcpt: str, sender: str, vtip: str,
    fresh_count: int, prev: Optional[sqlite3.Row], inbox: bool, sent: bool, st: Any, checker: Any,
    walked: Any,
) -> int:
    """Index the commits of ``path`` from the cache's tip to ``vtip`` in batches; the newest
    ``fresh_count`` of them are above the verified ref, which moves with each batch.
    ``walked``: those commits already collected (newest first) when they are exactly
    what the cache lacks. Returns the mailbox's number of rows."""
    import gc

    from gitmail.core.objects import collect
    from gitmail.core.store import check_batches

    pg = repo.pg
    stop = prev["tip"] if prev is not None else None
    count = int(prev["count"]) if prev is not None else 0
    if stop == vtip:
        return count
    todo = walked if walked is not None else collect(pg, vtip, stop)[0]
    if stop is not None and len(todo) and parent_or_none(pg, todo[-1]) != stop:
        # cache out of step with the verified ref: rebuild
        _drop_rows(db, path)
        count = 0
    from gitmail.core.private import Opener

    opener = Opener(repo, member, checker.directory.read_body_limit)
    vref = refs.verified(path)
    # Oldest first, BATCH at a time; the next batch is being checked (on the other
    # cores) while this one is indexed.
    def batches() -> Iterator[tuple[int, list[str], str, str]]:
        for hi in range(len(todo), 0, -BATCH):
            lo = max(0, hi - BATCH)
            yield lo, [todo[i] for i in range(hi - 1, lo - 1, -1)], rcpt, sender

    for lo, oids, parts in check_batches(checker, batches()):
        since = max_rowid(db)
        done = 0
        for verdicts in parts:  # indexed as the workers hand them over, all in this batch's transaction
            _index_batch(repo, db, path, rcpt, sender, oids[done:done + len(verdicts)], verdicts, count + done,
                         inbox, sent, opener)
            done += len(verdicts)
        assert done == len(oids)
        count += len(oids)
        batch_tip = oids[-1]
        if lo < fresh_count:  # the batch reaches above the verified ref: move it along
            with repo.lock():
                repo.set_ref(vref, batch_tip, repo.ref_target(vref), "gitmail: verified")
        # resumable: a later ingest continues from this batch's tip
        db.execute("INSERT OR REPLACE INTO refs(path, seen, tip, count, included) VALUES (?,?,?,?,1)",
                   (path, batch_tip, batch_tip, count))
        apply_state(db, st, since=since)
        _checkpoint(db)
        gc.collect(0)  # the collector is paused during an ingest: what cycles this batch made go here
    return count


def _index_batch(
    repo: "Repo", db: sqlite3.Connection, path: str, rcpt: str, sender: str, oids: list[str],
    verdicts: "list[Verdict]", count: int, inbox: bool, sent: bool, opener: Any,
) -> None:
    """Write the rows of checked commits ``oids`` (ordinals from ``count + 1``): part of a batch,
    in its transaction (rows of the batch's earlier parts are rows already)."""
    from gitmail.core.rules import FUTURE_WORDS

    build = _Rows(repo.pg, opener)
    rows: list[list[Any]] = []
    # Message-IDs shown on this part (a copy twice in one push is shown once); earlier
    # parts and batches are already rows, looked up once for the whole part below.
    batch_good: set[str] = set()
    batch_bad: dict[str, list[list[Any]]] = {}  # Message-ID -> rows of this part not good (inbox)
    batch_shown: set[str] = set()  # Message-IDs with an inbox row of this part shown (dup 0)
    shown_good, shown, hidden_bad = _inbox_copies(db, [m.id for m, _ in verdicts if m is not None]) if inbox \
        else (set(), set(), set())
    for i, (oid, (msg, check)) in enumerate(zip(oids, verdicts), start=count + 1):
        msg, plaintext = build.opened(oid, msg, check)
        dup = 0
        if msg is not None and inbox:
            # De-duplication keeps the genuine copy (docs/protocol.md §7): a good copy
            # already shown hides this one; a good one hides earlier copies that are not good.
            if msg.id in batch_good or msg.id in shown_good:
                dup = 1
            elif check.good:
                if msg.id in hidden_bad:  # rows not good, shown until now: hide them
                    hide_bad_copies(db, msg.id)
                    hidden_bad.discard(msg.id)
                for r in batch_bad.pop(msg.id, []):  # by id, not a scan: a part may hold 10,000 rows
                    r[22] = 1
            elif msg.id in batch_shown or msg.id in shown:
                dup = 1  # a second copy that is not good either: shown once
            if check.good and not dup:
                batch_good.add(msg.id)
        rows.append(build.row(path, i, oid, msg, check, rcpt, sender, inbox, sent, dup, plaintext))
        if not check.good and FUTURE_WORDS in check.detail:
            _note_future(db, check.detail)
        if msg is not None and inbox:
            if not dup:
                batch_shown.add(msg.id)  # an inbox row of this id is shown (dup 0)
            if not check.good:
                batch_bad.setdefault(msg.id, []).append(rows[-1])  # a later good copy hides it
    insert_rows(db, ROW_COLUMNS, rows)


class _Rows:
    """Builds the rows of checked commits (:data:`ROW_COLUMNS`) for :func:`_index_batch` and
    :func:`_recheck`, opening good encrypted messages with ``opener``."""

    def __init__(self, pg: Any, opener: Any) -> None:
        from gitmail.core.model import PRIORITY_RANK, canonical_json

        self.pg = pg
        self.opener = opener
        self.rank = PRIORITY_RANK
        self.dump = canonical_json
        self.to_json: dict[tuple[str, ...], str] = {}  # a mailbox's messages mostly share one list of recipients

    def opened(self, oid: str, msg: "Optional[Brief]", check: "Check") -> "tuple[Optional[Brief], Optional[str]]":
        """``msg`` as its row shows it, and the plaintext JSON to keep (or None): a good encrypted
        message is opened (its brief is the inner message's), one that cannot be opened is shown as
        ``(encrypted message)``; anything else is ``msg`` as it is."""
        if msg is None or msg.sealed is None or not check.good:
            return msg, None
        from gitmail.core.objects import load_commit
        from gitmail.core.private import plaintext_json
        from gitmail.core.store import brief

        c = load_commit(self.pg, oid)
        if isinstance(c, str):
            return msg, None
        opened = self.opener.open(self.pg, c, msg.sealed)
        if opened is None:
            return msg._replace(subject="(encrypted message)"), None
        return brief(opened[0]), plaintext_json(*opened) if self.opener.keeps_plaintext else None

    def row(self, path: str, ordinal: int, oid: str, msg: "Optional[Brief]", check: "Check", rcpt: str,
            sender: str, inbox: bool, sent: bool, dup: int, plaintext: Optional[str]) -> list[Any]:
        """The values of :data:`ROW_COLUMNS` for one checked commit (``msg`` None: unreadable)."""
        return [
            path, ordinal, oid,
            msg.id if msg else oid,
            msg.from_ if msg else sender,
            _recipients_json(msg.to if msg else [rcpt], self.to_json),
            msg.date if msg else "",
            msg.subject if msg else "(unreadable message)",
            msg.summary if msg else "",
            msg.priority if msg else "normal",
            self.rank.get(msg.priority if msg else "normal", 2),
            msg.type if msg else "text",
            msg.request_id if msg else None,
            msg.in_reply_to if msg else None,
            msg.thread if msg else None,
            int(msg.require_ack) if msg else 0,
            msg.n_attach if msg else 0,
            msg.attach_size if msg else 0,
            check.status, check.detail, int(inbox), int(sent), dup, plaintext,
            int(msg is not None and msg.encrypted),
            msg.trace_id if msg else None,
            self.dump(msg.payload).decode("utf-8")[:HINT_CHARS]
            if msg is not None and msg.payload is not None else None,
        ]


ROW_COLUMNS = ("path", "ordinal", "oid", "id", "sender", "recipients", "date", "subject", "summary", "priority",
               "prank", "type", "request_id", "in_reply_to", "thread", "require_ack", "n_attach", "attach_size",
               "status", "detail", "inbox", "sent", "dup", "plaintext", "encrypted", "trace_id", "hint")


def insert_rows(db: sqlite3.Connection, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Write ``rows`` (values of ``columns``) into ``msg``, each replacing the row at its
    ``(path, ordinal)``, and keep the tally equal to the rows. Through a temporary table, so the
    rows replaced and the rows written are each counted by one query."""
    cols = ", ".join(columns)
    mine = "rowid IN (SELECT m.rowid FROM msg m JOIN temp.incoming i ON m.path=i.path AND m.ordinal=i.ordinal)"
    with _transaction(db):
        db.execute("CREATE TEMP TABLE IF NOT EXISTS incoming AS SELECT * FROM msg WHERE 0")  # any columns given
        db.execute("DELETE FROM temp.incoming")
        db.executemany(f"INSERT INTO temp.incoming({cols}) VALUES ({','.join('?' * len(columns))})", rows)
        with _counted(db, mine):
            db.execute(f"INSERT OR REPLACE INTO msg({cols}) SELECT {cols} FROM temp.incoming ORDER BY rowid")
        db.execute("DELETE FROM temp.incoming")


def hide_bad_copies(db: sqlite3.Connection, id: str) -> None:
    """Hide (dup 1) the inbox rows of Message-ID ``id`` that are not good: a good copy arrived."""
    where = "id=? AND +inbox=1 AND status!='good'"  # +: by msg_id, never a scan of the inbox
    with _counted(db, where, (id,)):
        db.execute(f"UPDATE msg SET dup=1 WHERE {where}", (id,))


def _recipients_json(to: list[str], memo: dict[tuple[str, ...], str]) -> str:
    """The ``recipients`` column of a row: ``to`` as a JSON array (``memo``: already written ones)."""
    key = tuple(to)
    hit = memo.get(key)
    if hit is None:
        hit = memo[key] = json.dumps(to, ensure_ascii=False)
    return hit


def _inbox_copies(db: sqlite3.Connection, ids: list[str]) -> tuple[set[str], set[str], set[str]]:
    """Of ``ids``, those with an inbox row: good and shown, shown (dup 0), and not good yet shown.
    By Message-ID through its index, 500 ids a query (below SQLite's bound-parameter limit)."""
    good: set[str] = set()
    shown: set[str] = set()
    bad: set[str] = set()
    uniq = list(dict.fromkeys(ids))
    for k in range(0, len(uniq), 500):
        part = uniq[k:k + 500]
        for mid, status, dup in db.execute(
            f"SELECT id, status, dup FROM msg WHERE id IN ({','.join('?' * len(part))}) AND +inbox=1", part
        ):
            if not dup:
                shown.add(mid)
                (good if status == "good" else bad).add(mid)
    return good, shown, bad


def apply_state(db: sqlite3.Connection, st: Any, since: int = 0) -> None:
    """Set the read/archived columns from a :class:`~gitmail.core.model.State`,
    for the rows written after rowid ``since`` (0: every row).

    With ``since``, the work is proportional to the rows written after it (a
    sync's arrivals), not to the mailbox: those rows are read by rowid and their
    flags looked up in the state's ranges (bisection), then updated by rowid.
    """
    if not since:
        with _transaction(db):
            db.execute("UPDATE msg SET read=0, archived=0 WHERE inbox=1 AND (read=1 OR archived=1)")
            for path, mb in st.mailboxes.items():
                for flag in ("read", "archived"):
                    for a, b in getattr(mb, flag):
                        db.execute(f"UPDATE msg SET {flag}=1 WHERE path=? AND ordinal BETWEEN ? AND ?", (path, a, b))
            _recount(db)
        return
    if not st.mailboxes:
        return  # no flag set anywhere: the new rows keep their defaults (unread, not archived)
    from bisect import bisect_right

    spans: dict[tuple[str, str], tuple[list[int], list[int]]] = {}

    def has(path: str, flag: str, ordinal: int) -> bool:
        key = (path, flag)
        if key not in spans:
            mb = st.mailboxes.get(path)
            merged: list[list[int]] = []
            for a, b in sorted(getattr(mb, flag)) if mb is not None else []:
                if merged and a <= merged[-1][1] + 1:
                    merged[-1][1] = max(merged[-1][1], b)
                else:
                    merged.append([a, b])
            spans[key] = ([m[0] for m in merged], [m[1] for m in merged])
        starts, ends = spans[key]
        i = bisect_right(starts, ordinal) - 1
        return i >= 0 and ordinal <= ends[i]

    rows = db.execute("SELECT rowid, path, ordinal, read, archived, inbox FROM msg WHERE rowid > ?", (since,)).fetchall()
    changes = []
    for rid, path, ordinal, read, archived, inbox in rows:
        r, a = int(has(path, "read", ordinal)), int(has(path, "archived", ordinal))
        if not inbox:  # as the full form: a range sets a flag, only inbox rows are cleared
            r, a = max(r, read), max(a, archived)
        if (r, a) != (read, archived):
            changes.append((r, a, rid))
    if changes:
        with _counted(db, "rowid > ?", (since,)):
            db.executemany("UPDATE msg SET read=?, archived=? WHERE rowid=?", changes)


# -- full-text search (gitmail search) ---------------------------------------------------------
#
# An FTS5 table beside ``msg``, filled lazily: :func:`search_pending` lists the rows written
# since the last indexing (by rowid), the caller supplies their text, :func:`search_add`
# stores it under the ``msg`` row's own rowid, and a hit is joined to exactly that row (and
# its Message-ID): the text shown with a row is that row's. Joined by Message-ID alone, a
# hostile copy filed under a genuine message's id lent its subject to the genuine row's
# snippet. A rebuilt ``msg`` table gets new rowids, so everything is indexed again; the
# entries of rows rewritten or dropped are dropped with them (:func:`_unindex_from`).
# ``fts_keyed`` marks an index built this way (an older one is dropped and built again).

_FTS_DDL = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5("
    "id UNINDEXED, subject, body, sender, files, tokenize='unicode61 remove_diacritics 2')"
)


def fts_available() -> bool:
    """Whether this Python's SQLite has FTS5 (Debian's does; some builds do not)."""
    try:
        sqlite3.connect(":memory:").execute("CREATE VIRTUAL TABLE t USING fts5(x)")
    except sqlite3.OperationalError:
        return False
    return True


def search_started(db: sqlite3.Connection) -> bool:
    """Whether the search index has been built (by a first search)."""
    return db.execute("SELECT 1 FROM meta WHERE key='fts_rowid'").fetchone() is not None


def search_pending(db: sqlite3.Connection) -> list[tuple[int, Row]]:
    """``(rowid, row)`` of the member's messages (inbox and sent) not yet in the search index,
    oldest first."""
    if db.execute("SELECT 1 FROM meta WHERE key='fts_keyed'").fetchone() is None:
        with _transaction(db):
            db.execute("DROP TABLE IF EXISTS fts")
            db.execute("DELETE FROM meta WHERE key='fts_rowid'")
            db.execute(_FTS_DDL)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('fts_keyed', '1')")
    db.execute(_FTS_DDL)
    mark = db.execute("SELECT value FROM meta WHERE key='fts_rowid'").fetchone()
    since = int(mark[0]) if mark else 0
    rows = db.execute(
        "SELECT rowid AS rid, * FROM msg WHERE rowid > ? AND (inbox=1 OR sent=1) ORDER BY rowid", (since,)
    ).fetchall()
    return [(int(r["rid"]), Row.of(r)) for r in rows]


def search_add(db: sqlite3.Connection, entries: list[tuple[int, tuple[str, str, str, str, str]]]) -> None:
    """Index ``(rowid, (id, subject, body, sender, files))`` entries of :func:`search_pending` and
    move the high-water mark to the highest of those rowids, in one transaction that takes the
    write lock first (``BEGIN IMMEDIATE``): a sync or another search writing meanwhile waits
    for it instead of failing "database is locked", an entry another process indexed
    meanwhile (at or below the mark it moved) is not indexed twice, and a row written since
    :func:`search_pending` read them stays pending (the mark never passes a row no one indexed)."""
    with _transaction(db):
        mark = db.execute("SELECT value FROM meta WHERE key='fts_rowid'").fetchone()
        done = int(mark[0]) if mark else 0
        db.executemany("INSERT INTO fts(rowid, id, subject, body, sender, files) VALUES (?,?,?,?,?,?)",
                       [(rid, *e) for rid, e in entries if rid > done])
        db.execute("INSERT OR REPLACE INTO meta VALUES ('fts_rowid', ?)",
                   (str(max([done, *(rid for rid, _ in entries)])),))


def search_query(
    db: sqlite3.Connection, match: str, *, sender: Optional[str] = None, since: Optional[str] = None,
    type_: Optional[str] = None, archived: bool = False, limit: int = 20,
) -> list[tuple[Row, str]]:
    """Rows matching the FTS5 expression ``match``, best first (bm25), each with a snippet whose
    hits are wrapped in U+0002 / U+0003 (the caller highlights them). ``archived``: include
    archived mail. Raises :class:`sqlite3.OperationalError` for a malformed expression.

    One row per Message-ID (a message can sit in several mailboxes): its best-ranked copy,
    the inbox copy on a tie. Only the best-ranked hits are joined to ``msg`` and given a
    snippet: a word in every one of 100,000 messages took seconds when every hit was
    (bench/bench_core.py); when the filters leave too few of them, every hit is joined.
    """
    where, args = ["(m.inbox=1 OR m.sent=1)", "m.dup=0"], []
    if not archived:
        where.append("m.archived=0")
    if sender:
        where.append("m.sender=?")
        args.append(sender)
    if since:
        where.append("m.date>=?")
        args.append(since)
    if type_:
        where.append("m.type=?")
        args.append(type_)
    cond = " AND ".join(where)
    # bm25() only works in a plain FTS query: rank there, then join. The first pass ranks every
    # hit but joins only the best few; an hit outside them ranks at best equal to the last one.
    k = max(4 * limit, 100)
    top = db.execute("SELECT rowid, bm25(fts) FROM fts WHERE fts MATCH ? ORDER BY 2 LIMIT ?", (match, k)).fetchall()
    picked = _best_copies(db, [(r[0], r[1]) for r in top], cond, args, limit)
    if len(picked) < limit and len(top) == k:
        rows = db.execute(
            "WITH h AS MATERIALIZED (SELECT rowid AS fid, id, bm25(fts) AS score FROM fts WHERE fts MATCH ?)"
            " SELECT h.fid, h.score, m.rowid AS mid, m.id, m.inbox FROM h JOIN msg m ON m.rowid = h.fid AND m.id = h.id"
            " WHERE " + cond,
            (match, *args)).fetchall()
        picked = _pick(rows, limit)
    if not picked:
        return []
    snips = dict(db.execute(
        "SELECT rowid, snippet(fts, -1, char(2), char(3), '…', 12) FROM fts WHERE fts MATCH ? AND rowid IN (%s)"
        % ",".join("?" * len(picked)), (match, *(fid for fid, _ in picked))).fetchall())
    full = {r["rowid"]: Row.of(r) for r in db.execute(
        "SELECT rowid, * FROM msg WHERE rowid IN (%s)" % ",".join("?" * len(picked)), [mid for _, mid in picked])}
    hits = [(full[mid], str(snips.get(fid, ""))) for fid, mid in picked]
    _with_acks(db, [h[0] for h in hits])
    return hits


def _best_copies(db: sqlite3.Connection, ranked: list[tuple[int, float]], cond: str, args: list[Any],
                 limit: int) -> list[tuple[int, int]]:
    """:func:`_pick` over the ``(fts rowid, score)`` hits given, joined to ``msg`` by Message-ID."""
    if not ranked:
        return []
    score = dict(ranked)
    rows = db.execute(
        "SELECT f.rowid AS fid, m.rowid AS mid, m.id, m.inbox FROM fts f"
        " JOIN msg m ON m.rowid = f.rowid AND m.id = f.id"
        " WHERE f.rowid IN (%s) AND %s" % (",".join("?" * len(ranked)), cond), (*score, *args)).fetchall()
    return _pick([(r[0], score[r[0]], r[1], r[2], r[3]) for r in rows], limit)


def _pick(rows: "list[Any]", limit: int) -> list[tuple[int, int]]:
    """``(fts rowid, msg rowid)`` of the best ``limit`` Message-IDs among ``(fts rowid, score,
    msg rowid, id, inbox)`` rows: each id's lowest score (bm25: lower is better), on a tie its
    inbox copy; best first."""
    best: dict[str, tuple[float, int, int, int]] = {}
    for fid, sc, mid, mid_id, inbox in rows:
        key = (sc, -int(inbox), fid, mid)
        if mid_id not in best or key < best[mid_id]:
            best[mid_id] = key
    return [(fid, mid) for _, _, fid, mid in sorted(best.values())[:limit]]


def export_rows(db: sqlite3.Connection, *, include_all: bool, since: Optional[str]) -> list[Row]:
    """The rows ``gitmail export`` writes, oldest first, one per Message-ID: the inbox
    (``include_all``: archived and sent mail too), from ``since`` on."""
    where = ["(inbox=1 OR sent=1)" if include_all else "inbox=1", "dup=0"]
    if not include_all:
        where.append("archived=0")
    args: list[Any] = []
    if since:
        where.append("date>=?")
        args.append(since)
    rows = db.execute(*_once(" AND ".join(where), "date, rowid", args)).fetchall()
    return [Row.of(r) for r in rows]


# -- queries of the member's view (every SQL statement of gitmail lives in this module) --------


def _with_acks(db: sqlite3.Connection, rows: list[Row]) -> list[Row]:
    """``rows`` with ``ack_requested`` set on each verified inbox message that asks for a
    receipt the member has not sent (a sent ``ack`` whose in_reply_to is its id)."""
    asking = [r for r in rows if r.require_ack and r.inbox and r.status == "good" and r.type != "ack"]
    acked: set[str] = set()
    for i in range(0, len(asking), 500):  # below SQLite's bound-parameter limit
        ids = [r.id for r in asking[i:i + 500]]
        q = f"SELECT in_reply_to FROM msg WHERE sent=1 AND type='ack' AND in_reply_to IN ({','.join('?' * len(ids))})"
        acked.update(a[0] for a in db.execute(q, ids))
    for r in asking:
        r.ack_requested = r.id not in acked
    return answers(db, rows)


def answers(db: sqlite3.Connection, rows: list[Row]) -> list[Row]:
    """``rows`` with ``answers_request`` set on each verified response in the inbox (a type of
    :data:`gitmail.core.msgtypes.RESPONSE_OF` with a ``request_id``), from the requests this
    member sent (the rows of their sent mail in this clone): True when a request of the
    matching type with that ``request_id`` went to the response's sender; False when such
    requests exist but none went to it (another member answering a request they never got,
    docs/protocol.md §5: any member could copy a request_id from a commit's clear trailer and
    "approve" a plan someone else was asked to); None when this clone knows no such request
    (a sync fetches the responder's mailbox from the member first when it has no copy of it:
    :func:`unknown_requests`)."""
    from gitmail.core.msgtypes import RESPONSE_OF

    asking = [r for r in rows if r.inbox and r.status == "good" and r.request_id and r.type in RESPONSE_OF]
    for r in asking:
        sent = [json.loads(x[0]) for x in db.execute(
            "SELECT recipients FROM msg WHERE sent=1 AND status='good' AND type=? AND request_id=?",
            (RESPONSE_OF[r.type], r.request_id))]
        r.answers_request = None if not sent else any(r.sender in to for to in sent)
    return rows


def unknown_requests(db: sqlite3.Connection, since: int) -> set[str]:
    """The senders of the verified responses in the inbox indexed after rowid ``since`` whose
    request this clone knows nothing of (no sent request of the matching type with that
    ``request_id``: :func:`answers` would say None): the member may have sent it from another
    clone, and its copy is on the org repo's ``mail/<sender>/<member>``. The rows :func:`answers`
    leaves at None, by that function itself."""
    from gitmail.core.msgtypes import RESPONSE_OF

    rows = [Row.of(r) for r in db.execute(
        "SELECT * FROM msg WHERE rowid > ? AND +inbox=1 AND +status='good' AND request_id IS NOT NULL", (since,))]
    return {r.sender for r in answers(db, rows) if r.type in RESPONSE_OF and r.answers_request is None}


def max_rowid(db: sqlite3.Connection) -> int:
    """The newest row's rowid (0 when empty): rows indexed later have a greater one."""
    return int(db.execute("SELECT COALESCE(MAX(rowid), 0) FROM msg").fetchone()[0])


NEW_PAGE = 500  # rows per page of a sync's new mail: what one holds at a time, whatever arrived


def new_inbox_count(db: sqlite3.Connection, since: int, upto: int) -> int:
    """How many inbox messages (one per Message-ID shown) have a rowid in ``(since, upto]``."""
    return int(db.execute(
        "SELECT COUNT(*) FROM msg WHERE rowid > ? AND rowid <= ? AND +inbox=1 AND +dup=0", (since, upto)  # rowid range
    ).fetchone()[0])


def new_inbox_pages(db: sqlite3.Connection, since: int, upto: int) -> Iterator[list[Row]]:
    """The inbox messages with a rowid in ``(since, upto]`` (what a sync indexed), most urgent
    first, then oldest first, in lists of at most :data:`NEW_PAGE` rows.

    Only the sort keys of the whole range are sorted (by SQLite, which spills to a
    temporary file beyond its page cache); the rows are read a page at a time, so
    memory does not grow with what arrived (a first sync of a million messages)."""
    keys = db.execute(
        "SELECT rowid FROM msg WHERE rowid > ? AND rowid <= ? AND +inbox=1 AND +dup=0"  # rowid range
        " ORDER BY prank, date, rowid", (since, upto)
    )
    while True:
        order = [k[0] for k in keys.fetchmany(NEW_PAGE)]
        if not order:
            return
        shared: dict[Any, Any] = {}  # equal values of one page kept once
        got = {r[0]: Row.of(r, shared) for r in db.execute(
            f"SELECT rowid, * FROM msg WHERE rowid IN ({','.join('?' * len(order))})", order)}
        yield _with_acks(db, [got[k] for k in order if k in got])


def new_unread_pages(db: sqlite3.Connection, since: int) -> Iterator[list[Row]]:
    """Unread, non-archived inbox messages indexed after rowid ``since``, in rowid order, in lists
    of at most :data:`NEW_PAGE` rows (what a new-mail notice counts: rows of every verdict, the
    caller splits them; it keeps counts, never every row)."""
    cur = db.execute(
        f"SELECT * FROM msg WHERE rowid > ? AND +inbox=1 AND +dup=0 AND +{UNREAD} AND +archived=0", (since,)
    )
    while True:
        rows = cur.fetchmany(NEW_PAGE)
        if not rows:
            return
        yield [Row.of(r) for r in rows]


def ordinal_of(db: sqlite3.Connection, path: str, oid: str) -> Optional[int]:
    """The position of commit ``oid`` on mailbox ``path`` (0 = oldest), or None when not indexed there."""
    hit = db.execute("SELECT ordinal FROM msg WHERE path=? AND oid=?", (path, oid)).fetchone()
    return int(hit[0]) if hit else None


def scan_counts(db: sqlite3.Connection) -> tuple[int, int, int]:
    """``(shown, unread, urgent unread)`` of the inbox by a scan of every row: the definition the
    tally (:func:`inbox_counts`, :func:`unread_counts`) is kept equal to. Archived messages are
    left out; acks are never unread."""
    total, unread, urgent = db.execute(_tally_sums(SHOWN)).fetchone()
    return int(total), int(unread), int(urgent)


def _tally(db: sqlite3.Connection) -> tuple[int, int, int]:
    total, unread, urgent = db.execute("SELECT total, unread, urgent FROM tally").fetchone()
    return int(total), int(unread), int(urgent)


def inbox_counts(db: sqlite3.Connection) -> tuple[int, int]:
    """``(unread, total)`` of the inbox, archived messages left out (acks are never unread).
    From the tally: constant time, whatever the inbox holds."""
    total, unread, _ = _tally(db)
    return unread, total


def unread_counts(db: sqlite3.Connection) -> tuple[int, int]:
    """``(unread, urgent unread)`` of the inbox, archived messages left out (acks are never unread).
    From the tally: constant time."""
    _, unread, urgent = _tally(db)
    return unread, urgent


def inbox_rows(db: sqlite3.Connection, *, archived: bool = False, include_archived: bool = False,
               unread_only: bool = False, sender: Optional[str] = None, limit: int = 30,
               priority: Optional[str] = None, type_: Optional[str] = None, since: Optional[str] = None,
               by_priority: bool = False) -> list[Row]:
    """The inbox newest first (``by_priority``: most urgent first, then newest): not archived
    (``archived``: only archived; ``include_archived``: both), optionally only one sender,
    priority, type, or what was sent at ``since`` or later (the cache's date form)."""
    where, args = ["inbox=1", "dup=0"], []
    for column, value in (("priority", priority), ("type", type_)):
        if value is not None:
            where.append(f"{column}=?")
            args.append(value)
    if since is not None:
        where.append("date>=?")
        args.append(since)
    if archived:
        where.append("archived=1")
    elif not include_archived:
        where.append("archived=0")
    if unread_only:
        where.append(UNREAD)
    if sender is not None:
        where.append("sender=?")
        args.append(sender)
    order = "prank, date DESC" if by_priority else "date DESC"
    rows = db.execute(f"SELECT * FROM msg WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?",
                      (*args, limit)).fetchall()
    return _with_acks(db, [Row.of(r) for r in rows])


# Which copy of a Message-ID a view shows when several of the member's rows carry it (a
# message sits in several mailboxes; a hostile member can file a copy claiming its id):
# a good one first (docs/protocol.md §7, "One message, shown once"), then the one
# de-duplication shows, then an inbox copy, then the first indexed.
BEST_COPY = "status != 'good', dup, inbox DESC, rowid"


def _once(where: str, order: str, args: Sequence[Any] = (), limit: Optional[int] = None) -> tuple[str, list[Any]]:
    """SQL (and its arguments) for the rows of ``msg`` matching ``where``, one per Message-ID
    (its :data:`BEST_COPY`), ordered by ``order``."""
    sql = (f"SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY id ORDER BY {BEST_COPY}) AS n_copy"
           f" FROM msg WHERE {where}) WHERE n_copy=1 ORDER BY {order}")
    if limit is None:
        return sql, list(args)
    return sql + " LIMIT ?", [*args, limit]


def sent_rows(db: sqlite3.Connection, limit: int) -> list[Row]:
    """Messages the member sent, newest first, once each."""
    return [Row.of(r) for r in db.execute(*_once("sent=1", "date DESC", limit=limit))]


def unread_rows(db: sqlite3.Connection) -> list[Row]:
    """Every unread inbox message (not archived; acks are never unread), most urgent first, then oldest first."""
    rows = db.execute(f"SELECT * FROM msg WHERE {SHOWN} AND {UNREAD} ORDER BY prank, date")
    return _with_acks(db, [Row.of(r) for r in rows])


def rows_by_prefix(db: sqlite3.Connection, prefix: str) -> list[Row]:
    """Rows of the member's view whose Message-ID starts with the hex ``prefix``, each id's
    :data:`BEST_COPY` before its other copies."""
    rows = db.execute(
        f"SELECT * FROM msg WHERE id >= ? AND id < ? AND (inbox=1 OR sent=1) ORDER BY {BEST_COPY}",
        (prefix, prefix + "g"),  # "g" sorts just above every hex continuation
    ).fetchall()
    return _with_acks(db, [Row.of(r) for r in rows])


def thread_rows(db: sqlite3.Connection, root: str) -> list[Row]:
    """Every message of the thread whose root is ``root``, once each (:data:`BEST_COPY`), oldest first."""
    rows = db.execute(*_once("(id=? OR thread=?) AND (inbox=1 OR sent=1)", "date, rowid", (root, root))).fetchall()
    return _with_acks(db, [Row.of(r) for r in rows])


def trace_rows(db: sqlite3.Connection, trace_id: Optional[str], root: Optional[str] = None) -> list[Row]:
    """Every message of the member's view (inbox, groups, broadcast, sent; archived too) whose
    ``trace_id`` is ``trace_id``, or (``root``) that belongs to the thread rooted at ``root``;
    once each (:data:`BEST_COPY`), oldest first."""
    rows = db.execute(*_once("(trace_id=? OR id=? OR thread=?) AND (inbox=1 OR sent=1)", "date, rowid",
                             (trace_id, root, root))).fetchall()
    return _with_acks(db, [Row.of(r) for r in rows])


def has_trace(db: sqlite3.Connection, trace_id: str) -> bool:
    """Whether a message of the member's view carries ``trace_id``."""
    return db.execute("SELECT 1 FROM msg WHERE trace_id=? AND (inbox=1 OR sent=1) LIMIT 1",
                      (trace_id,)).fetchone() is not None


FLAGS = ("read", "archived")


def flag_positions(db: sqlite3.Connection, ids: list[str], flag: str, value: bool) -> tuple[dict[str, list[int]], set[str]]:
    """Where the inbox copies of ``ids`` sit (mailbox path -> ordinals), and which of ``ids``
    do not have ``flag`` == ``value`` yet."""
    assert flag in FLAGS
    changes: dict[str, list[int]] = {}
    changed = set()
    for mid in ids:
        for r in db.execute(f"SELECT path, ordinal, {flag} AS f FROM msg WHERE id=? AND +inbox=1", (mid,)):
            changes.setdefault(r["path"], []).append(r["ordinal"])
            if bool(r["f"]) != value:
                changed.add(mid)
    return changes, changed


def set_flag(db: sqlite3.Connection, repo: "Repo", member: str, changes: dict[str, list[int]], flag: str,
             value: bool, state_blob: str) -> None:
    """Record flags just written to the state ref (``state_blob``), keeping the fast path valid."""
    assert flag in FLAGS
    key = json.dumps(sorted(watched_refs(repo, member).items()))
    with _transaction(db):  # the flags and the state they came from, together
        set_flag_rows(db, changes, flag, value)
        db.execute("INSERT OR REPLACE INTO meta VALUES ('watched', ?)", (key,))
        db.execute("INSERT OR REPLACE INTO meta VALUES ('state', ?)", (state_blob,))


def set_flag_rows(db: sqlite3.Connection, changes: dict[str, list[int]], flag: str, value: bool) -> None:
    """Set ``flag`` to ``value`` on the rows at ``changes`` (mailbox path -> ordinals), keeping the
    tally (one transaction, or the caller's)."""
    assert flag in FLAGS
    with _transaction(db):
        for path, ords in changes.items():
            for k in range(0, len(ords), 500):  # below SQLite's bound-parameter limit
                part = ords[k:k + 500]
                with _counted(db, f"path=? AND ordinal IN ({','.join('?' * len(part))})", (path, *part)):
                    db.executemany(f"UPDATE msg SET {flag}=? WHERE path=? AND ordinal=?",
                                   [(int(value), path, o) for o in part])


def inbox_copies(db: sqlite3.Connection) -> list[tuple[str, int, str]]:
    """``(mailbox path, ordinal, Message-ID)`` of every inbox copy (the shared state's map, docs/protocol.md §10)."""
    return [(str(r[0]), int(r[1]), str(r[2])) for r in db.execute("SELECT path, ordinal, id FROM msg WHERE inbox=1")]


def has_inbox_request(db: sqlite3.Connection, request_type: str, request_id: str, senders: list[str]) -> bool:
    """Whether the inbox holds a good ``request_type`` message with this request_id from one
    of ``senders`` (a response's recipients but its sender: docs/protocol.md §5, the rule
    the guard checks with :func:`gitmail.guard.check.unasked`)."""
    if not senders:
        return False
    marks = ",".join("?" * len(senders))
    row = db.execute(f"SELECT 1 FROM msg WHERE inbox=1 AND status='good' AND type=? AND request_id=? "
                     f"AND sender IN ({marks}) LIMIT 1", (request_type, request_id, *senders)).fetchone()
    return row is not None


def sent_ack_of(db: sqlite3.Connection, msg_id: str) -> Optional[str]:
    """The id of an ack the member sent for ``msg_id``, if any."""
    row = db.execute("SELECT id FROM msg WHERE sent=1 AND type='ack' AND in_reply_to=? LIMIT 1", (msg_id,)).fetchone()
    return str(row[0]) if row is not None else None


def ack_requests(db: sqlite3.Connection) -> list[Row]:
    """Messages the member sent asking for a receipt, once each, oldest first."""
    return [Row.of(r) for r in db.execute(*_once("sent=1 AND require_ack=1", "date, rowid"))]


def acks_received(db: sqlite3.Connection) -> dict[str, set[str]]:
    """Verified acks in the inbox: acknowledged Message-ID -> who acknowledged it."""
    acks: dict[str, set[str]] = {}
    for a in db.execute("SELECT in_reply_to, sender FROM msg WHERE inbox=1 AND type='ack' AND status='good'"):
        acks.setdefault(a[0], set()).add(a[1])
    return acks


def verdicts(db: sqlite3.Connection) -> tuple[dict[str, tuple[int, int]], list[tuple[str, str, str, str, str]]]:
    """The verdicts recorded when each indexed commit arrived (``gitmail verify``): per mailbox
    path ``(messages, good)``, and ``(path, commit id, Message-ID or "", status, detail)`` of each
    commit that is not good, by path, newest first. One scan of the rows."""
    counts = {str(r[0]): (int(r[1]), int(r[2] or 0))
              for r in db.execute("SELECT path, COUNT(*), SUM(status='good') FROM msg GROUP BY path")}
    bad = [(str(r[0]), str(r[1]), "" if r[2] == r[1] else str(r[2]), str(r[3]), str(r[4]))
           for r in db.execute("SELECT path, oid, id, status, detail FROM msg WHERE status != 'good'"
                               " ORDER BY path, ordinal DESC")]
    return counts, bad


# -- the guard's index of requests (gitmail.guard.requests: which format, and why) -------------


def open_request_index(file: "Path") -> Optional[sqlite3.Connection]:
    """The guard's request index at ``file`` (tables made if need be), or None where SQLite
    cannot use it."""
    try:
        db = sqlite3.connect(file, timeout=5, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS walked(path TEXT PRIMARY KEY, tip TEXT NOT NULL)")
        db.execute("CREATE TABLE IF NOT EXISTS req(path TEXT NOT NULL, type TEXT NOT NULL, rid TEXT NOT NULL, "
                   "oid TEXT NOT NULL, UNIQUE(path, type, rid, oid))")
        return db
    except (OSError, sqlite3.Error):
        return None


def request_index_tip(db: sqlite3.Connection, path: str) -> Optional[str]:
    """The tip of mailbox ``path`` the index was read up to (None: none, or unreadable)."""
    try:
        row = db.execute("SELECT tip FROM walked WHERE path=?", (path,)).fetchone()
    except sqlite3.Error:
        return None
    return str(row[0]) if row else None


def request_index_oids(db: sqlite3.Connection, path: str, typ: str, rid: str) -> list[str]:
    """Commits of ``path`` the index names for request ``(typ, rid)``, newest first. Raises
    ``sqlite3.Error``."""
    return [str(r[0]) for r in db.execute("SELECT oid FROM req WHERE path=? AND type=? AND rid=? ORDER BY rowid DESC",
                                          (path, typ, rid))]


def request_index_save(db: sqlite3.Connection, path: str, stored: Optional[str], replace: bool, tip: str,
                       rows: list[tuple[str, str, str]]) -> None:
    """Add ``rows`` (``(type, rid, oid)``, oldest first) to ``path``'s entries (``replace``:
    instead of them) and record ``tip`` as read up to, in one transaction, unless the recorded
    tip is no longer ``stored`` (another push moved it). Raises ``sqlite3.Error``."""
    with _transaction(db):
        if request_index_tip(db, path) == stored:
            if replace:
                db.execute("DELETE FROM req WHERE path=?", (path,))
            db.executemany("INSERT OR IGNORE INTO req(path, type, rid, oid) VALUES (?,?,?,?)",
                           [(path, t, r, oid) for t, r, oid in rows])
            db.execute("INSERT OR REPLACE INTO walked(path, tip) VALUES (?,?)", (path, tip))
