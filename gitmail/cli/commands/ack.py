"""``gitmail ack``: send a signed receipt for a message."""

from __future__ import annotations

from typing import Optional

import click

from gitmail.cli.main import common
from gitmail.cli.render import emit_json
from gitmail.api.views import SHORT, clean


@click.command("ack")
@click.argument("ids", nargs=-1, required=True)
@common
def command(ids: tuple[str, ...], repo: Optional[str], as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """Acknowledge messages IDS to their senders (a second ack of the same message sends nothing)."""
    from gitmail import api

    results = [api.ack(repo, i, as_=as_) for i in ids]
    if as_json:
        emit_json({"acks": [{"acked": r.acked, "to": r.to, "sent": r.sent, "ack_id": r.ack_id,
                             "delivered": r.delivered, "queued": r.queued} for r in results]})
        return
    if quiet:
        return
    for r in results:
        if not r.sent:
            click.echo(f"Already acknowledged {clean(r.acked[:SHORT])} to {clean(r.to)}")
        else:
            state = "Queued ack of" if r.queued else "Acknowledged"
            click.echo(f"{state} {clean(r.acked[:SHORT])} to {clean(r.to)} [{(r.ack_id or '')[:SHORT]}]")
