"""Turning API results into text or JSON on a stream (docs/json.md is the JSON contract)."""

from __future__ import annotations

import json
import select
import sys
from datetime import datetime, timezone
from typing import IO, TYPE_CHECKING, Any, Iterable, Optional

import click

from gitmail.api.views import SHORT, clean, is_unread, payload_hint, sender_label
from gitmail.core.cache import Row

if TYPE_CHECKING:
    from gitmail.api.results import Result


def flush_to_reader() -> None:
    """Flush stdout; raise BrokenPipeError when its reader has gone.

    A successful flush does not prove the text reached the reader: a blocking write(2) that
    the reader's exit cuts short returns the part it wrote, and CPython's buffered stream
    then dropped the rest without an error (seen with 3.11: 65,536 of 200,001 bytes, no
    exception). A pipe or socket whose reader went away polls as POLLERR or POLLHUP (poll(2));
    a file or a terminal in use does not. Raises nothing when stdout has no descriptor."""
    sys.stdout.flush()
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError, AttributeError):  # tests capture stdout in memory
        return
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    if any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0)):
        raise BrokenPipeError("the reader of stdout went away")


def emit_json(result: "Result", out: Optional[IO[str]] = None,
              streams: Optional[dict[str, Iterable[dict[str, Any]]]] = None) -> None:
    """Print ``result`` (a model of :mod:`gitmail.api.results`) as one indented JSON object, not ASCII-escaped.

    ``streams``: field name -> the items of that list field (whose value in ``result`` is left
    empty), written one at a time as they come: the same text as the whole object at once,
    without holding a list as long as a first sync's new mail."""
    data = result.dump()
    if not streams:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2), file=out)
        return

    def dumps(v: Any, level: int) -> str:  # v as json.dumps(indent=2) writes it ``level`` deep
        return json.dumps(v, ensure_ascii=False, indent=2).replace("\n", "\n" + "  " * level)

    text = "{"
    for i, (k, v) in enumerate(data.items()):
        text += ("," if i else "") + "\n  " + json.dumps(k, ensure_ascii=False) + ": "
        if k not in streams:
            text += dumps(v, 1)
            continue
        first = True
        for item in streams[k]:
            text += ("[" if first else ",") + "\n    " + dumps(item, 2)
            first = False
            if len(text) > 65536:
                click.echo(text, file=out, nl=False)
                text = ""
        text += "[]" if first else "\n  ]"
    click.echo(text + "\n}", file=out)


def row_line(row: Row) -> str:
    mark = "*" if is_unread(row) else " "
    if row.archived:
        mark = "A"
    pri = {"urgent": "!!", "high": "! ", "low": "- "}.get(row.priority, "  ")
    date = f"{short_time(row.date):<{TIME_WIDTH}}"
    who = clean(sender_label(row))
    typ = "" if row.type == "text" else f"[{clean(row.type)}] "
    if row.ack_requested:
        typ += "[ack requested] "
    if row.answers_request is False:
        typ += "[answers no request of yours to them] "
    hint = payload_hint(row)
    return f"{mark} {clean(row.id[:SHORT])} {pri} {date}  {who:<16} {typ}{clean(row.subject)}" + (
        f"  {hint}" if hint else "")


# -- times for people (issue 14 item 6): the local zone, shown; UTC with --utc; "5 min ago" when recent --
# --json keeps the exact RFC 3339 UTC strings (docs/json.md).

RECENT = 86400  # seconds: younger dates are shown as an age ("5 min ago", "3 h ago")
TIME_WIDTH = 20  # listing column: "2026-11-29 11:03 IST"


def _moment(date: str) -> Optional[datetime]:
    """The aware datetime of a message date, or of another RFC 3339 UTC time (the outbox's), or None."""
    from gitmail.core.dates import parse_date

    d = parse_date(date)
    if d is None and isinstance(date, str):
        try:
            d = datetime.fromisoformat(date.replace("Z", "+00:00"))
        except ValueError:
            return None
        if d.tzinfo is None:
            return None
    return d


def _zoned(d: datetime) -> datetime:
    """``d`` in the zone times are shown in: UTC with --utc or GITMAIL_UTC, else the local zone ($TZ)."""
    from gitmail.cli import main

    return d.astimezone(timezone.utc) if main.UTC_TIMES else d.astimezone()


def _zone(d: datetime) -> str:
    """The zone's abbreviation (``IST``, ``EST``, ``UTC``), or its offset when it has none (``+04``)."""
    name = d.tzname() or ""
    return name if name and name[0] not in "+-" else d.strftime("%z")


def _age(d: datetime, now: Optional[datetime]) -> Optional[str]:
    """``just now``, ``5 min ago``, ``3 h ago`` for a time under a day old; None otherwise (or in the future)."""
    secs = int(((now or datetime.now(timezone.utc)) - d).total_seconds())
    if not 0 <= secs < RECENT:
        return None
    # The words of gitmail.api.views.ago (the notices), without re-parsing the date.
    return "just now" if secs < 60 else f"{secs // 60} min ago" if secs < 3600 else f"{secs // 3600} h ago"


def short_time(date: str, now: Optional[datetime] = None) -> str:
    """A time in a listing row: ``5 min ago`` under a day old, else ``2026-11-29 11:03 IST``."""
    d = _moment(date)
    if d is None:
        return clean(date[:16]) or "?"
    age = _age(d, now)
    if age is not None:
        return age
    z = _zoned(d)
    return f"{z:%Y-%m-%d %H:%M} {_zone(z)}"


def long_time(date: str, now: Optional[datetime] = None) -> str:
    """A time on its own line: ``2026-11-29 11:03:05 +0530 (IST)``, then ``, 5 min ago`` under a day old."""
    d = _moment(date)
    if d is None:
        return clean(date) or "?"
    z = _zoned(d)
    name = _zone(z)
    text = f"{z:%Y-%m-%d %H:%M:%S %z}" + (f" ({name})" if name[0] not in "+-" else "")
    age = _age(d, now)
    return f"{text}, {age}" if age is not None else text


def fail_if_refused(refused: dict[str, str]) -> None:
    """Raise (exit 10, one line) when the org repo refused some mailbox's update."""
    if refused:
        from gitmail.errors import PushRejectedError

        path, why = next(iter(refused.items()))
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise PushRejectedError(f"the org repo refused {clean(path)}{more}: {clean(why)}")
