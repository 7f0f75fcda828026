"""Transport through the system ``git`` binary: fetch, push, and the outbox.

Sending writes message commits onto ``refs/gitmail/outbox/<r>/<s>`` (on top of
the remote-tracking tip) and then tries to push each outbox ref to
``refs/heads/gitmail/mail/<r>/<s>``. A push that lands deletes the outbox ref;
an unreachable remote leaves it queued for the next ``gitmail sync``; a lost
race (another process of the same sender pushed first) fetches, re-parents the
queued commits onto the new tip (re-signing them, same Message-IDs), drops any
already delivered, and pushes again (docs/protocol.md, "Delivery").
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Optional, Protocol, Sequence

from gitmail import git
from gitmail.core import refs, refspecs
from gitmail.core.signing import Signer
from gitmail.errors import GitError, PushRejectedError, RemoteUnreachableError

if TYPE_CHECKING:
    import pygit2

    from gitmail.core.repo import Repo

MAX_RETRIES = 30
# Push summaries that mean "the remote moved under us": fetch, re-parent, retry.
# "failed to update ref" / "cannot lock ref" come from a race lost on the server
# after its pre-receive hook ran (both pushes passed the guard, one won the ref).
_BEHIND = ("non-fast-forward", "fetch first", "stale info", "failed to update ref", "failed to lock",
           "cannot lock ref", "incorrect old value")


def _blocked(remote_lines: list[str], dst: str) -> bool:
    """Whether the server could not create ``dst`` because a longer ref is in its way (git:
    "'refs/heads/a/b/x' exists; cannot create 'refs/heads/a/b'"): someone squatted it where no
    guard runs. No retry gets past that, so it is a refusal, not a race lost (which a round
    retried ten times and then called "kept moving")."""
    return any("exists; cannot create" in ln and f"'{dst}'" in ln for ln in remote_lines)


def fetch(repo: "Repo", paths: Optional[list[str]] = None,
          meanwhile: Optional[Callable[[Callable[[], bool]], object]] = None) -> None:
    """Fetch the org's gitmail refs into remote-tracking refs: all of them (``paths`` None,
    what ``gitmail sync --all`` and an auditor want), or just ``paths`` (shared paths or
    patterns below ``refs/heads/``, :func:`gitmail.core.refs.member_paths`). With explicit
    refspecs git's protocol v2 asks the server only for their prefixes, and a single-ref
    pattern brings no longer name's ref (:func:`gitmail.core.refspecs.fetch_refspecs`).

    ``meanwhile``: work done while git fetches (:func:`gitmail.git.run`), once.

    Raises :class:`RemoteUnreachableError` when the remote cannot be reached.
    """
    remote = repo.remote
    assert remote
    if paths:
        specs = refspecs.fetch_refspecs(repo, paths)
    else:
        specs = [refs.refspec(refs.ALL, remote)]
    import time

    for attempt in range(_FETCH_TRIES):
        try:
            # --prune: a mailbox deleted on the server loses its remote-tracking ref, so the
            # rewind check (§12) sees it gone; only refs under these refspecs are pruned.
            # The refspecs on stdin (git 2.29+): a clone that delivered to many mailboxes, each
            # with its negative refspecs, would otherwise meet the command line's length limit.
            git.run(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--prune", "--stdin", remote],
                    repo.path, input="".join(s + "\n" for s in specs).encode("utf-8"), remote=True,
                    meanwhile=meanwhile if attempt == 0 else None, stall=_stall(repo))
            return
        except RemoteUnreachableError as e:
            e.message = unreachable_message(repo, e)
            raise
        except GitError as e:
            # Another process of this clone (a concurrent send or sync) was updating the
            # same remote-tracking ref: it fetched what we wanted; fetch again to be sure.
            if attempt == _FETCH_TRIES - 1 or not _LOCKED.search(e.stderr.decode("utf-8", "replace")):
                raise
            time.sleep(0.02 * (attempt + 1))


_FETCH_TRIES = 10


@contextmanager
def peeked(repo: "Repo", path: str) -> "Iterator[Optional[tuple[pygit2.Repository, str]]]":
    """The server's ``refs/heads/<path>`` commit alone, without the history behind it: yields
    ``(a repository holding it, its id)``, or None when the server has no such ref.

    A depth-1 fetch into a throwaway bare repository under ``.git/gitmail/``, which
    includes the clone's own git config (its remote, transport and credential
    settings) and is removed afterwards: the clone never becomes shallow and gains no
    object or ref. One connection and three objects (commit, tree, blob) for a
    packed ref (docs/protocol.md §3, "Packed mailboxes", "Senders"), where fetching
    the ref itself brings its owner's whole inbox. Raises
    :class:`RemoteUnreachableError`, or :class:`GitError` (e.g. a server that refuses
    shallow fetches).
    """
    import shutil
    import tempfile

    import pygit2

    remote = repo.remote
    assert remote
    confs = [repo.git_dir / "config", repo.git_dir / "config.worktree"]  # as repo._config_files
    if any(c in str(repo.git_dir) for c in "\n\r"):
        raise GitError(["git", "config"], 1, b"", b"the clone's path holds a line break")
    base = repo.git_dir / "gitmail"
    base.mkdir(parents=True, exist_ok=True)
    _clear_stale_peeks(base)
    tmp = Path(tempfile.mkdtemp(prefix="peek-", dir=base))
    try:
        known = repo.ref_target(refs.tracking(refs.DIRECTORY, remote)) or ""
        fmt = ["--object-format=sha256"] if len(known) == 64 else []
        git.run(["init", "--quiet", "--bare", *fmt, str(tmp)], base)
        quoted = [str(c).replace("\\", "\\\\").replace('"', '\\"') for c in confs]
        with open(tmp / "config", "a", encoding="utf-8") as f:
            # The clone's settings first (a missing file is skipped), then what this repository
            # must stay (bare, quiet, running none of the clone's hooks).
            f.write("".join(f'[include]\n\tpath = "{q}"\n' for q in quoted)
                    + "[core]\n\tbare = true\n\thooksPath = /dev/null\n"
                    "[maintenance]\n\tauto = false\n[gc]\n\tauto = 0\n[fetch]\n\twriteCommitGraph = false\n")
        ref = "refs/peek"
        try:
            git.run(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--depth=1", remote,
                     f"+{refs.head(path)}:{ref}"], tmp, remote=True, stall=_stall(repo))
        except RemoteUnreachableError as e:
            e.message = unreachable_message(repo, e)
            raise
        except GitError as e:
            if _NO_REF.search(e.stderr.decode("utf-8", "replace")):
                yield None
                return
            raise
        pg = pygit2.Repository(str(tmp))
        oid = pg.references.get(ref)
        yield None if oid is None else (pg, str(oid.target))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_NO_REF = re.compile(r"couldn't find remote ref", re.I)
_PEEK_STALE = 3600.0  # seconds: a throwaway repository this old was left by a killed process


def _clear_stale_peeks(base: Path) -> None:
    import shutil
    import time

    for d in base.glob("peek-*"):
        try:
            if time.time() - d.stat().st_mtime > _PEEK_STALE:
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass


def fetch_member(repo: "Repo", member: str,
                 meanwhile: Optional[Callable[[Callable[[], bool]], object]] = None) -> tuple[list[str], list[str]]:
    """Fetch what ``member`` reads and nothing else (docs/protocol.md §3 "What a member
    fetches"): the directory, their inbox, the broadcast mailbox, the group mailboxes their
    configured refspecs name, and the mailboxes this clone has delivered to (up to
    :data:`SENT_CHECKS` a sync, in turn: :func:`sent_turn`). Returns
    ``(fetched paths, configured paths)`` for :func:`fetch_new_paths`. ``meanwhile``: as
    :func:`fetch`.

    Raises :class:`RemoteUnreachableError`.
    """
    conf = refspecs.configured_paths(repo)
    if not conf or refs.ALL in conf:
        refspecs.forget(repo)  # an earlier version's or a hand-edited config: recompute it
    # What the clone's config names (every identity of the clone, its groups) and this
    # member's own refs; an earlier version's all-mailboxes line is not fetched again.
    paths = [*refs.member_paths(member, refspecs.group_paths(conf)), *(p for p in conf if p != refs.ALL)]
    covered = [p[:-1] for p in paths if p.endswith("/*")]
    sent = [p for p in sorted(sent_tips(repo, member)) if not any(p.startswith(c) for c in covered)]
    turn = sent_turn(repo, member, sent)
    paths += [refs.exact_pattern(p) for p in turn]
    fetch(repo, paths, meanwhile)
    if len(turn) < len(sent):
        done = _load(repo, SENT_TURN_FILE)
        done[member] = turn[-1]
        _save(repo, SENT_TURN_FILE, done)
    return paths, conf


def fetch_new_paths(repo: "Repo", fetched: tuple[list[str], list[str]]) -> None:
    """After :func:`gitmail.core.refspecs.keep` changed the refspecs during a sync: fetch what
    :func:`fetch_member` did not (a group joined since)."""
    extra = [p for p in refspecs.configured_paths(repo) if p not in fetched[0]]
    if extra:
        fetch(repo, extra)


SENT_CHECKS = 128  # delivered mailboxes one sync fetches at most (the rewind check, §12); the rest in turn


def sent_turn(repo: "Repo", sender: str, sent: list[str]) -> list[str]:
    """Which of ``sent`` (sorted paths of the mailboxes this clone delivered to as ``sender``,
    ``refs/gitmail/sent/<r>/<sender>``) this sync fetches, so that a rewrite of one is seen
    (§12) without asking the server for anyone else's mailboxes: all of them, up to
    :data:`SENT_CHECKS`; beyond, the :data:`SENT_CHECKS` that follow the last one the previous
    sync fetched (``.git/gitmail/sent-turn.json``), wrapping round. Each costs a ``ref-prefix``
    line and an advertised ref (about 125 bytes a sync), so a sync's cost stays bounded
    however many members this sender writes to, and every mailbox is checked once in
    ``ceil(len(sent) / SENT_CHECKS)`` syncs (docs/protocol.md §3 "What a member fetches")."""
    if len(sent) <= SENT_CHECKS:
        return sent
    from bisect import bisect_right

    last = _load(repo, SENT_TURN_FILE).get(sender)
    i = bisect_right(sent, last) if isinstance(last, str) else 0
    return (sent[i:] + sent[:i])[:SENT_CHECKS]


def sent_tips(repo: "Repo", sender: str) -> dict[str, str]:
    """Mailbox path -> the last tip this clone delivered there as ``sender``
    (``refs/gitmail/sent/<r>/<sender>``; one ``for-each-ref``)."""
    from gitmail.core.address import to_ref

    found = git.for_each_ref(repo.path, [SENT + "*/" + to_ref(sender)])
    return {refs.MAIL + name[len(SENT):]: oid for name, oid in found.items()}


_LOCKED = re.compile(r"cannot lock ref|unable to update local ref|some local refs could not be updated|"
                     r"Unable to create .*\.lock|is at [0-9a-f]+ but expected", re.I)


def _remote_url(repo: "Repo") -> str:
    """The org remote's URL as git config names it ('' when unknown)."""
    return repo.config.get(f"remote.{repo.remote}.url", "") if repo.remote else ""


def _stall(repo: "Repo", url: Optional[str] = None) -> Optional[float]:
    """How long a fetch or push of ``repo`` (to ``url``, default the org remote) may go silent
    (:func:`gitmail.git.stall_timeout`)."""
    return git.stall_timeout(repo.config, _remote_url(repo) if url is None else url)


def unreachable_message(repo: "Repo", e: "GitError", url: Optional[str] = None) -> str:
    """One line: which remote (at ``url``, default its fetch URL) could not be reached, git's
    reason, and, when this clone has mail queued, that it stays in the outbox (said only then:
    an ``init`` or a ``key rotate`` that cannot reach the org queued nothing)."""
    url = _remote_url(repo) if url is None else url
    lines = [ln.strip() for ln in e.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    reason = next((ln for ln in lines if _git_unreachable(ln)), lines[-1] if lines else "no answer")
    reason = reason.removeprefix("fatal: ").removeprefix("error: ")
    try:
        queued = bool(outbox_paths(repo))
    except Exception:  # an unreadable ref store: say it, as before, rather than fail on the way out
        queued = True
    tail = "; queued mail stays in the outbox" if queued else ""
    return f"cannot reach the org remote {repo.remote!r} ({url}): {reason}{tail}"


def _git_unreachable(line: str) -> bool:
    return bool(git.UNREACHABLE.search(line.encode("utf-8", "replace")))


@dataclass
class PushResult:
    ok: set[str] = field(default_factory=set)  # destination refs that landed (or were up to date)
    behind: set[str] = field(default_factory=set)  # rejected as non-fast-forward
    refused: dict[str, str] = field(default_factory=dict)  # refused by the server (hook): reason


def push(repo: "Repo", specs: list[tuple[str, str]], options: "Sequence[str]" = (), negotiate: bool = False) -> PushResult:
    """Push ``(src, dst)`` pairs in one ``git push --porcelain`` (never forced; an empty ``src``
    deletes ``dst``). ``options``: more ``git push`` options (``--force-with-lease=REF:OID``).
    ``negotiate``: first find the commits the server has (git's ``push.negotiate``), for
    a ref the server does not advertise whose history it holds (a packed mailbox written
    to again): without it git sends that mailbox's whole history again.

    Raises :class:`RemoteUnreachableError` when the remote cannot be reached.
    """
    remote = repo.remote
    assert remote
    args = [*(["-c", "push.negotiate=true"] if negotiate else []), "push", "--porcelain", *options, remote,
            *[f"{s}:{d}" for s, d in specs]]
    proc = git.run(args, repo.path, check=False, stall=_stall(repo))
    res = PushResult()
    remote_lines = [
        line[len("remote: ") :].strip()
        for line in proc.stderr.decode("utf-8", "replace").splitlines()
        if line.startswith("remote: ") and line[len("remote: ") :].strip()
    ]
    seen = False
    for line in proc.stdout.decode("utf-8", "replace").split("\n"):  # LF alone: git's lines (see git.for_each_ref)
        parts = line.split("\t")
        if len(parts) < 3 or len(parts[0]) != 1:
            continue
        seen = True
        flag, spec, summary = parts[0], parts[1], parts[2]
        dst = spec.rsplit(":", 1)[-1]
        if flag in " *=+-":  # '-': a deletion that landed
            res.ok.add(dst)
        elif any(b in summary for b in _BEHIND) and not _blocked(remote_lines, dst):
            res.behind.add(dst)
        else:
            reason = "; ".join(remote_lines) or summary
            res.refused[dst] = reason
    if not seen and proc.returncode != 0:
        err = git.failure(["git", *args], proc, remote=True)
        if isinstance(err, RemoteUnreachableError):
            err.message = unreachable_message(repo, err)
        raise err
    return res


def push_oid(repo: "Repo", oid: str, dst: str, expected: Optional[str]) -> bool:
    """Push commit ``oid`` to ``dst``; True if it landed, False if the remote had moved.

    On success the remote-tracking ref is moved to ``oid``. Raises
    :class:`PushRejectedError` when the server refuses the update.
    """
    res = push(repo, [(oid, dst)])
    if dst in res.refused:
        raise PushRejectedError(f"the org repo refused the update of {dst}: {res.refused[dst]}")
    if dst in res.ok:
        path = dst[len(refs.HEADS) :]
        with repo.lock():
            repo.set_ref(refs.tracking(path, repo.remote), oid, repo.ref_target(refs.tracking(path, repo.remote)))
        return True
    return False


# -- the outbox, message by message ------------------------------------------------------------
#
# Local records (never pushed; docs/sync.md "The outbox"):
#   refs/gitmail/sent/<r>/<s>            the last tip this clone pushed to mail/<r>/<s> (rewind detection)
#   refs/gitmail/undelivered/<r>/<s>/<id> a message that left the outbox undelivered (refused or dropped)
#   .git/gitmail/outbox.json             why each queued message is still queued, and since when
#   .git/gitmail/undelivered.json        why each undelivered message left the outbox
#   .git/gitmail/packed-sent.json        mailboxes found packed by their recipients, at which sent tip
SENT = "refs/gitmail/sent/"
UNDELIVERED = "refs/gitmail/undelivered/"
REASONS_FILE = "outbox.json"
PACKED_SENT_FILE = "packed-sent.json"  # path -> the sent tip last found packed by its recipient (recover)
SENT_TURN_FILE = "sent-turn.json"  # sender -> the last delivered mailbox a sync fetched (sent_turn)
UNDELIVERED_FILE = "undelivered.json"

# Why a message is still queued (Held.kind).
UNREACHABLE = "remote-unreachable"  # the org remote could not be reached
LFS = "lfs-unreachable"  # its attachments could not be uploaded (detail names the LFS URL)
FAILED = "push-failed"  # git push failed without a verdict per ref (authentication, permissions, ...)
RACE = "race"  # lost the race for the mailbox too many times in a row
NO_KEY = "no-key"  # must be re-parented (re-signed) and no signing key was at hand
NOT_TRIED = "not-tried"  # written, no delivery attempt recorded yet (e.g. the sender was killed)
# Why a message left the outbox undelivered (Undelivered kind).
REFUSED = "refused"  # the org repo refused it (its guard's reason)
DROPPED = "dropped"  # the member dropped it (gitmail outbox drop)


def known_tip(repo: "Repo", path: str) -> Optional[str]:
    """Where mailbox ``path`` ends as this clone knows it, for the next message to continue from:
    its remote-tracking ref, else the last tip this clone delivered there
    (``refs/gitmail/sent/<r>/<s>``). A mailbox its recipient packed (docs/protocol.md §3,
    "Packed mailboxes"), or whose remote-tracking ref a plain ``git fetch --prune`` took
    away, has no remote-tracking ref, and a message written on nothing would fork the
    chain. A mailbox deleted on the org repo is the rewind check's (:func:`recover`). A mailbox
    replaced there by another history (:func:`diverged`) ends where the line this clone verified
    ends (its verified tip, or the sent tip past it): a message written on the replacement would
    carry it along when the ref is restored."""
    track = repo.ref_target(refs.tracking(path, repo.remote))
    if track is None:
        return repo.ref_target(sent_ref(path))
    if diverged(repo, path) is None:
        return track
    verified, sent = repo.ref_target(refs.verified(path)), repo.ref_target(sent_ref(path))
    if verified is None:  # delivered, never verified since: what it delivered is its line
        return sent
    return sent if sent is not None and _is_ancestor(repo, verified, sent) else verified


def sent_ref(path: str) -> str:
    """``refs/gitmail/sent/<r>/<s>``: the last tip this clone delivered to mailbox ``path``."""
    return SENT + path[len(refs.MAIL) :]


def undelivered_ref(path: str, msg_id: str) -> str:
    return f"{UNDELIVERED}{path[len(refs.MAIL):]}/{msg_id}"


@dataclass
class Held:
    """One message on one mailbox that did not go: ``kind`` (see above) and the reason in words."""

    path: str
    id: str
    kind: str
    detail: str


@dataclass
class Delivery:
    """What one delivery round did, message by message (``(mailbox path, Message-ID)`` pairs)."""

    delivered: list[tuple[str, str]] = field(default_factory=list)
    queued: list[Held] = field(default_factory=list)  # still in the outbox, with why
    refused: list[Held] = field(default_factory=list)  # moved to the undelivered record (kind REFUSED)
    restored: list[tuple[str, str]] = field(default_factory=list)  # re-queued after a rewind (see recover)

    def delivered_ids(self) -> list[str]:
        return list(dict.fromkeys(i for _, i in self.delivered))


def outbox_paths(repo: "Repo", sender: Optional[str] = None) -> dict[str, str]:
    """Mailbox path -> outbox tip for every queued outbox ref (of ``sender``, or all)."""
    from gitmail.core.address import to_ref

    pattern = refs.OUTBOX + ("*/" + to_ref(sender) if sender else "*/*")
    if repo._pg is not None:
        # pygit2 is loaded already (a send wrote its commit with it): list the refs in-process
        # rather than start a git (issue 15). fnmatch's * crosses "/", as for-each-ref's does.
        import fnmatch

        found = {n: str(repo.pg.references[n].target) for n in repo.pg.listall_references()
                 if n.startswith(refs.OUTBOX) and fnmatch.fnmatchcase(n, pattern)}
    else:
        found = git.for_each_ref(repo.path, [pattern])
    return {refs.MAIL + name[len(refs.OUTBOX) :]: oid for name, oid in found.items()}


@dataclass(frozen=True, slots=True)
class Written:
    """What the writer of a message commit knows of it (:func:`note_written`): its
    Message-ID, its first parent (None for a root) and whether its tree has an
    ``attachments/`` folder (LFS content to upload before it is pushed)."""

    id: str
    parent: Optional[str]
    attached: bool


# Commit oid (hex) -> Written, for the message commits this process wrote (the bulk writer
# notes each one). A commit oid names its bytes, so an entry can never go stale; it spares
# the delivery round reading back every commit, tree and message blob the writer has just
# made (issue 14 item 7: that was over a third of an import). Bounded: it is only a memo.
_WRITTEN: dict[str, Written] = {}
_WRITTEN_MAX = 1 << 18


def note_written(facts: "Iterable[tuple[str, Written]]") -> None:
    """Remember ``(commit oid, Written)`` of message commits just written (see :class:`Written`).

    Only the writer of the commit may call this, with the Message-ID it put in the
    commit's ``message.json``: :func:`queued_chain` and the LFS upload step trust it
    instead of reading the commit back.
    """
    if len(_WRITTEN) > _WRITTEN_MAX:
        _WRITTEN.clear()
    _WRITTEN.update(facts)


def queued_chain(repo: "Repo", path: str, tip: Optional[str] = None) -> list[tuple[str, str]]:
    """``(commit oid, Message-ID)`` of each message queued on ``path``, oldest first.

    The commits between the outbox tip and its merge base with the remote-tracking tip.
    Commits this process wrote are taken from :func:`note_written`'s memo; the others
    are read (a commit whose message cannot be read is listed with its oid as its id).
    """
    from gitmail.core.objects import commit, parent_ids
    from gitmail.core.store import read_message
    from gitmail.errors import CorruptMessageError

    tip = tip or repo.ref_target(refs.outbox(path))
    if tip is None:
        return []
    pg = repo.pg
    base = _merge_base(repo, tip, known_tip(repo, path))
    out = []
    oid: Optional[str] = tip
    while oid is not None and oid != base:  # objects.first_parent_line, memo first
        known = _WRITTEN.get(oid)
        if known is not None:
            out.append((oid, known.id))
            oid = known.parent
            continue
        try:
            mid = read_message(pg, commit(pg, oid)).id
        except CorruptMessageError:
            mid = oid  # not ours to judge: the guard and the readers do
        out.append((oid, mid))
        ps = parent_ids(pg, oid)
        oid = ps[0] if ps else None
    out.reverse()
    return out


def _merge_base(repo: "Repo", a: Optional[str], b: Optional[str]) -> Optional[str]:
    if not a or not b:
        return None
    import pygit2

    try:
        mb = repo.pg.merge_base(a, b)
    except (pygit2.GitError, ValueError):
        # A commit libgit2 cannot parse (a hostile author line someone pushed onto a mailbox):
        # mailboxes are first-parent lines, so walk the raw parent lines instead.
        from gitmail.core.objects import chain

        mine = set(chain(repo.pg, a)[0])
        return next((o for o in chain(repo.pg, b)[0] if o in mine), None)
    return str(mb) if mb else None


def _is_ancestor(repo: "Repo", old: str, new: str) -> bool:
    if old == new:
        return True
    import pygit2

    try:
        return bool(repo.pg.descendant_of(new, old))
    except (pygit2.GitError, ValueError):  # see _merge_base: walk the raw first-parent line
        from gitmail.core.objects import extends

        return extends(repo.pg, new, old)


DELIVER_LOCK = "deliver.lock"  # in .git/gitmail: one delivery round at a time per clone


def deliver(
    repo: "Repo", signer: Optional[Signer], sender: Optional[str] = None, pending: Optional[dict[str, str]] = None,
    packed_tip: "Optional[PackedTips]" = None,
) -> Delivery:
    """Push every queued outbox ref (of ``sender``, or all), each message on its own.

    One round at a time per clone (``.git/gitmail/deliver.lock``): concurrent
    senders of one clone wait for each other rather than race each other for
    the same mailbox on the org repo, and the round that runs first pushes what
    the waiting ones queued meanwhile (docs/sync.md, "Concurrent senders").
    A round that waited and finds every message it would push held back by the
    round before it as ``remote-unreachable`` reports that reason without
    trying again (no waiting out the same timeout once per process).

    * A push that lands records the tip as sent and removes the outbox ref.
    * Remote unreachable / push failed (no verdict per ref, e.g. authentication):
      everything stays queued, with git's reason.
    * A message whose LFS content cannot be uploaded is held: the messages
      queued after it on that mailbox are re-parented below it and go.
    * A refused push of several messages is retried one message at a time; a
      refused message leaves the outbox for the undelivered record (with the
      remote's reason) and the rest are re-parented and go.
    * Remote moved (lost race, or a lease on the remote-tracking tip refused as
      ``stale info``: :func:`_lease`): fetch, drop what already landed, re-parent, retry.
    * A mailbox this clone sees no ref for, with packing on (docs/protocol.md §3
      "Packed mailboxes", "Senders"): before the push that would create it, the
      queue goes onto where the pair really ends (:func:`_catch_up_packed`): the
      server's ref when a new clone finds one, else the recipient's packed entry
      when this clone does not know it (``packed_tip.peek``, then the verified
      ``packed_tip(path)``); after a refusal, ``packed_tip(path)`` likewise. Once
      per mailbox and round.

    Re-parenting needs ``signer`` (re-signing, same Message-IDs); without one the
    affected mailbox stays queued. ``pending``: :func:`outbox_paths` when the
    caller has just listed it (consumed). Never raises for the network or git;
    the reasons are kept in ``.git/gitmail/outbox.json`` (:func:`reasons`).
    """
    if repo.remote is None:
        return Delivery()
    import time

    since = time.time()
    with repo.lock(DELIVER_LOCK) as waited:
        if waited:
            # The round before this one may have pushed (or held back) what we queued.
            now = outbox_paths(repo, sender)
            pending = now if pending is None else {p: now[p] for p in pending if p in now}
            held = _held_unreachable(repo, pending, since)
            if held is not None:
                return held
        return _deliver(repo, signer, sender, pending, packed_tip)


def _held_unreachable(repo: "Repo", pending: dict[str, str], since: float) -> Optional[Delivery]:
    """When every message queued on ``pending`` was found unreachable by a round that tried after
    ``since`` (Unix time): that verdict (a :class:`Delivery` holding them), else None."""
    from gitmail.core.dates import parse_date

    if not pending:
        return None
    rec = reasons(repo)
    out = Delivery()
    for p, tip in pending.items():
        for _, mid in queued_chain(repo, p, tip):
            r = rec.get((p, mid))
            tried = parse_date(r.get("tried")) if r else None
            if r is None or r.get("kind") != UNREACHABLE or tried is None or tried.timestamp() < since:
                return None
            out.queued.append(Held(p, mid, UNREACHABLE, r.get("detail", "")))
    return out


def org_problem(repo: "Repo") -> Optional[str]:
    """Why the org remote, as last fetched, is not the org this clone verified, or None: it
    holds no gitmail directory (a mistyped ``gitmail.remote``, an empty repository), or a
    directory whose history has another root than the verified one (another org's repo).
    Mail is never pushed there: a sync took an empty repository for the org with every
    mailbox rewound, and signed and pushed the member's sent mail into it again. A directory
    of this org that does not verify (rewritten, or cut by a commit too large to read) is no
    reason here: the directory's own check reports it, and mail still goes to the org. None
    too for a clone that verified no directory yet (its first ``init``)."""
    if repo.remote is None:
        return None
    vref, tref = refs.verified(refs.DIRECTORY), refs.tracking(refs.DIRECTORY, repo.remote)
    if repo._pg is not None:  # pygit2 loaded (a send): no git process to list two refs
        verified, tip = repo.ref_target(vref), repo.ref_target(tref)
    else:  # a quiet sync loads no pygit2
        found = git.for_each_ref(repo.path, [vref, tref])
        verified, tip = found.get(vref), found.get(tref)
    url = repo.config.get(f"remote.{repo.remote}.url", "")
    return _not_the_org(repo, verified, tip, f"the org remote {repo.remote!r} ({url})")


def _not_the_org(repo: "Repo", verified: Optional[str], tip: Optional[str], where: str) -> Optional[str]:
    """:func:`org_problem`'s rule for the directory tip ``tip`` found at ``where`` (a remote, a
    push URL; None: no directory there), against the ``verified`` one."""
    if verified is None or tip == verified:
        return None
    if tip is None:
        return f"{where} holds no gitmail directory: it is not this org's repo; nothing is pushed there"
    theirs = _root(repo, tip, verified)
    if theirs is not None and theirs != _root(repo, verified, None):
        return f"{where} holds another org's directory (its first commit is not this org's); nothing is pushed there"
    return None


ORG_REMOTE_FILE = "org-remote.json"  # the org remote as configured when a fetch last found the org there


def _remote_as_configured(repo: "Repo") -> dict[str, str]:
    """The org remote's name and its fetch and push URLs, as the clone's git config gives them now."""
    r = repo.remote or ""
    return {"remote": r, "url": repo.config.get(f"remote.{r}.url", ""),
            "pushurl": repo.config.get(f"remote.{r}.pushurl", "")}


def org_found(repo: "Repo") -> None:
    """Record that a fetch from the org remote, configured as it is now, found this org there
    (:func:`org_problem` None after it): :func:`push_target_problem` then pushes without
    fetching first. Not when the remote has a ``pushurl``: the fetch read another place than
    a push writes to, and :func:`push_target_problem` looks there itself."""
    conf = _remote_as_configured(repo)
    if repo.remote is not None and not conf["pushurl"]:
        _save(repo, ORG_REMOTE_FILE, conf)


def push_target_problem(repo: "Repo") -> Optional[str]:
    """:func:`org_problem` for a push: when the org remote is configured otherwise than when a
    fetch last found the org there (``git remote set-url``, another ``gitmail.remote``, a
    ``pushurl``; or nothing recorded yet), its directory is fetched first, and from its push
    URL too when it has one, so that a send right after such a change never pushes mail into
    a repository that is not the org: the remote-tracking refs it would judge by came from
    the old place. Raises :class:`RemoteUnreachableError` or :class:`GitError` from a fetch."""
    conf = _remote_as_configured(repo)
    if repo.remote is None or _load(repo, ORG_REMOTE_FILE) == conf:
        return org_problem(repo)
    fetch(repo, [refs.exact_pattern(refs.DIRECTORY)])
    problem = org_problem(repo)
    if problem is None and conf["pushurl"]:
        problem = _push_url_problem(repo, conf["pushurl"])
    if problem is None:
        _save(repo, ORG_REMOTE_FILE, conf)
    return problem


def _push_url_problem(repo: "Repo", url: str) -> Optional[str]:
    """:func:`org_problem` for the directory the push URL ``url`` holds: fetched (git's own
    transport and credentials, as the push will use them) into a ref of its own, judged, and
    the ref removed."""
    ref = "refs/gitmail/push-check"
    try:
        git.run(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", url,
                 f"+{refs.head(refs.DIRECTORY)}:{ref}"], repo.path, remote=True, stall=_stall(repo, url))
        tip = repo.ref_target(ref)
    except RemoteUnreachableError as e:
        e.message = unreachable_message(repo, e, url)
        raise
    except GitError as e:
        if not _NO_REF.search(e.stderr.decode("utf-8", "replace")):
            raise
        tip = None
    try:
        return _not_the_org(repo, repo.ref_target(refs.verified(refs.DIRECTORY)), tip,
                            f"the push URL of {repo.remote!r} ({url})")
    finally:
        if tip is not None:
            repo.delete_ref(ref)


def diverged(repo: "Repo", path: str) -> Optional[str]:
    """Why nothing may go onto mailbox ``path`` as the org repo holds it, or None: its tip and the
    tip this clone verified (``refs/gitmail/verified/<path>``, the sender's own sent mailbox is
    verified by its syncs too) are on two lines, neither continuing the other. Someone without
    the guard replaced the mailbox with another history; its recipient, who verified the same
    old one, refuses the new line for good, so a message written on top of it would say "Sent"
    and never be read. A rewind (the org's tip below the verified one) is no such case: the
    sender's clone delivers its messages again as a fast-forward (:func:`recover`). Before a
    sync has verified the mailbox (a first message to it, no sync since), the tip this clone
    delivered (``refs/gitmail/sent/<path>``, which the org repo accepted) stands for it."""
    if repo.remote is None:
        return None
    track = repo.ref_target(refs.tracking(path, repo.remote))
    verified = repo.ref_target(refs.verified(path))
    if verified is None:
        verified = repo.ref_target(sent_ref(path))
    if track is None or verified is None or track == verified:
        return None
    try:
        if _is_ancestor(repo, verified, track) or _is_ancestor(repo, track, verified):
            return None
    except (KeyError, ValueError):
        return None
    return (f"{path} on the org repo does not continue the history this clone verified or delivered (replaced "
            f"there, where no guard runs): its recipient refuses that line, so nothing goes onto it; an admin "
            f"restores the ref, e.g. to {verified[:10]}")


def _hold_diverged(repo: "Repo", paths: list[str], pending: dict[str, str],
                   why: dict[str, tuple[str, str]]) -> list[str]:
    """Take out of ``pending`` each of ``paths`` whose mailbox :func:`diverged`, recording why its
    queue stays; the others of ``paths``, in order."""
    out = []
    for p in paths:
        replaced = diverged(repo, p)
        if replaced is None:
            out.append(p)
        else:
            why[p] = (FAILED, replaced)
            pending.pop(p, None)
    return out


def _root(repo: "Repo", tip: str, stop: Optional[str]) -> Optional[str]:
    """The root commit of ``tip``'s first-parent line; None when the line meets ``stop`` (it
    continues that history) or is cut by a commit too large to read (not known)."""
    from gitmail.core.objects import first_parent_line, unfollowed

    last = None
    for oid, _ in first_parent_line(repo.pg, tip):
        if oid == stop:
            return None
        last = oid
    return None if last is None or unfollowed(repo.pg, last) else last


def _deliver(
    repo: "Repo", signer: Optional[Signer], sender: Optional[str], pending: Optional[dict[str, str]],
    packed_tip: "Optional[PackedTips]" = None,
) -> Delivery:
    """:func:`deliver`, the caller holding the delivery lock."""
    out = Delivery()
    pending = outbox_paths(repo, sender) if pending is None else pending
    if not pending:
        return out
    try:
        problem = push_target_problem(repo)
        kind = FAILED
    except RemoteUnreachableError as e:
        problem, kind = e.message, UNREACHABLE
    except GitError as e:
        problem, kind = push_failure(repo, e), FAILED
    if problem is not None:  # everything stays queued, saying why
        out.queued = [Held(p, mid, kind, problem) for p, tip in pending.items() for _, mid in queued_chain(repo, p, tip)]
        save_reasons(repo, out.queued, sender)
        return out
    tried = set(pending)
    why: dict[str, tuple[str, str]] = {}  # path -> why its (remaining) queue did not go
    _hold_diverged(repo, list(pending), pending, why)
    held: dict[str, dict[str, str]] = {}  # path -> Message-ID -> LFS reason
    single: set[str] = set()  # paths pushed one message at a time after a refusal
    split = False  # one push per mailbox after a refusal
    lfs_down: list[str] = []  # the LFS reason once the store failed in this round
    asked: set[str] = set()  # paths whose packed tip was looked up after a refusal
    for _attempt in range(MAX_RETRIES):
        targets: dict[str, tuple[str, list[str]]] = {}  # path -> (oid to push, Message-IDs it delivers)
        for p in list(pending):
            if not queued_chain(repo, p):
                # Everything queued is already on the remote-tracking tip (a push that landed
                # while its process died, or a concurrent process of ours): nothing to push.
                with repo.lock():
                    if repo.ref_target(refs.outbox(p)) == pending[p]:
                        repo.delete_ref(refs.outbox(p))
                del pending[p]
                continue
            if (packed_tip is not None and signer is not None and p not in asked
                    and repo.ref_target(refs.tracking(p, repo.remote)) is None
                    and _catch_up_packed(repo, p, packed_tip, asked)):
                with repo.lock():
                    new_tip = rebuild(repo, p, signer)
                if new_tip is None:
                    del pending[p]
                    continue
                pending[p] = new_tip
            t = _prepare(repo, p, signer, held.setdefault(p, {}), lfs_down, p in single)
            if t is None:
                why.setdefault(p, (LFS, lfs_down[0] if lfs_down else "LFS upload failed"))
                del pending[p]
            else:
                targets[p] = t
        if not targets:
            break
        # A push is all or nothing on a guarded server: after a refusal of a push that
        # carried several mailboxes, push each alone so that only the culprit is refused.
        groups = [list(targets)] if not split else [[p] for p in targets]
        res = PushResult()
        pushed: set[str] = set()
        failed: Optional[tuple[str, str]] = None  # the remote failed part-way: why the rest waits
        for g in groups:
            try:
                # A mailbox with a delivered tip but no remote-tracking ref: packed by its
                # recipient (or pruned); its history is on the server, unadvertised.
                negotiate = any(_recreates(repo, p) for p in g)
                leases = [f"--force-with-lease={refs.head(p)}:{tip}" for p in g
                          if (tip := _lease(repo, p, targets[p][0])) is not None]
                r = push(repo, [(targets[p][0], refs.head(p)) for p in g], leases, negotiate=negotiate)
            except RemoteUnreachableError as e:
                failed = (UNREACHABLE, e.message)
                break
            except GitError as e:
                failed = (FAILED, push_failure(repo, e))
                break
            pushed |= set(g)
            res.ok |= r.ok
            res.behind |= r.behind
            res.refused.update(r.refused)
        if res.refused and len(groups) == 1 and len(targets) > 1:
            split = True
            continue
        adopted = set()
        if packed_tip is not None and signer is not None:
            for p in targets:
                if refs.head(p) in res.refused and p not in asked:
                    asked.add(p)
                    tip = packed_tip(p)
                    if tip is not None and adopt_packed(repo, p, tip):
                        adopted.add(p)
        behind = []
        with repo.lock():
            for p, (oid, ids) in targets.items():
                dst = refs.head(p)
                if p not in pushed:
                    continue  # not tried: the remote failed before its turn
                if p in adopted:
                    new_tip = rebuild(repo, p, signer)
                    if new_tip is None:
                        pending.pop(p, None)
                    else:
                        pending[p] = new_tip
                    continue
                if dst in res.ok:
                    _landed(repo, p, oid)
                    out.delivered += [(p, i) for i in ids]
                    now = repo.ref_target(refs.outbox(p))
                    if now == oid:
                        repo.delete_ref(refs.outbox(p))
                        del pending[p]
                    elif now is None:
                        del pending[p]
                    else:
                        pending[p] = now  # held ones, more queued meanwhile, or the next after a refusal
                elif dst in res.refused:
                    if len(ids) == 1:
                        new_tip = _move_out(repo, p, signer, {ids[0]: res.refused[dst]}, REFUSED)
                        out.refused.append(Held(p, ids[0], REFUSED, res.refused[dst]))
                        if new_tip is None:
                            del pending[p]
                        else:
                            pending[p] = new_tip
                    else:
                        single.add(p)  # find the message the remote refuses
                else:
                    behind.append(p)
        if failed is not None:
            for p in pending:
                why[p] = failed
            break
        if not behind:
            if not pending:
                break
            continue
        try:
            # As patterns: a ref gone from the server (packed by its recipient, a lease that
            # failed) loses its remote-tracking ref instead of failing the fetch.
            fetch(repo, [refs.exact_pattern(p) for p in behind])
        except GitError as e:
            kind = UNREACHABLE if isinstance(e, RemoteUnreachableError) else FAILED
            for p in pending:
                why[p] = (kind, e.message if kind == UNREACHABLE else push_failure(repo, e))
            break
        behind = _hold_diverged(repo, behind, pending, why)  # moved to another line since the round began
        with repo.lock():
            for p in behind:
                before = {i for _, i in queued_chain(repo, p)} if repo.ref_target(refs.outbox(p)) else set()
                new_tip = rebuild(repo, p, signer, last=set(held.get(p, {})))
                after = {i for _, i in queued_chain(repo, p, new_tip)} if new_tip else set()
                # Gone from the queue without being moved out: they landed (another process of ours).
                out.delivered += [(p, i) for i in sorted(before - after)]
                if new_tip is None:
                    pending.pop(p, None)
                elif signer is None and new_tip == repo.ref_target(refs.outbox(p)) and not _on_tip(repo, p, new_tip):
                    why[p] = (NO_KEY, "must be re-parented onto the mailbox's new tip: run 'gitmail sync' as the sender")
                    pending.pop(p, None)
                else:
                    pending[p] = new_tip
        if not pending:
            break
    else:
        for p in pending:
            why.setdefault(p, (RACE, f"the mailbox kept moving ({MAX_RETRIES} attempts); 'gitmail sync' retries"))
    for p in sorted(tried):
        for _, mid in queued_chain(repo, p):
            if mid in held.get(p, {}):
                out.queued.append(Held(p, mid, LFS, held[p][mid]))
            else:
                kind, detail = why.get(p, (RACE, "the mailbox kept moving; 'gitmail sync' retries"))
                out.queued.append(Held(p, mid, kind, detail))
    if not out.queued:
        _WRITTEN.clear()  # everything went: what the writer noted has served (a long-lived process keeps no more)
    save_reasons(repo, out.queued, sender)
    return out


class PackedTips(Protocol):
    """What delivery asks of the recipients' packed refs (:class:`gitmail.api.packing.PackedTips`)."""

    def __call__(self, path: str) -> Optional[str]:
        """The recipient's entry for mailbox ``path`` from their verified packed line, or None."""

    def peek(self, path: str) -> Optional[str]:
        """The entry on the packed commit now on the server, its signature checked, or None."""

    @property
    def packing(self) -> bool:
        """Whether the org has packing on (docs/protocol.md §8)."""


def _lease(repo: "Repo", path: str, oid: str) -> Optional[str]:
    """The tip the org repo must still hold for ``path`` for a push of ``oid`` to go (git's
    ``--force-with-lease``): its remote-tracking tip, when ``oid`` continues it; else None
    (no lease: a push that does not continue it is refused as any non-fast-forward is).

    Without it, a ref its recipient packed meanwhile (gone from the server) would be
    re-created by the push off this clone's stale tip, a fork nothing refuses where there
    is no guard; with it, git refuses the push as ``stale info`` before sending anything,
    and delivery fetches, finds the ref gone and continues from the recipient's packed
    entry (:func:`packed_ahead`). As the lease turns the update into a forced one when it
    holds, it is given only for a push that is a fast-forward of that very tip."""
    track = repo.ref_target(refs.tracking(path, repo.remote))
    if track is None:
        return None
    try:
        return track if _is_ancestor(repo, track, oid) else None
    except (KeyError, ValueError):
        return None


def _recreates(repo: "Repo", path: str) -> bool:
    """Whether a push to ``path`` re-creates a ref this clone delivered to and no longer sees on
    the org repo (packed by its recipient, or pruned)."""
    return repo.ref_target(refs.tracking(path, repo.remote)) is None and repo.ref_target(sent_ref(path)) is not None


def _catch_up_packed(repo: "Repo", path: str, tips: PackedTips, asked: set[str]) -> bool:
    """Before a push that would create ``path`` on the org repo (this clone sees no ref for it),
    with packing on: whether the queue must be re-parented because the pair ends elsewhere
    than this clone knew (the caller rebuilds it onto :func:`known_tip`).

    A clone that never delivered there (a new clone of the sender) first fetches the pair
    itself: when the server has it, the queue goes onto its tip. Otherwise, and for a clone
    that did deliver there, :func:`packed_ahead` adopts the tip its recipient packed it at
    when this clone does not know it. ``path`` joins ``asked`` (once per delivery round).
    """
    asked.add(path)
    if not tips.packing:
        return False
    if repo.ref_target(sent_ref(path)) is None:
        try:
            fetch(repo, [refs.exact_pattern(path)])
        except GitError:
            return False  # unreachable or failing: the push that follows says so
        if repo.ref_target(refs.tracking(path, repo.remote)) is not None:
            return True
    return packed_ahead(repo, path, tips) is not None


def packed_ahead(repo: "Repo", path: str, tips: PackedTips) -> Optional[str]:
    """For a mailbox this clone sees no ref for on the org repo: the tip its recipient packed
    it at, when that is one this clone does not know and continues what it delivered there,
    if anything (another clone of the sender delivered more), now taken as the delivered tip
    (:func:`adopt_packed`); else None, changing nothing.

    Cheap in the common case: ``tips.peek`` reads the entry alone; only an entry this clone
    does not know, or one that cannot be read (a server refusing shallow fetches), costs
    the recipient's verified packed line (``tips(path)``). An unreachable remote changes
    nothing: the push that follows meets it too and keeps the queue.
    """
    from gitmail.errors import GitmailError

    known = repo.ref_target(sent_ref(path))
    try:
        entry: Optional[str] = tips.peek(path)
    except RemoteUnreachableError:
        return None
    except GitmailError:
        entry = ""
    if entry is None or entry == known:
        return None
    if entry and known is not None:
        try:
            if entry in repo.pg and _is_ancestor(repo, entry, known):
                return None  # an older tip of this clone's own deliveries
        except (KeyError, ValueError):
            pass
    tip = tips(path)
    return tip if tip is not None and adopt_packed(repo, path, tip) else None


def adopt_packed(repo: "Repo", path: str, tip: str) -> bool:
    """Take ``tip``, the packed tip of ``path`` its recipient recorded, as the tip this clone
    delivered there, when it continues what this clone knew (else False: not the refusal's
    cause). The stale remote-tracking ref goes (the server has no ref for the pair)."""
    known = known_tip(repo, path)
    try:
        if tip == known or (known is not None and not _is_ancestor(repo, known, tip)):
            return False
    except KeyError:
        return False
    with repo.lock():
        track = refs.tracking(path, repo.remote)
        if repo.ref_target(track) is not None:
            repo.delete_ref(track)
        repo.set_ref(sent_ref(path), tip, repo.ref_target(sent_ref(path)), "gitmail: packed by its recipient")
    return True


def _on_tip(repo: "Repo", path: str, tip: str) -> bool:
    """True when the queue of ``path`` sits on the remote-tracking tip (a fast-forward)."""
    track = known_tip(repo, path)
    chain = queued_chain(repo, path, tip)
    if not chain:
        return True
    from gitmail.core.objects import parent_ids

    ps = parent_ids(repo.pg, chain[0][0])
    return (ps[0] if ps else None) == track


def push_failure(repo: "Repo", e: GitError) -> str:
    """One line for a push or fetch that failed without a verdict per ref (git's own reason)."""
    lines = [ln.strip() for ln in e.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    lines = [ln.removeprefix("remote: ") for ln in lines if not ln.startswith("hint:")]
    reason = next((ln for ln in lines if ln.startswith("fatal:")), lines[-1] if lines else f"exit code {e.returncode}")
    url = repo.config.get(f"remote.{repo.remote}.url", "")
    return f"git push to {repo.remote!r} ({url}) failed: {reason.removeprefix('fatal: ')}"


def _prepare(
    repo: "Repo", path: str, signer: Optional[Signer], held: dict[str, str], lfs_down: list[str], one: bool
) -> Optional[tuple[str, list[str]]]:
    """Upload the LFS content of ``path``'s queue; the commit to push and the Message-IDs it delivers.

    Messages whose upload fails are recorded in ``held`` and moved to the end of
    the queue (re-parented; needs ``signer``), so the others go first. ``one``:
    deliver only the oldest message. None when nothing can go now.
    """
    chain = queued_chain(repo, path)
    if not chain:
        return None
    for oid, mid in chain:
        if mid in held:
            continue
        reason = _upload(repo, oid, lfs_down)
        if reason:
            held[mid] = reason
    if any(mid in held for _, mid in chain):
        first_held = next(k for k, (_, mid) in enumerate(chain) if mid in held)
        if any(mid not in held for _, mid in chain[first_held:]) and signer is not None:
            with repo.lock():
                tip = rebuild(repo, path, signer, last=set(held))
            chain = queued_chain(repo, path, tip) if tip else []
    ready = []
    for oid, mid in chain:
        if mid in held:
            break
        ready.append((oid, mid))
    if not ready:
        return None
    if one:
        ready = ready[:1]
    return ready[-1][0], [mid for _, mid in ready]


def _upload(repo: "Repo", oid: str, lfs_down: list[str]) -> Optional[str]:
    """Upload the LFS attachments of one message commit; the reason it failed, or None."""
    from gitmail.core import attachments
    from gitmail.core.objects import commit
    from gitmail.core.store import read_message
    from gitmail.errors import CorruptMessageError, GitmailError

    known = _WRITTEN.get(oid)
    if known is not None and not known.attached:
        return None  # written by this process without attachments: nothing to upload
    c = commit(repo.pg, oid)
    if attachments.TREE_DIR not in c.tree:
        return None
    try:
        atts = [a for a in read_message(repo.pg, c).attachments if a.storage == "lfs" and attachments.is_oid(a.oid)]
    except CorruptMessageError:
        return None
    if not atts:
        return None
    if lfs_down:
        return lfs_down[0]  # one unreachable store per round: do not wait for it once per message
    try:
        attachments.upload(repo, atts)
    except RemoteUnreachableError as e:
        lfs_down.append(e.message)
        return e.message
    except GitmailError as e:
        return e.message
    return None


def _landed(repo: "Repo", path: str, oid: str) -> None:
    """After a push of ``oid`` landed: move the remote-tracking ref and the sent record. Caller holds the lock."""
    for ref in (refs.tracking(path, repo.remote), sent_ref(path)):
        old = repo.ref_target(ref)
        if old is not None and not _is_ancestor(repo, old, oid):
            continue  # already further (a concurrent push of ours landed after this one)
        try:
            repo.set_ref(ref, oid, old, "gitmail: delivered")
        except Exception:  # noqa: BLE001 - a concurrent git fetch holds it; the next fetch sets it
            pass


def rebuild(
    repo: "Repo", path: str, signer: Optional[Signer], *, last: frozenset[str] | set[str] = frozenset(),
    drop: Optional[dict[str, str]] = None, prepend: Optional[list[str]] = None,
) -> Optional[str]:
    """Re-parent the queue of ``path`` onto the remote-tracking tip; the new outbox tip, or None (empty).

    Drops messages already on the remote tip; ``drop`` (Message-ID -> reason)
    leaves out (the caller records them); ``last`` goes after the others;
    ``prepend`` (commit oids, oldest first) goes first (re-delivery after a
    rewind). Commits whose parent does not change are kept, the others are
    re-signed (same Message-IDs). Without ``signer`` the outbox is left as is
    when it would need re-signing. Caller holds the lock.
    """
    from gitmail.core.objects import commit
    from gitmail.core.objects import chain as chain_of
    from gitmail.core.objects import load_commit
    from gitmail.core.store import read_message, resign
    from gitmail.errors import CorruptMessageError

    pg = repo.pg
    obref = refs.outbox(path)
    ob_tip = repo.ref_target(obref)
    tip = known_tip(repo, path)
    base = _merge_base(repo, ob_tip, tip)
    landed = set()
    for oid in (chain_of(pg, tip, base)[0] if tip else []):
        t = load_commit(pg, oid)
        try:  # a hostile commit someone else pushed here delivers nothing of ours
            landed.add(read_message(pg, t).id) if not isinstance(t, str) else None
        except CorruptMessageError:
            pass
    todo: list[tuple[str, str]] = []
    seen = set()
    for oid in prepend or []:
        mid = read_message(pg, commit(pg, oid)).id
        if mid not in landed and mid not in seen:
            todo.append((oid, mid))
            seen.add(mid)
    for oid, mid in queued_chain(repo, path, ob_tip) if ob_tip else []:
        if mid not in landed and mid not in seen and mid not in (drop or {}):
            todo.append((oid, mid))
            seen.add(mid)
    todo = [x for x in todo if x[1] not in last] + [x for x in todo if x[1] in last]
    if not todo:
        if ob_tip is not None:
            repo.delete_ref(obref)
        return None
    parent = tip
    for k, (oid, _) in enumerate(todo):
        c = commit(pg, oid)
        if [str(x) for x in c.parent_ids] == ([parent] if parent else []):
            parent = oid
            continue
        if signer is None:
            return ob_tip
        for oid2, _ in todo[k:]:
            parent = resign(pg, commit(pg, oid2), parent, signer)
        break
    assert parent
    if parent != ob_tip:
        repo.set_ref(obref, parent, ob_tip, "gitmail: re-parented queued messages")
    return parent


def _move_out(
    repo: "Repo", path: str, signer: Optional[Signer], reasons: dict[str, str], kind: str
) -> Optional[str]:
    """Take messages out of ``path``'s queue into the undelivered record; the new outbox tip.

    Caller holds the lock. The commits stay reachable from
    ``refs/gitmail/undelivered/<r>/<s>/<id>``; the reasons go to
    ``.git/gitmail/undelivered.json``.
    """
    chain = dict((mid, oid) for oid, mid in queued_chain(repo, path))
    for mid, reason in reasons.items():
        if mid in chain:
            repo.set_ref(undelivered_ref(path, mid), chain[mid], repo.ref_target(undelivered_ref(path, mid)),
                         f"gitmail: {kind}")
            _record_undelivered(repo, path, mid, kind, reason)
    return rebuild(repo, path, signer, drop=reasons)


# -- reasons, kept locally -------------------------------------------------------------------


def _load(repo: "Repo", name: str) -> dict[str, Any]:
    import json

    try:
        data = json.loads((repo.data_dir / name).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save(repo: "Repo", name: str, data: dict[str, Any]) -> None:
    import json

    from gitmail.core.files import write_atomic

    try:
        write_atomic(repo.data_dir / name, json.dumps(data, indent=1, sort_keys=True) + "\n", only_if_changed=True)
    except OSError:
        pass  # a read-only or full disk: the reasons are a courtesy, the outbox ref is the truth


def _now() -> str:
    from gitmail.core.model import format_date, utcnow

    return format_date(utcnow())


def save_reasons(repo: "Repo", queued: list[Held], sender: Optional[str] = None) -> None:
    """Record why each message of ``queued`` is still queued (``since``: the first time for that reason).

    Entries of messages no longer queued (of ``sender``'s mailboxes, or all) are removed.
    """
    if not queued and not _load(repo, REASONS_FILE):
        return  # nothing to record, nothing to clean up: no git call (the common delivered send)
    with repo.lock():
        data = _load(repo, REASONS_FILE)
        now = _now()
        live = {f"{p}\t{i}" for p, ob in outbox_paths(repo, sender).items() for _, i in queued_chain(repo, p, ob)}
        from gitmail.core.address import to_ref

        mine = (lambda k: k.split("\t")[0].endswith("/" + to_ref(sender))) if sender else (lambda k: True)
        data = {k: v for k, v in data.items() if k in live or not mine(k)}
        for h in queued:
            key = f"{h.path}\t{h.id}"
            old = data.get(key) or {}
            since = old.get("since") if old.get("kind") == h.kind and old.get("since") else now
            data[key] = {"kind": h.kind, "detail": h.detail, "since": since, "tried": now}
        _save(repo, REASONS_FILE, data)


def reasons(repo: "Repo") -> dict[tuple[str, str], dict[str, str]]:
    """``(mailbox path, Message-ID)`` -> ``{"kind", "detail", "since", "tried"}`` as last recorded."""
    out = {}
    for k, v in _load(repo, REASONS_FILE).items():
        p, _, i = k.partition("\t")
        if isinstance(v, dict):
            out[(p, i)] = {str(a): str(b) for a, b in v.items()}
    return out


def _record_undelivered(repo: "Repo", path: str, mid: str, kind: str, reason: str) -> None:
    data = _load(repo, UNDELIVERED_FILE)
    data[f"{path}\t{mid}"] = {"kind": kind, "detail": reason, "since": _now()}
    _save(repo, UNDELIVERED_FILE, data)


def undelivered(repo: "Repo", sender: Optional[str] = None) -> list[tuple[str, str, str, dict[str, str]]]:
    """Every undelivered message: ``(mailbox path, Message-ID, commit oid, {"kind", "detail", "since"})``."""
    from gitmail.core.address import to_ref

    pattern = UNDELIVERED + ("*/" + to_ref(sender) + "/*" if sender else "*/*/*")
    data = _load(repo, UNDELIVERED_FILE)
    out = []
    for name, oid in sorted(git.for_each_ref(repo.path, [pattern]).items()):
        rest = name[len(UNDELIVERED) :]
        box, _, mid = rest.rpartition("/")
        path = refs.MAIL + box
        info = data.get(f"{path}\t{mid}") or {"kind": REFUSED, "detail": "(no reason recorded)", "since": ""}
        out.append((path, mid, oid, {str(a): str(b) for a, b in info.items()}))
    return out


def forget_undelivered(repo: "Repo", path: str, mid: str) -> None:
    """Remove one undelivered record (after it was queued again). Caller holds the lock."""
    repo.delete_ref(undelivered_ref(path, mid))
    data = _load(repo, UNDELIVERED_FILE)
    if data.pop(f"{path}\t{mid}", None) is not None:
        _save(repo, UNDELIVERED_FILE, data)


def move_out(repo: "Repo", path: str, signer: Optional[Signer], mid: str, kind: str, reason: str) -> None:
    """Take message ``mid`` out of ``path``'s queue into the undelivered record (``gitmail outbox drop``)."""
    with repo.lock():
        _move_out(repo, path, signer, {mid: reason}, kind)
    save_reasons(repo, [], None)


def requeue(repo: "Repo", path: str, signer: Signer, mid: str) -> str:
    """Put an undelivered message back at the end of ``path``'s queue (re-signed); the new outbox tip."""
    from gitmail.core.objects import commit
    from gitmail.core.store import resign

    with repo.lock():
        oid = repo.ref_target(undelivered_ref(path, mid))
        assert oid
        obref = refs.outbox(path)
        ob_tip = repo.ref_target(obref)
        parent = ob_tip or known_tip(repo, path)
        new = resign(repo.pg, commit(repo.pg, oid), parent, signer)
        repo.set_ref(obref, new, ob_tip, "gitmail: queued again")
        forget_undelivered(repo, path, mid)
        return new


# -- rewinds: what this clone delivered and the server lost ---------------------------------------


def recover(
    repo: "Repo", signer: "Callable[[], Optional[Signer]]", sender: str, genuine: "Callable[[pygit2.Commit, str], bool]",
    packing: "Callable[[], bool]" = lambda: False,
) -> list[tuple[str, str, str]]:
    """Find messages this clone delivered that are no longer on the org repo; queue them again.

    For each ``refs/gitmail/sent/<r>/<sender>`` whose tip the freshly fetched
    mailbox no longer contains (a force-push or deletion on a server without
    the guard), the messages between the two (by Message-ID, and only those
    ``genuine(commit, path)`` accepts as this member's own) are put back at the
    front of the outbox, re-parented onto the rewritten tip (re-signed), so the
    next delivery is a fast-forward. Returns ``(path, Message-ID, commit)`` of each one
    found. ``signer()`` is called only when something was lost; when it gives
    None they are reported but not queued.

    ``packing()`` (called only when a mailbox is missing on the server): whether
    the org's policy lets recipients pack their inbox refs (docs/protocol.md §3,
    "Packed mailboxes"). Then a missing mailbox is taken as packed, not lost: the
    next message is written on the sent tip (:func:`known_tip`; the recipient's
    packed entry is that tip, or a later one of this sender's; the recipient's
    client and the guard check that the re-created ref continues from it).
    """
    from gitmail.core.address import to_ref

    out: list[tuple[str, str, str]] = []
    packed_memo: Optional[dict[str, Any]] = None
    tracking = refs.tracking(refs.MAIL, repo.remote)
    # One git call for both sides: the common case (nothing moved but by us) opens no repository.
    found = git.for_each_ref(repo.path, [SENT + "*/" + to_ref(sender), tracking + "*/" + to_ref(sender)])
    for name, sent_tip in found.items():
        if not name.startswith(SENT):
            continue
        path = refs.MAIL + name[len(SENT) :]
        track = found.get(refs.tracking(path, repo.remote))
        if track == sent_tip or (track is not None and _is_ancestor(repo, sent_tip, track)):
            continue
        if track is not None and diverged(repo, path) is not None:
            continue  # replaced by another history: nothing is delivered onto it (deliver says why)
        if track is None:
            # Asked once per delivered tip (the answer loads the directory); remembered locally.
            if packed_memo is None:
                packed_memo = _load(repo, PACKED_SENT_FILE)
            if packed_memo.get(path) == sent_tip:
                continue
            if packing():
                packed_memo[path] = sent_tip
                _save(repo, PACKED_SENT_FILE, packed_memo)
                continue
        from gitmail.core.objects import commit, first_parent_line
        from gitmail.core.store import read_message

        pg = repo.pg
        base = _merge_base(repo, sent_tip, track)
        on_server = {read_message(pg, commit(pg, t)).id for t, _ in first_parent_line(pg, track, base)} if track else set()
        lost = []
        for oid, _ in first_parent_line(pg, sent_tip, base):
            c = commit(pg, oid)
            mid = read_message(pg, c).id
            if mid not in on_server and genuine(c, path):
                lost.append((oid, mid))
        lost.reverse()
        out += [(path, mid, oid) for oid, mid in lost]
        key = signer() if lost else None
        if lost and key is None:
            continue
        with repo.lock():
            # Remember the rewritten tip first (the queue is rebuilt on it): the re-delivery's
            # push moves it forward again.
            if track:
                repo.set_ref(name, track, sent_tip, "gitmail: mailbox rewritten on the org repo")
            else:
                repo.delete_ref(name)
            if lost:
                rebuild(repo, path, key, prepend=[oid for oid, _ in lost])
    return out
