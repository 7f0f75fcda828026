"""``gitmail sync``: fetch, verify, deliver the outbox, print what arrived."""

from __future__ import annotations

from typing import Optional

import click

from gitmail.cli.main import common
from gitmail.cli.render import emit_json, row_line
from gitmail.api.views import clean, count, row_json


SHOWN = 50  # a big arrival is summed up, not scrolled past (--json lists every message)


@click.command("sync")
@common
def command(repo: Optional[str], as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """Fetch new mail, verify it, and push queued messages."""
    from gitmail import api

    res = api.sync(repo, as_=as_)
    if as_json:
        emit_json({"new": [row_json(r) for r in res.new], "delivered": res.delivered, "queued": res.queued,
                   "refused": res.refused, "problems": res.problems})
        return
    for p in res.problems:
        click.echo(f"gitmail: warning: {clean(p)}", err=True)
    for path, why in res.refused.items():
        click.echo(f"gitmail: the org repo refused {clean(path)}: {clean(why)}", err=True)
    if quiet:
        return
    if res.delivered:
        click.echo(f"Delivered queued mail to {count(len(res.delivered), 'mailbox', 'mailboxes')}")
    if res.queued:
        click.echo(f"Still queued: {count(len(res.queued), 'mailbox', 'mailboxes')}")
    click.echo(f"{count(len(res.new), 'new message')}")
    for r in res.new[:SHOWN]:
        click.echo(row_line(r))
    if len(res.new) > SHOWN:
        click.echo(f"... and {len(res.new) - SHOWN} more: gitmail list --unread")
