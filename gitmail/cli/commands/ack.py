"""``gitmail ack``: send a signed receipt for a message."""

from __future__ import annotations

from typing import Optional

import click

from gitmail.cli.main import common
from gitmail.cli.render import emit_json, fail_if_refused
from gitmail.api.views import SHORT, clean


@click.command("ack")
@click.argument("ids", nargs=-1, required=True)
@common
def command(ids: tuple[str, ...], repo: Optional[str], as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """Acknowledge messages IDS to their senders (a second ack of the same message sends nothing)."""
    from gitmail import api

    results = api.acks(repo, list(ids), as_=as_)
    refused = {p: why for r in results for p, why in r.refused.items()}
    if as_json:
        from gitmail.api.results import AckList

        emit_json(AckList(acks=[r.model() for r in results]))
        fail_if_refused(refused)
        return
    if not quiet:
        for r in results:
            if not r.sent:
                click.echo(f"Already acknowledged {clean(r.acked[:SHORT])} to {clean(r.to)}")
            elif r.queued:
                click.echo(f"Queued ack of {clean(r.acked[:SHORT])} to {clean(r.to)} [{(r.ack_id or '')[:SHORT]}]: "
                           f"{clean(r.reason)}")
            elif not r.refused:
                click.echo(f"Acknowledged {clean(r.acked[:SHORT])} to {clean(r.to)} [{(r.ack_id or '')[:SHORT]}]")
    fail_if_refused(refused)
