"""``gitmail read``: show messages and mark them read."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

import click

from gitmail.cli.main import common
from gitmail.cli.render import emit_json, flush_to_reader, long_time
from gitmail.api.views import clean, clean_text, imported_note, sender_label

if TYPE_CHECKING:
    from gitmail.api.mailbox import Item
    from gitmail.core.model import Message


@click.command("read")
@click.argument("ids", nargs=-1)
@click.option("--no-mark", is_flag=True, help="Do not mark them read.")
@click.option("--save-dir", metavar="DIR", help="Save attachments here [default: $GITMAIL_INBOX, git config "
                                                  "gitmail.inbox, ~/gitmail/inbox/<member>/].")
@click.option("--no-save", is_flag=True, help="List attachments without fetching or saving them.")
@common
def command(ids: tuple[str, ...], no_mark: bool, save_dir: Optional[str], no_save: bool, repo: Optional[str],
            as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """Show messages IDS (unique prefixes), or every unread message, most urgent first.

    Attachments of verified messages are fetched, checked (sha256) and saved
    (docs/attachments.md); an existing file is never overwritten.
    """
    from gitmail import api
    from gitmail.cli.commands.attachments import progress_for

    # Marked read only once written: marking first, a reader that stops early (`| head`,
    # quitting a pager) left every message read though none past the first was seen.
    items = api.read(repo, list(ids) or None, as_=as_, mark=False, save=not no_save, save_dir=save_dir,
                     progress=progress_for(as_json, quiet))
    shown: list["Item"] = []

    def done(its: list) -> None:
        flush_to_reader()  # BrokenPipeError here: the reader went away, and these are not marked
        shown.extend(its)

    try:
        _show(items, as_json, quiet, done)
    finally:
        if shown and not no_mark:
            api.mark_shown(repo, shown, as_=as_)


def _show(items: list, as_json: bool, quiet: bool, done: "Callable[[list], None]") -> None:
    from gitmail.cli.commands.attachments import fail_if_unsaved

    saved = [s for it in items for s in it.saved]
    if as_json:
        from gitmail.api.results import ReadResult

        emit_json(ReadResult(messages=[it.model() for it in items]))
        done(items)
        _fail_on_locked(items)
        fail_if_unsaved(saved)
        return
    bad = [it.row for it in items if it.message is None]
    if quiet:
        done(items)
        _fail_on_corrupt(bad)
        _fail_on_locked(items)
        fail_if_unsaved(saved)
        return
    if not items:
        click.echo("No unread messages.")
    for i, it in enumerate(items):
        if i:
            click.echo("\n" + "-" * 60)
        r, m = it.row, it.message
        click.echo(f"Message: {clean(r.id[:8])}  ({clean(r.id)})")
        click.echo(f"From: {clean(sender_label(r))}")
        if r.status != "good":
            click.echo(f"Warning: this message failed verification ({clean(r.status)}: {clean(r.detail)}); "
                       "it is NOT shown as genuine mail from that member.")
        note = imported_note(r.type, m.payload if m and not it.error else None, r.sender)
        if note and r.status == "good":
            click.echo(note)
        click.echo(f"To: {', '.join(clean(t) for t in r.recipients)}")
        click.echo(f"Date: {long_time(r.date)}")
        click.echo(f"Subject: {clean(m.subject if (m and it.encrypted and not it.error) else r.subject)}")
        if it.encrypted:
            click.echo("Encrypted: yes (end to end)")
        if r.priority != "normal":
            click.echo(f"Priority: {clean(r.priority)}")
        if r.type != "text":
            click.echo(f"Type: {clean(r.type)}" + (f"  (request_id {clean(r.request_id)})" if r.request_id else "")
                       + ("  NOT an answer to a request of yours: your requests with this id went to others"
                          if r.answers_request is False else ""))
        if r.in_reply_to:
            click.echo(f"In-Reply-To: {clean(r.in_reply_to[:8])}")
        if r.trace_id:
            click.echo(f"Trace: {clean(r.trace_id)}")
        if r.ack_requested:
            click.echo(f"Ack requested: the sender asks for a receipt. Run: gitmail ack {clean(r.id[:8])}")
        click.echo("")
        if m is None:
            click.echo("(the message blob is corrupt and cannot be shown)")
            continue
        if it.error:
            click.echo(f"(not shown: {it.error})")
            continue
        _body(it, m)
        done([it])
    _fail_on_corrupt(bad)
    _fail_on_locked(items)
    fail_if_unsaved(saved)


def _body(it: "Item", m: "Message") -> None:
    """The body, payload and attachment lines of one shown message."""
    from gitmail.cli.commands.attachments import saved_line

    if m.body:
        click.echo(clean_text(m.body.rstrip("\n")))
    if m.payload is not None:
        from gitmail.api.views import payload_text

        click.echo(payload_text(m.payload))
    if it.saved:
        for sv in it.saved:
            click.echo(saved_line(sv))
    else:
        _list_attachments(m)


def _fail_on_locked(items: list) -> None:
    """Exit non-zero (one line) when an encrypted message could not be opened."""
    locked = [it for it in items if it.error]
    if locked:
        from gitmail.errors import NotARecipientError

        raise NotARecipientError(f"message {clean(locked[0].row.id[:8])}: {clean(locked[0].error)}")


def _list_attachments(m: "Message") -> None:
    """Attachment lines without saving (``--no-save``)."""
    from gitmail.cli.commands.attachments import printable
    from gitmail.core.attachments import human_size, safe_name

    for a in m.attachments:
        click.echo(f"Attachment: {clean(safe_name(a.name))} ({human_size(a.size)}, {printable(a.media_type)})")


def _fail_on_corrupt(bad: list) -> None:
    if bad:
        from gitmail.errors import CorruptMessageError

        ids = ", ".join(clean(r.id[:8]) for r in bad)
        raise CorruptMessageError(f"message {ids} is corrupt and cannot be read ({clean(bad[0].detail)})")
