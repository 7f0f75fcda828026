"""``gitmail respond``: answer a protocol request (shutdown, plan approval, question)."""

from __future__ import annotations

from typing import Optional

import click

from gitmail.cli.main import common
from gitmail.cli.commands.send import outcome_line
from gitmail.cli.render import emit_json, fail_if_refused
from gitmail.api.views import clean


@click.command("respond")
@click.argument("id")
@click.option("--approve/--reject", "approve", default=None,
              help="Approve or reject a shutdown_request / plan_approval_request.")
@click.option("--reason", help="Why (shutdown_response.reason).")
@click.option("--feedback", help="Feedback on the plan (plan_approval_response.feedback).")
@click.option("--answer", help="The answer to a question.")
@click.option("--message", "-m", "body", default="", help="Optional text to send along.")
@common
def command(id: str, approve: Optional[bool], reason: Optional[str], feedback: Optional[str],
            answer: Optional[str], body: str, repo: Optional[str], as_: Optional[str], as_json: bool,
            quiet: bool) -> None:
    """Respond to request ID: the response type and request_id come from the request."""
    from gitmail import api

    res = api.respond(repo, id, approve=approve, reason=reason, feedback=feedback, answer=answer,
                         body=body, as_=as_)
    m = res.message
    if as_json:
        emit_json(res.model())
        fail_if_refused(res.refused)
        return
    fail_if_refused(res.refused)
    if not quiet:
        click.echo(outcome_line(res, f"Sent {clean(m.type)} (request_id {clean(m.request_id)}) to"))
