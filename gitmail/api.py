"""The library API: every front-end (CLI, MCP server, hooks) calls these functions.

Each function takes a repository (a path, or an open :class:`Repo`) and the
acting identity (``as_``; default from ``$GITMAIL_USER`` / ``gitmail.user``),
returns plain data, and raises only :class:`gitmail.errors.GitmailError`
subclasses. Nothing here prints.
"""

from __future__ import annotations

import os
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

from gitmail.core import cache, refs
from gitmail.core.repo import Repo, open_repo
from gitmail.errors import (
    AmbiguousIdError,
    MessageNotFoundError,
    UsageError,
)

if TYPE_CHECKING:
    import pygit2

    from gitmail.core.attachments import Saved, Source
    from gitmail.core.directory import Directory
    from gitmail.core.lfs import Progress
    from gitmail.core.model import Attachment, Member, Message, SealedAttachment
    from gitmail.core.signing import Signer

RepoLike = Union[str, Path, Repo, None]
SHORT_ID = 8
_ID_PREFIX = re.compile(r"^[0-9a-f]{4,64}$")


# -- session -------------------------------------------------------------------


@dataclass
class Session:
    """A repository plus the acting member, with the expensive parts loaded lazily."""

    repo: Repo
    me: str
    _db: Optional[sqlite3.Connection] = None
    _directory: Optional["Directory"] = None
    _signer: Optional["Signer"] = None
    _identities: Optional[list[object]] = None
    problems: list[str] = field(default_factory=list)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = cache.connect(self.repo, self.me)
        return self._db

    @property
    def directory(self) -> "Directory":
        if self._directory is None:
            from gitmail.core import directory

            self._directory = directory.load(self.repo)
        return self._directory

    @property
    def member(self) -> "Member":
        from gitmail.errors import NotInitializedError

        m = self.directory.members.get(self.me)
        if m is None:
            raise NotInitializedError(f"{self.me!r} is not a member of this org: run 'gitmail init --name NAME'")
        return m

    @property
    def signer(self) -> "Signer":
        if self._signer is None:
            from gitmail.core.signing import load_key
            from gitmail.errors import KeyError_

            s = load_key(self.repo.key_path(self.me))
            if s.public_key not in self.member.all_keys():
                raise KeyError_(f"key {s.source} is not {self.me}'s key in the directory")
            if s.public_key != self.member.signing_key:
                raise KeyError_(f"key {s.source} is a retired key of {self.me}")
            self._signer = s
        return self._signer

    @property
    def identities(self) -> list[object]:
        """The member's age identities (current and retired keys), loaded once."""
        if self._identities is None:
            from gitmail.core import private

            self._identities = private.identities(self.repo, self.me)
        return self._identities

    def refresh(self) -> None:
        """Bring the cache up to date with the refs (fast when nothing moved)."""
        if not cache.fresh(self.repo, self.me, self.db):
            self.problems += cache.ingest(self.repo, self.me, self.db, self.directory)
            from gitmail.hooks import write_inbox_refs

            write_inbox_refs(self.repo, self.me, self.directory)


def session(repo: RepoLike = None, as_: Optional[str] = None) -> Session:
    r = repo if isinstance(repo, Repo) else open_repo(repo)
    return Session(r, r.identity(as_))


# -- init -----------------------------------------------------------------------


@dataclass
class InitResult:
    member: "Member"
    repo: Path
    remote: Optional[str]
    key_path: Path
    created_org: bool
    created_key: bool
    registered: bool


def _is_local_path(url: str) -> bool:
    return "://" not in url and not re.match(r"^[^/]+:", url)


def init(
    repo: RepoLike,
    name: str,
    *,
    org: Optional[str] = None,
    email: Optional[str] = None,
    key: Optional[str] = None,
    display_name: Optional[str] = None,
    kind: str = "human",
    encryption_key: bool = True,
) -> InitResult:
    """Make the repo at ``repo`` a mailbox for member ``name`` (docs/protocol.md, "Joining").

    With ``org`` a local path where nothing exists yet, creates the org repo
    there (bare). Creates or loads the member's key, registers the member in
    the directory (the first member becomes admin), adds the fetch refspec,
    sets ``gitmail.user`` (if unset), ``gitmail.NAME.key`` and
    ``gpg.ssh.allowedSignersFile``. Idempotent for a member already registered
    with the same key; raises :class:`DirectoryError` for a name taken by
    another key. ``encryption_key``: publish the key for end-to-end encryption
    too (docs/protocol.md, "Encryption").
    """
    from gitmail import git
    from gitmail.core import admin
    from gitmail.core import directory as dirmod
    from gitmail.core import sync
    from gitmail.core.address import normalize, to_ref
    from gitmail.core.model import Member
    from gitmail.core.signing import generate_key, load_key
    from gitmail.errors import DirectoryError, NotARepoError

    name = normalize(name)
    if '"' in name or "," in name:
        from gitmail.errors import AddressError

        raise AddressError(f"member name {name!r} cannot contain '\"' or ',' (allowed-signers syntax)")
    base = Path(repo.path if isinstance(repo, Repo) else (repo or os.environ.get("GITMAIL_REPO") or "."))
    created_org = False
    if org and _is_local_path(org):
        orgp = Path(org).expanduser()
        if not orgp.exists():
            git.run(["init", "--quiet", "--bare", str(orgp)])
            created_org = True
        org = str(orgp.resolve())
    try:
        r = repo if isinstance(repo, Repo) else open_repo(base)
    except NotARepoError:
        if not org:
            raise
        base.mkdir(parents=True, exist_ok=True)
        git.run(["init", "--quiet", str(base)])
        r = open_repo(base)
    if org:
        remotes = {k.split(".")[1]: v for k, v in r.config.items() if k.startswith("remote.") and k.endswith(".url")}
        chosen = next((n for n, u in remotes.items() if u == org), None)
        if chosen is None:
            chosen = "origin" if "origin" not in remotes else "gitmail"
            git.run(["remote", "add", chosen, org], r.path)
        git.config_set(r.path, "gitmail.remote", chosen)
    elif not r.remote:
        names = {k.split(".")[1] for k in r.config if k.startswith("remote.") and k.endswith(".url")}
        if "origin" in names:
            git.config_set(r.path, "gitmail.remote", "origin")
    r.reload_config()
    if r.remote:
        fetchspecs = git.config_get_all(r.path, f"remote.{r.remote}.fetch")
        covering = (f"+refs/heads/*:refs/remotes/{r.remote}/*", refs.FETCH_REFSPEC.format(remote=r.remote))
        if not any(s in covering for s in fetchspecs):
            git.config_add(r.path, f"remote.{r.remote}.fetch", refs.FETCH_REFSPEC.format(remote=r.remote))
        sync.fetch(r)
    created_key = False
    if key:
        kp = Path(key).expanduser().resolve()
        signer = load_key(kp)
        git.config_set(r.path, f"gitmail.{name}.key", str(kp))
    else:
        kp = r.key_path(name)
        if kp.exists():
            signer = load_key(kp)
        else:
            signer = generate_key(kp, comment=f"gitmail {name}")
            created_key = True
        git.config_set(r.path, f"gitmail.{name}.key", str(kp))
    d = dirmod.load(r)
    existing = d.members.get(name)
    registered = False
    if existing is not None:
        if signer.public_key not in existing.all_keys():
            raise DirectoryError(f"member {name!r} is already registered with another key")
        member = existing
    else:
        if d.member_by_key(signer.public_key) is not None:
            other = d.member_by_key(signer.public_key)
            assert other is not None
            raise DirectoryError(f"that key is already registered to member {other.name!r}")
        # The one ed25519 key also decrypts (age ssh-ed25519 recipient); a key that
        # lives only in ssh-agent cannot decrypt, so it publishes no encryption key.
        publish = encryption_key and not signer.source.startswith("ssh-agent")
        member = Member(
            name=name,
            display_name=display_name or name,
            email=email or f"{to_ref(name)}@gitmail.invalid",
            signing_key=signer.public_key,
            encryption_key=signer.public_key if publish else None,
            role="admin" if not d.members else "member",
            kind=kind,
        )

        def add(cur: "Directory") -> "Directory":
            if name in cur.members:
                raise DirectoryError(f"member {name!r} is already registered")
            cur.members[name] = member
            return cur

        admin.change(r, signer, member, add, f"Register {name}")
        registered = True
    if not r.config.get("gitmail.user"):
        git.config_set(r.path, "gitmail.user", name)
    git.config_set(r.path, "gpg.ssh.allowedSignersFile", str(r.data_dir / "allowed_signers"))
    dirmod.load(r)
    return InitResult(member, r.path, r.remote, kp, created_org, created_key, registered)


# -- send -----------------------------------------------------------------------


@dataclass
class SendResult:
    message: "Message"
    recipients: list[str]
    delivered: bool
    queued: bool
    refused: dict[str, str] = field(default_factory=dict)
    stored: Optional["Message"] = None  # message.json as committed (secret fields emptied when encrypted)

    @property
    def encrypted(self) -> bool:
        return self.stored is not None and self.stored.encrypted is not None


REQUEST_TYPES = ("shutdown_request", "plan_approval_request", "question")


def _subject_from(body: str) -> str:
    first = next((ln.strip() for ln in body.splitlines() if ln.strip()), "")
    first = first.lstrip("# ").strip()
    return first if len(first) <= 72 else first[:71] + "…"


def _summary_from(body: str) -> str:
    flat = " ".join(body.split())
    return flat if len(flat) <= 100 else flat[:99] + "…"


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
    """
    s = session(repo, as_)
    msg, sources = _compose(s, to, body, subject=subject, summary=summary, priority=priority, type=type,
                            payload=payload, reply_to=reply_to, request_id=request_id,
                            require_ack=require_ack, attach=attach)
    return _commit_and_deliver(s, msg, sources, encrypt, progress)


def _compose(
    s: Session, to: list[str], body: str, *, subject: Optional[str], summary: Optional[str], priority: str,
    type: str, payload: Optional[dict[str, Any]], reply_to: Optional[str], request_id: Optional[str],
    require_ack: bool, attach: Optional[list[Union[str, Path]]],
) -> tuple["Message", list["Source"]]:
    """Validate the input and build the plaintext message (no Message-ID yet) and its files."""
    import uuid

    from gitmail.core.address import BROADCAST, GROUP_PREFIX
    from gitmail.core.model import PRIORITIES, RESPONSE_OF, Message, format_date, utcnow, validate_payload

    if not to:
        raise UsageError("no recipient given")
    recipients = _resolve_recipients(s, to)
    d = s.directory
    s.signer  # noqa: B018 - a member with a usable key, before anything is written
    if priority not in PRIORITIES:
        raise UsageError(f"unknown priority {priority!r}; use one of {', '.join(PRIORITIES)}")
    payload = validate_payload(type, payload)
    if type != "text" and any(r == BROADCAST or r.startswith(GROUP_PREFIX) for r in recipients):
        raise UsageError(f"a {type} message cannot be broadcast: name one recipient")
    if not body.strip() and type == "text" and not attach:
        raise UsageError("empty message")
    limit = d.policy.body_limit
    if len(body.encode("utf-8")) > limit:
        raise UsageError(f"message body is {len(body.encode('utf-8'))} bytes; the limit is {limit}")
    in_reply_to = thread = None
    parent = None
    if reply_to:
        s.refresh()
        parent = _resolve(s, reply_to)
        in_reply_to = parent.id
        thread = parent.thread or parent.id
        if subject is None and parent.subject:
            subject = parent.subject if parent.subject.lower().startswith("re:") else f"Re: {parent.subject}"
    if type in RESPONSE_OF:
        if request_id is None and parent is not None and parent.type == RESPONSE_OF[type]:
            request_id = parent.request_id
        if not request_id:
            raise UsageError(f"a {type} needs the request_id of the {RESPONSE_OF[type]} it answers")
        s.refresh()
        row = s.db.execute(
            "SELECT 1 FROM msg WHERE inbox=1 AND type=? AND request_id=? LIMIT 1", (RESPONSE_OF[type], request_id)
        ).fetchone()
        if row is None:
            raise UsageError(f"unknown request_id {request_id!r}: no {RESPONSE_OF[type]} with it in your inbox")
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
        subject=(subject if subject is not None else _subject_from(text_for_meta))[:200],
        summary=(summary or _summary_from(text_for_meta))[:120],
        body=body,
        priority=priority,
        type=type,
        payload=payload,
        request_id=request_id,
        in_reply_to=in_reply_to,
        thread=thread,
        require_ack=require_ack,
    )
    return msg, sources


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
    signer, member, repo_ = s.signer, s.member, s.repo
    _attach_upload(s, msg.attachments, progress)
    with repo_.lock():
        updates = []
        for r in msg.to:
            path = refs.mail_path(r, s.me)
            ref = refs.outbox(path) if repo_.remote else refs.head(path)
            old = repo_.ref_target(ref)
            base = old or (repo_.ref_target(refs.tracking(path, repo_.remote)) if repo_.remote else None)
            updates.append((ref, write_message_commit(repo_.pg, msg, member, signer, base, extra_tree), old))
        repo_.update_refs(updates, f"gitmail: message {msg.id[:SHORT_ID]}")
    if not repo_.remote:
        return SendResult(plain, msg.to, delivered=True, queued=False, stored=msg)
    res = sync.deliver(repo_, signer, s.me)
    return SendResult(plain, msg.to, delivered=not res.queued and not res.refused, queued=bool(res.queued),
                      refused=res.refused, stored=msg)


def _attach_prepare(s: Session, attach: Optional[list[Union[str, Path]]]) -> list["Source"]:
    """Check and hash the files to attach (nothing written); see :func:`gitmail.core.attachments.prepare`."""
    if not attach:
        return []
    from gitmail.core import attachments

    return attachments.prepare(attach, s.directory.policy.attachment_limit)


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
        attachments.upload(s.repo, atts, progress or attachments._no_progress)
    except LFSUnreachableError:
        pass  # the delivery hook retries (and the message stays queued until it lands)


def _resolve_recipients(s: Session, to: list[str]) -> list[str]:
    """Normalised, de-duplicated recipients; refetches the directory once for a newcomer."""
    from gitmail.core import sync
    from gitmail.errors import UnknownRecipientError

    def resolve() -> list[str]:
        return list(dict.fromkeys(s.directory.resolve(t) for t in to))

    try:
        return resolve()
    except UnknownRecipientError:
        if not s.repo.remote:
            raise
    sync.fetch(s.repo, [refs.DIRECTORY])
    s._directory = None
    return resolve()


# -- listing and reading ----------------------------------------------------------


@dataclass
class Listing:
    unread: int
    total: int
    messages: list[cache.Row]


def _resolve(s: Session, prefix: str) -> cache.Row:
    """The message whose Message-ID starts with ``prefix`` in ``s.me``'s view."""
    p = prefix.strip().lower()
    if not _ID_PREFIX.match(p):
        raise UsageError(f"malformed message id {prefix!r}: expected 4 to 64 hex digits")
    hi = p + "g"  # just above every hex continuation
    rows = s.db.execute(
        "SELECT * FROM msg WHERE id >= ? AND id < ? AND (inbox=1 OR sent=1) ORDER BY inbox DESC, dup", (p, hi)
    ).fetchall()
    ids = {r["id"] for r in rows}
    if not ids:
        raise MessageNotFoundError(f"no message {prefix!r} in {s.me}'s mailbox")
    if len(ids) > 1:
        raise AmbiguousIdError(f"message id {prefix!r} is ambiguous ({len(ids)} messages); give more digits")
    return cache.Row.of(rows[0])


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
) -> Listing:
    """The inbox newest first, with unread and total counts (of the non-archived inbox).

    ``archived``: only archived messages; ``all_``: archived ones too;
    ``sent``: messages the member sent instead of the inbox.
    """
    s = session(repo, as_)
    s.refresh()
    return _listing(s, unread_only, archived, all_, from_, limit, sent)


def _listing(
    s: Session, unread_only: bool, archived: bool, all_: bool, from_: Optional[str], limit: int, sent: bool = False
) -> Listing:
    if limit < 1:
        raise UsageError("--limit must be at least 1")
    db = s.db
    unread, total = db.execute(
        "SELECT SUM(read=0), COUNT(*) FROM msg WHERE inbox=1 AND dup=0 AND archived=0"
    ).fetchone()
    if sent:
        rows = db.execute("SELECT * FROM msg WHERE sent=1 GROUP BY id ORDER BY date DESC LIMIT ?", (limit,)).fetchall()
        return Listing(unread or 0, total or 0, [cache.Row.of(r) for r in rows])
    where, args = ["inbox=1", "dup=0"], []
    if archived:
        where.append("archived=1")
    elif not all_:
        where.append("archived=0")
    if unread_only:
        where.append("read=0")
    if from_:
        from gitmail.core.address import normalize

        where.append("sender=?")
        args.append(normalize(from_))
    rows = db.execute(
        f"SELECT * FROM msg WHERE {' AND '.join(where)} ORDER BY date DESC LIMIT ?", (*args, limit)
    ).fetchall()
    return Listing(unread or 0, total or 0, [cache.Row.of(r) for r in rows])


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


def _load(s: Session, row: cache.Row) -> Item:
    """Read a message's blob; decrypt it if it is encrypted and verified."""
    from gitmail.core.objects import commit
    from gitmail.core.store import read_message
    from gitmail.errors import CorruptMessageError

    c = commit(s.repo.pg, row.oid)
    try:
        msg = read_message(s.repo.pg, c)
    except CorruptMessageError:
        return Item(row, None)
    if msg.encrypted is None:
        return Item(row, msg)
    return _open(s, row, c, msg)


def _open(s: Session, row: cache.Row, c: "pygit2.Commit", msg: "Message") -> Item:
    """Decrypt a verified encrypted message; an unverified one is never decrypted."""
    from gitmail.core import crypto, private
    from gitmail.errors import GitmailError

    if row.status != "good":
        return Item(row, msg, encrypted=True, error="not decrypted: the message failed verification")
    from gitmail.core.model import Attachment, Sealed

    if row.plaintext:  # decrypted (and checked) when it was indexed
        inner = Sealed.model_validate_json(row.plaintext)
        opened, sealed = private.opened_from(msg, inner), inner.attachments
    else:
        try:
            opened, sealed = private.open_message(s.repo.pg, c, msg, s.identities)
        except (crypto.NotARecipientError, crypto.DecryptionError, GitmailError) as e:
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
) -> list[Item]:
    """The messages ``ids`` (unique prefixes), or with none every unread inbox message,
    most urgent first and oldest first within a priority. Marks them read unless ``mark`` is false.

    ``save``: fetch, verify and save the attachments of verified messages into
    ``save_dir`` (default: the member's inbox folder,
    :func:`gitmail.core.attachments.inbox_dir`); each item's ``saved`` says
    where each went, or why it was not saved.
    """
    s = session(repo, as_)
    s.refresh()
    if ids:
        rows = [_resolve(s, i) for i in ids]
    else:
        rows = [
            cache.Row.of(r)
            for r in s.db.execute(
                "SELECT * FROM msg WHERE inbox=1 AND dup=0 AND archived=0 AND read=0 ORDER BY prank, date"
            )
        ]
    items = [_load(s, r) for r in rows]
    if save:
        for it in items:
            it.saved = _save_attachments(s, it, save_dir, progress)
    if mark and rows:
        # Only what could be shown counts as read (not a message whose key was locked).
        _set_flag(s, [it.row.id for it in items if it.row.inbox and it.message is not None and not it.error],
                  "read", True)
    return items


def _save_attachments(
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
    limit = s.directory.policy.attachment_limit
    commit = cast("pygit2.Commit", s.repo.pg[it.row.oid])
    if it.encrypted:
        return _save_sealed(s, it, commit, dest, limit, progress or attachments._no_progress)
    return attachments.save_all(s.repo, m, commit, dest, limit, progress or attachments._no_progress)


def _save_sealed(
    s: Session, it: Item, commit: "pygit2.Commit", dest: Path, limit: int, progress: "Progress"
) -> list["Saved"]:
    """Fetch each attachment's ciphertext (verified against its pointer), decrypt it, check the
    plaintext against the sealed sha256, and save it under its sealed name."""
    import hashlib

    from gitmail.core import attachments, crypto, private
    from gitmail.errors import GitmailError

    assert it.message is not None
    ids = s.identities
    env = private.envelope(it.message)
    out = []
    for shown, se, clear in zip(it.message.attachments, it.sealed, it.cipher):
        name = attachments.safe_name(se.name)
        try:
            if se.size > limit:
                raise crypto.DecryptionError(f"{se.size} bytes is over the org's limit; not fetched")
            plain = crypto.open_(attachments.fetch(s.repo, clear, commit, limit + 65536, progress), ids, env.recipients)
            if len(plain) != se.size or hashlib.sha256(plain).hexdigest() != se.sha256:
                raise crypto.DecryptionError("decrypted content does not match its sealed sha256; not saved")
            out.append(attachments.Saved(shown, name, attachments.write_new(dest, name, plain, se.sha256)))
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

    s = session(repo, as_)
    s.refresh()
    it = _load(s, _resolve(s, id))
    if it.message is None:
        raise VerificationError(f"message {id} is corrupt: it has no readable attachments")
    if it.row.status != "good":
        raise VerificationError(f"message {id} failed verification ({it.row.status}); its attachments are not saved")
    it.saved = _save_attachments(s, it, save_dir, progress)
    return it


def _set_flag(s: Session, ids: list[str], flag: str, value: bool) -> int:
    """Set ``flag`` on every inbox copy of ``ids``; returns how many messages changed."""
    from gitmail.core import state

    if not ids:
        return 0
    changes: dict[str, list[int]] = {}
    changed = set()
    for mid in ids:
        for r in s.db.execute(f"SELECT path, ordinal, {flag} AS f FROM msg WHERE id=? AND +inbox=1", (mid,)):
            changes.setdefault(r["path"], []).append(r["ordinal"])
            if bool(r["f"]) != value:
                changed.add(mid)
    if not changes:
        return 0
    with s.repo.lock():
        old, st = state.load(s.repo, s.me)
        state.update(st, changes, flag, value)
        blob = state.save(s.repo, s.me, old, st)
    for path, ords in changes.items():
        s.db.executemany(
            f"UPDATE msg SET {flag}=? WHERE path=? AND ordinal=?", [(int(value), path, o) for o in ords]
        )
    # The state ref moved: record it so the next command's fast path stays fast.
    key = cache.json.dumps(sorted(cache.watched_refs(s.repo, s.me).items()))
    s.db.execute("INSERT OR REPLACE INTO meta VALUES ('watched', ?)", (key,))
    s.db.execute("INSERT OR REPLACE INTO meta VALUES ('state', ?)", (blob,))
    return len(changed)


def mark(repo: RepoLike, ids: list[str], *, read: bool, as_: Optional[str] = None) -> list[str]:
    """Mark messages read or unread; returns their full Message-IDs."""
    s = session(repo, as_)
    s.refresh()
    rows = [_resolve(s, i) for i in ids]
    _set_flag(s, [r.id for r in rows], "read", read)
    return [r.id for r in rows]


def archive(repo: RepoLike, ids: list[str], *, undo: bool = False, as_: Optional[str] = None) -> list[str]:
    """Archive messages (a soft delete: hidden from the inbox, never removed), or undo it."""
    s = session(repo, as_)
    s.refresh()
    rows = [_resolve(s, i) for i in ids]
    _set_flag(s, [r.id for r in rows], "archived", not undo)
    return [r.id for r in rows]


def reply(
    repo: RepoLike, id: str, body: str, *, as_: Optional[str] = None, all_: bool = False, **kw: Any
) -> SendResult:
    """Reply to message ``id``: to its sender (``all_``: and its other recipients), same thread."""
    s = session(repo, as_)
    s.refresh()
    parent = _resolve(s, id)
    to = [parent.sender] if parent.sender != s.me else list(parent.recipients)
    if all_:
        to += [r for r in parent.recipients if r != s.me and r not in to]
    return send(s.repo, to, body, reply_to=parent.id, as_=s.me, **kw)


def thread(repo: RepoLike, id: str, *, as_: Optional[str] = None) -> list[cache.Row]:
    """Every message of ``id``'s thread in the member's view (inbox and sent), oldest first."""
    s = session(repo, as_)
    s.refresh()
    row = _resolve(s, id)
    root = row.thread or row.id
    rows = s.db.execute(
        "SELECT * FROM msg WHERE (id=? OR thread=?) AND (inbox=1 OR sent=1) GROUP BY id ORDER BY date", (root, root)
    ).fetchall()
    return [cache.Row.of(r) for r in rows]


def unread_count(repo: RepoLike = None, *, as_: Optional[str] = None) -> tuple[int, int]:
    """``(unread, urgent unread)`` in the inbox (fast path: no pygit2 unless mail moved)."""
    s = session(repo, as_)
    s.refresh()
    u, urg = s.db.execute(
        "SELECT COUNT(*), SUM(prank=0) FROM msg WHERE inbox=1 AND dup=0 AND archived=0 AND read=0"
    ).fetchone()
    return u or 0, urg or 0


# -- directory views ----------------------------------------------------------------


def members(repo: RepoLike = None) -> list["Member"]:
    """Every member of the org's verified directory, by name."""
    from gitmail.core import directory

    r = repo if isinstance(repo, Repo) else open_repo(repo)
    d = directory.load(r)
    return [d.members[n] for n in sorted(d.members)]


@dataclass
class WhoAmI:
    name: str
    member: Optional["Member"]
    repo: Path
    git_dir: Path
    remote: Optional[str]
    remote_url: Optional[str]
    key_path: Path
    cache: Path
    allowed_signers: Path
    outbox: int


def whoami(repo: RepoLike = None, *, as_: Optional[str] = None) -> WhoAmI:
    """The acting identity and where its data lives (key, cache, allowed signers, remote)."""
    from gitmail.core import sync
    from gitmail.core.address import to_ref

    s = session(repo, as_)
    r = s.repo
    return WhoAmI(
        name=s.me,
        member=s.directory.members.get(s.me),
        repo=r.path.resolve(),
        git_dir=r.git_dir,
        remote=r.remote,
        remote_url=r.config.get(f"remote.{r.remote}.url") if r.remote else None,
        key_path=r.key_path(s.me),
        cache=r.data_dir / "cache" / f"{to_ref(s.me)}.sqlite3",
        allowed_signers=r.data_dir / "allowed_signers",
        outbox=len(sync.outbox_paths(r, s.me)),
    )


# -- sync, verify, log -----------------------------------------------------------------


@dataclass
class SyncResult:
    fetched: bool
    new: list[cache.Row]
    delivered: list[str]
    queued: list[str]
    refused: dict[str, str]
    problems: list[str]


def sync(repo: RepoLike = None, *, as_: Optional[str] = None) -> SyncResult:
    """Fetch, verify, deliver the outbox; returns the inbox messages that arrived.

    Raises :class:`RemoteUnreachableError` when the remote cannot be reached
    (nothing is lost: the outbox stays queued).
    """
    from gitmail.core import sync as syncmod

    s = session(repo, as_)
    if s.repo.remote is None:
        before = s.db.execute("SELECT COALESCE(MAX(rowid), 0) FROM msg").fetchone()[0]
        s.refresh()
        new = _new_rows(s, before)
        return SyncResult(False, new, [], [], {}, s.problems)
    syncmod.fetch(s.repo)
    # The signer (directory, key) only when something is queued: a sync with nothing
    # to deliver and nothing new loads neither pydantic nor pygit2.
    queued = syncmod.outbox_paths(s.repo, s.me)
    signer = s.signer if queued and s.me in s.directory.members else None
    res = syncmod.deliver(s.repo, signer, s.me, queued)
    before = s.db.execute("SELECT COALESCE(MAX(rowid), 0) FROM msg").fetchone()[0]
    s.refresh()
    from gitmail.core import problems as probmod

    problems = [p for ps in probmod.load(s.repo).values() for p in ps] + s.problems
    return SyncResult(True, _new_rows(s, before), res.delivered, res.queued, res.refused, problems)


def _new_rows(s: Session, before: int) -> list[cache.Row]:
    rows = s.db.execute(
        "SELECT * FROM msg WHERE rowid > ? AND inbox=1 AND dup=0 ORDER BY prank, date", (before,)
    ).fetchall()
    return [cache.Row.of(r) for r in rows]


@dataclass
class Finding:
    path: str
    oid: str
    id: str
    sender: str
    status: str
    detail: str


@dataclass
class VerifyReport:
    messages: int
    good: int
    findings: list[Finding]
    problems: list[str]
    mailboxes: int

    @property
    def ok(self) -> bool:
        return not self.findings and not self.problems


def _mail_refs(s: Session, all_: bool) -> dict[str, str]:
    """Mailbox path -> tracking tip, for the member's view or (``all_``) the whole org."""
    from gitmail import git
    from gitmail.core.address import to_ref

    t = refs.tracking("", s.repo.remote)
    if all_:
        pats = [f"{t}{refs.MAIL}*/*"]
    else:
        me = to_ref(s.me)
        pats = [f"{t}{refs.MAIL}{me}/*", f"{t}{refs.MAIL}*/{me}", f"{t}{refs.MAIL}%2A/*"]
        pats += [f"{t}{refs.MAIL}{to_ref(g)}/*" for g in s.directory.groups_of(s.me)]
    return {k[len(t):]: v for k, v in git.for_each_ref(s.repo.path, pats).items()}


def verify(repo: RepoLike = None, *, as_: Optional[str] = None, all_: bool = False) -> VerifyReport:
    """Check every message's signature and every mailbox's history.

    Covers the member's mailboxes (inbox, sent, broadcast, their groups) or,
    with ``all_``, every mailbox in the org; plus the directory's history.
    In-process: no ssh-keygen per commit.
    """
    from gitmail.core import problems as probmod
    from gitmail.core.objects import commit
    from gitmail.core.signing import signers
    from gitmail.core.store import check_message

    s = session(repo, as_)
    d = s.directory
    problems = [p for ps in probmod.load(s.repo).values() for p in ps]
    pg = s.repo.pg
    mail = _mail_refs(s, all_)
    todo: list[tuple[str, str, str, Any]] = []  # (path, recipient, sender, commit)
    for path, tip in sorted(mail.items()):
        rcpt, sender = refs.split_mail_path(path)
        vtip = s.repo.ref_target(refs.verified(path))
        rewritten = vtip is not None and tip != vtip and not pg.descendant_of(tip, vtip)
        if rewritten:
            problems.append(f"{path}: history was rewritten on the org repo (not a fast-forward)")
        c = commit(pg, vtip if rewritten and vtip else tip)
        while True:
            todo.append((path, rcpt, sender, c))
            if len(c.parent_ids) != 1:
                if len(c.parent_ids) > 1:
                    problems.append(f"{path}: history contains a merge at {str(c.id)[:10]}")
                break
            c = commit(pg, c.parent_ids[0])
    keys = signers([t[3] for t in todo])
    findings: list[Finding] = []
    good = 0
    for (path, rcpt, sender, c), key in zip(todo, keys):
        msg, check = check_message(pg, c, rcpt, sender, d, key)
        if check.good:
            good += 1
        else:
            findings.append(Finding(path, str(c.id), msg.id if msg else "", sender, check.status, check.detail))
    n = len(todo)
    return VerifyReport(n, good, findings, problems, len(mail))


@dataclass
class LogEntry:
    path: str
    oid: str
    id: str
    sender: str
    recipient: str
    date: str
    subject: str
    type: str
    status: str


def log(repo: RepoLike = None, *, as_: Optional[str] = None, limit: int = 50) -> list[LogEntry]:
    """An audit view across every mailbox in the org, newest first, with each message's status."""
    from gitmail.core.objects import commit
    from gitmail.core.store import check_message

    s = session(repo, as_)
    d = s.directory
    pg = s.repo.pg
    out: list[LogEntry] = []
    for path, tip in _mail_refs(s, True).items():
        rcpt, sender = refs.split_mail_path(path)
        c = commit(pg, tip)
        while True:
            msg, check = check_message(pg, c, rcpt, sender, d)
            out.append(LogEntry(path, str(c.id), msg.id if msg else "", sender, rcpt,
                                msg.date if msg else "", msg.subject if msg else "(unreadable)",
                                msg.type if msg else "", check.status))
            if len(c.parent_ids) != 1:
                break
            c = commit(pg, c.parent_ids[0])
    out.sort(key=lambda e: e.date, reverse=True)
    return out[:limit]


# -- batches ------------------------------------------------------------------------


@dataclass
class Draft:
    """One message of a batch: the arguments of :func:`send` that vary per message."""

    to: list[str]
    body: str
    subject: Optional[str] = None
    priority: str = "normal"
    summary: Optional[str] = None


def send_batch(
    repo: RepoLike, drafts: list[Draft], *, as_: Optional[str] = None, deliver: bool = True,
    encrypt: Optional[bool] = None,
) -> list["Message"]:
    """Send many text messages at once: one pack, one ref update per mailbox, one push.

    Same validation, encryption policy (``encrypt`` as in :func:`send`) and
    the same commits as :func:`send` (each message signed); meant for
    imports, fan-out and benchmarks. Returns the messages as stored, in order.
    """
    from gitmail.core import bulk, private
    from gitmail.core import sync as syncmod
    from gitmail.core.model import PRIORITIES, Message, format_date, utcnow

    s = session(repo, as_)
    d, signer, member = s.directory, s.signer, s.member
    by_path: dict[str, list[tuple[Message, bytes, Optional[dict[str, bytes]]]]] = {}
    out: list[Message] = []
    for dr in drafts:
        recipients = _resolve_recipients(s, dr.to)
        if not dr.body.strip():
            raise UsageError("empty message")
        if len(dr.body.encode("utf-8")) > d.policy.body_limit:
            raise UsageError(f"message body over the limit of {d.policy.body_limit} bytes")
        if dr.priority not in PRIORITIES:
            raise UsageError(f"unknown priority {dr.priority!r}")
        msg = Message(from_=s.me, to=recipients, date=format_date(utcnow()),
                      subject=(dr.subject if dr.subject is not None else _subject_from(dr.body))[:200],
                      summary=(dr.summary or _summary_from(dr.body))[:120], body=dr.body,
                      priority=dr.priority)
        extra = None
        if private.decide(d, s.me, recipients, encrypt):
            msg, cipher = private.seal_message(msg, d, [])
            extra = {private.CIPHER_FILE: cipher}
        blob = msg.seal()
        out.append(msg)
        for r in recipients:
            by_path.setdefault(refs.mail_path(r, s.me), []).append((msg, blob, extra))
    r_ = s.repo
    with r_.lock():
        updates = []
        for path, msgs in by_path.items():
            ref = refs.outbox(path) if r_.remote else refs.head(path)
            old = r_.ref_target(ref)
            base = old or (r_.ref_target(refs.tracking(path, r_.remote)) if r_.remote else None)
            tip = bulk.write_chain(r_, msgs, member, signer, base)
            assert tip
            updates.append((ref, tip, old))
        r_.update_refs(updates, f"gitmail: {len(drafts)} messages")
    if deliver and r_.remote:
        syncmod.deliver(r_, signer, s.me)
    return out


# -- org policy, keys, auditing ----------------------------------------------------------


def set_policy(repo: RepoLike, changes: dict[str, Any], *, as_: Optional[str] = None) -> dict[str, Any]:
    """Change org policy fields (admins only; a signed directory commit). Returns the new policy.

    Raises :class:`UsageError` for an unknown field or a bad value,
    :class:`DirectoryError` when the acting member is not an admin.
    """
    from pydantic import ValidationError

    from gitmail.core import admin

    from gitmail.core.model import OrgPolicy

    s = session(repo, as_)
    known = set(OrgPolicy.model_fields) - {"schema_version"}
    for k in changes:
        if k not in known:
            raise UsageError(f"unknown policy setting {k!r}; known: {', '.join(sorted(known))}")
    try:
        new_policy = OrgPolicy.model_validate({**s.directory.policy.model_dump(), **changes})
    except ValidationError as e:
        err = e.errors()[0]
        raise UsageError(f"policy {'.'.join(str(x) for x in err['loc'])}: {err['msg']}") from None

    def mutate(d: "Directory") -> "Directory":
        d.policy = new_policy
        return d

    d = admin.change(s.repo, s.signer, s.member, mutate, "Org policy: " + ", ".join(f"{k}={v}" for k, v in changes.items()))
    return d.policy.model_dump(mode="json")


def org_policy(repo: RepoLike = None) -> dict[str, Any]:
    """The org policy of the verified directory, as a dict."""
    from gitmail.core import directory

    r = repo if isinstance(repo, Repo) else open_repo(repo)
    return directory.load(r).policy.model_dump(mode="json")


@dataclass
class Rotation:
    member: "Member"
    old_key: str
    new_key: str
    key_path: Path


def rotate_key(repo: RepoLike, *, as_: Optional[str] = None, key: Optional[str] = None) -> Rotation:
    """Publish a new key for the acting member, signed with the current one.

    The old key moves to ``previous_keys`` (old signatures stay good) and is
    kept by this clone (``gitmail.NAME.oldkey``) so mail already received
    stays readable; new mail is encrypted to the new key. ``key``: an
    existing ed25519 key file, else a new one is generated.
    """
    import time

    from gitmail import git
    from gitmail.core import admin
    from gitmail.core.address import to_ref
    from gitmail.core.repo import data_home
    from gitmail.core.signing import generate_key, load_key
    from gitmail.errors import DirectoryError

    s = session(repo, as_)
    old, member, old_path = s.signer, s.member, s.repo.key_path(s.me)
    if key:
        new_path = Path(key).expanduser().resolve()
        new = load_key(new_path)
    else:
        new_path = data_home() / "keys" / f"{to_ref(s.me)}-{int(time.time())}"
        new = generate_key(new_path, comment=f"gitmail {s.me}")
    if new.public_key in member.all_keys():
        raise DirectoryError("that key is already one of yours; rotate to a new key")

    def mutate(d: "Directory") -> "Directory":
        m = d.members[s.me]
        d.members[s.me] = m.model_copy(update={
            "signing_key": new.public_key,
            "previous_keys": [m.signing_key, *m.previous_keys],
            "encryption_key": new.public_key if m.encryption_key else None,
        })
        return d

    d = admin.change(s.repo, old, member, mutate, f"Rotate the key of {s.me}")
    git.config_add(s.repo.path, f"gitmail.{s.me}.oldkey", str(old_path))
    git.config_set(s.repo.path, f"gitmail.{s.me}.key", str(new_path))
    return Rotation(d.members[s.me], old.public_key, new.public_key, new_path)


@dataclass
class Shown:
    """One message commit as an auditor sees it: verification status, and the content if readable."""

    commit: str
    message: Optional["Message"]
    status: str
    detail: str
    encrypted: bool
    error: Optional[str]


def show(repo: RepoLike, rev: str, *, as_: Optional[str] = None) -> Shown:
    """Show any message commit of the org (a commit id, or a ref like
    ``origin/gitmail/mail/alex/max~2``), verified; decrypted when the acting
    member is a recipient. ``error`` says why the content is not shown
    (``encrypted for alex, max; you are not a recipient``).
    Raises :class:`MessageNotFoundError` for a revision that is not a message commit.
    """
    import pygit2

    from gitmail.core import crypto, private
    from gitmail.core.store import check_message, read_message
    from gitmail.errors import CorruptMessageError, GitmailError

    s = session(repo, as_)
    try:
        obj = s.repo.pg.revparse_single(rev)
        c = obj.peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError):
        raise MessageNotFoundError(f"no commit {rev!r} in this clone") from None
    try:
        msg = read_message(s.repo.pg, c)
    except CorruptMessageError as e:
        return Shown(str(c.id), None, "malformed", str(e), False, None)
    _, check = check_message(s.repo.pg, c, msg.to[0] if msg.to else "", msg.from_, s.directory)
    if msg.encrypted is None:
        return Shown(str(c.id), msg, check.status, check.detail, False, None)
    if not check.good:
        return Shown(str(c.id), msg, check.status, check.detail, True, "not decrypted: the message failed verification")
    try:
        opened, _ = private.open_message(s.repo.pg, c, msg, s.identities)
    except (crypto.NotARecipientError, crypto.DecryptionError, GitmailError) as e:
        return Shown(str(c.id), msg, check.status, check.detail, True, e.message)
    return Shown(str(c.id), opened, check.status, check.detail, True, None)
