"""Packing an inbox: ``gitmail pack`` and the packing ``gitmail sync`` does (docs/protocol.md §3,
"Packed mailboxes").

Part of the library API (:mod:`gitmail.api`): plain data in and out, only
:class:`gitmail.errors.GitmailError` raised, nothing printed.

When the org policy has ``packing`` on, a member folds the verified refs of their
inbox (``gitmail/mail/<me>/<sender>``) into their packed ref: one signed commit
on ``refs/heads/gitmail/packed/<me>`` records each pair's tip (a fast-forward of
the tip the clone verified), then one push deletes each pair ref, on the
condition that it still points at the recorded tip (``--force-with-lease``). A
sender who pushed meanwhile keeps their ref (it continues from the entry);
nothing is lost either way, and the server then holds one ref for the member
instead of one per sender.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from gitmail.core import refs
from gitmail.errors import GitmailError, PushRejectedError, UsageError, VerificationError

from gitmail.api.session import RepoLike, Session, session

if TYPE_CHECKING:
    from gitmail.api.results import PackResult
    from gitmail.core.model import Member

MAX_RETRIES = 5
AFTER_KEY = "gitmail.packafter"  # git config (lower-cased as git prints it)
AFTER_ENV = "GITMAIL_PACK_AFTER"
DEFAULT_AFTER = 16  # inbox refs on the server before a sync packs them


@dataclass
class PackReport:
    """What :func:`pack` did: ``packed``, the senders whose pair refs it deleted; ``kept``,
    those recorded but whose ref moved before the deletion (a sender pushed: packed next
    time); ``commit``, the packed tip after it (None: there is none)."""

    member: str
    packed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    commit: Optional[str] = None

    def model(self) -> "PackResult":
        """The JSON result of ``gitmail pack`` (docs/json.md, ``PackResult``)."""
        from gitmail.api.results import PackResult

        return PackResult(member=self.member, packed=self.packed, kept=self.kept, commit=self.commit,
                          ref=refs.head(refs.packed_path(self.member)))


def pack(repo: RepoLike = None, *, as_: Optional[str] = None) -> PackReport:
    """Fetch and verify the member's inbox, then pack every pair ref verified up to its tip.

    Raises :class:`UsageError` (exit 2) when the clone has no org remote or the
    org's policy has packing off, :class:`RemoteUnreachableError`,
    :class:`VerificationError` when the member's packed ref on the org repo did not
    verify (``gitmail verify`` says why), :class:`PushRejectedError` when the org
    repo refuses the packed commit or it kept moving.
    """
    from gitmail.core import sync as syncmod

    s = session(repo, as_)
    if s.repo.remote is None:
        raise UsageError("no org remote: packing moves refs on the org repo (set gitmail.remote)")
    if not s.directory.policy.packing:
        raise UsageError("packing is off in this org (an admin turns it on: gitmail org packing=true)")
    syncmod.fetch_member(s.repo, s.me)
    s.refresh()
    return pack_session(s)


def pack_session(s: Session) -> PackReport:
    """:func:`pack` for a session whose fetched refs were just verified (``gitmail sync``)."""
    from gitmail import git
    from gitmail.core import packed
    from gitmail.core import sync as syncmod

    repo, me = s.repo, s.me
    path = refs.packed_path(me)
    track, vref = refs.tracking(path, repo.remote), refs.verified(path)
    report = PackReport(me)
    for _attempt in range(MAX_RETRIES):
        vtip = repo.ref_target(vref)
        if repo.ref_target(track) != vtip:
            raise VerificationError(f"{refs.head(path)} on the org repo did not verify; 'gitmail verify' says why")
        pg = repo.pg
        old = packed.trusted_map(pg, vtip)
        t = refs.tracking("", repo.remote)
        ready: dict[str, str] = {}  # sender -> tip: verified up to the ref's tip
        for full, tip in git.for_each_ref(repo.path, [_inbox_pattern(t, me)]).items():
            p = full[len(t):]
            try:
                rcpt, sender = refs.split_mail_path(p)
            except GitmailError:
                continue  # not a mailbox name: the cache reports it
            if rcpt == me and repo.ref_target(refs.verified(p)) == tip:
                ready[sender] = tip
        report.commit = vtip
        if not ready:
            return report
        new = {**old, **ready}
        if new != old:
            oid = packed.write_commit(pg, old, new, s.member, s.signer, vtip)
            res = syncmod.push(repo, [(oid, refs.head(path))])
            dst = refs.head(path)
            if dst in res.refused:
                raise PushRejectedError(f"the org repo refused the update of {dst}: {res.refused[dst]}")
            if dst not in res.ok:
                # Another clone of this member packed first: take its line (and the inbox refs
                # it deleted) and start again.
                syncmod.fetch_member(repo, me)
                s.refresh()
                continue
            with repo.lock():
                repo.set_ref(track, oid, repo.ref_target(track), "gitmail: packed")
                repo.set_ref(vref, oid, vtip, "gitmail: verified")
            report.commit = oid
        _delete(s, ready, report)
        return report
    raise PushRejectedError(f"could not pack: {refs.head(path)} kept moving ({MAX_RETRIES} tries); run the command again")


def _delete(s: Session, ready: dict[str, str], report: PackReport) -> None:
    """Delete each recorded pair ref on the org repo, only if it is still at its recorded tip."""
    from gitmail.core import sync as syncmod

    repo = s.repo
    heads = {refs.head(refs.mail_path(s.me, sender)): (sender, tip) for sender, tip in sorted(ready.items())}
    leases = [f"--force-with-lease={h}:{tip}" for h, (_, tip) in heads.items()]
    res = syncmod.push(repo, [("", h) for h in heads], options=leases)
    for h, (sender, tip) in heads.items():
        if h in res.ok:
            report.packed.append(sender)
            with repo.lock():
                track = refs.tracking(h[len(refs.HEADS):], repo.remote)
                if repo.ref_target(track) == tip:
                    repo.delete_ref(track)
        elif h in res.refused:
            _remember_refusal(s, res.refused[h])
            raise PushRejectedError(
                f"the org repo refused the deletion of {h} ({res.refused[h]}): it refuses ref deletions "
                "(receive.denyDeletes, or a forge rule restricting deletions of gitmail/**), so packing cannot "
                "work there; nothing is lost (the packed commit records the pair at its tip). Leave packing "
                "off there, or let members delete their own inbox refs (docs/hosting.md, \"Packing\")")
        else:
            report.kept.append(sender)
    _remember_refusal(s, None)


REFUSED_FILE = "pack-refused.json"  # when the org repo last refused a packing deletion, and why
REFUSED_QUIET = 86400  # seconds a sync does not try packing again after such a refusal


def _remember_refusal(s: Session, why: Optional[str]) -> None:
    """Record (``why``) or clear (None) that the org repo refused the deletions packing needs
    (``.git/gitmail/pack-refused.json``): :func:`pack_on_sync` then leaves packing alone for
    :data:`REFUSED_QUIET` seconds instead of failing, and warning, on every sync of a host that
    protects its refs from deletion. ``gitmail pack`` always tries."""
    import json
    import time

    from gitmail.core.files import write_atomic

    path = s.repo.data_dir / REFUSED_FILE
    try:
        if why is None:
            path.unlink(missing_ok=True)
        else:
            write_atomic(path, json.dumps({"when": int(time.time()), "why": why[:500]}))
    except OSError:
        pass


def _refused_lately(s: Session) -> bool:
    import json
    import time

    try:
        when = json.loads((s.repo.data_dir / REFUSED_FILE).read_text("utf-8"))["when"]
        return isinstance(when, int) and 0 <= time.time() - when < REFUSED_QUIET
    except (OSError, ValueError, KeyError, TypeError):
        return False


class PackedTips:
    """For delivery (:func:`gitmail.core.sync.deliver`) and key rotation: the tip the
    recipient of mailbox ``path`` recorded for it on their packed ref, or None (packing off,
    a broadcast or group mailbox, no packed ref, no entry, or one that does not check).

    ``tips(path)`` fetches the recipient's packed ref (and with it their whole inbox) and
    checks its line from the root with the recipient's keys; ``tips.peek(path)`` reads
    only the packed commit now on the server (:func:`gitmail.core.sync.peeked`: three
    objects) and checks its signature: enough to tell that the entry is one this clone
    delivered, which is the common case. Raises nothing but what ``peek`` says below.
    """

    def __init__(self, s: Session) -> None:
        self.s = s

    @property
    def packing(self) -> bool:
        return bool(self.s.directory.policy.packing)

    def _pair(self, path: str) -> "Optional[tuple[Member, str, str]]":
        try:
            rcpt, sender = refs.split_mail_path(path)
        except GitmailError:
            return None
        d = self.s.directory
        member = d.members.get(rcpt)
        if not d.policy.packing or member is None:
            return None
        return member, rcpt, sender

    def peek(self, path: str) -> Optional[str]:
        """The entry as the recipient signed it on the server now, unchecked against the line.
        Raises :class:`~gitmail.errors.RemoteUnreachableError` or
        :class:`~gitmail.errors.GitError` (a server that refuses a shallow fetch)."""
        from gitmail.core import packed
        from gitmail.core import sync as syncmod

        pair = self._pair(path)
        if pair is None:
            return None
        member, rcpt, sender = pair
        with syncmod.peeked(self.s.repo, refs.packed_path(rcpt)) as got:
            if got is None:
                return None
            why, entries = packed.tip_problem(got[0], got[1], member.all_keys())
            return None if why else entries.get(sender)

    def __call__(self, path: str) -> Optional[str]:
        from gitmail.core import packed
        from gitmail.core import sync as syncmod

        pair = self._pair(path)
        if pair is None:
            return None
        member, rcpt, sender = pair
        ppath = refs.packed_path(rcpt)
        try:
            syncmod.fetch(self.s.repo, [refs.exact_pattern(ppath)])
        except GitmailError:
            return None
        ptip = self.s.repo.ref_target(refs.tracking(ppath, self.s.repo.remote))
        if ptip is None:
            return None
        why, entries = packed.line_problem(self.s.repo.pg, None, ptip, member.all_keys())
        return None if why else entries.get(sender)


def packed_tip_of(s: Session) -> PackedTips:
    """:class:`PackedTips` of session ``s``."""
    return PackedTips(s)


def _inbox_pattern(tracking: str, member: str) -> str:
    """The ``for-each-ref`` pattern of ``member``'s own inbox refs (not broadcast, not groups)."""
    from gitmail.core.address import to_ref

    return f"{tracking}{refs.MAIL}{to_ref(member)}/*"


def pack_after(s: Session) -> int:
    """How many inbox refs on the server make ``gitmail sync`` pack them: ``$GITMAIL_PACK_AFTER``,
    else git config ``gitmail.packAfter``, else :data:`DEFAULT_AFTER`; 0 never packs on sync.
    Raises :class:`UsageError` for a value that is not a whole number."""
    raw = os.environ.get(AFTER_ENV)
    if raw is None:
        raw = s.repo.config.get(AFTER_KEY)
    if raw is None or not raw.strip():
        return DEFAULT_AFTER
    try:
        n = int(raw.strip())
    except ValueError:
        raise UsageError(f"gitmail.packAfter must be a whole number, got {raw.strip()[:40]!r}") from None
    if n < 0:
        raise UsageError(f"gitmail.packAfter must be 0 or more, got {n}")
    return n


def pack_on_sync(s: Session) -> Optional[PackReport]:
    """The packing a ``gitmail sync`` does after verifying: when the org's policy has packing on
    and the member has at least :func:`pack_after` inbox refs on the server, and the org repo did
    not refuse a packing deletion in the last :data:`REFUSED_QUIET` seconds; None otherwise."""
    from gitmail import git

    if s.repo.remote is None:
        return None
    after = pack_after(s)
    if after == 0:
        return None
    # Counted first: the common sync (few inbox refs) loads neither the directory nor pygit2.
    held = git.for_each_ref(s.repo.path, [_inbox_pattern(refs.tracking("", s.repo.remote), s.me)])
    if len(held) < after or not s.directory.policy.packing or _refused_lately(s):
        return None
    return pack_session(s)
