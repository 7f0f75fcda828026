"""``gitmail sync``: fetch, verify, deliver the outbox, print what arrived."""

from __future__ import annotations

from typing import Optional

import click

from gitmail.cli.main import common
from gitmail.cli.render import emit_json, row_line
from gitmail.api.views import SHORT, clean, count


SHOWN = 50  # a big arrival is summed up, not scrolled past (--json lists every message, streamed)


@click.command("sync")
@click.option("--all", "all_", is_flag=True,
              help="Fetch every mailbox of the org, not only yours (an auditor's full copy).")
@common
def command(repo: Optional[str], as_: Optional[str], as_json: bool, quiet: bool, all_: bool) -> None:
    """Fetch new mail, verify it, and push queued messages (see: gitmail outbox).

    Fetches only the directory, your inbox, the broadcast and your groups' mailboxes,
    and the mailboxes you wrote to; --all fetches everything."""
    from gitmail import api

    res = api.sync(repo, as_=as_, all_=all_)
    if as_json:
        head, new = res.model_streamed()
        emit_json(head, streams={"new": new})
        return
    for p in res.problems:
        click.echo(f"gitmail: warning: {clean(p)}", err=True)
    for q in res.restored:
        click.echo(f"gitmail: warning: {q.id[:SHORT]} to {', '.join(clean(x) for x in q.mailboxes)} "
                   f"({clean(q.subject)!r}) was {clean(q.reason)}", err=True)
    for u in res.refused:
        click.echo(f"gitmail: the org repo refused {u.id[:SHORT]} to {', '.join(clean(x) for x in u.mailboxes)}: "
                   f"{clean(u.reason)} (kept: gitmail outbox --undelivered)", err=True)
    if quiet:
        return
    if res.delivered:
        click.echo(f"Delivered {count(len(res.delivered), 'queued message')}")
    if res.queued:
        click.echo(f"Still queued: {count(len(res.queued), 'message')} (gitmail outbox)")
        for q in res.queued:
            click.echo(f"  {q.id[:SHORT]} to {', '.join(clean(x) for x in q.mailboxes)}: {clean(q.reason)} "
                       f"(since {clean(q.since)})")
    click.echo(f"{count(len(res.new), 'new message')}")
    for r in res.new.head(SHOWN):
        click.echo(row_line(r))
    if len(res.new) > SHOWN:
        click.echo(f"... and {len(res.new) - SHOWN} more: gitmail list --unread")
