"""The member's mailbox: list, read, mark, archive, thread, attachments.

Part of the library API (:mod:`gitmail.api`): plain data in and out, only
:class:`gitmail.errors.GitmailError` raised, nothing printed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional, Union

from gitmail.core import cache
from gitmail.errors import (
    UsageError,
)

if TYPE_CHECKING:
    from gitmail.api.results import TraceResult
    import pygit2

    from gitmail.api import results
    from gitmail.core.attachments import Bounds, Saved
    from gitmail.core.lfs import Progress
    from gitmail.core.model import Attachment, Message, SealedAttachment

from gitmail.api.session import RepoLike, Session, check_limit, resolve_id, session


@dataclass
class Listing:
    unread: int
    total: int
    messages: list[cache.Row]

    def model(self) -> "results.Listing":
        """The JSON result of ``gitmail list`` (docs/json.md, ``Listing``)."""
        from gitmail.api.results import Listing as Model, MessageRow

        return Model(unread=self.unread, total=self.total, messages=[MessageRow.of(r) for r in self.messages])


def mailbox(
    repo: RepoLike = None,
    *,
    as_: Optional[str] = None,
    unread_only: bool = False,
    archived: bool = False,
    all_: bool = False,
    from_: Optional[str] = None,
    limit: int = 30,
    sent: bool = False,
    priority: Optional[str] = None,
    type_: Optional[str] = None,
    since: Optional[str] = None,
    sort: str = "date",
) -> Listing:
    """The inbox newest first, with unread and total counts (of the non-archived inbox).

    ``archived``: only archived messages; ``all_``: archived ones too;
    ``sent``: messages the member sent instead of the inbox. Filters: ``priority``,
    ``type_``, ``since`` (ISO date or date-time). ``sort``: ``date`` (newest first) or
    ``priority`` (most urgent first, then newest: the order ``read`` uses).
    Raises :class:`UsageError` for a bad priority, sort or date.
    """
    from gitmail.api.search import since_date

    if priority is not None:
        from gitmail.core.model import PRIORITIES  # only then: the plain listing loads no pydantic

        if priority not in PRIORITIES:
            raise UsageError(f"unknown priority {priority!r}; use one of {', '.join(PRIORITIES)}")
    if sort not in ("date", "priority"):
        raise UsageError(f"unknown sort {sort!r}; use date or priority")
    s = session(repo, as_)
    s.refresh()
    return _listing(s, unread_only, archived, all_, from_, limit, sent,
                    dict(priority=priority, type_=type_, since=since_date(since), by_priority=sort == "priority"))


def _listing(
    s: Session, unread_only: bool, archived: bool, all_: bool, from_: Optional[str], limit: int, sent: bool = False,
    filters: Optional[dict[str, Any]] = None,
) -> Listing:
    check_limit(limit)
    unread, total = cache.inbox_counts(s.db)
    if sent:
        return Listing(unread, total, cache.sent_rows(s.db, limit))
    sender = None
    if from_:
        from gitmail.core.address import normalize

        sender = normalize(from_)
    rows = cache.inbox_rows(s.db, archived=archived, include_archived=all_, unread_only=unread_only,
                            sender=sender, limit=limit, **(filters or {}))
    return Listing(unread, total, rows)


@dataclass
class Item:
    """A message with its cache row (status, flags) and full content."""

    row: cache.Row
    message: Optional["Message"]
    saved: list["Saved"] = field(default_factory=list)  # attachments saved (read(save=True))
    sealed: list["SealedAttachment"] = field(default_factory=list)  # names/types of encrypted attachments
    encrypted: bool = False
    error: Optional[str] = None  # why an encrypted message could not be opened (one line)
    cipher: list["Attachment"] = field(default_factory=list)  # the clear (ciphertext) entries

    def fields(self) -> dict[str, Any]:
        """The fields of :class:`gitmail.api.results.ReadItem` (``read --json``, MCP ``read_message``):
        the row, and the content when the message could be read (subject and summary decrypted)."""
        from gitmail.api.results import SavedAttachment, row_fields

        m = self.message
        d = row_fields(self.row, all_recipients=True)
        d["attachments"] = ([SavedAttachment.of_saved(s) for s in self.saved] if self.saved else
                            [SavedAttachment.unsaved(a) for a in m.attachments] if m else [])
        d.update({"body": m.body if m else None, "payload": m.payload if m else None,
                  "verification": self.row.detail, "encrypted": self.encrypted, "error": self.error})
        if m is not None and self.encrypted and not self.error:
            d["subject"], d["summary"] = m.subject, m.summary
        return d

    def model(self) -> "results.ReadItem":
        """One item of ``gitmail read --json`` (docs/json.md, ``ReadItem``)."""
        from gitmail.api.results import ReadItem

        return ReadItem.model_validate(self.fields())


def load_item(s: Session, row: cache.Row) -> Item:
    """Read a message's blob; decrypt it if it is encrypted and verified."""
    from gitmail.core.objects import load_commit
    from gitmail.core.store import wellformed_message
    from gitmail.errors import CorruptMessageError

    c = load_commit(s.repo.pg, row.oid)
    if isinstance(c, str):  # a hostile commit object: its verdict is all there is to show
        return Item(row, None)
    try:  # a malformed message's content is not shown (docs/protocol.md §4)
        msg = wellformed_message(s.repo.pg, c, s.directory.read_body_limit)
    except CorruptMessageError:
        return Item(row, None)
    if msg.encrypted is None:
        return Item(row, msg)
    return _open(s, row, c, msg)


def _open(s: Session, row: cache.Row, c: "pygit2.Commit", msg: "Message") -> Item:
    """Decrypt a verified encrypted message; an unverified one is never decrypted."""
    from gitmail.core import private
    from gitmail.errors import GitmailError

    if row.status != "good":
        return Item(row, msg, encrypted=True, error="not decrypted: the message failed verification")
    from gitmail.core.model import Attachment, Sealed

    if row.plaintext:  # decrypted (and checked) when it was indexed
        inner = Sealed.model_validate_json(row.plaintext)
        opened, sealed = private.opened_from(msg, inner), inner.attachments
    else:
        try:
            opened, sealed = private.open_message(s.repo.pg, c, msg, s.identities, s.directory.read_body_limit, s.me)
        except GitmailError as e:
            return Item(row, msg, encrypted=True, error=e.message)
    shown = [Attachment(name=se.name, size=se.size, media_type=se.media_type, oid=se.sha256, storage=a.storage,
                        path=a.path) for se, a in zip(sealed, msg.attachments)]
    opened.attachments = shown
    return Item(row, opened, sealed=sealed, encrypted=True, cipher=list(msg.attachments))


def read(
    repo: RepoLike = None,
    ids: Optional[list[str]] = None,
    *,
    as_: Optional[str] = None,
    mark: bool = True,
    save: bool = False,
    save_dir: Optional[Union[str, Path]] = None,
    progress: Optional["Progress"] = None,
    per_message: bool = False,
) -> list[Item]:
    """The messages ``ids`` (unique prefixes), or with none every unread inbox message,
    most urgent first and oldest first within a priority. Marks them read unless ``mark`` is false.

    ``save``: fetch, verify and save the attachments of verified messages into
    ``save_dir`` (default: the member's inbox folder,
    :func:`gitmail.core.attachments.inbox_dir`); each item's ``saved`` says
    where each went, or why it was not saved. ``per_message``: each message's files go
    in a folder of their own inside ``save_dir``, named by its short id
    (:data:`gitmail.api.views.SHORT` hex digits), made when missing: what the MCP server
    does, since an agent can be talked into naming any folder (``~/.ssh``,
    ``.claude``) and the file names are the sender's (``authorized_keys``,
    ``settings.json``); inside a folder of the message's own, no name lands where a
    program reads it.
    """
    if save:  # bad input refused before anything is read
        if per_message and save_dir is not None and not str(save_dir).strip():
            raise UsageError("give a folder to save the attachments in (an empty name is none)")
        _check_save_dir(save_dir)
    s = session(repo, as_)
    s.refresh()
    if ids:
        rows = [resolve_id(s, i) for i in ids]
    else:
        rows = cache.unread_rows(s.db)
    items = [load_item(s, r) for r in rows]
    if save:
        from gitmail.api.views import SHORT

        for it in items:
            saving = it.message is not None and it.message.attachments and it.row.status == "good" and not it.error
            here = save_dir
            if per_message and save_dir and saving:
                try:
                    here = _own_folder(Path(save_dir).expanduser(), it.row.id[:SHORT])
                except OSError as e:
                    from gitmail.core.attachments import Saved, safe_name

                    assert it.message is not None
                    why = f"not saved: no folder of its own can be made in {save_dir} ({e.strerror or e})"
                    it.saved = [Saved(a, safe_name(a.name), error=why) for a in it.message.attachments]
                    continue
            it.saved = save_attachments(s, it, here, progress)
    if mark and rows:
        _set_flag(s, _shown(items), "read", True)
    return items


def _check_save_dir(save_dir: Optional[Union[str, Path]]) -> None:
    """Refuse, before anything is read or saved, a folder no file can be saved in: a NUL in its
    path (the OS takes none; Python's ``ValueError`` would be an internal error)."""
    if save_dir and "\x00" in str(save_dir):
        raise UsageError("the folder to save attachments in cannot hold a NUL byte in its path")


def _shown(items: list[Item]) -> list[str]:
    """The ids of ``items`` that count as read once shown: inbox mail that could be shown (not
    a message whose key was locked, nor one whose blob is corrupt)."""
    return [it.row.id for it in items if it.row.inbox and it.message is not None and not it.error]


def mark_shown(repo: RepoLike, items: list[Item], *, as_: Optional[str] = None) -> int:
    """Mark read what of ``items`` (from :func:`read` with ``mark=False``) a front-end has shown,
    by :func:`read`'s rule; returns how many messages changed."""
    return _set_flag(session(repo, as_), _shown(items), "read", True)


def _own_folder(parent: Path, name: str) -> Path:
    """A folder this call creates under ``parent`` (absolute): ``name``, else ``name-`` and a
    random suffix (:func:`tempfile.mkdtemp`); never one that was already there. The short
    id is known to its sender in advance (``send --json``), so in a folder others can write
    to (a shared one, or a project whose files a member commits) they could plant
    ``<short id>`` as a symlink to ``~/.ssh`` or ``.claude`` and have ``authorized_keys``
    written there; a folder made now is this call's. Numbered names (``-1`` to ``-99``)
    could be planted as well, and the last fallback was the planted name itself.

    Raises ``OSError`` when no folder can be made there (``parent`` cannot be created or
    written), ``ValueError`` for a NUL in the path (:func:`read` refuses one first)."""
    import tempfile

    from gitmail.core.attachments import DIR_MODE_MAX, make_private_dirs

    parent = parent.absolute()
    make_private_dirs(parent)
    try:
        (parent / name).mkdir(mode=DIR_MODE_MAX)
        return parent / name
    except FileExistsError:
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=parent))  # 0700, a name nobody could plant


def save_attachments(
    s: Session, it: Item, save_dir: Optional[Union[str, Path]], progress: Optional["Progress"]
) -> list["Saved"]:
    """Save ``it``'s attachments (only for a verified message); never raises for one bad file."""
    from typing import cast

    from gitmail.core import attachments

    m = it.message
    if m is None or not m.attachments:
        return []
    if it.row.status != "good":
        why = f"not saved: the message failed verification ({it.row.status})"
        return [attachments.Saved(a, attachments.safe_name(a.name), error=why) for a in m.attachments]
    if it.error:
        return [attachments.Saved(a, attachments.safe_name(a.name), error=it.error) for a in m.attachments]
    dest = Path(save_dir).expanduser() if save_dir else attachments.inbox_dir(s.repo, s.me)
    if not save_dir:
        attachments.tighten_dir(dest)
    # The widest limits the directory ever had (docs/protocol.md §13): lowering a limit
    # applies to what is sent afterwards and never makes earlier mail unreadable.
    bounds = attachments.read_bounds(s.repo.pg, s.directory.tip or None)
    commit = cast("pygit2.Commit", s.repo.pg[it.row.oid])
    if it.encrypted:
        return _save_sealed(s, it, commit, dest, bounds, progress or attachments.no_progress)
    return attachments.save_all(s.repo, m, commit, dest, bounds, progress or attachments.no_progress)


def _save_sealed(
    s: Session, it: Item, commit: "pygit2.Commit", dest: Path, bounds: "Bounds", progress: "Progress"
) -> list["Saved"]:
    """Fetch each attachment's ciphertext (verified against its pointer), decrypt it, strip
    its padding, check the plaintext against the sealed size and sha256, and save it under
    its sealed name; identical content once."""
    import hashlib

    from gitmail.core import attachments, crypto, private
    from gitmail.errors import AttachmentError, DecryptionError, GitmailError

    assert it.message is not None
    ids = s.identities
    env = private.envelope(it.message)
    refused = attachments.refuse_over_bounds(it.message.attachments, [(se.name, se.size) for se in it.sealed], bounds)
    if refused is not None:
        return refused
    cipher_limit = crypto.sealed_max(bounds.per_file, len(env.recipients))
    out = []
    done: dict[str, Path] = {}  # plaintext sha256 -> where it was saved in this call
    for shown, se, clear in zip(it.message.attachments, it.sealed, it.cipher):
        name = attachments.safe_name(se.name)
        if se.sha256 in done:
            out.append(attachments.Saved(shown, name, done[se.sha256]))
            continue
        try:
            if se.size > bounds.per_file:
                raise AttachmentError(f"{attachments.human_size(se.size)} is over the org's limit of "
                                      f"{attachments.human_size(bounds.per_file)}; not fetched")
            plain = crypto.open_(attachments.fetch(s.repo, clear, commit, cipher_limit, progress), ids, env.recipients,
                                 s.me)
            plain = crypto.unpad(plain, se.size)
            if hashlib.sha256(plain).hexdigest() != se.sha256:
                raise DecryptionError("decrypted content does not match its sealed sha256; not saved")
            done[se.sha256] = attachments.write_new(dest, name, plain, se.sha256)
            out.append(attachments.Saved(shown, name, done[se.sha256]))
        except GitmailError as e:
            out.append(attachments.Saved(shown, name, error=f"{name}: {e.message}"))
    return out


def fetch_attachments(
    repo: RepoLike,
    id: str,
    *,
    save_dir: Optional[Union[str, Path]] = None,
    as_: Optional[str] = None,
    progress: Optional["Progress"] = None,
) -> Item:
    """Fetch, verify and save the attachments of message ``id`` again (``gitmail attachments``).

    Does not change read flags. Raises :class:`VerificationError` for a
    message that failed verification; per-file problems are in ``saved``.
    """
    from gitmail.errors import VerificationError

    _check_save_dir(save_dir)
    s = session(repo, as_)
    s.refresh()
    it = load_item(s, resolve_id(s, id))
    if it.message is None:
        raise VerificationError(f"message {id} is corrupt: it has no readable attachments")
    if it.row.status != "good":
        raise VerificationError(f"message {id} failed verification ({it.row.status}); its attachments are not saved")
    it.saved = save_attachments(s, it, save_dir, progress)
    return it


def _set_flag(s: Session, ids: list[str], flag: str, value: bool) -> int:
    """Set ``flag`` on every inbox copy of ``ids``; returns how many messages changed."""
    from gitmail.core import state

    if not ids:
        return 0
    changes, changed = cache.flag_positions(s.db, ids, flag, value)
    if not changes:
        return 0
    with s.repo.lock():
        old, st = state.load(s.repo, s.me)
        state.update(st, changes, flag, value)
        blob = state.save(s.repo, s.me, old, st)
        from gitmail.api.state import note_change  # a clone that shares its state journals the change

        note_change(s, sorted(changed), changes, flag, value)
    # The state ref moved: record it so the next command's fast path stays fast.
    cache.set_flag(s.db, s.repo, s.me, changes, flag, value, blob)
    return len(changed)


def mark(repo: RepoLike, ids: list[str], *, read: bool, as_: Optional[str] = None) -> list[str]:
    """Mark messages read or unread; returns their full Message-IDs (each once, however often named)."""
    s = session(repo, as_)
    s.refresh()
    rows = _distinct(resolve_id(s, i) for i in ids)
    _set_flag(s, [r.id for r in rows], "read", read)
    return [r.id for r in rows]


def archive(repo: RepoLike, ids: list[str], *, undo: bool = False, as_: Optional[str] = None) -> list[str]:
    """Archive messages (a soft delete: hidden from the inbox, never removed), or undo it;
    returns their full Message-IDs (each once, however often named)."""
    s = session(repo, as_)
    s.refresh()
    rows = _distinct(resolve_id(s, i) for i in ids)
    _set_flag(s, [r.id for r in rows], "archived", not undo)
    return [r.id for r in rows]


def _distinct(rows: Iterable[cache.Row]) -> list[cache.Row]:
    """``rows`` each once (by Message-ID), in the order first named: ``mark X X`` is one message."""
    return list({r.id: r for r in rows}.values())


def thread(repo: RepoLike, id: str, *, as_: Optional[str] = None) -> list[cache.Row]:
    """Every message of ``id``'s thread in the member's view (inbox and sent), oldest first."""
    s = session(repo, as_)
    s.refresh()
    row = resolve_id(s, id)
    root = row.thread or row.id
    return cache.thread_rows(s.db, root)


@dataclass
class Trace:
    """What ``gitmail trace ID`` shows (docs/protocol.md §4, "Traces").

    ``trace_id``: the trace shown (None when ID named a message that has none);
    ``thread``: the thread id when ID named a message, else None; ``messages``:
    every message of the trace and of that thread in the member's view (inbox,
    groups, broadcast, sent; archived ones too), once each, oldest first (only the
    newest ``limit`` when :func:`trace` was given one); ``more``: the earlier ones left out.
    """

    trace_id: Optional[str]
    thread: Optional[str]
    messages: list[cache.Row]
    more: int = 0

    def model(self) -> "TraceResult":
        """The JSON result of ``gitmail trace`` and the MCP ``trace`` tool (docs/json.md, ``TraceResult``)."""
        from gitmail.api.results import MessageRow, TraceResult

        return TraceResult(trace_id=self.trace_id, thread=self.thread,
                           messages=[MessageRow.of(r) for r in self.messages], more=self.more)

    def newest(self, limit: Optional[int]) -> "Trace":
        """Only the newest ``limit`` messages (still oldest first), the rest counted in ``more``."""
        if limit is None or len(self.messages) <= limit:
            return self
        cut = len(self.messages) - limit
        return Trace(self.trace_id, self.thread, self.messages[cut:], self.more + cut)


def trace(repo: RepoLike, id: str, *, as_: Optional[str] = None, kind: Optional[str] = None,
          limit: Optional[int] = None) -> Trace:
    """Every message of one trace or thread across the member's mailboxes, oldest first.

    ``id``: a trace id that some message carries (exact match), or a Message-ID or unique
    prefix (4+ hex digits) of a message of the view: that message's thread, and its trace
    when it has one. ``kind``: ``"trace"`` or ``"message"`` to take ``id`` only as that.
    When ``id`` is both (a ticket number as a trace id, and the start of a message's id)
    neither wins: any member can send mail with a trace id spelt like a message's id, or
    mint a message whose id starts like a trace id (a second of hashing for four hex
    digits), and would otherwise answer for the other; that is
    :class:`AmbiguousIdError` naming both, to be asked again with ``kind``. Raises
    :class:`MessageNotFoundError` (neither), :class:`AmbiguousIdError`,
    :class:`UsageError` (neither a trace id nor a message id in form, a bad ``kind``, or a
    ``limit`` under 1). ``limit``: only the newest that many (any member can tag mail with a
    trace id, or reply in a thread, as often as they like).
    """
    if limit is not None and limit < 1:
        raise UsageError(f"limit must be at least 1, not {limit}")
    return _trace(repo, id, as_, kind).newest(limit)


def _trace(repo: RepoLike, id: str, as_: Optional[str], kind: Optional[str]) -> Trace:
    import re

    from gitmail.core.model import trace_id_problem
    from gitmail.errors import AmbiguousIdError, MessageNotFoundError

    if kind not in (None, "trace", "message"):
        raise UsageError(f"kind must be 'trace' or 'message', not {kind!r}")
    s = session(repo, as_)
    s.refresh()
    key = id.strip()
    missing: Optional[MessageNotFoundError] = None
    row = None
    if kind != "trace" and re.fullmatch(r"[0-9a-fA-F]{4,64}", key):
        try:
            row = resolve_id(s, key)  # AmbiguousIdError when the prefix names several
        except MessageNotFoundError as e:
            missing = e
    carried = kind != "message" and trace_id_problem(key) is None and cache.has_trace(s.db, key)
    if row is not None and carried:
        raise AmbiguousIdError(f"{id!r} is both a trace id and the start of message {row.id[:12]}'s id: "
                               "give --trace for the trace or --message for that message's thread")
    if row is not None:
        root = row.thread or row.id
        return Trace(row.trace_id, root, cache.trace_rows(s.db, row.trace_id, root))
    if carried:
        return Trace(key, None, cache.trace_rows(s.db, key))
    if missing is not None:
        raise missing
    if kind == "message" or (kind == "trace" and trace_id_problem(key) is not None):
        raise MessageNotFoundError(f"no message {id!r} in {s.me}'s mailbox")
    if trace_id_problem(key) is not None:
        raise UsageError(f"{id!r} is neither a trace id nor a message id")
    raise MessageNotFoundError(f"no message with trace id {id!r} in {s.me}'s mailbox")


def thread_items(repo: RepoLike, id: str, *, as_: Optional[str] = None) -> list[Item]:
    """:func:`thread` with each message's content (:class:`Item`: decrypted for the member
    when it is encrypted and verified; ``error`` says why not; ``message`` None when corrupt).
    Read flags do not change. Raises as :func:`thread`."""
    s = session(repo, as_)
    s.refresh()
    row = resolve_id(s, id)
    return [load_item(s, r) for r in cache.thread_rows(s.db, row.thread or row.id)]


def unread_count(repo: RepoLike = None, *, as_: Optional[str] = None) -> tuple[int, int]:
    """``(unread, urgent unread)`` in the inbox (fast path: no pygit2 unless mail moved)."""
    s = session(repo, as_)
    s.refresh()
    return cache.unread_counts(s.db)
