"""What every front-end shows of a message: short ids, ages, sender labels, the JSON row.

The CLI, the MCP server, the git hooks' notice and the Claude Code hooks all
render messages through these, so a message looks the same everywhere
(docs/json.md is the JSON contract).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Optional

from gitmail.api.session import SHORT_ID
from gitmail.core.cache import Row

if TYPE_CHECKING:
    from gitmail.core.attachments import Saved

SHORT = SHORT_ID  # hex digits of a Message-ID shown in listings
BAD_LABEL = {
    "unsigned": "UNSIGNED",
    "bad-signature": "FORGED",
    "unknown-sender": "FORGED",
    "wrong-signer": "FORGED",
    "malformed": "MALFORMED",
    "misfiled": "MISFILED",
}


def ago(date: str, now: Optional[datetime] = None) -> str:
    """``2 min ago`` style age of an RFC 3339 UTC date."""
    from gitmail.core.dates import parse_date

    d = parse_date(date)
    if d is None:  # never raise: a bad date must not silence a listing or a hook
        return "?"
    secs = int(((now or datetime.now(timezone.utc)) - d).total_seconds())
    if secs < 60:
        return "just now"
    for unit, n in (("day", 86400), ("h", 3600), ("min", 60)):
        if secs >= n:
            v = secs // n
            return f"{v} {unit}{'s' if unit == 'day' and v > 1 else ''} ago"
    return "?"


def sender_label(row: Row) -> str:
    """The sender as shown: never a bare name for a message that failed verification."""
    if row.status == "good":
        return row.sender
    return f"{BAD_LABEL.get(row.status, row.status.upper())}? claims {row.sender}"


def row_json(row: Row) -> dict[str, Any]:
    return {
        "id": row.id,
        "short_id": row.id[:SHORT],
        "from": row.sender,
        "to": row.recipients,
        "date": row.date,
        "subject": row.subject,
        "summary": row.summary,
        "priority": row.priority,
        "type": row.type,
        "request_id": row.request_id,
        "in_reply_to": row.in_reply_to,
        "thread": row.thread or row.id,
        "require_ack": row.require_ack,
        "read": row.read,
        "archived": row.archived,
        "verified": row.status == "good",
        "status": row.status,
        "attachments": row.n_attach,
        "encrypted": row.encrypted,
        "mailbox": row.path,
        "commit": row.oid,
    }


def saved_json(s: "Saved") -> dict[str, Any]:
    """An attachment as ``--json`` shows it: the message's entry plus ``saved_to`` and ``error``."""
    d = s.attachment.model_dump(mode="json")
    d["saved_to"] = str(s.path) if s.path else None
    d["error"] = s.error
    return d


def snippet_text(snippet: str, start: str = "**", end: str = "**") -> str:
    """A search snippet (:class:`gitmail.api.search.SearchHit`) on one line, without control
    characters (it is text another member wrote), its matches wrapped in ``start``/``end``."""
    flat = " ".join(snippet.split())
    clean = "".join(ch if ch.isprintable() or ch in "\x02\x03" else " " for ch in flat)
    return clean.replace("\x02", start).replace("\x03", end)
