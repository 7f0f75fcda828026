"""``gitmail verify``: check every signature and every mailbox history."""

from __future__ import annotations

import sys
from typing import Optional

import click

from gitmail.cli.main import common
from gitmail.cli.render import emit_json
from gitmail.api.views import clean, count


@click.command("verify")
@click.option("--all", "all_", is_flag=True,
              help="Every mailbox in the org, every message checked again (default: your mailboxes; "
                   "only what arrived since the last verified tip is checked, earlier verdicts are reported).")
@common
def command(all_: bool, repo: Optional[str], as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """Verify messages and histories; exit 7 if anything fails.

    By default only the messages that arrived since your mailboxes' last verified
    tips are checked (what `gitmail sync` checks), and the verdicts recorded for
    the earlier ones are reported; --all re-checks every message of the org.
    """
    from gitmail import api

    rep = api.verify(repo, as_=as_, all_=all_)
    if as_json:
        emit_json(rep.model())
    elif not quiet:
        for f in rep.findings:
            click.echo(f"BAD  {clean(f.status):<14} {clean(f.oid[:10])} {clean(f.path)}  {clean(f.detail)}")
        for p in rep.problems:
            click.echo(f"BAD  history        {clean(p)}")
        click.echo(f"{count(rep.messages, 'message')} in {count(rep.mailboxes, 'mailbox', 'mailboxes')}: "
                   f"{rep.good} good, {len(rep.findings)} bad; {count(len(rep.problems), 'history problem')}")
    if not rep.ok:
        sys.exit(7)
