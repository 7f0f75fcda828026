"""``gitmail reply``: reply to a message in its thread."""

from __future__ import annotations

import sys
from typing import Optional

import click

from gitmail.cli.main import common
from gitmail.core.model import PRIORITIES
from gitmail.cli.commands.send import outcome_line
from gitmail.cli.render import emit_json, fail_if_refused


@click.command("reply")
@click.argument("id")
@click.argument("message")
@click.option("--all", "all_", is_flag=True, help="Reply to every recipient too.")
@click.option("--priority", "-p", default="normal", type=click.Choice(PRIORITIES))
@click.option("--trace-id", metavar="TRACE", help="Trace id [default: the one of the message replied to].")
@common
def command(id: str, message: str, all_: bool, priority: str, trace_id: Optional[str], repo: Optional[str],
            as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """Reply to message ID with MESSAGE ('-' reads stdin)."""
    from gitmail import api

    body = sys.stdin.read() if message == "-" else message
    res = api.reply(repo, id, body, as_=as_, all_=all_, priority=priority, trace_id=trace_id)
    if as_json:
        emit_json(res.model())
        fail_if_refused(res.refused)
        return
    fail_if_refused(res.refused)
    if not quiet:
        click.echo(outcome_line(res, "Replied to"))
