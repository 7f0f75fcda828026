"""Packed mailboxes: a member's record of the inbox refs they have folded away (docs/protocol.md
§3, "Packed mailboxes").

``git push`` advertises every ref of the org repo to every pusher, so refs on the
server must grow with members, not with the (recipient, sender) pairs that ever
exchanged mail (docs/scale.md, "Pushes"). A member ``M`` whose org has
``packing`` on may *pack* a verified pair ``gitmail/mail/<M>/<S>``: record its tip
on ``M``'s **packed ref** ``refs/heads/gitmail/packed/<M>`` and delete the pair
ref on the server. Nothing is lost: the packed commit names the tip as a parent,
so every message stays reachable, and the pair's chain goes on from that tip
when ``S`` writes again.

The packed ref is a linear line of commits written and signed by ``M`` alone
(like the state ref, :mod:`gitmail.core.statesync`). Each commit's tree holds
exactly one file, ``mailboxes`` (:data:`MAP_FILE`): one line
``<ref-safe sender> SP <40 hex commit id> LF`` per packed pair, sorted by the
ref-safe name (bytes), no duplicates, no other bytes (:func:`parse`,
:func:`render`). Each commit's first parent is the previous packed commit (none
for the line's root, which has no parents and an empty map); its other parents
are exactly the commit ids of the entries it adds or moves, in map order. The
rules every reader and the guard check for a commit (:func:`step_problem`):

* signed by a key of ``M`` (the guard: ``M``'s current key);
* an entry is never removed, and a moved entry's new commit descends from its
  old one (first-parent line, no merge between);
* the extra parents are exactly the added and moved entries.

What a pair's tip is, once packed, and what may happen to its ref: the pair
ref, when it exists, must descend from its entry; without one, the entry is the
tip (:func:`effective_tip`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Iterable, Mapping, Optional

from gitmail.core import refs

if TYPE_CHECKING:
    import pygit2

    from gitmail.core.directory import Directory
    from gitmail.core.model import Member
    from gitmail.core.repo import Repo
    from gitmail.core.signing import Signer

MAP_FILE = "mailboxes"
COMMIT_MESSAGE = "gitmail packed\n"
# One line is at most 3 * 100 (a name's bytes, each escaped) + 1 + 40 + 1 bytes; 16 MiB holds
# over 40,000 senders at that worst case and 300,000 of ordinary names (docs/protocol.md §13).
MAX_BYTES = 16 * 1024 * 1024
_LINE = re.compile(rb"([A-Za-z0-9_%-]{1,300}) ([0-9a-f]{40})")


class PackedError(ValueError):
    """A ``mailboxes`` file or packed commit that breaks a rule of docs/protocol.md §3."""


def parse(data: bytes) -> dict[str, str]:
    """The map of a ``mailboxes`` file: sender address (normal form) -> commit id (40 hex).

    Strict (docs/protocol.md §3, "Packed mailboxes"): every line is
    ``<ref-safe sender> SP <oid> LF``, the last one included; the sender is a
    canonical ref-safe member name (not ``*``, not a group); lines sorted by
    that name's bytes, no name twice; at most :data:`MAX_BYTES`. Raises
    :class:`PackedError` with the first rule broken.
    """
    if len(data) > MAX_BYTES:
        raise PackedError(f"{MAP_FILE} is over {MAX_BYTES} bytes")
    if data and not data.endswith(b"\n"):
        raise PackedError(f"{MAP_FILE} does not end with a newline")
    out: dict[str, str] = {}
    last = b""
    for n, line in enumerate(data.split(b"\n")[:-1] if data else [], 1):
        m = _LINE.fullmatch(line)
        if m is None:
            raise PackedError(f"{MAP_FILE} line {n} is not '<sender> <commit id>'")
        raw, oid = m.group(1), m.group(2).decode()
        if raw <= last:
            raise PackedError(f"{MAP_FILE} line {n} is out of order or repeats a sender")
        last = raw
        name = refs.member_of(raw.decode("ascii"), "")
        if name is None:
            raise PackedError(f"{MAP_FILE} line {n} does not name a sender in canonical form")
        out[name] = oid
    return out


def render(entries: Mapping[str, str]) -> bytes:
    """The ``mailboxes`` file of ``entries`` (sender address -> commit id); :func:`parse` inverts it."""
    from gitmail.core.address import to_ref

    lines = sorted((to_ref(s).encode("ascii"), oid.encode("ascii")) for s, oid in entries.items())
    return b"".join(b"%s %s\n" % pair for pair in lines)


def changed(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """The commit ids of the entries ``new`` adds or moves against ``old``, in map order:
    the extra parents of the packed commit that goes from ``old`` to ``new``."""
    from gitmail.core.address import to_ref

    return [new[s] for s in sorted(new, key=lambda s: to_ref(s).encode("ascii")) if old.get(s) != new[s]]


def write_commit(pg: "pygit2.Repository", old: Mapping[str, str], new: Mapping[str, str], member: "Member",
                 signer: "Signer", parent: Optional[str]) -> str:
    """A packed commit signed by ``signer`` going from map ``old`` (on ``parent``) to ``new``.

    With no ``parent`` (the member's first), the line's root is written first: a
    commit with no parents and an empty map, so that a first parent is always the
    previous packed commit and never a recorded tip.
    """
    import time

    import pygit2

    from gitmail.core.objects import ident, signed_commit
    from gitmail.core.store import author_of

    who = ident(*author_of(member), int(time.time()))
    if parent is None and new:
        parent = write_commit(pg, {}, {}, member, signer, None)
        old = {}
    tb = pg.TreeBuilder()
    tb.insert(MAP_FILE, pg.create_blob(render(new)), pygit2.enums.FileMode.BLOB)
    parents = ([parent] if parent else []) + changed(old, new)
    return signed_commit(pg, who, who, COMMIT_MESSAGE, str(tb.write()), parents, signer.sign)


def read_map(pg: "pygit2.Repository", oid: Optional[str]) -> dict[str, str]:
    """The map on packed commit ``oid`` (empty for None). For a commit already verified
    (:func:`step_problem`); raises :class:`PackedError` when the tree is not one map."""
    if oid is None:
        return {}
    import pygit2

    from gitmail.core.objects import TooLargeError, blob_data, commit, only_entry

    c = commit(pg, oid)
    try:
        entry = only_entry(pg, c.tree_id, MAP_FILE)
    except ValueError as e:
        raise PackedError(f"commit {oid[:10]}: {e}") from None
    if entry is None or entry[0] != pygit2.enums.FileMode.BLOB:
        raise PackedError(f"commit {oid[:10]} must hold exactly one file, {MAP_FILE}")
    try:
        return parse(blob_data(pg, entry[1], MAX_BYTES))  # the size from the header first: never inflated past it
    except TypeError:
        raise PackedError(f"commit {oid[:10]}: {MAP_FILE} is not a file") from None
    except TooLargeError:
        raise PackedError(f"{MAP_FILE} is over {MAX_BYTES} bytes") from None


def tip_problem(pg: "pygit2.Repository", oid: str, keys: Iterable[str]) -> tuple[Optional[str], dict[str, str]]:
    """``(why packed commit oid cannot be taken as its owner's word, or None; its map)``:
    signed by one of ``keys`` and holding one well-formed map file. For a commit read alone
    (:func:`gitmail.core.sync.peeked`) that is all there is to check: a sender asks only
    what the owner signed for its own pair, and acts on an entry it does not know only after
    checking the line (:func:`line_problem`). Never raises for hostile objects."""
    import pygit2

    from gitmail.core.objects import load_commit
    from gitmail.core.signing import signer_of
    from gitmail.errors import VerificationError

    c = load_commit(pg, oid)
    if isinstance(c, str):
        return c, {}
    try:
        key = signer_of(c)
    except VerificationError as e:
        return f"commit {oid[:10]}: {e.message}", {}
    if key not in set(keys):
        return f"commit {oid[:10]} is not signed by the owner's key", {}
    try:
        return None, read_map(pg, oid)
    except PackedError as e:
        return f"commit {oid[:10]}: {e}", {}
    except KeyError:
        return f"commit {oid[:10]}: its {MAP_FILE} file is missing", {}
    except (ValueError, pygit2.GitError):
        return f"commit {oid[:10]}: its {MAP_FILE} file is unreadable", {}


def step_problem(pg: "pygit2.Repository", oid: str, keys: Iterable[str],
                 old: Mapping[str, str]) -> tuple[Optional[str], dict[str, str]]:
    """``(why packed commit oid breaks a rule, or None; its map)``, given the map ``old`` of
    its first parent (empty for a root). The rules are the module's: signed by one of
    ``keys``, one file (:func:`tip_problem`), no entry removed, moved entries move forward,
    extra parents exactly :func:`changed`. Never raises for hostile objects (a missing one
    is a problem too)."""
    from gitmail.core.objects import extends, parent_ids

    why, new = tip_problem(pg, oid, keys)
    if why is not None:
        return why, {}
    gone = sorted(set(old) - set(new))
    if gone:
        return f"commit {oid[:10]} drops the entry of {gone[0]!r}; entries are never removed", {}
    if parent_ids(pg, oid)[1:] != changed(old, new):
        return f"commit {oid[:10]}: its extra parents are not exactly the entries it adds or moves", {}
    for s, tip in new.items():
        before = old.get(s)
        try:
            forward = before is None or before == tip or extends(pg, tip, before)
        except KeyError:
            return f"commit {oid[:10]}: the entry of {s!r} names a missing commit", {}
        if not forward:
            return f"commit {oid[:10]} moves the entry of {s!r} backwards or sideways", {}
    return None, new


def line_problem(pg: "pygit2.Repository", old: Optional[str], new: str, keys: Iterable[str],
                 old_map: Optional[Mapping[str, str]] = None,
                 limit: Optional[int] = None) -> tuple[Optional[str], dict[str, str]]:
    """``(why old -> new is not a good advance of a packed ref, or None; the map at new)``.

    ``old`` (None: the ref is new) must be on ``new``'s first-parent line; every
    commit after it must pass :func:`step_problem`. ``old_map``: the map at
    ``old`` when the caller has it (else it is read). ``limit``: at most this many
    new commits (the guard's bound on one push). Work: one signature and one map
    per new commit.
    """
    from gitmail.core.objects import first_parent_line

    keys = list(keys)
    line: list[str] = []
    try:
        for oid, _ in first_parent_line(pg, new, old):
            line.append(oid)
            if limit is not None and len(line) > limit:
                return f"more than {limit} new commits in one push", {}
    except KeyError:
        return "a commit of the packed line is missing", {}
    if old is not None and line:
        from gitmail.core.objects import parent_ids

        try:
            below = parent_ids(pg, line[-1])
        except KeyError:
            return "a commit of the packed line is missing", {}
        if below[:1] != [old]:
            return "the packed ref was rewritten (not a fast-forward)", {}
    cur = dict(old_map) if old_map is not None else trusted_map(pg, old)
    for oid in reversed(line):
        why, cur = step_problem(pg, oid, keys, cur)
        if why:
            return why, {}
    return None, cur


def trusted_map(pg: "pygit2.Repository", oid: Optional[str]) -> dict[str, str]:
    """The map on a packed commit that was verified when it was accepted (a verified ref, the
    guard's accepted tip); {} for None or for one that does not read (never accepted)."""
    import pygit2

    try:
        return read_map(pg, oid)
    except (PackedError, KeyError, TypeError, ValueError, pygit2.GitError):  # missing, not a commit, unreadable
        return {}


def owner_of(path: str) -> Optional[str]:
    """The member whose packed path ``path`` (``gitmail/packed/<ref-safe name>``) is, when canonical."""
    return refs.member_of(path, refs.PACKED)


def effective_tip(pg: "pygit2.Repository", ref_tip: Optional[str], entry: Optional[str]) -> tuple[Optional[str], bool]:
    """``(the tip a reader takes for a pair, whether the pair ref broke the packed rule)``.

    No entry: the ref's tip. An entry and no ref: the entry. Both: the ref when it
    is the entry or descends from it, else the entry (and True: the pair ref was
    re-created or rewritten off its packed tip, which readers report).
    """
    from gitmail.core.objects import extends

    if entry is None or ref_tip == entry:
        return ref_tip if ref_tip is not None else entry, False
    if ref_tip is None:
        return entry, False
    try:
        if extends(pg, ref_tip, entry):
            return ref_tip, False
    except KeyError:
        pass
    return entry, True


# -- what a clone reads ----------------------------------------------------------------------------


def advance(repo: "Repo", member: str, directory: "Directory") -> tuple[dict[str, str], list[str]]:
    """Verify ``member``'s fetched packed ref from its last verified tip; return ``(the map
    in force, problems)``.

    The remote-tracking ``gitmail/packed/<member>`` must be a good advance of
    ``refs/gitmail/verified/packed/<member>`` (:func:`line_problem`, signed by a
    key of the member that is not revoked); then the verified ref moves to it. A
    rewrite, a deletion on the server or a bad commit is reported and the
    verified map stays in force (nothing packed is ever forgotten). Work: nothing
    but one map read when nothing moved.
    """
    path = refs.packed_path(member)
    vref = refs.verified(path)
    old = repo.ref_target(vref)
    tip = repo.ref_target(refs.tracking(path, repo.remote))
    if tip == old or tip is None:
        problems = [] if tip == old else [f"{path}: deleted on the org repo; kept the verified copy"]
        return (trusted_map(repo.pg, old) if old else {}), problems
    m = directory.members.get(member)
    if m is None:
        return trusted_map(repo.pg, old), []
    why, new_map = line_problem(repo.pg, old, tip, m.all_keys())
    if why:
        return trusted_map(repo.pg, old), [f"{path}: {why}; kept the verified copy"]
    with repo.lock():
        repo.set_ref(vref, tip, repo.ref_target(vref), "gitmail: verified")
    return new_map, []


def effective_tips(pg: "pygit2.Repository", tracking: str, owner: str, entries: Mapping[str, str],
                   current: dict[str, str]) -> list[str]:
    """Put the packed pairs of ``owner`` into ``current`` (full remote-tracking ref -> tip, the
    refs a reader walks), each at :func:`effective_tip`; return the problems (a pair ref
    re-created or rewritten off its packed tip: the packed tip is read instead)."""
    problems = []
    for sender, entry in entries.items():
        path = refs.mail_path(owner, sender)
        full = tracking + path
        tip, broke = effective_tip(pg, current.get(full), entry)
        if broke:
            problems.append(f"{path}: does not continue from its packed tip {entry[:10]} "
                            "(re-created or rewritten on the org repo); read up to the packed tip")
        if tip is not None:
            current[full] = tip
    return problems
