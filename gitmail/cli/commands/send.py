"""``gitmail send``: send a message."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Optional

import click

from gitmail.cli.main import common
from gitmail.core.model import PRIORITIES
from gitmail.cli.render import emit_json, fail_if_refused
from gitmail.api.views import SHORT, clean, count
from gitmail.errors import UsageError

if TYPE_CHECKING:
    from gitmail.api.send import SendResult
    from gitmail.core.lfs import Progress
    from gitmail.core.model import Message


@click.command("send")
@click.argument("to", nargs=-1)
@click.argument("message", required=False)
@click.option("--edit", "-e", "edit", is_flag=True,
              help="Every argument is a recipient: write the message in your editor (git's GIT_EDITOR).")
@click.option("--subject", "-s", help="Subject [default: the message's first line].")
@click.option("--summary", help="A short preview (5-10 words).")
@click.option("--priority", "-p", default="normal", envvar="GITMAIL_PRIORITY", show_default=True,
              type=click.Choice(PRIORITIES))
@click.option("--type", "type_", default="text", show_default=True,
              help="text, a protocol type, or an open type such as x-build-done (docs/protocol.md §5).")
@click.option("--payload", help="JSON object: the payload of a protocol or open-type message.")
@click.option("--trace-id", metavar="TRACE", help="Trace id grouping messages of one piece of work ('gitmail trace').")
@click.option("--request-id", help="The request_id a response echoes [default: from --reply-to].")
@click.option("--reply-to", metavar="ID", help="Reply to this message (same thread).")
@click.option("--require-ack", is_flag=True, help="Ask the recipient for a signed receipt.")
@click.option("--attach", "attach", multiple=True, metavar="FILE",
              help="Attach FILE (repeatable; docs/attachments.md).")
@click.option("--encrypt/--plain", "encrypt", default=None,
              help="Encrypt end to end, or send in clear [default: the org policy decides].")
@click.option("--batch", metavar="FILE", help="Send every message of FILE (JSON Lines, '-' for stdin; docs/json.md).")
@common
def command(to: tuple[str, ...], message: Optional[str], subject: Optional[str], summary: Optional[str], priority: str,
            type_: str, payload: Optional[str], trace_id: Optional[str], request_id: Optional[str],
            reply_to: Optional[str], require_ack: bool, encrypt: Optional[bool], attach: tuple[str, ...], edit: bool,
            batch: Optional[str], repo: Optional[str], as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """Send MESSAGE to one or more members (TO may be '*' or team:NAME). MESSAGE '-' reads stdin.

    Without MESSAGE (``gitmail send alex``) on a terminal, or with --edit, your editor
    opens on a template, as for ``git commit``: '#' lines are dropped, the first line is
    the subject (a blank line then the body), and an empty message sends nothing.

    With --batch FILE, send one message per line of FILE instead (each line a JSON object with
    to, body and optionally subject, summary, priority, type, payload, reply_to, request_id,
    require_ack, trace_id): every line is checked first, then all go in one push.
    """
    from gitmail import api

    if batch is not None:
        if to or message is not None or attach or subject or summary or payload or request_id or reply_to \
                or require_ack or type_ != "text" or trace_id or edit:
            raise UsageError("--batch takes no TO, MESSAGE or message options: each line of the file carries them")
        _send_batch(batch, repo, as_, encrypt, as_json, quiet)
        return
    if edit and message is not None:
        to, message = (*to, message), None
    elif not to and message is not None:  # "gitmail send alex": the one argument is the recipient
        to, message = (message,), None
    if not to:
        raise click.UsageError("Missing argument 'TO...'.")
    if message is None:
        body, subject = _compose(repo, as_, to, subject, edit)
    else:
        from gitmail.cli.inputs import message_from_stdin

        body = message_from_stdin() if message == "-" else message
    data = parse_payload(payload)
    res = api.send(repo, list(to), body, subject=subject, summary=summary, priority=priority, type=type_,
                   payload=data, reply_to=reply_to, request_id=request_id, require_ack=require_ack, as_=as_,
                   attach=list(attach), progress=_progress(attach, as_json, quiet), encrypt=encrypt,
                   trace_id=trace_id)
    m = res.message
    if as_json:
        emit_json(res.model())
        fail_if_refused(res.refused)
        return
    fail_if_refused(res.refused)
    if not quiet:
        lock = " (encrypted)" if res.encrypted else ""
        click.echo(outcome_line(res, "Sent to", f"{_attached(m)}{lock}"))


def parse_payload(text: Optional[str]) -> Optional[dict[str, Any]]:
    """``--payload``: a JSON object, or None when not given. Raises :class:`UsageError` (one line)."""
    if text is None:
        return None
    def no_constant(name: str) -> None:
        raise ValueError(f"{name} is not a JSON number")

    try:
        data = json.loads(text, parse_constant=no_constant)
    except json.JSONDecodeError as e:
        raise UsageError(f"--payload is not valid JSON: {e.msg} at column {e.colno}") from None
    except RecursionError:
        raise UsageError("--payload is nested too deeply") from None
    except ValueError as e:  # NaN, Infinity; an integer of thousands of digits
        raise UsageError(f"--payload is not valid JSON: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UsageError("--payload must be a JSON object")
    return data


def _compose(repo: Optional[str], as_: Optional[str], to: tuple[str, ...], subject: Optional[str],
             edit: bool) -> tuple[str, Optional[str]]:
    """``(body, subject)`` written in the editor; the recipients are checked first. A first
    line followed by a blank line is the subject (unless --subject gave one), the rest the body."""
    from gitmail import api
    from gitmail.cli import editor

    if not edit and not editor.can_edit():
        raise click.UsageError("Missing argument 'MESSAGE' (on a terminal your editor opens; '-' reads stdin).")
    s = api.session(repo, as_)
    names = api.resolve_recipients(s, list(to))  # a wrong name fails before anything is written
    head = [f"Subject: {clean(subject)}"] if subject is not None else [
        "The first line is the subject; a blank line, then the body."]
    text = editor.edit(s.repo.path, s.repo.data_dir, editor.template(
        f"Message to {', '.join(clean(n) for n in names)}.", *head,
        "Lines starting with '#' are ignored; an empty message sends nothing."))
    if not text.strip():
        raise UsageError("aborting: the message is empty; nothing sent")
    first, sep, rest = text.partition("\n\n")
    if subject is None and sep and rest.strip() and "\n" not in first:
        return rest, first.strip()
    return text, subject


def _send_batch(path: str, repo: Optional[str], as_: Optional[str], encrypt: Optional[bool], as_json: bool,
                quiet: bool) -> None:
    from gitmail.api.batch import send_jsonl

    from gitmail.cli.inputs import MAX_BATCH, read_bounded

    data = read_bounded(path, MAX_BATCH, "the batch")  # bytes, so a non-UTF-8 line is named, not a crash
    report = send_jsonl(repo, data, as_=as_, encrypt=encrypt)
    refused = {k: v for m in report.messages for k, v in m.refused.items()}
    if as_json:
        emit_json(report)
    elif not quiet:
        for m in report.messages:
            if not m.refused:
                click.echo(_outcome_text(m.to, m.id, m.queued, m.kind, m.reason, "Sent to",
                                         " (encrypted)" if m.encrypted else ""))
    fail_if_refused(refused)


# Why a message is queued, in a few words (gitmail.core.sync's kinds).
_QUEUED_WHY = {"remote-unreachable": "org remote unreachable", "lfs-unreachable": "LFS store unreachable",
               "push-failed": "push failed", "race": "mailbox busy", "no-key": "needs re-signing",
               "not-tried": "not tried yet"}


def outcome_line(res: "SendResult", sent: str, extra: str = "") -> str:
    """``<sent> alex [id]`` when delivered; ``Queued (why; ...) for alex [id]`` plus the reason when queued.

    A refused send never gets here (:func:`fail_if_refused` exits 10 first).
    """
    return _outcome_text(res.recipients, res.message.id, res.queued, res.kind, res.reason, sent, extra)


def _outcome_text(recipients: list[str], id: str, queued: bool, kind: Optional[str], reason: Optional[str],
                  sent: str, extra: str) -> str:
    who = ", ".join(clean(t) for t in recipients)
    if not queued:
        return f"{sent} {who}{extra} [{id[:SHORT]}]"
    why = _QUEUED_WHY.get(kind or "", "not delivered yet")
    return (f"Queued ({why}; 'gitmail sync' delivers it) for {who}{extra} [{id[:SHORT]}]\n"
            f"  {clean(reason)}")


def _progress(attach: tuple[str, ...], as_json: bool, quiet: bool) -> Optional["Progress"]:
    if not attach:
        return None
    from gitmail.cli.commands.attachments import progress_for

    return progress_for(as_json, quiet)


def _attached(m: "Message") -> str:
    """`` (2 attachments, 4.2 KB)``, or nothing without attachments."""
    if not m.attachments:
        return ""
    from gitmail.core.attachments import human_size

    n = len(m.attachments)
    total = sum(a.size for a in m.attachments)
    return f" ({count(n, 'attachment')}, {human_size(total)})"
