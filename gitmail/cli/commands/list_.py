"""``gitmail list``: the inbox, newest first."""

from __future__ import annotations

from typing import Optional

import click

from gitmail.cli.main import common
from gitmail.cli.render import emit_json, row_line


@click.command("list")
@click.option("--unread", is_flag=True, help="Only unread messages.")
@click.option("--archived", is_flag=True, help="Only archived messages.")
@click.option("--all", "all_", is_flag=True, help="Archived messages too.")
@click.option("--sent", is_flag=True, help="Messages you sent, instead of the inbox.")
@click.option("--from", "from_", metavar="NAME", help="Only messages from NAME.")
@click.option("--priority", metavar="P", help="Only messages of this priority (low, normal, high, urgent).")
@click.option("--type", "type_", metavar="TYPE", help="Only messages of this type (text, question, an open type such as x-build-done, ...).")
@click.option("--since", metavar="DATE", help="Only messages sent on or after DATE (2026-11-29, or with a time).")
@click.option("--sort", type=click.Choice(["date", "priority"]), default="date", show_default=True,
              help="Newest first, or most urgent first (the order of 'gitmail read').")
@click.option("--awaiting-ack", is_flag=True, help="Your sent messages still waiting for a receipt.")
@click.option("--limit", "-n", default=30, envvar="GITMAIL_LIMIT", show_default=True, type=int)
@common
def command(unread: bool, archived: bool, all_: bool, sent: bool, from_: Optional[str], priority: Optional[str],
            type_: Optional[str], since: Optional[str], sort: str, awaiting_ack: bool,
            limit: int, repo: Optional[str], as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """List the inbox with unread (*) markers and a header of counts."""
    from gitmail import api

    if awaiting_ack:
        _awaiting(repo, as_, as_json, quiet, limit)
        return
    res = api.mailbox(repo, as_=as_, unread_only=unread, archived=archived, all_=all_, from_=from_,
                      limit=limit, sent=sent, priority=priority, type_=type_, since=since, sort=sort)
    if as_json:
        emit_json(res.model())
        return
    if quiet:
        return
    click.echo(f"{res.unread} unread, {res.total} in inbox")
    for r in res.messages:
        click.echo(row_line(r))


def _awaiting(repo: Optional[str], as_: Optional[str], as_json: bool, quiet: bool, limit: int) -> None:
    """``--awaiting-ack``: sent messages with --require-ack and no receipt yet, oldest first."""
    from gitmail import api
    from gitmail.api.views import SHORT, ago, clean, count

    items = api.awaiting_ack(repo, as_=as_)[:limit]
    if as_json:
        from gitmail.api.results import AwaitingList

        emit_json(AwaitingList(messages=[a.model() for a in items]))
        return
    if quiet:
        return
    click.echo(f"{count(len(items), 'sent message')} awaiting acknowledgement")
    for a in items:
        waited = ago(a.row.date).replace(" ago", "")
        click.echo(f"  {clean(a.row.id[:SHORT])} waiting {waited:<9} on {', '.join(clean(n) for n in a.pending)}: "
                   f"{clean(a.row.subject)}")
