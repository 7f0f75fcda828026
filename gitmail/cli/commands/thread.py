"""``gitmail thread``: a whole conversation."""

from __future__ import annotations

from typing import Optional

import click

from gitmail.cli.main import common
from gitmail.cli.render import emit_json, row_line


@click.command("thread")
@click.argument("id")
@common
def command(id: str, repo: Optional[str], as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """Show every message of ID's thread, oldest first."""
    from gitmail import api

    rows = api.thread(repo, id, as_=as_)
    if as_json:
        from gitmail.api.results import MessageRow, ThreadResult

        emit_json(ThreadResult(thread=rows[0].thread or rows[0].id if rows else None,
                               messages=[MessageRow.of(r) for r in rows]))
    elif not quiet:
        for r in rows:
            click.echo(row_line(r))
