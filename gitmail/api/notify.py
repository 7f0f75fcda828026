"""Notify elsewhere: run the member's ``gitmail.notifyCommand`` after a sync that brings mail.

The command (git config ``gitmail.notifyCommand``, or ``$GITMAIL_NOTIFY_COMMAND``)
is the member's own: it runs through ``sh -c`` like git's own hooks and
aliases, with the new messages as one JSON object on stdin (docs/json.md,
"notifyCommand"); nothing from a message is ever put on its command line or
in its environment. It gets 30 s, and a failure is reported as a problem of
the sync, never as a failed sync. Part of the library API (:mod:`gitmail.api`).
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import TYPE_CHECKING, Optional

from gitmail.api.session import SHORT_ID, Session
from gitmail.core import cache

if TYPE_CHECKING:
    from gitmail.api.results import NotifyPayload

TIMEOUT = 30.0  # seconds


def command(s: Session) -> Optional[str]:
    return os.environ.get("GITMAIL_NOTIFY_COMMAND") or s.repo.config.get("gitmail.notifycommand") or None


def payload(s: Session, rows: list[cache.Row]) -> "NotifyPayload":
    """What the command reads on stdin (docs/json.md, ``NotifyPayload``): the member and one entry
    per new message. A subject is given only for verified mail the member could open (an
    encrypted message that could not be decrypted here has none); everything is JSON-escaped data."""
    from gitmail.api.results import NotifyPayload

    out = []
    for r in rows:
        readable = r.status == "good" and not (r.encrypted and r.subject == "(encrypted message)")
        out.append({"id": r.id, "short_id": r.id[:SHORT_ID], "from": r.sender, "date": r.date,
                    "subject": r.subject if readable else None, "priority": r.priority, "type": r.type,
                    "verified": r.status == "good", "encrypted": r.encrypted})
    return NotifyPayload.model_validate({"member": s.me, "messages": out})


def run(s: Session, rows: list[cache.Row]) -> Optional[str]:
    """Run the notify command for ``rows`` (new inbox messages); None, or one line saying
    why it failed. Does nothing when no command is set or nothing arrived."""
    cmd = command(s)
    if not cmd or not rows:
        return None
    data = json.dumps(payload(s, rows).dump(), ensure_ascii=False).encode("utf-8")
    try:
        r = subprocess.run(["sh", "-c", cmd], input=data, cwd=s.repo.path, capture_output=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return f"gitmail.notifyCommand did not finish within {TIMEOUT:.0f} s"
    except OSError as e:
        return f"gitmail.notifyCommand could not run: {e.strerror}"
    if r.returncode != 0:
        last = (r.stderr.decode("utf-8", "replace").strip().splitlines() or [""])[-1][:200]
        return f"gitmail.notifyCommand exited with {r.returncode}" + (f": {last}" if last else "")
    return None
