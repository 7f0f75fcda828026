"""The outbox: what is queued and why, retry, drop; the undelivered record (docs/sync.md, "The outbox").

Part of the library API (:mod:`gitmail.api`): plain data in and out, only
:class:`gitmail.errors.GitmailError` raised, nothing printed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from gitmail.core import refs
from gitmail.errors import AmbiguousIdError, MessageNotFoundError, UsageError

from gitmail.api.packing import packed_tip_of
from gitmail.api.session import SHORT_ID, RepoLike, Session, session

if TYPE_CHECKING:
    from gitmail.api.results import QueuedEntry, RetryReport, UndeliveredEntry
    from gitmail.core.model import Message


@dataclass
class _Outgoing:
    """What ``outbox`` and ``sync`` say of one message of this member's that is not delivered."""

    id: str
    subject: str
    to: list[str]
    date: str
    mailboxes: list[str]
    kind: str
    reason: str
    since: str

    def _fields(self) -> dict[str, Any]:
        return {"id": self.id, "short_id": self.id[:SHORT_ID], "subject": self.subject, "to": self.to,
                "date": self.date, "mailboxes": self.mailboxes, "kind": self.kind, "reason": self.reason,
                "since": self.since}


@dataclass
class Queued(_Outgoing):
    """One queued message: ``mailboxes`` (recipient addresses) where it still waits, and why.

    ``kind``: ``remote-unreachable``, ``lfs-unreachable``, ``push-failed``,
    ``race``, ``no-key`` or ``not-tried`` (docs/sync.md); ``reason``: one line
    (the LFS URL, git's or the remote's words); ``since``: RFC 3339 UTC, the
    first attempt that failed for this reason (the message's date when none was
    recorded); ``tried``: the last attempt ("" when none was recorded).
    """

    tried: str = ""

    def model(self) -> "QueuedEntry":
        """The JSON shape in ``outbox``, ``sync`` and MCP ``check_mailbox`` (docs/json.md, ``QueuedEntry``)."""
        from gitmail.api.results import QueuedEntry

        return QueuedEntry(**self._fields(), tried=self.tried)


@dataclass
class Undelivered(_Outgoing):
    """A message that left the outbox undelivered: ``kind`` ``refused`` (the org repo's
    reason) or ``dropped`` (``gitmail outbox drop``); ``since``: when it left the outbox."""

    def model(self) -> "UndeliveredEntry":
        """The JSON shape (docs/json.md, ``UndeliveredEntry``)."""
        from gitmail.api.results import UndeliveredEntry

        return UndeliveredEntry(**self._fields())


@dataclass
class Retry:
    """What ``retry`` did: Message-IDs delivered, still queued (with why), refused now."""

    delivered: list[str] = field(default_factory=list)
    queued: list[Queued] = field(default_factory=list)
    refused: list[Undelivered] = field(default_factory=list)

    def model(self) -> "RetryReport":
        """The JSON result of ``outbox retry`` (docs/json.md, ``RetryReport``)."""
        from gitmail.api.results import RetryReport

        return RetryReport(delivered=self.delivered, queued=[q.id for q in self.queued],
                           refused={u.id: u.reason for u in self.refused},
                           outbox=[q.model() for q in self.queued], undelivered=[u.model() for u in self.refused])


def _message(s: Session, oid: str) -> "Message":
    """The message of one of the member's own commits, decrypted when it can be (the sender is a reader)."""
    from gitmail.core.objects import commit
    from gitmail.core.store import read_message
    from gitmail.errors import GitmailError

    c = commit(s.repo.pg, oid)
    msg = read_message(s.repo.pg, c)
    if msg.encrypted is None:
        return msg
    from gitmail.core import private

    try:
        return private.open_message(s.repo.pg, c, msg, s.identities, s.directory.read_body_limit, s.me)[0]
    except (GitmailError, ValueError):
        return msg  # shown as "(encrypted)"


def _subject(m: "Message") -> str:
    return m.subject or ("(encrypted)" if m.encrypted is not None else "")


def outbox(repo: RepoLike = None, *, as_: Optional[str] = None) -> list[Queued]:
    """Every message the member has queued, oldest first, each with why it is still queued."""
    s = session(repo, as_)
    return _queued(s)


def _queued(s: Session, only: Optional[set[str]] = None) -> list[Queued]:
    from gitmail.core import sync

    if s.repo.remote is None:
        return []
    why = sync.reasons(s.repo)
    by_id: dict[str, Queued] = {}
    for path, tip in sorted(sync.outbox_paths(s.repo, s.me).items()):
        rcpt = refs.split_mail_path(path)[0]
        for oid, mid in sync.queued_chain(s.repo, path, tip):
            if only is not None and mid not in only:
                continue
            q = by_id.get(mid)
            if q is None:
                m = _message(s, oid)
                r = why.get((path, mid)) or {"kind": sync.NOT_TRIED, "detail": "no delivery attempt recorded yet",
                                             "since": m.date, "tried": ""}
                q = by_id[mid] = Queued(mid, _subject(m), list(m.to), m.date, [], r["kind"], r["detail"],
                                        r.get("since", m.date), r.get("tried", ""))
            q.mailboxes.append(rcpt)
    return sorted(by_id.values(), key=lambda q: (q.date, q.id))


def undelivered(repo: RepoLike = None, *, as_: Optional[str] = None) -> list[Undelivered]:
    """Every message that left the member's outbox undelivered (refused or dropped), oldest first."""
    s = session(repo, as_)
    return _undelivered(s)


def _undelivered(s: Session, only: Optional[set[str]] = None) -> list[Undelivered]:
    from gitmail.core import sync

    by_id: dict[str, Undelivered] = {}
    for path, mid, oid, info in sync.undelivered(s.repo, s.me):
        if only is not None and mid not in only:
            continue
        u = by_id.get(mid)
        if u is None:
            m = _message(s, oid)
            u = by_id[mid] = Undelivered(mid, _subject(m), list(m.to), m.date, [], info.get("kind", sync.REFUSED),
                                         info.get("detail", ""), info.get("since", ""))
        u.mailboxes.append(refs.split_mail_path(path)[0])
    return sorted(by_id.values(), key=lambda u: (u.date, u.id))


def _find(ids: list[str], prefix: str, what: str) -> Optional[str]:
    p = prefix.strip().lower()
    if len(p) < 4:
        raise UsageError(f"{prefix!r}: give at least 4 characters of the message id")
    hits = sorted({i for i in ids if i.startswith(p)})
    if len(hits) > 1:
        raise AmbiguousIdError(f"{prefix!r} matches {len(hits)} {what} messages; give more characters")
    return hits[0] if hits else None


def retry(repo: RepoLike = None, id: Optional[str] = None, *, as_: Optional[str] = None) -> Retry:
    """Try to deliver the member's queued messages now (all, or the one ``id``).

    ``id`` may also name an undelivered message (refused or dropped): it is
    queued again (re-signed on top of its mailbox's queue) and tried. Raises
    :class:`MessageNotFoundError` (no such queued or undelivered message),
    :class:`AmbiguousIdError`, :class:`UsageError` (no org remote).
    """
    from gitmail.core import sync

    s = session(repo, as_)
    r = s.repo
    if r.remote is None:
        raise UsageError("this clone has no org remote: nothing is ever queued")
    paths = sync.outbox_paths(r, s.me)
    target: Optional[str] = None
    if id is not None:
        chains = {p: sync.queued_chain(r, p, tip) for p, tip in paths.items()}
        target = _find([mid for c in chains.values() for _, mid in c], id, "queued")
        if target is None:
            gone = sync.undelivered(r, s.me)
            target = _find([mid for _, mid, _, _ in gone], id, "undelivered")
            if target is None:
                raise MessageNotFoundError(f"no queued or undelivered message {id!r} (see: gitmail outbox)")
            for path, mid, _, _ in gone:
                if mid == target:
                    sync.requeue(r, path, s.signer, mid)
            paths = sync.outbox_paths(r, s.me)
            chains = {p: sync.queued_chain(r, p, tip) for p, tip in paths.items()}
        paths = {p: tip for p, tip in paths.items() if any(mid == target for _, mid in chains[p])}
    signer = s.signer if paths else None
    res = sync.deliver(r, signer, s.me, paths, packed_tip=packed_tip_of(s))
    only = {target} if target else None
    delivered = [i for i in res.delivered_ids() if only is None or i in only]
    return Retry(delivered, _queued(s, only), _undelivered(s, {h.id for h in res.refused}))


def queued_id(repo: RepoLike = None, id: str = "", *, as_: Optional[str] = None) -> str:
    """The full Message-ID of queued message ``id`` (a unique prefix), for a question asked
    before :func:`drop` (nothing changes). Raises :class:`MessageNotFoundError`,
    :class:`AmbiguousIdError`."""
    return _queued_id(_chains(session(repo, as_)), id)


def _chains(s: Session) -> "dict[str, list[tuple[str, str]]]":
    from gitmail.core import sync

    r = s.repo
    return {p: sync.queued_chain(r, p, tip) for p, tip in sync.outbox_paths(r, s.me).items()} if r.remote else {}


def _queued_id(chains: "dict[str, list[tuple[str, str]]]", id: str) -> str:
    target = _find([mid for c in chains.values() for _, mid in c], id, "queued")
    if target is None:
        raise MessageNotFoundError(f"no queued message {id!r} (see: gitmail outbox)")
    return target


def drop(repo: RepoLike = None, id: str = "", *, as_: Optional[str] = None) -> Undelivered:
    """Take queued message ``id`` out of the outbox into the undelivered record (never destroyed).

    The messages queued after it are re-parented (re-signed). Raises
    :class:`MessageNotFoundError`, :class:`AmbiguousIdError`.
    """
    from gitmail.core import sync

    s = session(repo, as_)
    r = s.repo
    chains = _chains(s)
    target = _queued_id(chains, id)
    signer = s.signer
    for p, chain in chains.items():
        if any(mid == target for _, mid in chain):
            sync.move_out(r, p, signer, target, sync.DROPPED, f"dropped by {s.me} (gitmail outbox drop)")
    return _undelivered(s, {target})[0]
