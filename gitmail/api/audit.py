"""Sync and audit: fetch and deliver, verify every signature, the org log, show one commit.

Part of the library API (:mod:`gitmail.api`): plain data in and out, only
:class:`gitmail.errors.GitmailError` raised, nothing printed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

from gitmail.core import cache, refs
from gitmail.errors import (
    GitmailError,
    MessageNotFoundError,
    VerificationError,
)

if TYPE_CHECKING:

    from gitmail.api.outbox import Queued, Undelivered
    from gitmail.api.results import LogRow, MessageRow, ShowResult, SyncReport, VerifyResult
    from gitmail.api.packing import PackReport
    from gitmail.api.state import StateResult
    from gitmail.core.model import Message

from gitmail.api.packing import packed_tip_of
from gitmail.api.session import RepoLike, Session, check_limit, session


@dataclass
class NewMail:
    """The inbox messages a sync brought (one per Message-ID shown), read from the cache
    lazily: ``len()`` is their number; iterating gives :class:`gitmail.core.cache.Row`
    values most urgent first, then oldest first, read a page of
    :data:`gitmail.core.cache.NEW_PAGE` rows at a time (:meth:`pages`), so a first sync
    of a million messages never holds them all. Each iteration reads the cache again
    (flags as they are then); the listing is the rows the sync indexed, rowids
    ``(since, upto]``, whatever is indexed later."""

    db: Any  # sqlite3.Connection of the member's cache
    since: int
    upto: int
    count: int

    @classmethod
    def of(cls, s: Session, since: int) -> "NewMail":
        """What was indexed in ``s``'s cache after rowid ``since``."""
        upto = cache.max_rowid(s.db)
        return cls(s.db, since, upto, cache.new_inbox_count(s.db, since, upto) if upto > since else 0)

    def __len__(self) -> int:
        return self.count

    def pages(self) -> Iterator[list[cache.Row]]:
        """The rows in lists of at most :data:`gitmail.core.cache.NEW_PAGE`."""
        if self.count:
            yield from cache.new_inbox_pages(self.db, self.since, self.upto)

    def __iter__(self) -> Iterator[cache.Row]:
        for page in self.pages():
            yield from page

    def head(self, n: int) -> list[cache.Row]:
        """The first ``n`` rows (reads no more pages than that needs)."""
        out: list[cache.Row] = []
        for page in self.pages():
            out += page[: n - len(out)]
            if len(out) >= n:
                break
        return out


@dataclass
class SyncResult:
    """What a sync did. ``delivered``: Message-IDs of queued messages delivered now;
    ``queued``: every message still queued, with why (:class:`gitmail.api.outbox.Queued`);
    ``refused``: messages the org repo refused now (moved to the undelivered record);
    ``restored``: messages this clone had delivered that were no longer on the org
    repo (a rewritten mailbox), queued again; those also in ``delivered`` went back;
    ``new``: the inbox mail that arrived, a lazy listing (:class:`NewMail`)."""

    fetched: bool
    new: NewMail
    delivered: list[str]
    queued: list["Queued"]
    refused: list["Undelivered"]
    problems: list[str]
    restored: list["Queued"] = field(default_factory=list)
    state: Optional["StateResult"] = None  # the shared-state round, when gitmail.syncState is on
    packed: Optional["PackReport"] = None  # the packing this sync did (docs/protocol.md §3)

    def model(self) -> "SyncReport":
        """The JSON result of ``gitmail sync`` (docs/json.md, ``SyncReport``), every new message
        in it: a list as long as what arrived (:meth:`model_streamed` does not hold it)."""
        from gitmail.api.results import MessageRow

        return self._report([MessageRow.of(r) for r in self.new])

    def model_streamed(self) -> "tuple[SyncReport, Iterator[dict[str, Any]]]":
        """The result of :meth:`model` with ``new`` empty, and the ``new`` entries as JSON objects
        (``MessageRow``) produced a page at a time, to be written out as they come."""
        from gitmail.api.results import MessageRow

        return self._report([]), (MessageRow.of(r).dump() for r in self.new)

    def _report(self, new: "list[MessageRow]") -> "SyncReport":
        from gitmail.api.results import SyncReport

        return SyncReport(new=new, delivered=self.delivered,
                          queued=[q.id for q in self.queued], refused={u.id: u.reason for u in self.refused},
                          outbox=[q.model() for q in self.queued], undelivered=[u.model() for u in self.refused],
                          restored=[q.model() for q in self.restored], problems=self.problems, state=self.state,
                          packed=self.packed.model() if self.packed is not None else None)


def sync(repo: RepoLike = None, *, as_: Optional[str] = None, all_: bool = False) -> SyncResult:
    """Fetch, verify, recover rewound mail, deliver the outbox; returns the inbox messages that arrived.

    Fetches only what the member reads (docs/protocol.md §3 "What a member fetches");
    ``all_``: every shared ref of the org (an auditor's copy; verification and the
    member's view are the same).

    Raises :class:`RemoteUnreachableError` when the remote cannot be reached
    (nothing is lost: the outbox stays queued).
    """
    from gitmail.core import sync as syncmod
    from gitmail.api.outbox import _queued, _undelivered

    s = session(repo, as_, member=False)
    if s.repo.remote is None:
        s.require_member()
        before = cache.max_rowid(s.db)
        s.refresh()
        new = _new_rows(s, before)
        return SyncResult(False, new, [], [], [], s.problems)
    if all_:
        syncmod.fetch(s.repo, meanwhile=_import_while)
        s.require_member()  # after the fetch: a member registered from another clone is known now
    else:
        fetched = syncmod.fetch_member(s.repo, s.me, meanwhile=_import_while)
        s.require_member()
        from gitmail.core import refspecs

        if not refspecs.current(s.repo, refspecs.directory_tip(s.repo)):
            s.directory  # noqa: B018 - verifies the fetched directory; the session keeps the refspecs
            syncmod.fetch_new_paths(s.repo, fetched)
    problem = syncmod.org_problem(s.repo)
    if problem is not None:  # before recover re-delivers "rewound" mail into a repo that is not the org
        raise VerificationError(problem)
    syncmod.org_found(s.repo)
    restored = syncmod.recover(s.repo, lambda: s.signer if s.me in s.directory.members else None, s.me,
                               lambda c, path: _genuine(s, c, path), lambda: s.directory.policy.packing)
    # The signer (directory, key) only when something is queued: a sync with nothing
    # to deliver and nothing new loads neither pydantic nor pygit2.
    queued = syncmod.outbox_paths(s.repo, s.me)
    signer = s.signer if queued and s.me in s.directory.members else None
    res = syncmod.deliver(s.repo, signer, s.me, queued, packed_tip=packed_tip_of(s))
    before = cache.max_rowid(s.db)
    s.refresh()
    _fetch_asking_mailboxes(s, before)
    from gitmail.core import problems as probmod

    new = _new_rows(s, before)
    problems = list(dict.fromkeys([p for ps in probmod.load(s.repo).values() for p in ps] + s.problems))
    still = _queued(s) if res.queued or restored else []
    packed = None if all_ else _pack(s, problems)
    return SyncResult(True, new, res.delivered_ids(), still,
                      _undelivered(s, {h.id for h in res.refused}) if res.refused else [], problems,
                      _restored(s, restored, res.delivered_ids(), still), _sync_state(s, problems), packed)


# What a sync that brings mail imports after its fetch: pygit2, the directory and the message
# model (pydantic), the checks, and the worker pool that checks a large batch.
_AFTER_FETCH = ("pygit2", "gitmail.core.directory", "gitmail.core.store", "gitmail.core.private",
                "gitmail.core.workers", "concurrent.futures.process")


def _import_while(ended: Callable[[], bool]) -> None:
    """Import :data:`_AFTER_FETCH` while git fetches (about 80 ms of a first sync's start), one
    module at a time and none once ``ended()``: a sync that brings nothing waits for at most the
    import under way, and loads no more than it did."""
    import importlib

    for name in _AFTER_FETCH:
        if ended():
            return
        importlib.import_module(name)


def _pack(s: Session, problems: list[str]) -> Optional["PackReport"]:
    """The packing of a sync (:func:`gitmail.api.packing.pack_on_sync`); a failure is a problem of
    this sync (the mail went through), never a failed sync."""
    from gitmail.api import packing

    try:
        return packing.pack_on_sync(s)
    except GitmailError as e:
        problems.append(f"inbox not packed: {e.message}")
        return None


def _sync_state(s: Session, problems: list[str]) -> Optional["StateResult"]:
    """Pull and push the shared read state when ``gitmail.syncState`` is on; a failure is a problem
    of this sync (the mail went through), never a failed sync."""
    from gitmail.api.session import sync_state_enabled

    if not sync_state_enabled(s):
        return None
    from gitmail.api import state

    try:
        return state.sync_state(s)
    except GitmailError as e:
        problems.append(f"shared read state not synced: {e.message}")
        return None


def _restored(s: Session, found: list[tuple[str, str, str]], delivered: list[str], still: list["Queued"]) -> list["Queued"]:
    """The messages found missing from the org repo, with where they are now (kind ``restored``)."""
    from gitmail.api.outbox import Queued, _message, _subject

    waiting = {q.id: q for q in still}
    out: dict[str, "Queued"] = {}
    for path, mid, oid in found:
        q = out.get(mid)
        if q is None:
            m = _message(s, oid)
            now = ("delivered again" if mid in delivered and mid not in waiting
                   else f"queued again: {waiting[mid].reason}" if mid in waiting else "not queued again (no signing key)")
            q = out[mid] = Queued(mid, _subject(m), list(m.to), m.date, [], "restored",
                                        f"removed from the org repo by a rewrite of the mailbox; {now}", "")
        q.mailboxes.append(refs.split_mail_path(path)[0])
    return list(out.values())


def _genuine(s: Session, c: Any, path: str) -> bool:
    """True when commit ``c`` on ``path`` is a good message of this member (safe to sign again)."""
    from gitmail.core.store import check_message

    rcpt, sender = refs.split_mail_path(path)
    return sender == s.me and check_message(s.repo.pg, c, rcpt, sender, s.directory)[1].good


def _fetch_asking_mailboxes(s: Session, since: int) -> None:
    """A response arrived (rows after ``since``) to a request this clone knows nothing of: the
    member may have sent it from another clone (docs/protocol.md §5: ``answers_request`` null).
    Fetch exactly the mailbox that request went to, ``mail/<responder>/<member>`` (docs/protocol.md
    §3: "where a sent copy must be re-read, fetch exactly that ref"; a copy fetched before may
    be stale, since later syncs fetch only what this clone delivered to), and index it as sent
    mail, verified as any; the response is then related to it. Only for responses that just
    arrived, so once each. A failed fetch leaves it null, as before."""
    from gitmail.core import sync as syncmod

    asking = [refs.mail_path(r, s.me) for r in sorted(cache.unknown_requests(s.db, since))
              if r in s.directory.members and r != s.me]
    if not asking or s.repo.remote is None:
        return
    try:
        syncmod.fetch(s.repo, [refs.exact_pattern(p) for p in asking])
    except GitmailError:
        return
    s.refresh()


def _new_rows(s: Session, before: int) -> NewMail:
    """The inbox rows indexed after rowid ``before`` (what a sync brought), lazily. Also brings a
    started search index up to date and runs the member's notify command for them."""
    from gitmail.api import notify
    from gitmail.api.search import update_index

    update_index(s, started_only=True)
    new = NewMail.of(s, before)
    failed = notify.run(s, new.pages())
    if failed:
        s.problems.append(failed)
    return new


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

    def model(self) -> "VerifyResult":
        """The JSON result of ``gitmail verify`` (docs/json.md, ``VerifyResult``)."""
        from gitmail.api.results import BadMessage, VerifyResult

        return VerifyResult(ok=self.ok, mailboxes=self.mailboxes, messages=self.messages, good=self.good,
                            bad=[BadMessage(**vars(f)) for f in self.findings], problems=self.problems)


def _mail_refs(s: Session, all_: bool, problems: Optional[list[str]] = None) -> dict[str, str]:
    """Mailbox path -> tracking tip, for the member's view or (``all_``) the whole org.

    A packed pair (docs/protocol.md §3, "Packed mailboxes") is at its packed tip
    unless its ref continues from it: in the member's view from their verified
    packed ref; with ``all_`` from every member's packed ref, each line checked
    again from its root (a bad line is a problem and its pairs are read from
    their refs alone). Problems go to ``problems`` when given.
    """
    from gitmail import git
    from gitmail.core import packed, view

    t = refs.tracking("", s.repo.remote)
    found = git.for_each_ref(s.repo.path, [f"{t}{refs.MAIL}*/*"] if all_ else view.mail_patterns(t, s.me))
    found_problems: list[str] = []
    pg = s.repo.pg
    if all_:
        for full, ptip in sorted(git.for_each_ref(s.repo.path, [f"{t}{refs.PACKED}*"]).items()):
            owner = packed.owner_of(full[len(t):])
            member = s.directory.members.get(owner) if owner is not None else None
            if member is None:
                found_problems.append(f"{full[len(t):]}: not the packed ref of a member")
                continue
            why, entries = packed.line_problem(pg, None, ptip, member.all_keys())
            if why:
                found_problems.append(f"{full[len(t):]}: {why}")
                continue
            found_problems += packed.effective_tips(pg, t, member.name, entries, found)
    else:
        entries = packed.trusted_map(pg, s.repo.ref_target(refs.verified(refs.packed_path(s.me))))
        found_problems += packed.effective_tips(pg, t, s.me, entries, found)
    if problems is not None:
        problems += found_problems
    paths = {k[len(t):]: v for k, v in found.items()}
    if all_:
        return paths
    groups = set(s.directory.groups_of(s.me))
    out = {}
    for path, tip in paths.items():
        try:
            rcpt, sender = refs.split_mail_path(path)
        except GitmailError:
            continue  # not a mailbox ref name: the cache reports it
        if any(view.role(s.me, groups, rcpt, sender)):
            out[path] = tip
    return out


def verify(repo: RepoLike = None, *, as_: Optional[str] = None, all_: bool = False) -> VerifyReport:
    """Check messages' signatures and mailboxes' histories (docs/sync.md, "Verify").

    Default: the member's mailboxes (inbox, sent, broadcast, their groups),
    incrementally: only the commits that arrived since each mailbox's last
    verified tip are checked now (the ingest ``sync`` runs, which records a
    verdict per commit), and the report gives every recorded verdict of those
    mailboxes and each mailbox whose org copy is not a fast-forward of the
    verified one. ``all_``: every mailbox in the org, every commit checked again
    from the root, whatever was recorded, in batches on every core (memory does
    not grow with the history). In-process: no ssh-keygen per commit.
    """
    from gitmail.core import problems as probmod

    s = session(repo, as_)
    recorded = probmod.load(s.repo)
    if all_:
        return _verify_all(s, [p for ps in recorded.values() for p in ps])
    return _verify_new(s, recorded)


def _history_problem(s: Session, path: str, tip: str, vtip: Optional[str]) -> Optional[str]:
    """Why mailbox ``path`` at ``tip`` cannot be accepted over its verified tip ``vtip``, or None
    (:func:`gitmail.core.objects.mailbox_move_problem`, the rule and words a sync uses)."""
    from gitmail.core.objects import collect, mailbox_move_problem

    if tip == vtip:
        return None
    line, merge = collect(s.repo.pg, tip, vtip)
    return mailbox_move_problem(s.repo.pg, path, line, merge, vtip)


def _verify_new(s: Session, recorded: dict[str, list[str]]) -> VerifyReport:
    s.refresh()  # checks and records what arrived since the verified tips
    mail = _mail_refs(s, False)
    # The recorded problems of the directory, the packed ref and the member's own mailboxes
    # (not those of mailboxes a sync watches outside the member's view: verify --all has those).
    problems = [p for k, ps in recorded.items() if not k.startswith(refs.MAIL) or k in mail for p in ps]
    mine = set()
    for path, tip in sorted(mail.items()):
        why = _history_problem(s, path, tip, s.repo.ref_target(refs.verified(path)))
        if why is not None:
            problems.append(why)
            mine.add(path)
    problems += [p for p in s.problems if p.split(":", 1)[0] not in mine]
    counts, bad = cache.verdicts(s.db)
    findings = [Finding(path, oid, mid, refs.split_mail_path(path)[1], status, detail)
                for path, oid, mid, status, detail in bad if path in mail]
    n = sum(counts.get(p, (0, 0))[0] for p in mail)
    good = sum(counts.get(p, (0, 0))[1] for p in mail)
    return VerifyReport(n, good, findings, list(dict.fromkeys(problems)), len(mail))


VERIFY_BATCH = 10_000  # commits per batch of verify --all: memory stays bounded


def _verify_all(s: Session, problems: list[str]) -> VerifyReport:
    from typing import Iterator

    from gitmail.core.objects import collect, mailbox_move_problem
    from gitmail.core.store import Checker, check_batches

    d = s.directory
    pg = s.repo.pg
    mail = _mail_refs(s, True, problems)

    def batches() -> Iterator[tuple[str, list[str], str, str]]:
        for path, tip in sorted(mail.items()):
            try:
                rcpt, sender = refs.split_mail_path(path)
            except GitmailError as e:
                problems.append(f"{path}: not a mailbox: {e}")
                continue
            vtip = s.repo.ref_target(refs.verified(path))
            oids, merge = collect(pg, tip, vtip)  # above the verified tip (every commit: none)
            why = mailbox_move_problem(pg, path, oids, merge, vtip)
            if why is not None:
                problems.append(why)
            if vtip is not None:  # the verified copy, checked again too; alone, where refused
                below, _ = collect(pg, vtip)
                if why is None:
                    oids.extend(below)
                else:
                    oids = below
            for lo in range(0, len(oids), VERIFY_BATCH):
                yield path, [oids[i] for i in range(lo, min(lo + VERIFY_BATCH, len(oids)))], rcpt, sender

    findings: list[Finding] = []
    n = good = 0
    with Checker(pg, d) as checker:
        for path, oids, parts in check_batches(checker, batches()):
            sender = refs.split_mail_path(path)[1]
            for oid, (msg, check) in zip(oids, (v for part in parts for v in part)):
                n += 1
                if check.good:
                    good += 1
                else:
                    findings.append(Finding(path, oid, msg.id if msg else "", sender, check.status, check.detail))
    return VerifyReport(n, good, findings, list(dict.fromkeys(problems)), len(mail))


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

    def model(self) -> "LogRow":
        """The JSON shape of one ``gitmail log`` entry (docs/json.md, ``LogRow``)."""
        from gitmail.api.results import LogRow

        return LogRow(**vars(self))


def log(repo: RepoLike = None, *, as_: Optional[str] = None, limit: int = 50) -> list[LogEntry]:
    """An audit view across every mailbox in the org, newest first, with each message's status."""
    from gitmail.core.objects import chain
    from gitmail.core.store import check_message

    check_limit(limit)
    s = session(repo, as_)
    d = s.directory
    pg = s.repo.pg
    out: list[LogEntry] = []
    for path, tip in _mail_refs(s, True).items():
        try:
            rcpt, sender = refs.split_mail_path(path)
        except GitmailError:
            continue  # not a mailbox ref name: verify and sync report it
        for oid in chain(pg, tip)[0]:
            msg, check = check_message(pg, oid, rcpt, sender, d)
            out.append(LogEntry(path, oid, msg.id if msg else "", sender, rcpt,
                                msg.date if msg else "", msg.subject if msg else "(unreadable)",
                                msg.type if msg else "", check.status))
    out.sort(key=lambda e: e.date, reverse=True)
    return out[:limit]


@dataclass
class Shown:
    """One message commit as an auditor sees it: verification status, and the content if readable."""

    commit: str
    message: Optional["Message"]
    status: str
    detail: str
    encrypted: bool
    error: Optional[str]

    def model(self) -> "ShowResult":
        """The JSON result of ``gitmail show`` (docs/json.md, ``ShowResult``): the whole message when it
        could be opened, else only its envelope fields."""
        from gitmail.api.results import ShowResult

        m = self.message
        shown = None
        if m is not None:
            shown = m.model_dump(by_alias=True, mode="json")
            if self.error:
                shown = {k: v for k, v in shown.items()
                         if k in ("id", "from", "to", "date", "priority", "type", "thread", "in_reply_to", "encrypted")}
        return ShowResult(commit=self.commit, status=self.status, detail=self.detail, verified=self.status == "good",
                          encrypted=self.encrypted, error=self.error, message=shown)


def show(repo: RepoLike, rev: str, *, as_: Optional[str] = None) -> Shown:
    """Show any message commit of the org (a commit id, or a ref like
    ``origin/gitmail/mail/alex/max~2``), verified; decrypted when the acting
    member is a recipient. ``error`` says why the content is not shown
    (``encrypted for alex, max; you are not a recipient``).
    Raises :class:`MessageNotFoundError` for a revision that is not a message commit.
    """
    import pygit2

    from gitmail.core import private
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
        opened, _ = private.open_message(s.repo.pg, c, msg, s.identities, s.directory.read_body_limit, s.me)
    except GitmailError as e:
        return Shown(str(c.id), msg, check.status, check.detail, True, e.message)
    return Shown(str(c.id), opened, check.status, check.detail, True, None)
