"""Turning API results into text or JSON on a stream (docs/json.md is the JSON contract)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import IO, Any, Optional

import click

from gitmail.core.cache import Row

SHORT = 8
BAD_LABEL = {
    "unsigned": "UNSIGNED",
    "bad-signature": "FORGED",
    "unknown-sender": "FORGED",
    "wrong-signer": "FORGED",
    "malformed": "MALFORMED",
    "misfiled": "MISFILED",
}


def emit_json(obj: Any, out: Optional[IO[str]] = None) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2), file=out)


def ago(date: str, now: Optional[datetime] = None) -> str:
    """``2 min ago`` style age of an RFC 3339 UTC date."""
    if not date:
        return "?"
    d = datetime.fromisoformat(date.replace("Z", "+00:00"))
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


def row_line(row: Row) -> str:
    mark = "*" if (row.inbox and not row.read) else " "
    if row.archived:
        mark = "A"
    pri = {"urgent": "!!", "high": "! ", "low": "- "}.get(row.priority, "  ")
    date = row.date[:16].replace("T", " ")
    who = sender_label(row)
    typ = "" if row.type == "text" else f"[{row.type}] "
    return f"{mark} {row.id[:SHORT]} {pri} {date}  {who:<16} {typ}{row.subject}"


def fail_if_refused(refused: dict[str, str]) -> None:
    """Raise (exit 10, one line) when the org repo refused some mailbox's update."""
    if refused:
        from gitmail.errors import PushRejectedError

        path, why = next(iter(refused.items()))
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise PushRejectedError(f"the org repo refused {path}{more}: {why}")
