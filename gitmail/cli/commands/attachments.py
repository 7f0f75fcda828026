"""``gitmail attachments``: fetch, verify and save one message's attachments again.

Also the CLI helpers the ``send`` and ``read`` commands share for attachments:
the progress bar and the attachment lines.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, Optional

import click

from gitmail.cli.main import common
from gitmail.cli.render import emit_json
from gitmail.api.views import SHORT, clean
from gitmail.errors import AttachmentError

if TYPE_CHECKING:
    from gitmail.core.attachments import Saved
    from gitmail.core.lfs import Progress

BAR_DELAY = 1.0  # seconds a transfer runs before its bar appears


class LazyBar:
    """A progress callback ``(label, done, total)`` drawing a click bar on stderr,
    only once a transfer has run for :data:`BAR_DELAY` seconds."""

    def __init__(self) -> None:
        self.label: Optional[str] = None
        self.start = 0.0
        self.bar: Any = None

    def __call__(self, label: str, done: int, total: int) -> None:
        if label != self.label:
            self._close()
            self.label, self.start = label, time.monotonic()
        if self.bar is None and done < total and time.monotonic() - self.start > BAR_DELAY:
            self.bar = click.progressbar(length=total, label=label, file=sys.stderr, show_pos=False)
            self.bar.__enter__()
        if self.bar is not None:
            self.bar.update(done - self.bar.pos)
            if done >= total:
                self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None
        self.label = None


def progress_for(as_json: bool, quiet: bool) -> Optional["Progress"]:
    """A :class:`LazyBar` on a terminal; None in a pipe, with ``--json`` or ``--quiet``."""
    if as_json or quiet or not sys.stderr.isatty():
        return None
    return LazyBar()


def saved_line(s: "Saved") -> str:
    """``Attachment: report.csv (4.2 KB, text/csv) saved to /path`` (or why it was not)."""
    from gitmail.core.attachments import human_size

    a = s.attachment
    head = f"Attachment: {clean(s.name)} ({human_size(a.size)}, {printable(a.media_type)})"
    if s.path:
        return f"{head} saved to {clean(s.path)}"
    return f"{head} NOT saved: {clean(s.error)}"


def printable(text: str, limit: int = 80) -> str:
    """A sender-controlled string cut to ``limit`` characters, through the one sanitiser."""
    return clean(text[:limit])


def fail_if_unsaved(saved: list["Saved"]) -> None:
    """Raise one :class:`AttachmentError` line when any attachment could not be saved."""
    bad = [s for s in saved if s.error]
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise AttachmentError(f"attachment not saved: {clean(bad[0].error)}{more}")


@click.command("attachments")
@click.argument("id")
@click.option("--save-dir", metavar="DIR", help="Save here [default: $GITMAIL_INBOX, git config gitmail.inbox, "
                                                  "~/gitmail/inbox/<member>/].")
@common
def command(id: str, save_dir: Optional[str], repo: Optional[str], as_: Optional[str], as_json: bool,
            quiet: bool) -> None:
    """Fetch, verify (sha256) and save the attachments of message ID again; never overwrites a file."""
    from gitmail import api

    it = api.fetch_attachments(repo, id, save_dir=save_dir, as_=as_, progress=progress_for(as_json, quiet))
    if as_json:
        from gitmail.api.results import AttachmentsResult, SavedAttachment

        emit_json(AttachmentsResult(id=it.row.id, short_id=it.row.id[:SHORT],
                                    attachments=[SavedAttachment.of_saved(s) for s in it.saved]))
    elif not quiet:
        if not it.saved:
            click.echo(f"Message {clean(it.row.id[:SHORT])} has no attachments.")
        for s in it.saved:
            click.echo(saved_line(s))
    fail_if_unsaved(it.saved)
