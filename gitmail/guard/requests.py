"""The guard's index of requests, so that a response is checked in time that grows with
what arrived since the last push, not with the length of the asking mailbox
(docs/protocol.md §5; docs/sync.md, "The guard").

The guard refuses a response that answers no request one of its recipients sent its
sender (:func:`gitmail.guard.check.unasked`). Found by walking the asking mailbox
newest first, that took about 8 µs a commit for every response whose request is
old or never was: a response to a made-up ``request_id`` against a mailbox of a
million messages cost the server 8 s, in a push it then refused.

Kept in the org repo beside the directory ledger, ``<git dir>/gitmail/requests.sqlite``:

* ``walked(path, tip)``: the tip of mailbox ``path`` the rows below were read up to;
* ``req(path, type, rid, oid)``: each commit on that tip's first-parent line whose
  trailer paragraph (:func:`request_of`) names a request type and a ``Request-Id``.

Only commits the server already holds (at or below the pair's tip before this push)
are written there; the rest of a push is indexed in memory for that push alone, since
a refused push's objects are thrown away. A row only names a candidate: the guard
checks it in full before it counts, so the file can make a check slower or, were it
to lose rows, refuse a response, but never accept one. Each ``walked`` tip must be on
the line being read, else that path's rows are rebuilt. Any SQLite error (a read-only
repo, a lock held too long) falls back to reading the line in memory.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from gitmail.core import cache
from gitmail.core.msgtypes import REQUEST_TYPES

if TYPE_CHECKING:
    import pygit2

FILE = "requests.sqlite"
_TRAILER = re.compile(rb"^(Type|Request-Id): ([^\n]*)$", re.M)


def request_of(raw: bytes) -> Optional[tuple[str, str]]:
    """``(type, request id)`` a raw commit object names as a request, or None.

    Read from the last paragraph of the commit (after its last blank line): in a good
    message commit that is the trailer block (docs/protocol.md §6), which holds one
    ``Type:`` line and, for a request, one ``Request-Id:`` line. The first of each there
    is taken; lines of the same form higher up (in a body) are not trailers. A type that
    is not a request type, or bytes that are not UTF-8, give None."""
    last = raw.rsplit(b"\n\n", 1)[-1]
    typ: Optional[bytes] = None
    rid: Optional[bytes] = None
    for m in _TRAILER.finditer(last):
        if m.group(1) == b"Type":
            typ = typ if typ is not None else m.group(2)
        elif rid is None:
            rid = m.group(2)
        if typ is not None and rid is not None:
            break
    if typ is None or rid is None:
        return None
    try:
        t, r = typ.decode(), rid.decode()
    except UnicodeDecodeError:
        return None
    return (t, r) if t in REQUEST_TYPES else None


class Requests:
    """Candidates for ``(path, type, request id)`` over one push (``pg``: the quarantined repo).

    ``accepted(path)`` gives the pair's tip on the server before this push (None: none),
    which bounds what may be written to the file."""

    def __init__(self, pg: "pygit2.Repository", accepted: "Callable[[str], Optional[str]]") -> None:
        self.pg = pg
        self.accepted = accepted
        # (path, tip) -> (requests read from the line, newest first; whether the file holds the rest)
        self._lines: dict[tuple[str, str], tuple[dict[tuple[str, str], list[str]], bool]] = {}
        self._db: Optional[sqlite3.Connection] = None
        self._opened = False

    def candidates(self, path: str, tip: str, typ: str, rid: str) -> list[str]:
        """Commit ids on ``path``'s first-parent line from ``tip`` that name request
        ``(typ, rid)`` in their trailers, newest first (each to be checked in full)."""
        key = (path, tip)
        if key not in self._lines:
            self._lines[key] = self._read(path, tip)
        read, rest_in_file = self._lines[key]
        out = list(read.get((typ, rid), []))
        if rest_in_file and self._db is not None:
            try:
                out += cache.request_index_oids(self._db, path, typ, rid)
            except sqlite3.Error:  # the rest cannot be read from the file: read the line whole
                self._lines[key] = self._read(path, tip, use_file=False)
                return list(self._lines[key][0].get((typ, rid), []))
        return list(dict.fromkeys(out))  # rows this push wrote are also in what it read

    def _read(self, path: str, tip: str,
              use_file: bool = True) -> tuple[dict[tuple[str, str], list[str]], bool]:
        """Walk ``path``'s line from ``tip`` down to the tip the file was read up to (or the root)."""
        from gitmail.core.objects import first_parent_line

        db = self._conn() if use_file else None
        stored = cache.request_index_tip(db, path) if db is not None else None
        base = self.accepted(path)
        found: list[tuple[str, tuple[str, str]]] = []  # newest first
        kept: list[tuple[str, tuple[str, str]]] = []  # those on the server already (at or below base)
        on_server = False
        met_stored = False
        try:
            for oid, _ in first_parent_line(self.pg, tip):
                if stored is not None and oid == stored:
                    met_stored = True
                    break
                on_server = on_server or (base is not None and oid == base)
                try:
                    raw = self.pg.read(oid)[1]
                except (KeyError, ValueError):
                    break
                req = request_of(raw)
                if req is not None:
                    found.append((oid, req))
                    if on_server:
                        kept.append((oid, req))
        except KeyError:  # the line goes on below a missing object: nothing further to read
            pass
        read: dict[tuple[str, str], list[str]] = {}
        for oid, k in found:
            read.setdefault(k, []).append(oid)
        if db is not None and on_server and base is not None and base != stored:
            self._save(db, path, stored, met_stored, base, kept)
        return read, met_stored

    def _save(self, db: sqlite3.Connection, path: str, stored: Optional[str], met_stored: bool, base: str,
              kept: list[tuple[str, tuple[str, str]]]) -> None:
        """Record ``kept`` (newest first) and ``base`` as the tip read up to: on top of what
        the file held when the line met ``stored``, else instead of it. Nothing is written
        when another push moved the path's entry meanwhile (its entry is as good as ours)."""
        try:
            cache.request_index_save(db, path, stored, not met_stored, base,
                                     [(t, r, oid) for oid, (t, r) in reversed(kept)])
        except sqlite3.Error:
            pass

    def _conn(self) -> Optional[sqlite3.Connection]:
        if not self._opened:
            self._opened = True
            self._db = open_index(Path(self.pg.path) / "gitmail" / FILE)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def open_index(file: Path) -> Optional[sqlite3.Connection]:
    """The index file, created if need be (private), or None where it cannot be used."""
    try:
        file.parent.mkdir(mode=0o700, exist_ok=True)
    except OSError:
        return None
    return cache.open_request_index(file)
