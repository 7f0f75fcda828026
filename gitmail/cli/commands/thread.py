"""``gitmail thread``: a whole conversation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import click

from gitmail.cli.main import common
from gitmail.cli.render import emit_json, row_line

if TYPE_CHECKING:
    from gitmail.api.mailbox import Item

INDENT = "    "  # bodies under their header line, as git log shows commit messages


@click.command("thread")
@click.argument("id")
@click.option("--headers", is_flag=True, help="One line a message, without bodies.")
@common
def command(id: str, headers: bool, repo: Optional[str], as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """Show every message of ID's thread, oldest first, with its body (read flags unchanged)."""
    from gitmail import api

    if as_json or quiet or headers:
        rows = api.thread(repo, id, as_=as_)
        if as_json:
            from gitmail.api.results import MessageRow, ThreadResult

            emit_json(ThreadResult(thread=rows[0].thread or rows[0].id if rows else None,
                                   messages=[MessageRow.of(r) for r in rows]))
        elif not quiet:
            for r in rows:
                click.echo(row_line(r))
        return
    for i, it in enumerate(api.thread_items(repo, id, as_=as_)):
        if i:
            click.echo("")
        click.echo(row_line(it.row))
        for line in _body(it):
            click.echo(f"{INDENT}{line}" if line else "")


def _body(it: "Item") -> list[str]:
    """The lines shown under a message's header: its body and payload (sanitised), or why not."""
    from gitmail.api.views import clean, clean_text

    m = it.message
    if m is None:
        return ["(the message blob is corrupt and cannot be shown)"]
    if it.error:
        return [f"(encrypted; not shown: {clean(it.error)})"]
    lines = []
    if it.row.status != "good":
        lines.append(f"(failed verification: {clean(it.row.status)}; NOT genuine mail from that member)")
    if m.body.strip("\n"):
        lines += clean_text(m.body.strip("\n")).split("\n")
    if m.payload is not None:
        import json

        lines += clean_text(json.dumps(m.payload, indent=2, ensure_ascii=False)).split("\n")
    if m.attachments:
        from gitmail.api.views import count

        lines.append(f"({count(len(m.attachments), 'attachment')}: gitmail read {clean(it.row.id[:8])})")
    return lines
