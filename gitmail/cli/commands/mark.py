"""``gitmail mark``: mark messages read or unread."""

from __future__ import annotations

from typing import Optional

import click

from gitmail.cli.main import common
from gitmail.cli.render import emit_json
from gitmail.api.views import count


@click.command("mark")
@click.argument("ids", nargs=-1, required=True)
@click.option("--read/--unread", "read_", required=True, help="The flag to set.")
@common
def command(ids: tuple[str, ...], read_: bool, repo: Optional[str], as_: Optional[str], as_json: bool,
            quiet: bool) -> None:
    """Mark messages IDS read or unread."""
    from gitmail import api

    done = api.mark(repo, list(ids), read=read_, as_=as_)
    if as_json:
        from gitmail.api.results import Marked

        emit_json(Marked(ids=done, read=read_))
    elif not quiet:
        click.echo(f"Marked {count(len(done), 'message')} {'read' if read_ else 'unread'}")
