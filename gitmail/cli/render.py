"""Turning API results into text or JSON on a stream (docs/json.md is the JSON contract)."""

from __future__ import annotations

import json
from typing import IO, Any, Optional

import click

from gitmail.api.views import SHORT, clean, is_unread, sender_label
from gitmail.core.cache import Row


def emit_json(obj: Any, out: Optional[IO[str]] = None) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2), file=out)


def row_line(row: Row) -> str:
    mark = "*" if is_unread(row) else " "
    if row.archived:
        mark = "A"
    pri = {"urgent": "!!", "high": "! ", "low": "- "}.get(row.priority, "  ")
    date = clean(row.date[:16].replace("T", " "))
    who = clean(sender_label(row))
    typ = "" if row.type == "text" else f"[{clean(row.type)}] "
    if row.ack_requested:
        typ += "[ack requested] "
    return f"{mark} {clean(row.id[:SHORT])} {pri} {date}  {who:<16} {typ}{clean(row.subject)}"


def fail_if_refused(refused: dict[str, str]) -> None:
    """Raise (exit 10, one line) when the org repo refused some mailbox's update."""
    if refused:
        from gitmail.errors import PushRejectedError

        path, why = next(iter(refused.items()))
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise PushRejectedError(f"the org repo refused {clean(path)}{more}: {clean(why)}")
