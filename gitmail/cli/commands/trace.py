"""``gitmail trace``: every message of one trace or thread, across the member's mailboxes."""

from __future__ import annotations

from typing import Optional

import click

from gitmail.cli.main import common
from gitmail.cli.render import emit_json, row_line
from gitmail.api.views import clean, count


@click.command("trace")
@click.argument("id")
@click.option("--trace", "kind", flag_value="trace", help="Take ID as a trace id only.")
@click.option("--message", "kind", flag_value="message", help="Take ID as a message id only.")
@click.option("-n", "--limit", type=click.IntRange(min=1), default=None,
              help="Only the newest N messages (still oldest first); the rest are counted.")
@common
def command(id: str, kind: Optional[str], limit: Optional[int], repo: Optional[str], as_: Optional[str],
            as_json: bool, quiet: bool) -> None:
    """Show every message of trace ID (a --trace-id), or of the thread and trace of message ID, oldest first.

    Inbox, group and broadcast mail and what you sent, archived messages too. When ID is
    both a trace id and the start of a message's id, say which with --trace or --message.
    """
    from gitmail import api

    t = api.trace(repo, id, as_=as_, kind=kind, limit=limit)
    if as_json:
        emit_json(t.model())
        return
    if quiet:
        return
    what = [f"trace {clean(t.trace_id)}"] if t.trace_id else []
    if t.thread:
        what.append(f"thread {clean(t.thread[:8])}")
    shown = f" (the newest {len(t.messages)}; {t.more} earlier not shown)" if t.more else ""
    click.echo(f"{' and '.join(what)}: {count(len(t.messages) + t.more, 'message')}{shown}")
    for r in t.messages:
        click.echo(row_line(r))
