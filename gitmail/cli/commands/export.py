"""``gitmail export``: the mailbox as an mbox file or a Maildir, for real mail clients."""

from __future__ import annotations

from typing import Optional

import click

from gitmail.cli.main import common
from gitmail.cli.render import emit_json


@click.command("export")
@click.option("--mbox", metavar="FILE", help="Append to (or create) this mbox file.")
@click.option("--maildir", metavar="DIR", help="Add to (or create) this Maildir.")
@click.option("--all", "all_", is_flag=True, help="Archived and sent mail too.")
@click.option("--since", metavar="DATE", help="Only messages sent on or after DATE (2026-11-29, or with a time).")
@common
def command(mbox: Optional[str], maildir: Optional[str], all_: bool, since: Optional[str],
            repo: Optional[str], as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """Write the inbox as RFC 5322 messages (threaded, attachments as MIME parts, encrypted mail
    decrypted); a second export adds only what is new."""
    from gitmail import api

    res = api.export(repo, mbox=mbox, maildir=maildir, all_=all_, since=since, as_=as_)
    if as_json:
        emit_json(res.model())
    elif not quiet:
        n = len(res.added)
        click.echo(f"Exported {n} {'message' if n == 1 else 'messages'} to {res.path}"
                   + (f" ({res.skipped} already there)" if res.skipped else ""))
