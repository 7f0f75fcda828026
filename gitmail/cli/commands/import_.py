"""``gitmail import``: bring an mbox, a Maildir or a team-chat folder in as signed imported messages."""

from __future__ import annotations

from typing import Optional

import click

from gitmail.cli.main import common
from gitmail.cli.render import emit_json, fail_if_refused


@click.command("import")
@click.option("--mbox", metavar="FILE", help="Import this mbox file.")
@click.option("--maildir", metavar="DIR", help="Import this Maildir (cur/ and new/).")
@click.option("--team-chat", "team_chat", metavar="DIR",
              help="Import a team-chat team folder (inboxes/*.jsonl; docs/protocol.md §5).")
@click.option("--to", "to", metavar="NAME", help="Into NAME's mailbox [default: your own].")
@click.option("--encrypt/--plain", "encrypt", default=None,
              help="Encrypt end to end, or write in clear [default: the org policy decides].")
@common
def command(mbox: Optional[str], maildir: Optional[str], team_chat: Optional[str], to: Optional[str],
            encrypt: Optional[bool], repo: Optional[str], as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """Import an archive as messages signed by you, each marked as imported with its original
    sender, date and Message-ID; importing the same archive again adds nothing."""
    from gitmail.api.imports import import_archive
    from gitmail.api.views import clean, count

    res = import_archive(repo, mbox=mbox, maildir=maildir, team_chat=team_chat, to=to, as_=as_,
                             encrypt=encrypt)
    if as_json:
        emit_json(res)
    else:
        for sk in res.skipped:
            click.echo(f"gitmail: skipped {clean(sk.where)}: {clean(sk.reason)}", err=True)
        if not quiet:
            extra = [f"{res.already} already imported"] if res.already else []
            extra += [f"{len(res.skipped)} skipped"] if res.skipped else []
            queued = "; queued: 'gitmail sync' delivers them" if res.outcome == "queued" else ""
            click.echo(f"Imported {count(len(res.added), 'message')} into {clean(res.mailbox)}"
                       + (f" ({', '.join(extra)})" if extra else "") + queued)
    if res.outcome == "refused":
        fail_if_refused({res.mailbox: res.reason or "refused"})
