"""Notify elsewhere: run the member's ``gitmail.notifyCommand`` after a sync that brings mail.

The command (git config ``gitmail.notifyCommand``, or ``$GITMAIL_NOTIFY_COMMAND``)
is the member's own: it runs through ``sh -c`` like git's own hooks and
aliases, with the new messages as one JSON object on stdin (docs/json.md,
"notifyCommand"); nothing from a message is ever put on its command line or
in its environment. It gets 30 s, and a failure is reported as a problem of
the sync, never as a failed sync. Part of the library API (:mod:`gitmail.api`).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from typing import TYPE_CHECKING, Iterable, Iterator, Optional

from gitmail.api.session import SHORT_ID, Session
from gitmail.core import cache

if TYPE_CHECKING:
    from gitmail.api.results import NotifyMessage

TIMEOUT = 30.0  # seconds


def command(s: Session) -> Optional[str]:
    return os.environ.get("GITMAIL_NOTIFY_COMMAND") or s.repo.config.get("gitmail.notifycommand") or None


def entry(r: cache.Row) -> "NotifyMessage":
    """One message of the payload (docs/json.md, ``NotifyMessage``). A subject is given only for
    verified mail the member could open (an encrypted message that could not be decrypted here
    has none); everything is JSON-escaped data."""
    from gitmail.api.results import NotifyMessage

    readable = r.status == "good" and not (r.encrypted and r.subject == "(encrypted message)")
    return NotifyMessage.model_validate({
        "id": r.id, "short_id": r.id[:SHORT_ID], "from": r.sender, "date": r.date,
        "subject": r.subject if readable else None, "priority": r.priority, "type": r.type,
        "verified": r.status == "good", "encrypted": r.encrypted})


def payload_chunks(member: str, pages: Iterable[list[cache.Row]]) -> Iterator[bytes]:
    """What the command reads on stdin (docs/json.md, ``NotifyPayload``: the member and one entry
    per new message, one line of JSON), a page of messages at a time: the same bytes as one
    ``json.dumps`` of the whole payload, never all of it in memory."""
    from gitmail.api.results import NotifyPayload

    head = json.dumps(NotifyPayload(member=member, messages=[]).dump(), ensure_ascii=False)
    assert head.endswith("[]}")  # "messages" is the payload's last field
    sep, started = head[:-2], False
    for page in pages:
        if page:
            yield (sep + ", ".join(json.dumps(entry(r).dump(), ensure_ascii=False) for r in page)).encode("utf-8")
            sep, started = ", ", True
    yield b"]}" if started else head.encode("utf-8")


def run(s: Session, pages: Iterable[list[cache.Row]]) -> Optional[str]:
    """Run the notify command for the new inbox messages ``pages`` (lists of rows, e.g.
    :meth:`gitmail.api.audit.NewMail.pages`), writing each page to its stdin as it is read;
    None, or one line saying why it failed. Does nothing when no command is set or nothing
    arrived. The command gets :data:`TIMEOUT` seconds in all, stdin included."""
    import tempfile
    import threading

    cmd = command(s)
    if not cmd:
        return None
    pages = iter(pages)
    first = next(pages, None)
    if not first:
        return None
    with tempfile.TemporaryFile() as err:
        try:
            p = subprocess.Popen(["sh", "-c", cmd], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err,
                                 cwd=s.repo.path)
        except OSError as e:
            return f"gitmail.notifyCommand could not run: {e.strerror}"
        timed_out = threading.Event()

        def expire() -> None:
            timed_out.set()
            p.kill()  # a command that stops reading its stdin gets EPIPE here, not a hung sync

        timer = threading.Timer(TIMEOUT, expire)
        timer.start()
        try:
            assert p.stdin is not None
            try:
                for chunk in payload_chunks(s.me, itertools.chain([first], pages)):
                    p.stdin.write(chunk)
                    p.stdin.flush()  # the command reads each page while the next is read from the cache
                p.stdin.close()
            except BrokenPipeError:
                pass  # the command stopped reading (or was stopped): its exit status tells
            p.wait()
        except BaseException:
            p.kill()
            p.wait()
            raise
        finally:
            timer.cancel()
            timer.join()  # no thread left behind: a pool is forked only from a single-threaded process
        if timed_out.is_set():
            return f"gitmail.notifyCommand did not finish within {TIMEOUT:.0f} s"
        if p.returncode != 0:
            err.seek(0)
            last = (err.read().decode("utf-8", "replace").strip().splitlines() or [""])[-1][:200]
            return f"gitmail.notifyCommand exited with {p.returncode}" + (f": {last}" if last else "")
    return None
