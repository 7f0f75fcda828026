"""``gitmail archive``: soft-delete messages from the inbox view."""

from __future__ import annotations

from typing import Optional

import click

from gitmail.cli.main import common
from gitmail.cli.render import emit_json
from gitmail.api.views import count


@click.command("archive")
@click.argument("ids", nargs=-1, required=True)
@click.option("--undo", is_flag=True, help="Bring archived messages back to the inbox.")
@common
def command(ids: tuple[str, ...], undo: bool, repo: Optional[str], as_: Optional[str], as_json: bool,
            quiet: bool) -> None:
    """Archive messages IDS (never deleted: 'gitmail list --archived' shows them)."""
    from gitmail import api

    done = api.archive(repo, list(ids), undo=undo, as_=as_)
    if as_json:
        from gitmail.api.results import Archived

        emit_json(Archived(ids=done, archived=not undo))
    elif not quiet:
        click.echo(f"{'Unarchived' if undo else 'Archived'} {count(len(done), 'message')}")
