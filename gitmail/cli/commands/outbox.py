"""``gitmail outbox``: queued mail and why it waits; retry, drop; the undelivered record."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import click

from gitmail.cli.main import common
from gitmail.cli.render import emit_json, long_time
from gitmail.api.views import SHORT, count

if TYPE_CHECKING:
    from gitmail.api.outbox import Queued, Undelivered


def _queued_line(q: "Queued") -> str:
    return f"{q.id[:SHORT]}  to {', '.join(q.mailboxes)}  {q.subject!r}\n    {q.kind}: {q.reason} (since {long_time(q.since)})"


def _gone_line(u: "Undelivered") -> str:
    return f"{u.id[:SHORT]}  to {', '.join(u.mailboxes)}  {u.subject!r}\n    {u.kind} {long_time(u.since)}: {u.reason}"


@click.group("outbox", invoke_without_command=True)
@click.option("--undelivered", "--dropped", "gone", is_flag=True,
              help="List the messages that left the outbox undelivered (refused or dropped).")
@common
@click.pass_context
def command(ctx: click.Context, gone: bool, repo: Optional[str], as_: Optional[str], as_json: bool,
            quiet: bool) -> None:
    """List queued messages and why each is still queued (or, with --undelivered, the undelivered ones)."""
    if ctx.invoked_subcommand is not None:
        # `gitmail outbox --repo X retry`: the options given before the subcommand are its
        # defaults (they were ignored, and retry or drop acted on the clone in the current folder).
        given = {k: v for k, v in (("repo", repo), ("as_", as_), ("as_json", as_json), ("quiet", quiet)) if v}
        ctx.default_map = {name: dict(given) for name in ("retry", "drop")}
        return
    from gitmail import api

    if gone:
        items = api.undelivered(repo, as_=as_)
        if as_json:
            from gitmail.api.results import UndeliveredList

            emit_json(UndeliveredList(undelivered=[u.model() for u in items]))
        elif not quiet:
            click.echo("\n".join(_gone_line(u) for u in items) if items else "No undelivered messages")
        return
    queued = api.outbox(repo, as_=as_)
    if as_json:
        from gitmail.api.results import OutboxList

        emit_json(OutboxList(queued=[q.model() for q in queued]))
    elif not quiet:
        click.echo("\n".join(_queued_line(q) for q in queued) if queued else "Outbox empty: everything was delivered")


@command.command("retry")
@click.argument("id", required=False)
@common
def retry(id: Optional[str], repo: Optional[str], as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """Try to deliver queued messages now (all, or ID; an undelivered ID is queued again)."""
    from gitmail import api
    from gitmail.cli.render import fail_if_refused

    res = api.retry(repo, id, as_=as_)
    refused = {f"{u.id[:SHORT]} to {', '.join(u.mailboxes)}": u.reason for u in res.refused}
    if as_json:
        emit_json(res.model())
    elif not quiet:
        click.echo(f"Delivered {count(len(res.delivered), 'message')}")
        for q in res.queued:
            click.echo(f"Still queued: {_queued_line(q)}")
    fail_if_refused(refused)


@command.command("drop")
@click.argument("id")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@common
def drop(id: str, yes: bool, repo: Optional[str], as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """Take queued message ID out of the outbox (kept in: gitmail outbox --undelivered)."""
    from gitmail import api
    from gitmail.cli.terminal import need_terminal
    from gitmail.errors import UsageError

    if not yes:
        full = api.queued_id(repo, id, as_=as_)  # an id that names no queued message fails before the question
        need_terminal()  # a prompt: in a warm child, run in the client's own process instead
        try:
            ok = click.confirm(f"Drop queued message {full[:SHORT]} (it is kept in 'gitmail outbox --undelivered')?",
                               err=True)
        except click.Abort:
            ok = False  # no answer (stdin closed)
        if not ok:
            raise UsageError("not dropped: answer y, or pass --yes")
    u = api.drop(repo, id, as_=as_)
    if as_json:
        emit_json(u.model())
    elif not quiet:
        click.echo(f"Dropped {u.id[:SHORT]} to {', '.join(u.mailboxes)} (kept: gitmail outbox --undelivered)")
