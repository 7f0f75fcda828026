"""Full-text search over the member's mailbox (``gitmail search``, MCP ``search_messages``).

The index is an SQLite FTS5 table in the member's local cache
(:mod:`gitmail.core.cache`): subject, body, sender and attachment names of
every message in their view (inbox and sent), kept up to date by ``sync`` and
by every search, rebuilt from the mailbox when the cache is deleted. Encrypted
mail is indexed as the cache already holds it: subjects always, bodies and
attachment names only where the cache may keep decrypted content (a key
without a passphrase; docs/protocol.md §11). Part of the library API
(:mod:`gitmail.api`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Optional

from gitmail.api.session import RepoLike, Session, check_limit, session
from gitmail.core import cache
from gitmail.errors import GitmailError, UsageError

if TYPE_CHECKING:
    from gitmail.api.results import SearchRow

HIT_START, HIT_END = "\x02", "\x03"  # around each match in SearchHit.snippet
_TERM = re.compile(r"\S+")


@dataclass
class SearchHit:
    row: cache.Row
    snippet: str  # context of the best match; matches wrapped in HIT_START / HIT_END

    def model(self) -> "SearchRow":
        """The JSON shape of one hit (docs/json.md, ``SearchRow``): the snippet on one line, matches in ``**``."""
        from gitmail.api.results import SearchRow, row_fields
        from gitmail.api.views import snippet_text

        return SearchRow.model_validate({**row_fields(self.row), "snippet": snippet_text(self.snippet)})


def fts_expression(query: str) -> str:
    """The user's words as an FTS5 expression: every word must match (AND), each taken
    literally (quoted, so ``-``, ``:`` or ``"`` are text, not syntax); a trailing ``*``
    matches a prefix. Raises :class:`UsageError` for an empty query."""
    terms = []
    for t in _TERM.findall("".join(ch for ch in query if ch.isprintable() or ch.isspace())):
        prefix = t.endswith("*") and len(t) > 1
        word = t[:-1] if prefix else t
        terms.append('"' + word.replace('"', '""') + '"' + ("*" if prefix else ""))
    if not terms:
        raise UsageError("empty search query")
    return " ".join(terms)


def since_date(value: Optional[str]) -> Optional[str]:
    """An ISO 8601 date or date-time (UTC unless it says otherwise) as the cache's date form;
    None for None. Raises :class:`UsageError` for anything else, an empty value included
    (``--since ''`` was taken as no bound)."""
    if value is None:
        return None
    try:
        d = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--since {value!r}: expected a date such as 2026-11-29 or 2026-11-29T14:00") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return d.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def update_index(s: Session, started_only: bool = False) -> int:
    """Index every message of ``s.me``'s view written since the last update; returns how many.

    ``started_only``: only if the member has searched before (``sync`` keeps an index current
    without making every member who never searches pay for one).
    """
    if started_only and not cache.search_started(s.db):
        return 0
    if not cache.fts_available():
        return 0
    pending = cache.search_pending(s.db)
    if not pending:
        return 0
    entries = []
    for rid, r in pending:
        body, files = _text(s, r)
        entries.append((rid, (r.id, r.subject, body, r.sender, files)))
    cache.search_add(s.db, entries)
    return len(entries)


def _text(s: Session, row: cache.Row) -> tuple[str, str]:
    """``(body, attachment names)`` of a message as this member may index them."""
    if row.status == "malformed":
        return "", ""
    if row.plaintext:
        from gitmail.core.model import Sealed

        inner = Sealed.model_validate_json(row.plaintext)
        return inner.body, " ".join(a.name for a in inner.attachments)
    if row.encrypted:
        return "", ""  # not opened here, or the cache may not keep its content
    got = _stored_text(s, row)
    if got is not None:
        return got
    from gitmail.core.objects import commit
    from gitmail.core.store import read_message

    try:
        msg = read_message(s.repo.pg, commit(s.repo.pg, row.oid))
    except GitmailError:
        return "", ""
    return msg.body, " ".join(a.name for a in msg.attachments)


def _stored_text(s: Session, row: cache.Row) -> Optional[tuple[str, str]]:
    """Body and attachment names straight from the stored ``message.json`` of a message the
    cache has already read (and judged: ``row.status``), or None when that blob is not the
    plain shape (then the full reader decides). A JSON parse, not the model: indexing
    100,000 messages for a first search took 36 s through the model, ten times this."""
    import orjson
    import pygit2

    from gitmail.core.objects import blob_data, commit
    from gitmail.core.store import message_blob
    from gitmail.errors import GitmailError

    try:
        d = orjson.loads(blob_data(s.repo.pg, message_blob(s.repo.pg, commit(s.repo.pg, row.oid))))
    except (KeyError, TypeError, ValueError, pygit2.GitError, GitmailError):
        return None
    if not isinstance(d, dict) or d.get("id") != row.id:
        return None
    body, atts = d.get("body", ""), d.get("attachments", [])
    if not isinstance(body, str) or not isinstance(atts, list):
        return None
    names = [a.get("name") if isinstance(a, dict) else None for a in atts]
    if not all(isinstance(n, str) for n in names):
        return None
    return body, " ".join(str(n) for n in names)


def search(
    repo: RepoLike,
    query: str,
    *,
    as_: Optional[str] = None,
    from_: Optional[str] = None,
    since: Optional[str] = None,
    type_: Optional[str] = None,
    all_: bool = False,
    limit: int = 20,
) -> list[SearchHit]:
    """Messages of the member's view (inbox and sent; ``all_``: archived too) matching every
    word of ``query`` in subject, body, sender or attachment names, best match first.

    ``from_``: only this sender; ``since``: ISO date or date-time; ``type_``: message type.
    Raises :class:`UsageError` (empty query, bad date, limit < 1) and
    :class:`GitmailError` when this Python's SQLite lacks FTS5.
    """
    check_limit(limit)
    if not cache.fts_available():
        raise GitmailError("full-text search needs SQLite with FTS5, which this Python's sqlite3 lacks")
    expr = fts_expression(query)
    s = session(repo, as_)
    s.refresh()
    update_index(s)
    sender = None
    if from_:
        from gitmail.core.address import normalize

        sender = normalize(from_)
    hits = cache.search_query(s.db, expr, sender=sender, since=since_date(since), type_=type_, archived=all_,
                              limit=limit)
    return [SearchHit(row, snip) for row, snip in hits]
