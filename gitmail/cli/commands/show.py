"""``gitmail show``: any message commit of the org, verified, decrypted if you may."""

from __future__ import annotations

import json
from typing import Optional

import click

from gitmail.cli.main import common
from gitmail.cli.render import emit_json, long_time
from gitmail.api.views import clean, clean_text


@click.command("show")
@click.argument("rev")
@common
def command(rev: str, repo: Optional[str], as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """Show the message commit REV (a commit id or e.g. origin/gitmail/mail/alex/max~1)."""
    from gitmail import api
    from gitmail.errors import NotARecipientError

    sh = api.show(repo, rev, as_=as_)
    m = sh.message
    if as_json:
        emit_json(sh.model())
    elif not quiet:
        click.echo(f"Commit: {clean(sh.commit)}")
        click.echo(f"Verification: {clean(sh.status)}" + (f" ({clean(sh.detail)})" if sh.detail else ""))
        if m is not None:
            who = clean(m.from_) if sh.status == "good" else f"UNVERIFIED? claims {clean(m.from_)}"
            click.echo(f"From: {who}\nTo: {', '.join(clean(t) for t in m.to)}\nDate: {long_time(m.date)}\n"
                       f"Priority: {clean(m.priority)}\nType: {clean(m.type)}")
            if sh.encrypted:
                click.echo("Encrypted: yes (end to end)")
            if not sh.error:
                click.echo(f"Subject: {clean(m.subject)}\n")
                if m.body:
                    click.echo(clean_text(m.body.rstrip("\n")))
                if m.payload is not None:
                    click.echo(clean_text(json.dumps(m.payload, indent=2, ensure_ascii=False)))
                for a in m.attachments:
                    click.echo(f"Attachment: {clean(a.name)} ({a.size} bytes)")
    if sh.error:
        raise NotARecipientError(clean(sh.error))
