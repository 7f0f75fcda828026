"""Typed results: one pydantic model per JSON object a front-end prints or returns.

The CLI's ``--json`` output, the MCP tools' structured results (each tool
publishes its model as ``outputSchema``) and the notify command's stdin are
instances of these models, serialised with :meth:`Result.dump` (JSON names,
e.g. ``from``). The Claude Code hooks build their small object by hand (no
pydantic on every prompt); :class:`ClaudeHookOutput` is its shape. docs/json.md
carries the field tables generated from these models (``python -m
gitmail.api.results --markdown`` prints the section, ``--write docs/json.md``
replaces it); tests/agents/test_json_docs.py fails when the copy is stale and
validates the real output of every command of its scenario against its model.

Adding a result is one class: subclass :class:`Result`, give every field a
``Field(description=...)`` (shape and units), and list where it is used in
``used_by`` (``gitmail CMD`` for a CLI command, ``mcp TOOL`` for an MCP tool).
Every model forbids unknown fields, so an emitter that adds a key without
adding it here fails, as does a model field the output lacks.

Rules every model keeps (docs/json.md, "Stability"): absent values are
``null``, never a missing key; lists stay lists; dates are RFC 3339 UTC.

This module imports only pydantic and :mod:`gitmail.core`: every front-end and
every api module may import it (lazily: it is not needed unless JSON is built).
Converting the library's dataclasses into these models is their own job
(their ``model()`` methods); only core types are converted here.
"""

import sys
import types
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Optional, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field

from gitmail.core import msgtypes, verdicts

if TYPE_CHECKING:
    from collections.abc import Collection

    from gitmail.core.attachments import Saved
    from gitmail.core.cache import Row
    from gitmail.core.model import Attachment, Group, Member

SHORT = 8  # hex digits of a short_id (gitmail.api.session.SHORT_ID; a test keeps them equal)

_REGISTRY: list[type["Result"]] = []


class Result(BaseModel):
    """Base of every result model: unknown fields forbidden, JSON names (aliases) on output."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True,
                              serialize_by_alias=True, defer_build=True)

    # Where the object appears: "gitmail CMD" (``--json`` output), "mcp TOOL", or a short phrase.
    used_by: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        _REGISTRY.append(cls)

    def dump(self) -> dict[str, Any]:
        """The JSON object (a dict of JSON values, JSON field names)."""
        return self.model_dump(mode="json", by_alias=True)


# -- shared field types: one description each ----------------------------------------

MessageId = Annotated[str, Field(description="Message-ID: sha256 of the message's content, 64 hex digits")]
ShortId = Annotated[str, Field(description="the Message-ID's first 8 hex digits (any unique prefix of 4 or "
                                           "more is accepted as an id)")]
Date = Annotated[str, Field(description="RFC 3339 UTC with microseconds and a Z suffix")]
Outcome = Literal["delivered", "queued", "refused"]
OutcomeF = Annotated[Outcome, Field(description="where the message went (docs/sync.md, \"The outcome of a "
                                                "send\"): `delivered`, `queued` (delivered by a later sync) or "
                                                "`refused` (the command then exits 10)")]
ReasonF = Annotated[Optional[str], Field(description="why it is queued or refused, one line; null when delivered")]
DeliveredF = Annotated[bool, Field(description="on the org repo in every recipient's mailbox")]
QueuedF = Annotated[bool, Field(description="still in the outbox for some mailbox")]
RefusedF = Annotated[dict[str, str], Field(description="mailbox path -> the org repo's reason, for each "
                                                       "mailbox that refused it")]
QueuedInF = Annotated[dict[str, str], Field(description="mailbox path -> why, for each mailbox where it "
                                                        "is still queued")]


def _ticked(words: "tuple[str, ...]") -> str:
    return ", ".join(f"`{w}`" for w in words)


STATUS_DOC = "`good`, or why not (docs/protocol.md §7): " + _ticked(verdicts.FAILED)
TYPE_DOC = ("`text`, a built-in protocol type (docs/protocol.md §5: " + _ticked(msgtypes.MESSAGE_TYPES[1:]) +
            "), or an open type such as `x-build-done` (lower-case, at most 64 characters)")


# -- messages --------------------------------------------------------------------------


ROW_RECIPIENTS = 20  # recipients a message row lists (read lists all): docs/json.md, MessageRow


class MessageRow(Result):
    """A message as listings show it (the message row). `read` and the MCP `read_message` add its
    content; `search`, `list --awaiting-ack` add a few fields."""

    
    id: MessageId
    short_id: ShortId
    from_: str = Field(alias="from", description="sender (member name); trust it only when `verified` is true")
    to: list[str] = Field(description="recipients as addressed: member names, `*`, `team:NAME`; a row lists the "
                                      f"first {ROW_RECIPIENTS} (`read` lists them all)")
    to_more: int = Field(description="recipients the row leaves out of `to` (0 when it lists them all): a sender "
                                     "may address up to 1,000, made-up names too, and every row would repeat them")
    date: Date
    subject: str = Field(description="subject line (decrypted for you when encrypted and readable)")
    summary: str = Field(description="short preview")
    priority: str = Field(description="`low`, `normal`, `high` or `urgent`")
    type: str = Field(description=TYPE_DOC)
    request_id: Optional[str] = Field(description="a request's id, echoed by its response; else null")
    in_reply_to: Optional[str] = Field(description="Message-ID this one answers, or null")
    thread: str = Field(description="Message-ID of the thread's first message (its own id for a first message)")
    trace_id: Optional[str] = Field(description="the trace this message belongs to (`gitmail trace`), or null")
    require_ack: bool = Field(description="the sender asked for a receipt (`gitmail ack`)")
    ack_requested: bool = Field(description="a receipt is asked of you and you have not sent it yet "
                                            "(`gitmail ack ID`); false for mail you sent")
    answers_request: Optional[bool] = Field(
        description="for a verified response in your inbox (`answer`, `shutdown_response`, "
                    "`plan_approval_response`): true when its `request_id` is that of a request you sent "
                    "to its sender; false when your requests with that id went to others only (it answers "
                    "something its sender was never asked: do not act on it); null when no request of "
                    "yours with that id is known in this clone, and for every other message")
    read: bool = Field(description="your local read flag")
    archived: bool = Field(description="your local archived flag")
    verified: bool = Field(description="signature, sender and mailbox all check out (`status` is `good`)")
    status: str = Field(description=STATUS_DOC)
    attachments: int = Field(description="number of attachments")
    encrypted: bool = Field(description="sent end-to-end encrypted (docs/protocol.md §9)")
    mailbox: str = Field(description="the shared ref it lives on (`gitmail/mail/<recipient>/<sender>`)")
    commit: str = Field(description="the commit that carries it (40 hex digits)")

    @classmethod
    def of(cls, row: "Row") -> "MessageRow":
        return cls.model_validate(row_fields(row))


def row_fields(row: "Row", all_recipients: bool = False) -> dict[str, Any]:
    """The message-row fields of a cache row, by JSON name (for :class:`MessageRow` and its extensions);
    ``to`` cut to :data:`ROW_RECIPIENTS` names unless ``all_recipients`` (``read``)."""
    to = row.recipients if all_recipients else row.recipients[:ROW_RECIPIENTS]
    return {"id": row.id, "short_id": row.id[:SHORT], "from": row.sender, "to": to,
            "to_more": len(row.recipients) - len(to), "date": row.date,
            "subject": row.subject, "summary": row.summary, "priority": row.priority, "type": row.type,
            "request_id": row.request_id, "in_reply_to": row.in_reply_to, "thread": row.thread or row.id,
            "trace_id": row.trace_id, "require_ack": row.require_ack, "ack_requested": row.ack_requested,
            "answers_request": row.answers_request, "read": row.read, "archived": row.archived,
            "verified": row.status == "good", "status": row.status, "attachments": row.n_attach,
            "encrypted": row.encrypted, "mailbox": row.path, "commit": row.oid}


class AttachmentInfo(Result):
    """One attached file, as the message lists it (docs/attachments.md)."""

    name: str = Field(description="file name as the sender gave it (sanitised before saving)")
    size: int = Field(description="size in bytes")
    media_type: str = Field(description="media type, e.g. `text/csv`")
    oid: str = Field(description="sha256 of the content, 64 hex digits")
    storage: str = Field(description="`blob` (in the commit) or `lfs` (an LFS pointer)")
    path: str = Field(description="path of the blob or pointer in the message commit's tree")

    @classmethod
    def of(cls, a: "Attachment") -> "AttachmentInfo":
        # Only the known fields: an attachment entry may carry fields a newer client added.
        return cls(name=a.name, size=a.size, media_type=a.media_type, oid=a.oid, storage=a.storage, path=a.path)


class SavedAttachment(AttachmentInfo):
    """An attachment of a message read here: its entry plus where it was saved, or why not."""

    saved_to: Optional[str] = Field(description="absolute path of the saved file; null when not saved")
    error: Optional[str] = Field(description="why it was not saved (one line); null when saved or not asked")

    @classmethod
    def of_saved(cls, s: "Saved") -> "SavedAttachment":
        a = s.attachment
        return cls(name=a.name, size=a.size, media_type=a.media_type, oid=a.oid, storage=a.storage, path=a.path,
                   saved_to=str(s.path) if s.path else None, error=s.error)

    @classmethod
    def unsaved(cls, a: "Attachment") -> "SavedAttachment":
        return cls(**AttachmentInfo.of(a).dump(), saved_to=None, error=None)


class ReadItem(MessageRow):
    """One message in full: the message row plus its content; `attachments` is a list here."""

    attachments: list[SavedAttachment] = Field(  # type: ignore[assignment]  # a list here, a count in rows
        description="every attachment, with where it was saved")
    body: Optional[str] = Field(description="the text (markdown); null when the message cannot be read")
    payload: Optional[dict[str, Any]] = Field(description="a protocol message's payload object, else null")
    verification: str = Field(description="detail of a failed check; empty when good")
    error: Optional[str] = Field(description="why an encrypted message could not be opened here, else null")


class ReadResult(Result):
    """`gitmail read --json`: the messages shown, most urgent first."""

    used_by = ("gitmail read",)

    messages: list[ReadItem] = Field(description="one item per message read")


class ReadMessage(ReadItem):
    """The MCP `read_message` result: one `read` item plus a note on whom to trust."""

    used_by = ("mcp read_message",)

    note: str = Field(description="who wrote the content (treat it as information from them), or a warning "
                                  "that the message failed verification; for a response that answers no "
                                  "request of yours (answers_request false), that too; and when the payload "
                                  "is over 256 KiB as the tool would send it, that it is not returned here (`payload` null)")
    saved: Optional[list[SavedAttachment]] = Field(
        description="with save_attachments_to: each attachment's saved path (in `<save_attachments_to>/<short_id>/`, "
                    "docs/agents.md) or error; else null")


class Listing(Result):
    """A mailbox listing: counts of the (non-archived) inbox and the messages asked for."""

    used_by: ClassVar[tuple[str, ...]] = ("gitmail list", "gitmail list --sent")

    unread: int = Field(description="unread messages in the inbox (archived ones not counted)")
    total: int = Field(description="messages in the inbox (archived ones not counted)")
    messages: list[MessageRow] = Field(description="the messages, newest first (or most urgent first)")


class ThreadResult(Result):
    """A thread, oldest first."""

    used_by = ("gitmail thread",)

    thread: Optional[str] = Field(description="Message-ID of the thread's first message; null when empty")
    messages: list[MessageRow] = Field(description="every message of the thread, oldest first")


class SearchRow(MessageRow):
    """A search hit: the message row plus the matching passage."""

    snippet: str = Field(description="the best-matching passage on one line, matched words wrapped in `**`")


class SearchResult(Result):
    """Full-text search results, best match first."""

    used_by = ("gitmail search", "mcp search_messages")

    query: str = Field(description="the words searched for")
    messages: list[SearchRow] = Field(description="the hits, best match first")


class AwaitingRow(MessageRow):
    """A message you sent with require_ack that not every recipient acknowledged."""

    pending: list[str] = Field(description="members who have not acknowledged it")
    acked_by: list[str] = Field(description="members who have")
    waited_seconds: int = Field(description="seconds since it was sent")


class AwaitingList(Result):
    """Sent messages awaiting acknowledgement, oldest first."""

    used_by = ("gitmail list --awaiting-ack", "mcp awaiting_acks")

    messages: list[AwaitingRow] = Field(description="oldest first")


class Marked(Result):
    """Messages marked read or unread."""

    used_by = ("gitmail mark", "mcp mark_message")

    ids: list[str] = Field(description="full Message-IDs of the messages marked")
    read: bool = Field(description="the flag set: true read, false unread")


class Archived(Result):
    """Messages archived (or brought back)."""

    used_by = ("gitmail archive", "mcp archive_message")

    ids: list[str] = Field(description="full Message-IDs of the messages changed")
    archived: bool = Field(description="true archived, false brought back (`--undo`)")


class AttachmentsResult(Result):
    """The attachments of one message, fetched, verified and saved again."""

    used_by = ("gitmail attachments",)

    id: MessageId
    short_id: ShortId
    attachments: list[SavedAttachment] = Field(description="each attachment with where it was saved or why not")


# -- sending ---------------------------------------------------------------------------


class Sent(Result):
    """The result of sending one message: the same shape for `send`, `reply`, `respond` and the MCP
    sending tools (which report a refused send as a tool error instead)."""

    used_by = ("gitmail send", "gitmail reply", "gitmail respond", "mcp send_message", "mcp reply_message",
               "mcp respond_to_request")

    id: MessageId
    short_id: ShortId
    to: list[str] = Field(description="the recipients as resolved (member names, `*`, `team:NAME`)")
    from_: str = Field(alias="from", description="the sender: you")
    subject: str = Field(description="subject line")
    date: Date
    type: str = Field(description="`text` or the protocol type")
    request_id: Optional[str] = Field(description="the request_id of a request or response, else null")
    in_reply_to: Optional[str] = Field(description="Message-ID this one answers, or null")
    thread: str = Field(description="Message-ID of the thread's first message")
    trace_id: Optional[str] = Field(description="the trace id sent (a reply inherits its parent's), or null")
    payload: Optional[dict[str, Any]] = Field(description="the protocol or open-type payload sent, or null")
    outcome: OutcomeF
    reason: ReasonF
    delivered: DeliveredF
    queued: QueuedF
    refused: RefusedF
    queued_in: QueuedInF
    encrypted: bool = Field(description="sent end-to-end encrypted (docs/protocol.md §9)")
    attachments: list[AttachmentInfo] = Field(description="the attachments sent")


class Acked(Result):
    """One acknowledgement (a signed `ack` message to the sender)."""

    used_by = ("mcp ack_message",)

    acked: str = Field(description="Message-ID of the message acknowledged")
    to: str = Field(description="its sender, to whom the ack goes")
    sent: bool = Field(description="false when an ack already existed (nothing was sent)")
    ack_id: Optional[str] = Field(description="Message-ID of the ack (the earlier one when `sent` is false)")
    outcome: Optional[Outcome] = Field(description="as for a send (`delivered`, `queued`, `refused`); null "
                                                   "when nothing was sent")
    reason: ReasonF
    delivered: DeliveredF
    queued: QueuedF
    refused: RefusedF
    queued_in: QueuedInF


class AckList(Result):
    """`gitmail ack --json`: one item per message acknowledged."""

    used_by = ("gitmail ack",)

    acks: list[Acked] = Field(description="in the order of the ids given")


# -- outbox and sync -------------------------------------------------------------------


class UndeliveredEntry(Result):
    """A message of yours that left the outbox undelivered (refused by the org repo, or dropped)."""

    used_by = ("gitmail outbox drop",)

    id: MessageId
    short_id: ShortId
    subject: str = Field(description="its subject")
    to: list[str] = Field(description="recipients as addressed")
    date: Date
    mailboxes: list[str] = Field(description="the recipients whose mailbox it waits for or left")
    kind: str = Field(description="why: `refused` or `dropped` here; for queued mail `remote-unreachable`, "
                                  "`lfs-unreachable`, `push-failed`, `race`, `no-key`, `not-tried`; `restored` "
                                  "in sync's `restored`")
    reason: str = Field(description="one line: the remote's, git's or gitmail's words")
    since: Date = Field(description="when it left the outbox (for queued mail: the first failed attempt for "
                                    "this reason); RFC 3339 UTC")


class QueuedEntry(UndeliveredEntry):
    """A message of yours still in the outbox, and why it has not gone."""

    tried: str = Field(description="the last attempt, RFC 3339 UTC; empty when none was recorded")


class OutboxList(Result):
    """`gitmail outbox --json`: queued messages."""

    used_by = ("gitmail outbox",)

    queued: list[QueuedEntry] = Field(description="every queued message, with why")


class UndeliveredList(Result):
    """`gitmail outbox --undelivered --json`."""

    used_by = ("gitmail outbox --undelivered",)

    undelivered: list[UndeliveredEntry] = Field(description="messages that left the outbox undelivered")


class RetryReport(Result):
    """What `outbox retry` did. `delivered` and `queued` are lists of Message-IDs (messages, not mailboxes)."""

    used_by = ("gitmail outbox retry",)

    delivered: list[str] = Field(description="Message-IDs of queued messages delivered now")
    queued: list[str] = Field(description="Message-IDs still queued")
    refused: dict[str, str] = Field(description="Message-ID -> the remote's reason, refused now")
    outbox: list[QueuedEntry] = Field(description="the messages still queued, in full")
    undelivered: list[UndeliveredEntry] = Field(description="the messages refused now, in full")


class BatchItem(Result):
    """The outcome of one line (docs/json.md, ``send --batch``)."""

    line: int = Field(description="Its line number in the input (1-based).")
    id: str = Field(description="The Message-ID.")
    short_id: str = Field(description="Its first 8 hex digits.")
    to: list[str] = Field(description="Recipients as addressed.")
    subject: str = Field(description="The subject as sent.")
    type: str = Field(description="The message type.")
    request_id: Optional[str] = Field(description="A request's id (generated for a request type), else null.")
    encrypted: bool = Field(description="Sent end-to-end encrypted.")
    outcome: str = Field(description="`delivered`, `queued` or `refused` (docs/json.md, \"Outcomes of sending\").")
    reason: Optional[str] = Field(description="Why queued or refused (one line), else null.")
    delivered: bool = Field(description="On the org repo, in every recipient's mailbox.")
    queued: bool = Field(description="Written, waiting in the outbox for a later sync.")
    refused: dict[str, str] = Field(description="Mailbox -> the org repo's reason, for each mailbox that refused it.")
    queued_in: dict[str, str] = Field(description="Mailbox -> why, for each mailbox where it is still queued.")
    kind: Optional[str] = Field(description="Why queued, as a word (`remote-unreachable`, `push-failed`, ...; docs/sync.md), else null.")


class BatchReport(Result):
    """What ``gitmail send --batch`` did."""

    used_by = ('gitmail send --batch',)

    messages: list[BatchItem] = Field(description="One entry per non-blank input line, in order.")


class SkippedEntry(Result):
    """One archive entry that was not imported."""

    where: str = Field(description="Its place in the archive: `message 3` (mbox), the Maildir key, `inboxes/dev.jsonl line 4`.")
    reason: str = Field(description="Why, in one line.")


class ImportResult(Result):
    """What ``gitmail import`` did (docs/json.md, ``import``)."""

    used_by = ('gitmail import',)

    source: str = Field(description="`mbox`, `maildir` or `team-chat`.")
    path: str = Field(description="The archive read.")
    mailbox: str = Field(description="The mailbox written: `gitmail/mail/<recipient>/<importer>`.")
    added: list[str] = Field(description="Message-IDs of the messages written this time, in order.")
    already: int = Field(description="Archive entries imported before (same source and original Message-ID), not written again.")
    skipped: list[SkippedEntry] = Field(description="Entries that could not be imported, each with why.")
    outcome: Optional[str] = Field(description="Delivery of what was added: `delivered`, `queued` or `refused` (the worst of them); null when nothing was added.")
    reason: Optional[str] = Field(description="Why queued or refused (one line), else null.")


class StateResult(Result):
    """What `gitmail state push`/`pull`/`status` did or found (docs/protocol.md §10, "Shared state");
    also the `state` field of `gitmail sync` when `gitmail.syncState` is on."""

    used_by = ("gitmail state push", "gitmail state pull", "gitmail state status")

    member: str = Field(description="The member whose state this is.")
    machine: str = Field(description="This clone's machine id (16 hex digits, `gitmail.stateMachine`): the tie-break of the merge.")
    ref: str = Field(description="The shared ref on the org repo, `refs/heads/gitmail/state/<ref-safe member>`.")
    remote: Optional[str] = Field(description="The commit the shared ref points at after this command (as last fetched), or null when there is none.")
    pushed: bool = Field(description="A new state commit landed on the org repo in this command.")
    events: int = Field(description="Events in the merged log (one per message and flag that was ever changed).")
    recorded: int = Field(description="Local flag changes recorded as new events by this command (for `status`: waiting to be recorded).")
    changed: int = Field(description="Messages whose local flags this command changed to match the merged log (`status`: 0).")
    pending: int = Field(description="Events about messages this clone does not have yet; applied when they arrive.")
    enabled: bool = Field(description="`gitmail.syncState` is on: every `gitmail sync` pulls and pushes the state.")
    replaced: Optional[str] = Field(None, description="Why the shared ref held no state commit of yours (unsigned, "
                                    "another member's, damaged), when this push wrote your state on top of it; "
                                    "else null.")


class PackResult(Result):
    """What `gitmail pack` did (docs/protocol.md §3, "Packed mailboxes"); also the `packed` field
    of `gitmail sync` when it packed."""

    used_by = ("gitmail pack",)

    member: str = Field(description="The member whose inbox was packed.")
    ref: str = Field(description="The member's packed ref on the org repo, `refs/heads/gitmail/packed/<ref-safe member>`.")
    commit: Optional[str] = Field(description="The packed ref's tip after this command, or null when there is none.")
    packed: list[str] = Field(description="Senders whose mailbox ref to the member was recorded and deleted on the org repo.")
    kept: list[str] = Field(description="Senders recorded whose ref moved before its deletion (they wrote again): packed next time.")


class SyncReport(Result):
    """What `sync` did: new inbox mail, and the outbox's fate."""

    used_by = ("gitmail sync",)

    new: list[MessageRow] = Field(description="inbox messages that arrived")
    delivered: list[str] = Field(description="Message-IDs of queued messages delivered now")
    queued: list[str] = Field(description="Message-IDs still queued")
    refused: dict[str, str] = Field(description="Message-ID -> the remote's reason, refused now")
    outbox: list[QueuedEntry] = Field(description="the messages still queued, in full")
    undelivered: list[UndeliveredEntry] = Field(description="the messages refused now, in full")
    restored: list[QueuedEntry] = Field(description="messages this clone had delivered that the org repo lost "
                                                    "to a rewrite, queued again (kind `restored`)")
    problems: list[str] = Field(description="warnings (one line each): history problems, a failed notify "
                                            "command, a failed shared-state round")
    state: Optional[StateResult] = Field(default=None, description="the shared-state round (pull, then push) when "
                                                                   "`gitmail.syncState` is on, else null")
    packed: Optional[PackResult] = Field(default=None, description="the packing this sync did (the org's policy has "
                                                                 "packing on and the member had `gitmail.packAfter` "
                                                                 "inbox refs on the org repo), else null")


class Outgoing(Result):
    """Mail you sent that is stuck in the outbox (the MCP `check_mailbox` field `outgoing`)."""

    queued: list[QueuedEntry] = Field(description="each queued message and why it has not gone")
    note: str = Field(description="what to do about it, in a sentence")


class Mailbox(Listing):
    """The MCP `check_mailbox` result: a listing, a sync warning and stuck outgoing mail."""

    used_by = ("mcp check_mailbox",)

    warning: Optional[str] = Field(description="why the sync first failed (what is shown is what was here), "
                                               "or what it found wrong (a mailbox rewritten on the org repo, "
                                               "mail the org refused); null when neither or not asked")
    outgoing: Optional[Outgoing] = Field(description="mail you sent that is still queued; null when none")


# -- org and members -------------------------------------------------------------------


class InitReport(Result):
    """`gitmail init --json`: who this clone now acts as."""

    used_by = ("gitmail init",)

    member: str = Field(description="the member name")
    role: str = Field(description="`admin` or `member`")
    repo: str = Field(description="absolute path of the clone")
    remote: Optional[str] = Field(description="the org remote's name, or null")
    key: str = Field(description="path of the private signing key")
    created_org: bool = Field(description="the org repo was created now")
    created_key: bool = Field(description="the key was created now")
    registered: bool = Field(description="the member was added to the directory now")
    fingerprint: Optional[str] = Field(description="the org fingerprint (root commit and its signer's key)")


class DeinitReport(Result):
    """`gitmail deinit --json`: what was taken out of the clone, and what stays."""

    used_by = ("gitmail deinit",)

    repo: str = Field(description="absolute path of the clone")
    removed: list[str] = Field(description="what was removed, one line each (empty: nothing of gitmail's was here)")
    kept: list[str] = Field(description="what stays, one line each (the org registration, keys, the user's remote)")
    dropped_queued: int = Field(description="mailboxes whose undelivered mail was dropped (only with `--force`)")


class WhoAmIReport(Result):
    """`gitmail whoami --json`: the acting identity and where its data lives."""

    used_by = ("gitmail whoami",)

    name: str = Field(description="the acting member name")
    registered: bool = Field(description="the directory knows this member")
    role: Optional[str] = Field(description="`admin` or `member`; null when not registered")
    email: Optional[str] = Field(description="the member's e-mail; null when not registered")
    repo: str = Field(description="absolute path of the clone")
    git_dir: str = Field(description="its .git directory")
    remote: Optional[str] = Field(description="the org remote's name, or null")
    remote_url: Optional[str] = Field(description="its URL, or null")
    key: str = Field(description="path of the private signing key")
    cache: str = Field(description="path of the SQLite cache")
    allowed_signers: str = Field(description="path of the allowed-signers file git verifies with")
    outbox: int = Field(description="messages queued in the outbox")
    fingerprint: Optional[str] = Field(description="the org fingerprint, or null")


class MemberRow(Result):
    """One member of the org, from the verified directory."""

    name: str = Field(description="member name (what you address)")
    display_name: str = Field(description="display name (may be empty)")
    email: str = Field(description="e-mail address")
    role: str = Field(description="`admin` or `member`")
    kind: str = Field(description="`human` or `agent`")
    signing_key: str = Field(description="current public key (`ssh-ed25519 AAAA...`)")
    encryption_key: Optional[str] = Field(description="public key messages to this member are encrypted to, "
                                                      "or null")

    @classmethod
    def of(cls, m: "Member") -> "MemberRow":
        return cls(name=m.name, display_name=m.display_name, email=m.email, role=m.role, kind=m.kind,
                   signing_key=m.signing_key, encryption_key=m.encryption_key)


class MemberList(Result):
    """`gitmail members --json`."""

    used_by = ("gitmail members",)

    members: list[MemberRow] = Field(description="every member, by name")


class GroupInfo(Result):
    """A group (addressed as `team:NAME`)."""

    used_by = ("gitmail group create", "gitmail group add", "gitmail group remove")

    name: str = Field(description="group name")
    address: str = Field(description="how to address it: `team:NAME`")
    members: list[str] = Field(description="member names, as the group lists them")
    former: list[str] = Field(description="names the group lists that no member holds now (an admin removed them "
                                          "from the directory): mail to the group does not reach them")

    @classmethod
    def of(cls, g: "Group", current: "Collection[str]") -> "GroupInfo":
        """``current``: the names the directory's members hold now."""
        return cls(name=g.name, address=f"team:{g.name}", members=list(g.members),
                   former=[n for n in g.members if n not in current])


class GroupList(Result):
    """`gitmail group list --json`."""

    used_by = ("gitmail group list",)

    groups: list[GroupInfo] = Field(description="every group")


class GroupDeleted(Result):
    """`gitmail group delete --json`."""

    used_by = ("gitmail group delete",)

    deleted: str = Field(description="the address of the group deleted (`team:NAME`)")


class OrgMembers(Result):
    """The MCP `list_members` result: who you are, the members and the groups."""

    used_by = ("mcp list_members",)

    me: str = Field(description="your member name (the identity this call acted as)")
    members: list[MemberRow] = Field(description="every member")
    groups: list[GroupInfo] = Field(description="every group")
    identities: list[str] = Field(description="the identities this server acts for (`agent_name` picks one)")


class TraceResult(Result):
    """Every message of one trace, or of one message's thread and trace, oldest first."""

    used_by = ("gitmail trace", "mcp trace")

    trace_id: Optional[str] = Field(description="the trace shown, or null when the id named a message without one")
    thread: Optional[str] = Field(description="the thread's Message-ID when the id named a message, else null")
    messages: list[MessageRow] = Field(description="the member's view of the trace and thread: inbox, groups, "
                                                   "broadcast and sent, archived too, once each, oldest first "
                                                   "(the newest `limit` when one was given)")
    more: int = Field(description="earlier messages of the trace left out by `limit` (0: none)")


class OrgSettings(Result):
    """The org policy (`org.json` on the directory ref; docs/protocol.md §8, §13). Sizes in bytes."""

    used_by = ("gitmail org",)

    schema_version: int = Field(description="format version of org.json")
    body_limit: int = Field(description="largest message body, bytes")
    attachment_limit: int = Field(description="largest attachment, bytes")
    attachment_count_limit: int = Field(description="most attachments per message")
    attachment_total_limit: int = Field(description="largest sum of a message's attachments, bytes")
    attachment_storage: str = Field(description="`blob` or `lfs`: where new attachments go")
    encryption: str = Field(description="`required`, `default` or `off`")
    allow_mixed_script: bool = Field(description="names mixing scripts are allowed")
    lfs_url: Optional[str] = Field(description="the org's LFS store URL, or null (derived from the remote)")
    directory_layout: int = Field(description="how the directory's tree is laid out: 1 flat, 2 fan-out "
                                              "(docs/protocol.md §8)")
    packing: bool = Field(default=False, description="members may pack their inbox refs "
                                                     "(docs/protocol.md §3, \"Packed mailboxes\")")


class KeyRotated(Result):
    """`gitmail key rotate --json`."""

    used_by = ("gitmail key rotate",)

    member: str = Field(description="the member")
    old_key: str = Field(description="the retired public key (still valid for old mail)")
    new_key: str = Field(description="the new public key")
    key_path: str = Field(description="path of the new private key")


class KeyRevoked(Result):
    """`gitmail key revoke --json`."""

    used_by = ("gitmail key revoke",)

    member: str = Field(description="the member")
    revoked_key: str = Field(description="the public key revoked: every message it signs is flagged")


class ExportReport(Result):
    """`gitmail export --json`."""

    used_by = ("gitmail export",)

    path: str = Field(description="the mbox file or maildir folder")
    format: str = Field(description="`mbox` or `maildir`")
    added: list[str] = Field(description="Message-IDs written this time")
    skipped: int = Field(description="messages already there")


# -- audit -----------------------------------------------------------------------------


class BadMessage(Result):
    """A message that failed verification."""

    path: str = Field(description="mailbox ref path")
    oid: str = Field(description="the commit")
    id: str = Field(description="Message-ID, or empty when unreadable")
    sender: str = Field(description="the sender the mailbox names")
    status: str = Field(description="why it failed (see the message row's `status`)")
    detail: str = Field(description="detail, one line")


class VerifyResult(Result):
    """`gitmail verify --json` (exit 7 when `ok` is false)."""

    used_by = ("gitmail verify",)

    ok: bool = Field(description="nothing failed")
    mailboxes: int = Field(description="mailboxes checked")
    messages: int = Field(description="messages covered: checked now, or (without --all) when they arrived")
    good: int = Field(description="messages that verified")
    bad: list[BadMessage] = Field(description="messages that did not")
    problems: list[str] = Field(description="history problems, one line each")


class LogRow(Result):
    """One message commit of the org, as `log` lists it."""

    path: str = Field(description="mailbox ref path")
    oid: str = Field(description="the commit")
    id: str = Field(description="Message-ID, or empty when unreadable")
    sender: str = Field(description="the sender the mailbox names")
    recipient: str = Field(description="the recipient the mailbox names")
    date: str = Field(description="RFC 3339 UTC, or empty when unreadable")
    subject: str = Field(description="subject as stored (empty for encrypted mail)")
    type: str = Field(description="message type, or empty when unreadable")
    status: str = Field(description="`good` or why not")


class LogResult(Result):
    """`gitmail log --json`: every message in the org, newest first."""

    used_by = ("gitmail log",)

    messages: list[LogRow] = Field(description="newest first")


class ShowResult(Result):
    """`gitmail show --json`: one message commit as an auditor sees it."""

    used_by = ("gitmail show",)

    commit: str = Field(description="the commit")
    status: str = Field(description="`good` or why not")
    detail: str = Field(description="detail of a failed check; empty when good")
    verified: bool = Field(description="`status` is `good`")
    encrypted: bool = Field(description="encrypted end to end")
    error: Optional[str] = Field(description="why an encrypted message cannot be opened here (the command then "
                                             "exits 12), else null")
    message: Optional[dict[str, Any]] = Field(
        description="message.json (docs/protocol.md), decrypted when readable; only its envelope fields (id, "
                    "from, to, date, priority, type, thread, in_reply_to, encrypted) when it cannot be opened; "
                    "null when unreadable")


# -- hooks and notifications -----------------------------------------------------------


class ClaudeHookContext(Result):
    """What Claude Code adds to the conversation."""

    hook_event_name: Literal["SessionStart", "UserPromptSubmit"] = Field(
        alias="hookEventName", description="the hook event answered")
    additional_context: str = Field(
        alias="additionalContext", description="gitmail's sentences around one JSON object per message "
                                               "(docs/agents.md); under 10,000 characters")


class ClaudeHookOutput(Result):
    """The JSON Claude Code's SessionStart and UserPromptSubmit hooks take (printed without `--json`;
    nothing at all when there is nothing to report)."""

    used_by = ("gitmail hook claude session-start", "gitmail hook claude prompt")

    hook_specific_output: ClaudeHookContext = Field(alias="hookSpecificOutput", description="the context")


class ClaudeHooksInstalled(Result):
    """`gitmail hook claude install --json`."""

    used_by = ("gitmail hook claude install",)

    settings: str = Field(description="the Claude Code settings file")
    changed: bool = Field(description="the file was changed (false: already installed)")
    hooks: dict[str, str] = Field(description="hook event -> the command it runs")


class HookAction(Result):
    """What (un)installing did to one hook."""

    hook: str = Field(description="hook name (`post-merge`, `pre-receive`, ...)")
    path: str = Field(description="the hook file")
    action: str = Field(description="`installed`, `updated`, `chained`, `with-lfs`, `removed`, `restored` (the "
                                    "hook it was chained to is back), `lfs-kept` (git-lfs's part of it stays), "
                                    "`not-ours` or `absent`")


class HooksReport(Result):
    """`gitmail hooks install|uninstall --json` and `gitmail guard uninstall --json`."""

    used_by: ClassVar[tuple[str, ...]] = ("gitmail hooks install", "gitmail hooks uninstall", "gitmail guard uninstall")

    hooks: list[HookAction] = Field(description="one item per hook")


class GuardInstalled(HooksReport):
    """`gitmail guard install --json`."""

    used_by = ("gitmail guard install",)

    warning: Optional[str] = Field(description="why the guard may not run on this server, or null")


class GuardStopped(Result):
    """`gitmail guard stop --json`."""

    used_by = ("gitmail guard stop",)

    stopped: bool = Field(description="a daemon was running and was stopped")
    pid: Optional[int] = Field(description="its process id, or null")


class NotifyMessage(Result):
    """One new message, as the notify command reads it."""

    id: MessageId
    short_id: ShortId
    from_: str = Field(alias="from", description="sender (member name); trust it only when `verified` is true")
    date: Date
    subject: Optional[str] = Field(description="null unless the message is verified and could be opened here")
    priority: str = Field(description="`low`, `normal`, `high` or `urgent`")
    type: str = Field(description=TYPE_DOC)
    verified: bool = Field(description="signature, sender and mailbox all check out")
    encrypted: bool = Field(description="sent end-to-end encrypted")


class NotifyPayload(Result):
    """What `gitmail.notifyCommand` reads on stdin after a sync that brings mail (one line of JSON)."""

    used_by = ("gitmail.notifyCommand",)

    member: str = Field(description="you")
    messages: list[NotifyMessage] = Field(description="the new inbox messages")


# -- the generated section of docs/json.md ---------------------------------------------

BEGIN = "<!-- models: generated from gitmail/api/results.py (python -m gitmail.api.results --markdown) -->"
END = "<!-- end of generated models -->"


def models() -> list[type[Result]]:
    """Every result model, in the order defined."""
    return list(_REGISTRY)


def uses(m: type[Result]) -> tuple[str, ...]:
    """Where model ``m`` itself is a whole result (its own ``used_by``; never inherited)."""
    return tuple(m.__dict__.get("used_by", ()))


def _models_in(t: Any) -> set[type[Result]]:
    if isinstance(t, type) and issubclass(t, Result):
        return {t}
    return {m for a in get_args(t) for m in _models_in(a)}


def inside(m: type[Result]) -> list[type[Result]]:
    """The models with a field holding ``m`` (a list of it, or ``m`` or null)."""
    return [o for o in models() if any(m in _models_in(f.annotation) for f in o.model_fields.values())]


def _type_name(t: Any) -> str:
    """A field's type in words: ``string``, ``list of string``, ``string or null``, a model link."""
    origin = get_origin(t)
    if origin is Annotated:
        return _type_name(get_args(t)[0])
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(t) if a is not type(None)]
        words = " or ".join(_type_name(a) for a in args)
        return words + (" or null" if len(args) < len(get_args(t)) else "")
    if origin is Literal:
        return " or ".join(f"`{v}`" for v in get_args(t))
    if origin is list:
        return "list of " + _type_name(get_args(t)[0])
    if origin is dict:
        k, v = get_args(t)
        return "object" if v is Any else f"object ({_type_name(k)} -> {_type_name(v)})"
    if isinstance(t, type) and issubclass(t, Result):
        return f"[`{t.__name__}`](#{t.__name__.lower()})"
    return {str: "string", int: "integer", bool: "boolean", float: "number"}.get(t, "any")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def markdown() -> str:
    """The generated section of docs/json.md (between :data:`BEGIN` and :data:`END`, exclusive)."""
    out: list[str] = []
    for m in models():
        out.append(f"### `{m.__name__}`\n")
        out.append(_cell(m.__doc__ or "") + "\n")
        where = [f"`{u}`" for u in uses(m)] + [f"[`{o.__name__}`](#{o.__name__.lower()})" for o in inside(m)]
        if where:
            out.append("Used by: " + ", ".join(where) + ".\n")
        out.append("| field | type | description |\n| --- | --- | --- |")
        for name, f in m.model_fields.items():
            out.append(f"| `{f.alias or name}` | {_type_name(f.annotation)} | {_cell(f.description or '')} |")
        out.append("")
    return "\n".join(out)


def replace_section(doc: str) -> str:
    """``doc`` (docs/json.md's text) with the generated section replaced by :func:`markdown`."""
    head, sep, rest = doc.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise ValueError(f"the document has no {BEGIN!r} ... {END!r} section")
    return f"{head}{BEGIN}\n\n{markdown()}\n{END}{tail}"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--markdown"]:
        print(markdown(), end="")
    elif sys.argv[1:2] == ["--write"] and len(sys.argv) == 3:
        from pathlib import Path

        p = Path(sys.argv[2])
        p.write_text(replace_section(p.read_text()))
    else:
        sys.exit("usage: python -m gitmail.api.results --markdown | --write docs/json.md")
