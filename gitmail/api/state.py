"""Read state on every machine: ``gitmail state push | pull | status`` (docs/protocol.md §10, "Shared state").

Part of the library API (:mod:`gitmail.api`): plain data in and out, only
:class:`gitmail.errors.GitmailError` raised, nothing printed.

The local state ref stays the source of truth. A round (pull, or pull then
push) records what changed locally since the last round as events, merges
them with the member's shared log from the org repo, applies the merged log
to the local state ref, and (push) writes the union back as a new signed,
encrypted commit on ``refs/heads/gitmail/state/<member>``, a fast-forward of
the tip it merged (fetch, merge and retry when another machine won the race).
Opt in for every ``gitmail sync`` with ``git config gitmail.syncState true``.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Optional

from gitmail.core import refs
from gitmail.errors import GitError, KeyError_, PushRejectedError, RetiredKeyError, UsageError

if TYPE_CHECKING:
    from gitmail.core.model import State
    from gitmail.core.statesync import Log

from gitmail.api.results import StateResult
from gitmail.api.session import RepoLike, Session, session
from gitmail.api.session import sync_state_enabled as enabled

MAX_RETRIES = 10
MACHINE_KEY = "gitmail.statemachine"  # git config (lower-cased as git prints it): this clone's machine id


def machine_id(s: Session, create: bool = True) -> str:
    """This clone's machine id, created (random, 16 hex digits) on first use (``create``; else "")."""
    from gitmail import git

    mid = s.repo.config.get(MACHINE_KEY, "")
    if len(mid) == 16 and all(c in "0123456789abcdef" for c in mid):
        return mid
    if not create:
        return ""
    mid = secrets.token_hex(8)
    git.config_set(s.repo.path, "gitmail.stateMachine", mid)
    s.repo.config[MACHINE_KEY] = mid
    return mid


def pull(repo: RepoLike = None, *, as_: Optional[str] = None) -> StateResult:
    """Fetch the member's shared state, merge it with local changes and apply it to the local flags.

    Raises :class:`RemoteUnreachableError` (exit 9), :class:`StateError` (exit 7:
    the shared state is not the member's, damaged or hostile; local flags are
    left untouched), :class:`KeyError_` (no key to open it).
    """
    return _round(session(repo, as_), push=False)


def push(repo: RepoLike = None, *, as_: Optional[str] = None) -> StateResult:
    """:func:`pull`, then publish the merged log as a new commit (when it differs from the org's).

    Also raises :class:`PushRejectedError` (exit 10) when the org repo refuses it.
    """
    return _round(session(repo, as_), push=True)


def status(repo: RepoLike = None, *, as_: Optional[str] = None) -> StateResult:
    """What the last round left (local only: nothing is fetched, decrypted or written)."""
    from gitmail.core import state as statemod
    from gitmail.core import statesync as ss

    s = session(repo, as_)
    s.refresh()
    log = _local_log(s)
    _, local = statemod.load(s.repo, s.me)
    ids, copies = _copies(s)
    recorded = ss.record(local, _base(s), ids, ss.clock(log) + 1, "0" * 16)
    return _result(s, log, False, len(recorded), 0, copies, create=False)


def sync_state(s: Session) -> StateResult:
    """The round ``gitmail sync`` runs when :func:`enabled`: pull and push."""
    return _round(s, push=True)


def _round(s: Session, push: bool) -> StateResult:
    from gitmail.core import statesync as ss
    from gitmail.core import sync as syncmod

    if s.repo.remote is None:
        raise UsageError("no org remote: the shared state lives on the org repo (set gitmail.remote)")
    member = s.member
    if not member.encryption_key:
        raise KeyError_(f"{s.me} has published no encryption key: the shared state is sealed to it "
                        "(gitmail key rotate publishes one)")
    # A clone whose key was rotated on another machine: said as send says it (exit 5), not as
    # "encrypted for alex; you are not a recipient" once the state is sealed to the new key.
    # (Other key problems are the round's own to meet, or not: a pull needs no signing key.)
    try:
        s.signer  # noqa: B018
    except RetiredKeyError as e:
        raise RetiredKeyError(f"{e.message} (rotated on another machine): the shared state is sealed to the new "
                              "key; copy it to this machine") from None
    except KeyError_:
        pass
    path = refs.state_path(s.me)
    track = refs.tracking(path, s.repo.remote)
    for _attempt in range(MAX_RETRIES):
        _fetch(s, path, track)
        tip = s.repo.ref_target(track)
        remote_log, why = ss.read_commit(s.repo.pg, tip, member, s.identities, replaceable=push) if tip else ({}, None)
        replaced = f"{refs.head(path)} held no state commit of {s.me}'s ({why}): replaced by this machine's" \
            if why else None
        s.refresh()
        with s.repo.lock():
            merged, recorded, changed, copies = _merge_local(s, remote_log)
        if not push or (tip is not None and merged == remote_log and not replaced):
            return _result(s, merged, False, recorded, changed, copies)
        if not merged and tip is None:
            return _result(s, merged, False, recorded, changed, copies)
        cipher = ss.encode(merged, s.me, member.encryption_key)
        oid = ss.write_commit(s.repo.pg, cipher, member, s.signer, tip)
        if syncmod.push_oid(s.repo, oid, refs.head(path), tip):
            return _result(s, merged, True, recorded, changed, copies, replaced=replaced)
        # Another machine of this member pushed first: fetch its log, merge, try again.
    raise PushRejectedError(f"could not publish the shared state: {refs.head(path)} kept moving "
                            f"({MAX_RETRIES} tries); run the command again")


def _fetch(s: Session, path: str, track: str) -> None:
    """Fetch only this member's state ref; a missing one removes the remote-tracking copy."""
    from gitmail.core import sync as syncmod

    try:
        syncmod.fetch(s.repo, [path])
    except GitError as e:
        if b"couldn't find remote ref" not in e.stderr:
            raise
        with s.repo.lock():
            s.repo.delete_ref(track)


def _merge_local(s: Session, remote_log: "Log") -> tuple["Log", int, int, dict[str, list[tuple[str, int]]]]:
    """Record local changes, merge with ``remote_log``, apply to the local state ref, remember
    the merged log and the applied state. Caller holds the lock.
    ``(merged, recorded, changed, Message-ID -> inbox copies)``."""
    from gitmail.core import state as statemod
    from gitmail.core import statesync as ss

    local_log = _local_log(s)
    st_oid, local = statemod.load(s.repo, s.me)
    ids, copies = _copies(s)
    now = ss.next_clock(local_log, remote_log)
    recorded = ss.record(local, _base(s), ids, now, machine_id(s))
    merged = ss.merge(local_log, remote_log, recorded)
    new = ss.apply(local, merged, copies)
    changed = len({ids[p] for flag in ss.FLAGS
                   for p in ss.positions(local, flag) ^ ss.positions(new, flag) if p in ids})
    if not ss.same_flags(new, local):
        statemod.save(s.repo, s.me, st_oid, new)
    _put_blob(s, refs.state_base(s.me), _state_bytes(new))
    _put_blob(s, refs.state_log(s.me), ss.plain(merged, s.me))
    return merged, len(recorded), changed, copies


def note_change(s: Session, changed: list[str], changes: dict[str, list[int]], flag: str, value: bool) -> None:
    """Journal a flag change made through gitmail on a clone that shares its state (one that has
    done a round): the events go into the local log at once, with their time, and the same change
    into the base, so that the next round keeps the order of what was done here (a message marked
    read and then unread again between two rounds ends unread, later than another machine's read).
    Caller holds the lock and has just written the state ref. ``changed``: Message-IDs whose flag
    moved; ``changes``: mailbox path -> ordinals of their copies."""
    from gitmail.core import state as statemod
    from gitmail.core import statesync as ss

    if s.repo.ref_target(refs.state_log(s.me)) is None:
        return
    from gitmail.core.model import is_message_id

    log = _local_log(s)
    events = ss.journal(sorted(m for m in changed if is_message_id(m)), flag, value, ss.next_clock(log), machine_id(s))
    base = statemod.update(_base(s), changes, flag, value)
    _put_blob(s, refs.state_base(s.me), _state_bytes(base))
    _put_blob(s, refs.state_log(s.me), ss.plain(ss.merge(log, events), s.me))


def _put_blob(s: Session, ref: str, data: bytes) -> None:
    oid = str(s.repo.pg.create_blob(data))
    old = s.repo.ref_target(ref)
    if old != oid:
        s.repo.set_ref(ref, oid, old, "gitmail: shared state")


def _state_bytes(st: "State") -> bytes:
    from gitmail.core.model import canonical_json

    return canonical_json(st.model_dump(mode="json"))


def _local_log(s: Session) -> "Log":
    """The merged log of the last round on this clone (empty when none, or unreadable: the local
    state ref and the org's copy hold everything it did)."""
    from gitmail.core import statesync as ss
    from gitmail.core.objects import blob_data

    oid = s.repo.ref_target(refs.state_log(s.me))
    if oid is None:
        return {}
    try:
        return ss.parse(blob_data(s.repo.pg, oid), s.me)
    except (ss.StateError, KeyError, TypeError):
        return {}


def _base(s: Session) -> "State":
    """The local state as the last round left it (empty before the first round)."""
    from gitmail.core.model import State
    from gitmail.core.objects import blob_data

    oid = s.repo.ref_target(refs.state_base(s.me))
    if oid is None:
        return State()
    try:
        return State.model_validate_json(blob_data(s.repo.pg, oid))
    except (ValueError, TypeError, KeyError):
        return State()


def _copies(s: Session) -> tuple[dict[tuple[str, int], str], dict[str, list[tuple[str, int]]]]:
    """``(mailbox path, ordinal) -> Message-ID`` and ``Message-ID -> copies`` of the member's inbox."""
    from gitmail.core import cache
    from gitmail.core.model import is_message_id

    ids: dict[tuple[str, int], str] = {}
    copies: dict[str, list[tuple[str, int]]] = {}
    for path, ordinal, mid in cache.inbox_copies(s.db):
        if is_message_id(mid):  # a corrupt commit's row carries its commit id instead: no flags shared
            ids[(path, ordinal)] = mid
            copies.setdefault(mid, []).append((path, ordinal))
    return ids, copies


def _result(s: Session, log: "Log", pushed: bool, recorded: int, changed: int,
            copies: dict[str, list[tuple[str, int]]], create: bool = True,
            replaced: Optional[str] = None) -> StateResult:
    path = refs.state_path(s.me)
    return StateResult(
        member=s.me, machine=machine_id(s, create), ref=refs.head(path),
        remote=s.repo.ref_target(refs.tracking(path, s.repo.remote)) if s.repo.remote else None,
        pushed=pushed, events=len(log), recorded=recorded, changed=changed,
        pending=sum(1 for mid, _ in log if mid not in copies), enabled=enabled(s), replaced=replaced,
    )
