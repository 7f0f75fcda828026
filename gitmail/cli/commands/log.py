"""``gitmail log``: an audit view across every mailbox."""

from __future__ import annotations

from typing import Optional

import click

from gitmail.cli.main import common
from gitmail.cli.render import TIME_WIDTH, emit_json, short_time
from gitmail.api.views import clean


@click.command("log")
@click.option("--limit", "-n", default=50, show_default=True, type=int)
@common
def command(limit: int, repo: Optional[str], as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """Every message in the org, newest first, with its verification status."""
    from gitmail import api

    entries = api.log(repo, as_=as_, limit=limit)
    if as_json:
        from gitmail.api.results import LogResult

        emit_json(LogResult(messages=[e.model() for e in entries]))
    elif not quiet:
        for e in entries:
            flag = "ok " if e.status == "good" else "BAD"
            click.echo(f"{flag} {clean(e.id[:8])} {short_time(e.date):<{TIME_WIDTH}} {clean(e.sender)} -> "
                       f"{clean(e.recipient)}: {clean(e.subject)}" + ("" if e.status == "good" else f"  [{clean(e.status)}]"))
