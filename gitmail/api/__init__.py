"""The library API: every front-end (CLI, MCP server, git hooks, Claude Code hooks) calls these.

Each function takes a repository (a path, or an open :class:`~gitmail.core.repo.Repo`)
and the acting identity (``as_``; default from ``$GITMAIL_USER`` / ``gitmail.user``),
returns plain data, and raises only :class:`gitmail.errors.GitmailError`
subclasses. Nothing here prints.

By topic: :mod:`~gitmail.api.session` (the acting member),
:mod:`~gitmail.api.setup` (init, members, org policy, keys),
:mod:`~gitmail.api.send` (send, reply, batches),
:mod:`~gitmail.api.imports` (mbox, Maildir and team-chat imports; with
:mod:`~gitmail.api.archives` and :mod:`~gitmail.api.batch`, imported on use
only: their pydantic models must stay off the hooks' fast path),
:mod:`~gitmail.api.outbox` (queued and undelivered mail, retry, drop),
:mod:`~gitmail.api.mailbox` (list, read, mark, archive, thread),
:mod:`~gitmail.api.protocol` (groups, responses, acks),
:mod:`~gitmail.api.audit` (sync, verify, log, show),
:mod:`~gitmail.api.views` (how a message is shown) and
:mod:`~gitmail.api.results` (the JSON result models; each result dataclass's
``model()`` converts it; imported only when JSON is built).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gitmail.api.session import RepoLike, SHORT_ID, Session, session, resolve_recipients, resolve_id
from gitmail.api.send import SendResult, send, reply, Draft, send_batch, DELIVERED, QUEUED, REFUSED
from gitmail.api.outbox import Queued, Undelivered, Retry, outbox, undelivered, retry, drop, queued_id
from gitmail.api.mailbox import Listing, mailbox, Item, read, fetch_attachments, mark, mark_shown, archive, thread, thread_items, Trace, trace, unread_count
from gitmail.api.search import SearchHit, search
from gitmail.api.export import ExportResult, export
from gitmail.api.views import SHORT, ago, sender_label, row_json

if TYPE_CHECKING:
    from gitmail.api.setup import InitResult, init, members, WhoAmI, whoami, set_policy, org_policy, Rotation, rotate_key, Revocation, revoke_key, org_fingerprint, Deinit, deinit
    from gitmail.api.protocol import group_create, group_update, group_delete, group_list, response_payload, respond, AckResult, ack, acks, Awaiting, awaiting_ack, awaiting_json
    from gitmail.api.audit import NewMail, SyncResult, sync, Finding, VerifyReport, verify, LogEntry, log, Shown, show

# Imported on first use (PEP 562), so that a send does not pay for them (issue 15). Only modules
# whose names no function here shadows can be lazy: importing gitmail.api.X binds api.X to the
# module, which would hide a lazily bound function X (send, search, export, outbox, session).
_LAZY = {"setup": ("InitResult", "init", "members", "WhoAmI", "whoami", "set_policy", "org_policy", "Rotation",
                   "rotate_key", "Revocation", "revoke_key", "org_fingerprint", "Deinit", "deinit"),
         "protocol": ("group_create", "group_update", "group_delete", "group_list", "response_payload", "respond",
                      "AckResult", "ack", "acks", "Awaiting", "awaiting_ack", "awaiting_json"),
         "audit": ("NewMail", "SyncResult", "sync", "Finding", "VerifyReport", "verify", "LogEntry", "log", "Shown", "show")}
_HOME = {name: mod for mod, names in _LAZY.items() for name in names}


def __getattr__(name: str) -> Any:
    mod = _HOME.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value


__all__ = [
    "RepoLike",
    "SHORT_ID",
    "Session",
    "session",
    "resolve_recipients",
    "resolve_id",
    "InitResult",
    "init",
    "members",
    "WhoAmI",
    "whoami",
    "set_policy",
    "org_policy",
    "Rotation",
    "rotate_key",
    "Revocation",
    "revoke_key",
    "org_fingerprint",
    "SendResult",
    "send",
    "reply",
    "Draft",
    "send_batch",
    "DELIVERED",
    "QUEUED",
    "REFUSED",
    "Queued",
    "Undelivered",
    "Retry",
    "outbox",
    "undelivered",
    "retry",
    "drop",
    "queued_id",
    "Listing",
    "mailbox",
    "Item",
    "read",
    "fetch_attachments",
    "mark",
    "mark_shown",
    "archive",
    "thread",
    "Trace",
    "trace",
    "thread_items",
    "unread_count",
    "group_create",
    "group_update",
    "group_delete",
    "group_list",
    "response_payload",
    "respond",
    "AckResult",
    "ack",
    "acks",
    "Awaiting",
    "awaiting_ack",
    "awaiting_json",
    "SearchHit",
    "ExportResult",
    "export",
    "search",
    "NewMail",
    "SyncResult",
    "sync",
    "Finding",
    "VerifyReport",
    "verify",
    "LogEntry",
    "log",
    "Shown",
    "show",
    "SHORT",
    "ago",
    "sender_label",
    "row_json",
]
