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
@click.argument("message", required=False)
@click.option("--all", "all_", is_flag=True, help="Reply to every recipient too.")
@click.option("--priority", "-p", default="normal", type=click.Choice(PRIORITIES))
@click.option("--trace-id", metavar="TRACE", help="Trace id [default: the one of the message replied to].")
@common
def command(id: str, message: Optional[str], all_: bool, priority: str, trace_id: Optional[str], repo: Optional[str],
            as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """Reply to message ID with MESSAGE ('-' reads stdin; none on a terminal: your editor opens,
    as for ``git commit``, and an empty message sends nothing)."""
    from gitmail import api

    if message is None:
        body = _compose(repo, as_, id)
    else:
        from gitmail.cli.inputs import message_from_stdin

        body = message_from_stdin() if message == "-" else message
    res = api.reply(repo, id, body, as_=as_, all_=all_, priority=priority, trace_id=trace_id)
    if as_json:
        emit_json(res.model())
        fail_if_refused(res.refused)
        return
    fail_if_refused(res.refused)
    if not quiet:
        click.echo(outcome_line(res, "Replied to"))


def _compose(repo: Optional[str], as_: Optional[str], id: str) -> str:
    """The reply written in the editor (the message ID is resolved first)."""
    from gitmail import api
    from gitmail.api.views import SHORT, clean, sender_label
    from gitmail.cli import editor
    from gitmail.errors import UsageError

    if not editor.can_edit():
        raise click.UsageError("Missing argument 'MESSAGE' (on a terminal your editor opens; '-' reads stdin).")
    s = api.session(repo, as_)
    row = api.resolve_id(s, id)
    text = editor.edit(s.repo.path, s.repo.data_dir, editor.template(
        f"Reply to {clean(row.id[:SHORT])} from {clean(sender_label(row))}: {clean(row.subject)}",
        "Lines starting with '#' are ignored; an empty message sends nothing."), name="REPLY_EDITMSG")
    if not text.strip():
        raise UsageError("aborting: the message is empty; nothing sent")
    return text
