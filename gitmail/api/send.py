"""Composing and sending: send, reply, batches (docs/protocol.md, "Messages", "Message commits").

Part of the library API (:mod:`gitmail.api`): plain data in and out, only
:class:`gitmail.errors.GitmailError` raised, nothing printed.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional, Union

from gitmail.core import cache, refs
from gitmail.errors import GitmailError, UsageError

if TYPE_CHECKING:
    import concurrent.futures

    from gitmail.api.results import Sent
    from gitmail.core.attachments import Source
    from gitmail.core.repo import Repo
    from gitmail.core.sync import Delivery
    from gitmail.core.lfs import Progress
    from gitmail.core.model import Attachment, Message

from gitmail.api.packing import packed_tip_of
from gitmail.api.session import SHORT_ID, RepoLike, Session, resolve_id, resolve_recipients, session


# The outcome of a send (docs/sync.md, "The outcome of a send").
DELIVERED = "delivered"  # on the org repo, every recipient's mailbox
QUEUED = "queued"  # written, in the outbox; ``reason`` says why it did not go; delivered by a later sync
REFUSED = "refused"  # the org repo refused it (``reason``: the remote's); kept in the undelivered record


@dataclass
class SendResult:
    """Where one message went: ``outcome`` is exactly one of DELIVERED, QUEUED, REFUSED.

    ``reason``: why it is queued or refused (one line), else None. ``refused``:
    mailbox path -> the remote's reason, for each mailbox that refused it.
    ``queued_in``: mailbox path -> why, for each mailbox where it is still queued;
    ``kind``: why it is queued as a word (``remote-unreachable``, ``lfs-unreachable``,
    ``push-failed``, ``race``, ``no-key``; docs/sync.md).
    A send that fails before anything is written raises instead (nothing written).
    """

    message: "Message"
    recipients: list[str]
    delivered: bool
    queued: bool
    refused: dict[str, str] = field(default_factory=dict)
    stored: Optional["Message"] = None  # message.json as committed (secret fields emptied when encrypted)
    outcome: str = DELIVERED
    reason: Optional[str] = None
    queued_in: dict[str, str] = field(default_factory=dict)
    kind: Optional[str] = None  # why queued, as a word: gitmail.core.sync's kinds (remote-unreachable, ...)

    @property
    def encrypted(self) -> bool:
        return self.stored is not None and self.stored.encrypted is not None

    def model(self) -> "Sent":
        """The JSON result of every sending command and tool (docs/json.md, ``Sent``)."""
        from gitmail.api.results import AttachmentInfo, Sent

        m = self.message
        return Sent.model_validate({
            "id": m.id, "short_id": m.id[:SHORT_ID], "to": self.recipients, "from": m.from_, "subject": m.subject,
            "date": m.date, "type": m.type, "request_id": m.request_id, "in_reply_to": m.in_reply_to,
            "thread": m.thread_id, "trace_id": m.trace_id, "payload": m.payload, "outcome": self.outcome, "reason": self.reason,
            "delivered": self.delivered, "queued": self.queued, "refused": self.refused,
            "queued_in": self.queued_in, "encrypted": self.encrypted,
            "attachments": [AttachmentInfo.of(a) for a in m.attachments]})


def outcome_of(
    repo: "Repo", msg_id: str, paths: list[str], res: "Delivery"
) -> tuple[str, Optional[str], dict[str, str], dict[str, str], Optional[str]]:
    """The outcome of message ``msg_id`` on mailboxes ``paths`` after a delivery round.

    Judged from the clone's state, not from who pushed: another process of
    this clone may have delivered it. Returns ``(outcome, reason, refused, queued_in, kind)``.
    """
    return Judge(repo, res)(msg_id, paths)


class Judge:
    """:func:`outcome_of` for many messages of one delivery round: each mailbox's queued
    chain and the recorded reasons are read once, not once per message."""

    def __init__(self, repo: "Repo", res: "Delivery", many: bool = False) -> None:
        """``many``: a big batch; each mailbox's undelivered records are then listed once
        (one git process) instead of looked up once per message (24 µs each)."""
        self.repo, self.res, self.many = repo, res, many
        self._undelivered: dict[str, set[str]] = {}
        self.held = {(h.path, h.id): h for h in res.queued}
        self.why_refused = {(h.path, h.id): h.detail for h in res.refused}
        self._chains: dict[str, set[str]] = {}
        self._recorded: Optional[dict[tuple[str, str], dict[str, str]]] = None
        self._reasons: Optional[dict[tuple[str, str], dict[str, str]]] = None

    def _queued(self, path: str) -> set[str]:
        from gitmail.core import sync

        if path not in self._chains:
            self._chains[path] = {mid for _, mid in sync.queued_chain(self.repo, path)}
        return self._chains[path]

    def _is_undelivered(self, path: str, msg_id: str) -> bool:
        from gitmail import git
        from gitmail.core import sync

        if not self.many:
            return self.repo.ref_target(sync.undelivered_ref(path, msg_id)) is not None
        if path not in self._undelivered:
            prefix = sync.undelivered_ref(path, "")  # ends with "/": git matches it as a prefix
            self._undelivered[path] = {n[len(prefix):] for n in git.for_each_ref(self.repo.path, [prefix[:-1]])}
        return msg_id in self._undelivered[path]

    def __call__(
        self, msg_id: str, paths: list[str]
    ) -> tuple[str, Optional[str], dict[str, str], dict[str, str], Optional[str]]:
        from gitmail.core import sync

        repo = self.repo
        refused: dict[str, str] = {}
        queued: dict[str, str] = {}
        kind = None
        for p in paths:
            if self._is_undelivered(p, msg_id):
                why = self.why_refused.get((p, msg_id))
                if why is None:
                    if self._recorded is None:
                        self._recorded = {(q[0], q[1]): q[3] for q in sync.undelivered(repo)}
                    why = self._recorded.get((p, msg_id), {}).get("detail", "refused by the org repo")
                refused[p] = why
            elif msg_id in self._queued(p):
                h = self.held.get((p, msg_id))
                rec: dict[str, str] = {}
                if h is None:
                    if self._reasons is None:
                        self._reasons = sync.reasons(repo)
                    rec = self._reasons.get((p, msg_id), {})
                queued[p] = h.detail if h else rec.get("detail") or "no delivery attempt recorded yet"
                kind = kind or (h.kind if h else rec.get("kind") or sync.NOT_TRIED)
        if refused:
            p, why = next(iter(refused.items()))
            return REFUSED, f"the org repo refused {p}: {why}", refused, queued, kind
        if queued:
            return QUEUED, next(iter(queued.values())), refused, queued, kind
        return DELIVERED, None, refused, queued, None


def _subject_from(body: str) -> str:
    first = next((ln.strip() for ln in body.splitlines() if ln.strip()), "")
    first = first.lstrip("# ").strip()
    return first if len(first) <= 72 else first[:71] + "…"


def _summary_from(body: str) -> str:
    flat = " ".join(body.split())
    return flat if len(flat) <= 100 else flat[:99] + "…"


@dataclass
class Draft:
    """One message to compose: the arguments of :func:`send` that vary per message
    (attachments aside). Defaults as in :func:`send`."""

    to: list[str]
    body: str
    subject: Optional[str] = None
    priority: str = "normal"
    summary: Optional[str] = None
    type: str = "text"
    payload: Optional[dict[str, Any]] = None
    reply_to: Optional[str] = None
    request_id: Optional[str] = None
    require_ack: bool = False
    trace_id: Optional[str] = None  # a reply inherits its parent's when None


def send(
    repo: RepoLike,
    to: list[str],
    body: str,
    *,
    subject: Optional[str] = None,
    summary: Optional[str] = None,
    priority: str = "normal",
    type: str = "text",
    payload: Optional[dict[str, Any]] = None,
    reply_to: Optional[str] = None,
    request_id: Optional[str] = None,
    require_ack: bool = False,
    as_: Optional[str] = None,
    attach: Optional[list[Union[str, Path]]] = None,
    progress: Optional["Progress"] = None,
    encrypt: Optional[bool] = None,
    trace_id: Optional[str] = None,
) -> SendResult:
    """Send a message; returns the :class:`Message` as written (plaintext) and where it went.

    ``to``: member names, ``*`` (every member but the sender) or ``team:NAME``.
    The message is committed to the outbox and pushed when a remote is
    reachable (``queued`` otherwise). Raises :class:`UsageError` (empty or
    over-long body, bad priority/type/payload, broadcast of a protocol
    message, unknown request_id, encryption refused), :class:`UnknownRecipientError`,
    :class:`KeyError_`.

    ``attach``: files to attach (docs/attachments.md). Each is checked before
    anything is written (:class:`AttachmentError`: missing, a directory,
    unreadable, over ``OrgPolicy.attachment_limit``), stored once whatever
    the number of recipients (``OrgPolicy.attachment_storage``: LFS or git
    blobs) and listed in ``Message.attachments``; LFS content is uploaded
    before the commits are pushed (``progress(label, done, total)`` in bytes).

    ``encrypt``: True (``--encrypt``), False (``--plain``) or None (the org
    policy decides; docs/protocol.md "Encryption").

    ``type``: ``text``, a protocol type, or an open type (docs/protocol.md §5) whose
    ``payload`` is any JSON object. ``trace_id`` (§4; :class:`UsageError` when malformed):
    default, for a reply, the trace id of the message replied to.
    """
    s = session(repo, as_)
    draft = Draft(to=to, body=body, subject=subject, summary=summary, priority=priority, type=type,
                  payload=payload, reply_to=reply_to, request_id=request_id, require_ack=require_ack, trace_id=trace_id)
    msg, sources = compose(s, draft, attach)
    return _commit_and_deliver(s, msg, sources, encrypt, progress)


def compose(
    s: Session, dr: Draft, attach: Optional[list[Union[str, Path]]] = None
) -> tuple["Message", list["Source"]]:
    """Validate a draft and build the plaintext message (no Message-ID yet) and its files.

    The one composer of :func:`send`, :func:`send_batch` and imports: recipient
    expansion, defaults (subject from the first line, summary from the body,
    ``request_id`` of a request), truncation to the limits of docs/protocol.md
    §13 and every check of :func:`send` (same errors). Nothing is written.
    """
    import uuid

    from gitmail.core.model import (PRIORITIES, REQUEST_TYPES, RESPONSE_OF, SUBJECT_LIMIT, SUMMARY_LIMIT, Message,
                                    format_date, trace_id_problem, utcnow, validate_payload)
    from gitmail.core.rules import recipients_problem

    if not dr.to:
        raise UsageError("no recipient given")
    recipients = resolve_recipients(s, dr.to)
    d = s.directory
    s.signer  # noqa: B018 - a member with a usable key, before anything is written
    priority, type, body, subject, request_id = dr.priority, dr.type, dr.body, dr.subject, dr.request_id
    trace_id = dr.trace_id
    if priority not in PRIORITIES:
        raise UsageError(f"unknown priority {priority!r}; use one of {', '.join(PRIORITIES)}")
    payload = validate_payload(type, dr.payload)
    problem = trace_id_problem(dr.trace_id)
    if problem:
        raise UsageError(problem)
    # A subject or summary given over its limit is refused, not cut without a word (one made
    # from the body, or a reply's "Re: ...", is cut: nobody wrote it to that length).
    if subject is not None and len(subject) > SUBJECT_LIMIT:
        raise UsageError(f"the subject is {len(subject)} characters; the limit is {SUBJECT_LIMIT}")
    if dr.summary and len(dr.summary) > SUMMARY_LIMIT:
        raise UsageError(f"the summary is {len(dr.summary)} characters; the limit is {SUMMARY_LIMIT}")
    problem = recipients_problem(type, recipients)  # the reader's rule (docs/protocol.md §5)
    if problem:
        raise UsageError(problem)
    if not body.strip() and type == "text" and not attach:
        raise UsageError("empty message")
    limit = d.policy.body_limit
    if len(body.encode("utf-8")) > limit:
        raise UsageError(f"message body is {len(body.encode('utf-8'))} bytes; the limit is {limit}")
    in_reply_to = thread = None
    parent = None
    if dr.reply_to:
        s.refresh()
        parent = resolve_id(s, dr.reply_to)
        in_reply_to = parent.id
        thread = parent.thread or parent.id
        if trace_id is None:
            trace_id = parent.trace_id  # a reply stays in its parent's trace
        if subject is None and parent.subject:
            subject = parent.subject if parent.subject.lower().startswith("re:") else f"Re: {parent.subject}"
    if type in RESPONSE_OF:
        if request_id is None and parent is not None and parent.type == RESPONSE_OF[type]:
            request_id = parent.request_id
        if not request_id:
            raise UsageError(f"a {type} needs the request_id of the {RESPONSE_OF[type]} it answers")
        s.refresh()
        if not cache.has_inbox_request(s.db, RESPONSE_OF[type], request_id, [r for r in recipients if r != s.me]):
            raise UsageError(f"unknown request_id {request_id!r}: no verified {RESPONSE_OF[type]} with it in your "
                             f"inbox from {'any of ' if len(recipients) > 1 else ''}{', '.join(recipients)}")
    elif type in REQUEST_TYPES and not request_id:
        request_id = uuid.uuid4().hex[:12]
    sources = _attach_prepare(s, attach)
    text_for_meta = body if body.strip() else f"{type} " + " ".join(f"{k}={v}" for k, v in (payload or {}).items())
    if not body.strip() and type == "text" and sources:
        text_for_meta = "Attached: " + ", ".join(src.name for src in sources)
    msg = Message(
        from_=s.me,
        to=recipients,
        date=format_date(utcnow()),
        subject=(subject if subject is not None else _subject_from(text_for_meta))[:SUBJECT_LIMIT],
        summary=(dr.summary or _summary_from(text_for_meta))[:SUMMARY_LIMIT],
        body=body,
        priority=priority,
        type=type,
        payload=payload,
        request_id=request_id,
        in_reply_to=in_reply_to,
        thread=thread,
        require_ack=dr.require_ack,
        trace_id=trace_id,
    )
    return msg, sources


def _refuse_malformed(msg: "Message", body_limit: int) -> None:
    """Never write what readers would call malformed (docs/protocol.md §4, "What a reader checks")."""
    from gitmail.core.rules import content_problem

    problem = content_problem(msg, body_limit)
    if problem:
        raise UsageError(f"cannot send this message: {problem}")


def _refuse_sealed(msg: "Message", body_limit: int) -> None:
    """Never seal what its recipients would refuse once they open it: the fields that go into
    ``message.age`` break the rules a reader checks there (docs/protocol.md §9; a NUL in the
    body, a payload its type does not take). The clear message is checked too
    (:func:`_refuse_malformed`), but there those fields are empty."""
    from gitmail.core.rules import sealed_problem

    problem = sealed_problem(msg, (), body_limit)
    if problem:
        raise UsageError(f"cannot send this message: {problem}")


def _refuse_unreadable(blob: bytes) -> None:
    """Never write a ``message.json`` (``blob``) readers would refuse to parse: over 16 MiB,
    nested deeper than 32 levels, an integer beyond 64 bits (a payload can carry these; §4).
    Every writer runs it: :func:`send` and :func:`prepare` (batches, imports)."""
    from gitmail.core.model import parse_canonical
    from gitmail.errors import CorruptMessageError

    try:
        parse_canonical(blob)
    except (CorruptMessageError, ValueError, RecursionError) as e:
        why = str(e).removeprefix("corrupt message blob: ") if isinstance(e, CorruptMessageError) else "not JSON"
        raise UsageError(f"cannot send this message: message.json {why}") from None


def _commit_and_deliver(
    s: Session, msg: "Message", sources: list["Source"], encrypt: Optional[bool], progress: Optional["Progress"]
) -> SendResult:
    """Store the attachments, encrypt if the policy says so, commit to every recipient ref, deliver."""
    from gitmail.core import attachments, private, sync
    from gitmail.core.store import write_message_commit

    from gitmail.core.model import Attachment

    d = s.directory
    plain = msg
    if private.decide(d, s.me, msg.to, encrypt):
        _refuse_sealed(msg, d.policy.body_limit)  # before the attachments are encrypted and stored: nothing written
        keys = [d.members[n].encryption_key or "" for n in private.readers(d, s.me, msg.to)]
        csources, sealed = attachments.encrypt_sources(sources, keys)
        msg.attachments, extra_tree = _attach_store(s, csources)
        plain = msg.model_copy(update={"attachments": [
            Attachment(name=x.name, size=x.size, media_type=x.media_type, oid=x.oid, storage=a.storage, path=a.path)
            for x, a in zip(sources, msg.attachments)]})
        msg, cipher = private.seal_message(msg, d, sealed)
        extra_tree[private.CIPHER_FILE] = (str(s.repo.pg.create_blob(cipher)), 0o100644)
        plain.id = msg.id
    else:
        msg.attachments, extra_tree = _attach_store(s, sources)
        msg.id = msg.compute_id()
    _refuse_malformed(msg, d.policy.body_limit)
    _refuse_unreadable(msg.to_blob())
    signer, member, repo_ = s.signer, s.member, s.repo
    _attach_upload(s, msg.attachments, progress)
    with repo_.lock():
        updates = []
        for r in msg.to:
            path = refs.mail_path(r, s.me)
            ref = refs.outbox(path) if repo_.remote else refs.head(path)
            old = repo_.ref_target(ref)
            base = old or (sync.known_tip(repo_, path) if repo_.remote else None)
            updates.append((ref, write_message_commit(repo_.pg, msg, member, signer, base, extra_tree), old))
        repo_.update_refs(updates, f"gitmail: message {msg.id[:SHORT_ID]}")
    if not repo_.remote:
        return SendResult(plain, msg.to, delivered=True, queued=False, stored=msg)
    res = sync.deliver(repo_, signer, s.me, packed_tip=packed_tip_of(s))
    return result_of(repo_, plain, msg, [refs.mail_path(r, s.me) for r in msg.to], res)


def result_of(repo: "Repo", plain: "Message", stored: "Message", paths: list[str], res: "Delivery",
              judge: Optional[Judge] = None) -> SendResult:
    """The :class:`SendResult` of one message after a delivery round (see :func:`outcome_of`;
    ``judge``: one :class:`Judge` shared by the messages of a batch)."""
    outcome, reason, refused, queued, kind = (judge or Judge(repo, res))(stored.id, paths)
    return SendResult(plain, stored.to, delivered=outcome == DELIVERED, queued=outcome == QUEUED, refused=refused,
                      stored=stored, outcome=outcome, reason=reason, queued_in=queued, kind=kind)


def _attach_prepare(s: Session, attach: Optional[list[Union[str, Path]]]) -> list["Source"]:
    """Check and hash the files to attach (nothing written); see :func:`gitmail.core.attachments.prepare`."""
    if not attach:
        return []
    from gitmail.core import attachments

    from gitmail.core.repo import data_home

    # gitmail's own data is never mail: an agent talked into attaching "debug files" would
    # otherwise send the cache that holds every encrypted message it read, in clear.
    own = [(s.repo.git_dir, "this clone's git directory (gitmail's cache there holds your decrypted mail)"),
           (data_home(), "gitmail's data folder (GITMAIL_HOME: keys)")]
    return attachments.prepare(attach, s.directory.policy, own)


def _attach_store(s: Session, sources: list["Source"]) -> tuple[list["Attachment"], dict[str, tuple[str, int]]]:
    """Store the content once in this clone; the message's entries and extra tree entries."""
    if not sources:
        return [], {}
    from gitmail.core import attachments

    return attachments.store(s.repo, sources, s.directory.policy.attachment_storage)


def _attach_upload(s: Session, atts: list["Attachment"], progress: Optional["Progress"]) -> None:
    """Upload LFS content now (with progress); an unreachable store leaves it for delivery."""
    if not any(a.storage == "lfs" for a in atts):
        return
    from gitmail.core import attachments
    from gitmail.errors import LFSUnreachableError

    try:
        attachments.upload(s.repo, atts, progress or attachments.no_progress)
    except LFSUnreachableError:
        pass  # the delivery hook retries (and the message stays queued until it lands)


def reply(
    repo: RepoLike, id: str, body: str, *, as_: Optional[str] = None, all_: bool = False, **kw: Any
) -> SendResult:
    """Reply to message ``id``: to its sender (``all_``: and its other recipients), same thread."""
    s = session(repo, as_)
    s.refresh()
    parent = resolve_id(s, id)
    to = [parent.sender] if parent.sender != s.me else list(parent.recipients)
    if all_:
        to += [r for r in parent.recipients if r != s.me and r not in to]
    return send(s.repo, to, body, reply_to=parent.id, as_=s.me, **kw)


@dataclass
class Prepared:
    """One composed message of a batch, ready for the bulk writer: ``plain`` as the
    sender sees it, ``stored`` as committed (secret fields emptied when encrypted),
    its ``message.json`` bytes and extra tree files (``message.age``)."""

    plain: "Message"
    stored: "Message"
    blob: bytes
    extra: Optional[dict[str, bytes]]


def _headers_only(p: Prepared) -> Prepared:
    """``p`` without the body, payload and ``message.json`` bytes (ids, recipients and the
    other headers stay): what a result needs once the message is written."""
    light = {"body": "", "payload": None}
    stored = p.stored.model_copy(update=light)
    plain = stored if p.plain is p.stored else p.plain.model_copy(update=light)
    return Prepared(plain, stored, b"", None)


def prepare(s: Session, dr: Draft, encrypt: Optional[bool] = None) -> Prepared:
    """Compose (:func:`compose`), encrypt if the policy says so (``encrypt`` as in
    :func:`send`) and seal one message of a batch; nothing is written. Same errors as :func:`send`."""
    from gitmail.core import private

    msg, _ = compose(s, dr)
    plain, extra = msg, None
    if private.decide(s.directory, s.me, msg.to, encrypt):
        _refuse_sealed(msg, s.directory.policy.body_limit)
        msg, cipher = private.seal_message(msg, s.directory, [])  # sets msg.id
        extra = {private.CIPHER_FILE: cipher}
        plain.id = msg.id  # plain: the copy compose made for this call
        blob = msg.to_blob()
    else:
        blob = msg.seal()
    _refuse_malformed(msg, s.directory.policy.body_limit)
    _refuse_unreadable(blob)
    return Prepared(plain, msg, blob, extra)


# -- many at once, on every core ---------------------------------------------------------
# A batch of at least PARALLEL_MIN drafts is composed and encrypted by forked workers
# (gitmail.core.workers), CHUNK drafts per task, while the caller signs and writes; the
# workers inherit the session (directory, key, policy), loaded before the fork, via _FORKED.

PARALLEL_MIN = 512
CHUNK = 200
_FORKED: dict[str, object] = {}


@contextlib.contextmanager
def forked_preparers(s: Session, encrypt: Optional[bool], *, clear_copies: bool = True,
                     ) -> "Iterator[concurrent.futures.ProcessPoolExecutor]":
    """A pool of forked workers for :func:`prepare_stream` with session ``s`` (check
    :func:`gitmail.core.workers.can_fork` first). Whatever every message needs is loaded
    here, before the fork: the key may ask for its passphrase, never in a worker.

    ``clear_copies=False``: a caller that reports only Message-IDs (an import) gets each
    :class:`Prepared` with ``plain`` being ``stored`` (the clear copy of an encrypted
    message is not sent back: a second model pickled and unpickled for every message)."""
    from gitmail.core import workers

    s.signer  # noqa: B018
    s.directory  # noqa: B018
    _FORKED.update(session=s, encrypt=encrypt, clear_copies=clear_copies)
    try:
        with workers.pool() as pool:
            yield pool
    finally:
        _FORKED.clear()


def prepare_stream(s: Session, drafts: Iterable[Draft], encrypt: Optional[bool],
                   pool: "Optional[concurrent.futures.ProcessPoolExecutor]" = None) -> Iterator[Union[Prepared, GitmailError]]:
    """:func:`prepare` of each draft, in order, each error returned in its place (the caller
    decides which ones stop the batch). With ``pool`` (from :func:`forked_preparers` for the
    same ``s`` and ``encrypt``) the drafts are prepared by its workers, a few chunks ahead."""
    from gitmail.core import workers

    if pool is None:
        for dr in drafts:
            try:
                yield prepare(s, dr, encrypt)
            except GitmailError as e:
                yield e
        return
    for part in workers.ordered_map(pool, _prepare_chunk, workers.chunks(drafts, CHUNK), 2 * workers.cores()):
        yield from part


def _prepare_chunk(drafts: list[Draft]) -> list[Union[Prepared, GitmailError]]:
    from gitmail.core import workers

    s, encrypt, clear_copies = _FORKED["session"], _FORKED["encrypt"], _FORKED["clear_copies"]
    assert isinstance(s, Session)
    out: list[Union[Prepared, GitmailError]] = []
    with workers.collector_paused():
        for dr in drafts:
            try:
                p = prepare(s, dr, encrypt if isinstance(encrypt, bool) else None)
            except GitmailError as e:
                out.append(portable(e))
                continue
            if not clear_copies:
                p.plain = p.stored
            out.append(p)
    return out


def portable(e: GitmailError) -> GitmailError:
    """``e`` as it can travel back from a worker: an error whose constructor takes more than
    its message (``GitError``) does not unpickle, so it goes as a plain :class:`GitmailError`
    with the same message and exit code."""
    import pickle

    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:  # noqa: BLE001 - whatever pickling of a foreign error raises
        plain = GitmailError(e.message)
        plain.exit_code = e.exit_code
        return plain


def send_batch(
    repo: RepoLike, drafts: list[Draft], *, as_: Optional[str] = None, deliver: bool = True,
    encrypt: Optional[bool] = None, labels: Optional[list[str]] = None,
) -> list[SendResult]:
    """Send many messages at once: one pack, one ref update per mailbox, one push.

    Every draft is composed and checked first (:func:`prepare`: the same
    composer, rules and encryption policy as :func:`send`); the first bad one
    raises its error, its message prefixed with its label (``labels[i]``,
    default ``message <i+1>``), and nothing is written. A batch of at least
    :data:`PARALLEL_MIN` drafts is composed and encrypted on every core
    (:func:`prepare_stream`). Then all are written through the bulk writer (:mod:`gitmail.core.bulk`, each message signed)
    and, with ``deliver`` and a remote, delivered in one round. Returns one
    :class:`SendResult` per draft, in order. Attachments are not taken here.
    """
    from gitmail.core import workers

    s = session(repo, as_)
    prepared = []
    forked = len(drafts) >= PARALLEL_MIN and workers.can_fork()
    with forked_preparers(s, encrypt) if forked else contextlib.nullcontext() as pool:
        for i, got in enumerate(prepare_stream(s, drafts, encrypt, pool)):
            if isinstance(got, GitmailError):
                got.message = f"{labels[i] if labels else f'message {i + 1}'}: {got.message}"
                got.args = (got.message,)
                raise got
            prepared.append(got)
    return write_prepared(s, prepared, deliver=deliver)


def write_prepared(s: Session, prepared: Iterable[Prepared], *, deliver: bool = True,
                   mailbox: Optional[str] = None) -> list[SendResult]:
    """Write prepared messages as one pack (one chain per mailbox, in order) and, with
    ``deliver`` and a remote, deliver them in one round; one :class:`SendResult` each.

    ``mailbox``: the one mailbox path every message goes to (an import). Then
    ``prepared`` is read lazily while the chain is written, so whoever produces it
    (forked workers) works alongside the writer; an exception it raises stops the
    write before anything is stored (the pack is written only at the end). The
    results' messages then keep their ids and headers but not their body and
    payload, dropped once written: an import of a big archive held every message
    twice more until the end (5.8x the archive in memory, measured).
    """
    from gitmail.core import bulk
    from gitmail.core import sync as syncmod

    r_ = s.repo
    done: list[Prepared] = []
    if mailbox is not None:
        def stream() -> Iterator[tuple["Message", bytes, Optional[dict[str, bytes]]]]:
            for p in prepared:
                if [refs.mail_path(r, s.me) for r in p.stored.to] != [mailbox]:
                    raise ValueError(f"a message to {p.stored.to} in a write to {mailbox} only")
                yield p.stored, p.blob, p.extra
                done.append(_headers_only(p))  # written: the chain writer keeps what it needs

        by_path: dict[str, Iterable[tuple["Message", bytes, Optional[dict[str, bytes]]]]] = {mailbox: stream()}
    else:
        done = list(prepared)
        lists: dict[str, list[tuple["Message", bytes, Optional[dict[str, bytes]]]]] = {}
        for p in done:
            for r in p.stored.to:
                lists.setdefault(refs.mail_path(r, s.me), []).append((p.stored, p.blob, p.extra))
        by_path = dict(lists)
    if by_path:
        with r_.lock():
            updates = []
            for path, msgs in by_path.items():
                ref = refs.outbox(path) if r_.remote else refs.head(path)
                old = r_.ref_target(ref)
                base = old or (syncmod.known_tip(r_, path) if r_.remote else None)
                tip = bulk.write_chain(r_, msgs, s.member, s.signer, base)
                if tip is None or tip == base:
                    continue  # a stream that held nothing
                updates.append((ref, tip, old))
            if updates:
                r_.update_refs(updates, f"gitmail: {len(done)} messages")
    if not done:
        return []  # nothing written: no delivery round
    prepared = done
    if not (deliver and r_.remote):
        queued = bool(r_.remote)
        return [SendResult(p.plain, p.stored.to, delivered=not queued, queued=queued, stored=p.stored,
                           outcome=QUEUED if queued else DELIVERED,
                           reason="not delivered yet: run 'gitmail sync'" if queued else None,
                           kind=syncmod.NOT_TRIED if queued else None) for p in prepared]
    res = syncmod.deliver(r_, s.signer, s.me, packed_tip=packed_tip_of(s))
    judge = Judge(r_, res, many=len(done) > 64)
    return [result_of(r_, p.plain, p.stored, [refs.mail_path(r, s.me) for r in p.stored.to], res, judge)
            for p in prepared]
