"""``gitmail verify``: check every signature and every mailbox history."""

from __future__ import annotations

import sys
from typing import Optional

import click

from gitmail.cli.main import common
from gitmail.cli.render import emit_json


@click.command("verify")
@click.option("--all", "all_", is_flag=True, help="Every mailbox in the org, not only yours.")
@common
def command(all_: bool, repo: Optional[str], as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """Verify messages and histories; exit 7 if anything fails."""
    from gitmail import api

    rep = api.verify(repo, as_=as_, all_=all_)
    if as_json:
        emit_json({"ok": rep.ok, "mailboxes": rep.mailboxes, "messages": rep.messages, "good": rep.good,
                   "bad": [f.__dict__ for f in rep.findings], "problems": rep.problems})
    elif not quiet:
        for f in rep.findings:
            click.echo(f"BAD  {f.status:<14} {f.oid[:10]} {f.path}  {f.detail}")
        for p in rep.problems:
            click.echo(f"BAD  history        {p}")
        click.echo(f"{rep.messages} messages in {rep.mailboxes} mailboxes: {rep.good} good, "
                   f"{len(rep.findings)} bad; {len(rep.problems)} history problems")
    if not rep.ok:
        sys.exit(7)
