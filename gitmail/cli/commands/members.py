"""``gitmail members``: the org directory."""

from __future__ import annotations

from typing import Optional

import click

from gitmail.cli.main import common
from gitmail.cli.render import emit_json
from gitmail.api.views import clean


@click.command("members")
@common
def command(repo: Optional[str], as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """List the org's members (from the verified directory)."""
    from gitmail import api

    ms = api.members(repo)
    if as_json:
        from gitmail.api.results import MemberList, MemberRow

        emit_json(MemberList(members=[MemberRow.of(m) for m in ms]))
    elif not quiet:
        for m in ms:
            click.echo(f"{clean(m.name):<20} {clean(m.role):<6} {clean(m.kind):<5} {clean(m.email)}")
