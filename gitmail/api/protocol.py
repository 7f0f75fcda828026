"""The agent protocol: groups, protocol responses, acknowledgements: groups, protocol responses, acknowledgements.

Part of the library API (:mod:`gitmail.api`): every function takes a repository (path or
:class:`~gitmail.core.repo.Repo`) and the acting identity ``as_``, returns
plain data and raises only :class:`~gitmail.errors.GitmailError` subclasses.
Nothing here prints. The CLI (``gitmail group/respond/ack/list
--awaiting-ack``) and the MCP server are thin layers over these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Optional

from gitmail.api.send import SendResult, send
from gitmail.api.session import RepoLike, Session, resolve_id, session
from gitmail.core import cache
from gitmail.errors import DirectoryError, UnknownRecipientError, UsageError

if TYPE_CHECKING:
    from gitmail.api.results import Acked, AwaitingRow
    from gitmail.core.directory import Directory
    from gitmail.core.model import Group


# -- groups ------------------------------------------------------------------------


def _bare_group(name: str) -> str:
    """``backend`` for ``backend`` or ``team:backend`` (normalised). Raises :class:`AddressError`."""
    from gitmail.core.address import GROUP_PREFIX, normalize_group

    return normalize_group(name)[len(GROUP_PREFIX):]


def _admin_change(repo: RepoLike, as_: Optional[str], subject: str,
                  mutate: Callable[["Directory"], "Directory"]) -> "Directory":
    """Apply ``mutate`` as a signed directory change by the acting member, who must be an admin.

    Raises :class:`DirectoryError` (not an admin, refused by the rules),
    :class:`KeyError_`, :class:`NotInitializedError`.
    """
    from gitmail.core import admin

    s = session(repo, as_)
    if s.repo.remote:
        from gitmail.core import refs, sync

        sync.fetch(s.repo, [refs.DIRECTORY])
        s.reload_directory()
    member = s.member
    if member.role != "admin":
        raise DirectoryError(f"only an admin may change groups; {s.me} is a {member.role}")
    return admin.change(s.repo, s.signer, member, mutate, subject)


def _check_members(d: "Directory", names: list[str]) -> list[str]:
    """Normalised, de-duplicated member names. Raises :class:`UnknownRecipientError`."""
    from gitmail.core.address import normalize

    out: list[str] = []
    for n in names:
        m = d.member(normalize(n)).name
        if m not in out:
            out.append(m)
    return out


def group_create(repo: RepoLike, name: str, members: list[str], *, as_: Optional[str] = None) -> "Group":
    """Create group ``name`` (addressed as ``team:NAME``) with ``members``; admin only.

    Raises :class:`UsageError` (no members, group exists), :class:`UnknownRecipientError`,
    :class:`DirectoryError` (not an admin).
    """
    from gitmail.core.model import Group

    bare = _bare_group(name)
    if not members:
        raise UsageError("a group needs at least one member")

    def mutate(d: "Directory") -> "Directory":
        if bare in d.groups:
            raise UsageError(f"group 'team:{bare}' already exists (use 'gitmail group add')")
        d.groups[bare] = Group(name=bare, members=sorted(_check_members(d, members)))
        return d

    return _admin_change(repo, as_, f"Create group team:{bare}", mutate).groups[bare]


def group_update(repo: RepoLike, name: str, add: list[str], remove: list[str], *,
                 as_: Optional[str] = None) -> "Group":
    """Add and/or remove members of an existing group; admin only. Returns the new group.

    Removing someone who is not in the group is an error, as is an unknown group.
    """
    from gitmail.core.address import normalize
    from gitmail.core.model import Group

    bare = _bare_group(name)
    if not add and not remove:
        raise UsageError("name at least one member")

    def mutate(d: "Directory") -> "Directory":
        g = d.groups.get(bare)
        if g is None:
            raise UnknownRecipientError(f"unknown group 'team:{bare}' (see 'gitmail group list')")
        now = list(g.members)
        for m in _check_members(d, add):
            if m not in now:
                now.append(m)
        for n in remove:
            m = normalize(n)
            if m not in now:
                raise UsageError(f"{m!r} is not a member of team:{bare}")
            now.remove(m)
        d.groups[bare] = Group(name=bare, members=sorted(now))
        return d

    return _admin_change(repo, as_, f"Update group team:{bare}", mutate).groups[bare]


def group_delete(repo: RepoLike, name: str, *, as_: Optional[str] = None) -> str:
    """Delete a group (its past messages stay in history); admin only. Returns ``team:NAME``."""
    bare = _bare_group(name)

    def mutate(d: "Directory") -> "Directory":
        if bare not in d.groups:
            raise UnknownRecipientError(f"unknown group 'team:{bare}'")
        del d.groups[bare]
        return d

    _admin_change(repo, as_, f"Delete group team:{bare}", mutate)
    return f"team:{bare}"


def group_list(repo: RepoLike = None) -> list["Group"]:
    """Every group of the verified directory, by name."""
    from gitmail.core import directory
    from gitmail.core.repo import Repo, open_repo

    r = repo if isinstance(repo, Repo) else open_repo(repo)
    d = directory.load_existing(r)
    return [d.groups[n] for n in sorted(d.groups)]


# -- protocol responses ------------------------------------------------------------


def response_payload(request_type: str, approve: Optional[bool], reason: Optional[str],
                     feedback: Optional[str], answer: Optional[str]) -> dict[str, Any]:
    """The payload answering a request of ``request_type``. Raises :class:`UsageError`."""
    if request_type == "question":
        if not answer:
            raise UsageError("answering a question needs --answer TEXT")
        if approve is not None:
            raise UsageError("a question takes --answer, not --approve/--reject")
        return {"answer": answer}
    if approve is None:
        raise UsageError(f"a {request_type} needs --approve or --reject")
    if answer:
        raise UsageError(f"--answer is for questions; this is a {request_type}")
    text = reason if reason is not None else feedback
    if request_type == "shutdown_request":
        return {"approve": approve, "reason": text or ""}
    return {"approve": approve, "feedback": text or ""}


def respond(repo: RepoLike, id: str, *, approve: Optional[bool] = None, reason: Optional[str] = None,
            feedback: Optional[str] = None, answer: Optional[str] = None, body: str = "",
            as_: Optional[str] = None) -> SendResult:
    """Answer the request message ``id`` with the matching response type, echoing its request_id.

    shutdown_request -> shutdown_response {approve, reason}; plan_approval_request ->
    plan_approval_response {approve, feedback}; question -> answer {answer}.
    Raises :class:`UsageError` (not a request, not in your inbox, missing flags),
    :class:`MessageNotFoundError`.
    """
    s = session(repo, as_)
    s.refresh()
    row = resolve_id(s, id)
    if not row.inbox:
        raise UsageError(f"message {row.id[:8]} is not in your inbox: you can only respond to requests you received")
    from gitmail.core.model import RESPONSE_FOR

    rtype = RESPONSE_FOR.get(row.type)
    if rtype is None:
        raise UsageError(f"message {row.id[:8]} is a {row.type} message, not a request "
                         f"({', '.join(RESPONSE_FOR)}); use 'gitmail reply'")
    if row.status != "good":
        raise UsageError(f"message {row.id[:8]} failed verification ({row.status}); not responding to it")
    payload = response_payload(row.type, approve, reason, feedback, answer)
    return send(s.repo, [row.sender], body, type=rtype, payload=payload, reply_to=row.id,
                    request_id=row.request_id, as_=s.me)


# -- acknowledgements --------------------------------------------------------------


@dataclass
class AckResult:
    """``acked``: the message acknowledged; ``sent``: False when an ack already existed."""

    acked: str
    to: str
    sent: bool
    ack_id: Optional[str]
    delivered: bool = False
    queued: bool = False
    outcome: str = ""  # "delivered", "queued" or "refused" (gitmail.api.send); "" when nothing was sent
    reason: Optional[str] = None  # why queued or refused
    refused: dict[str, str] = field(default_factory=dict)
    queued_in: dict[str, str] = field(default_factory=dict)  # mailbox path -> why still queued

    def model(self) -> "Acked":
        """The JSON result of ``gitmail ack`` (each item) and MCP ``ack_message`` (docs/json.md, ``Acked``)."""
        from gitmail.api.results import Acked

        return Acked.model_validate({
            "acked": self.acked, "to": self.to, "sent": self.sent, "ack_id": self.ack_id,
            "outcome": self.outcome or None, "reason": self.reason, "delivered": self.delivered,
            "queued": self.queued, "refused": self.refused, "queued_in": self.queued_in})


def _existing_ack(s: Session, msg_id: str) -> Optional[str]:
    """The id of an ack this member already sent (or queued) for ``msg_id``, if any."""
    return cache.sent_ack_of(s.db, msg_id) or _queued_ack(s, msg_id)


def _queued_ack(s: Session, msg_id: str) -> Optional[str]:
    """An ack for ``msg_id`` still in the outbox (remote unreachable when it was sent)."""
    from gitmail.core import refs, sync
    from gitmail.core.objects import commit, first_parent_line
    from gitmail.core.store import read_message
    from gitmail.errors import CorruptMessageError

    for path in sync.outbox_paths(s.repo, s.me):
        pg = s.repo.pg
        tip = s.repo.ref_target(refs.outbox(path))
        track = s.repo.ref_target(refs.tracking(path, s.repo.remote))
        for oid, _ in first_parent_line(pg, tip, track) if tip else ():
            try:
                m = read_message(pg, commit(pg, oid))
                if m.type == "ack" and m.in_reply_to == msg_id:
                    return m.id
            except CorruptMessageError:
                pass
    return None


def ack(repo: RepoLike, id: str, *, as_: Optional[str] = None) -> AckResult:
    """Send a signed receipt (type ``ack``, in_reply_to = the message) to the sender of ``id``.

    A second ack of the same message sends nothing (``sent`` False). Raises
    :class:`UsageError` (your own message, an ack, a message that failed
    verification), :class:`MessageNotFoundError`.
    """
    return acks(repo, [id], as_=as_)[0]


def acks(repo: RepoLike, ids: list[str], *, as_: Optional[str] = None) -> list[AckResult]:
    """:func:`ack` of each of ``ids``, in order, once every one of them is known to be a
    message that can be acknowledged: one that cannot raises before any receipt is sent
    (an ack that went out cannot be taken back). The same message named twice is
    acknowledged once (the second result says ``sent`` False)."""
    s = session(repo, as_)
    s.refresh()
    rows = [_ackable(s, i) for i in ids]
    out = []
    sent: dict[str, str] = {}  # Message-ID -> the ack sent for it by this call
    for row in rows:
        prior = sent.get(row.id) or _existing_ack(s, row.id)
        if prior is not None:
            out.append(AckResult(row.id, row.sender, False, prior))
            continue
        res = send(s.repo, [row.sender], "", type="ack", payload={}, reply_to=row.id,
                   summary=f"ack of {row.id[:8]}", as_=s.me)
        sent[row.id] = res.message.id
        out.append(AckResult(row.id, row.sender, True, res.message.id, res.delivered, res.queued, res.outcome,
                             res.reason, res.refused, res.queued_in))
    return out


def _ackable(s: Session, id: str) -> cache.Row:
    """The inbox row ``id`` names, when it can be acknowledged. Raises :class:`UsageError`,
    :class:`MessageNotFoundError`."""
    row = resolve_id(s, id)
    if not row.inbox:
        raise UsageError(f"message {row.id[:8]} is not in your inbox: only a recipient can acknowledge it")
    if row.type == "ack":
        raise UsageError(f"message {row.id[:8]} is itself an ack")
    if row.status != "good":
        raise UsageError(f"message {row.id[:8]} failed verification ({row.status}); not acknowledging it")
    return row


@dataclass
class Awaiting:
    """A sent message with require_ack that not every recipient has acknowledged."""

    row: cache.Row
    pending: list[str]
    acked_by: list[str] = field(default_factory=list)
    waited_seconds: int = 0

    def model(self) -> "AwaitingRow":
        """The JSON shape (docs/json.md, ``AwaitingRow``): the message row plus who is pending."""
        from gitmail.api.results import AwaitingRow, row_fields

        return AwaitingRow.model_validate({**row_fields(self.row), "pending": self.pending,
                                           "acked_by": self.acked_by, "waited_seconds": self.waited_seconds})


def _expected(d: "Directory", me: str, recipients: list[str]) -> list[str]:
    """The members who should acknowledge: ``*`` and groups expanded, the sender left out."""
    return sorted(d.expand(recipients) - {me})


def _seconds_since(date: str, now: datetime) -> int:
    if not date:
        return 0
    return max(0, int((now - datetime.fromisoformat(date.replace("Z", "+00:00"))).total_seconds()))


def awaiting_ack(repo: RepoLike = None, *, as_: Optional[str] = None,
                 now: Optional[datetime] = None) -> list[Awaiting]:
    """Sent messages that asked for a receipt and still lack one from some recipient, oldest first.

    Only verified acks count; an ack from someone who was not a recipient is ignored.
    """
    s = session(repo, as_)
    s.refresh()
    rows = cache.ack_requests(s.db)
    if not rows:
        return []
    acks = cache.acks_received(s.db)
    now = now or datetime.now(timezone.utc)
    out: list[Awaiting] = []
    for r in rows:
        expected = _expected(s.directory, s.me, r.recipients)
        got = acks.get(r.id, set())
        pending = [n for n in expected if n not in got]
        if pending:
            out.append(Awaiting(r, pending, sorted(got & set(expected)), _seconds_since(r.date, now)))
    return out


def awaiting_json(a: Awaiting) -> dict[str, Any]:
    """The ``--json`` shape of one awaiting-ack entry (docs/json.md, ``AwaitingRow``), as a dict."""
    return a.model().dump()
