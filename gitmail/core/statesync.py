"""A member's read/archive state shared between their machines (docs/protocol.md §10, "Shared state").

The local state ref (:mod:`gitmail.core.state`) stays the source of truth. This
module defines what travels between a member's clones through the org repo:

* an **event log**: for each ``(Message-ID, flag)`` the winning :class:`Event`
  (``value`` set or unset, a Lamport ``clock`` and the writing ``machine``).
  Events are ordered by :func:`order` = ``(clock, machine, value)``; the
  merge of two logs keeps, per key, the greater event (:func:`merge`: a
  last-writer-wins map, so merging is commutative, associative and idempotent
  and no machine's change is lost unless a later event overrides it);
* its **encoding** (:func:`encode` / :func:`decode`): canonical JSON padded
  with spaces to a power of two, sealed with age to the member's own
  encryption key;
* the **shared ref** ``refs/heads/gitmail/state/<member>``: a linear line of
  commits signed by the member, each with one file ``state.age``
  (:func:`write_commit`, :func:`read_commit`), and what the guard accepts
  there (:func:`guard_problems`);
* how a local :class:`~gitmail.core.model.State` turns into events
  (:func:`record`) and a log back into a State (:func:`apply`).
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Mapping, Optional, Sequence

from gitmail.core import refs
from gitmail.core.model import MailboxState, State, canonical_json
from gitmail.core.state import expand, normalize_ranges
from gitmail.errors import StateError, VerificationError

if TYPE_CHECKING:
    import pygit2

    from gitmail.core.model import Member
    from gitmail.core.signing import Signer

FLAGS = ("read", "archived")
STATE_FILE = "state.age"
SCHEMA = 1
MAX_BYTES = 64 * 1024 * 1024  # state.age (and its plaintext) at most; docs/protocol.md §13
MAX_CLOCK = 2**53 - 1  # exact in every JSON implementation
MAX_DEPTH = 4  # {"events":[{...}]} nests 3 deep; anything deeper is not a state log
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_MACHINE = re.compile(r"^[0-9a-f]{16}$")
COMMIT_MESSAGE = "gitmail state\n"


@dataclass(frozen=True)
class Event:
    """One flag change: ``flag`` of message ``id`` set to ``value`` by ``machine`` at Lamport time ``clock``."""

    id: str
    flag: str
    value: bool
    clock: int
    machine: str

    @property
    def key(self) -> tuple[str, str]:
        return self.id, self.flag


Log = dict[tuple[str, str], Event]


def order(e: Event) -> tuple[int, str, bool]:
    """The total order of events on one key: later clock, then greater machine id, then set over unset."""
    return e.clock, e.machine, e.value


def merge(*logs: Mapping[tuple[str, str], Event]) -> Log:
    """The union of ``logs``: per ``(id, flag)`` the greatest event by :func:`order`."""
    out: Log = {}
    for log in logs:
        for k, e in log.items():
            cur = out.get(k)
            if cur is None or order(e) > order(cur):
                out[k] = e
    return out


def clock(log: Mapping[tuple[str, str], Event]) -> int:
    """The greatest clock in ``log`` (0 when empty)."""
    return max((e.clock for e in log.values()), default=0)


def next_clock(*logs: Mapping[tuple[str, str], Event], now_ms: Optional[int] = None) -> int:
    """The clock of a new event: above every clock in ``logs`` and at least the wall clock in
    milliseconds (a hybrid logical clock: causally later events always order later, and of two
    machines' independent changes the one made later by the wall clock usually wins)."""
    import time

    wall = int(time.time() * 1000) if now_ms is None else now_ms
    return min(MAX_CLOCK, max(max((clock(g) for g in logs), default=0) + 1, wall))


def values(log: Mapping[tuple[str, str], Event]) -> dict[tuple[str, str], bool]:
    """``(id, flag) -> value``: the state the log stands for (keys without an event: unset)."""
    return {k: e.value for k, e in log.items()}


# -- encoding -----------------------------------------------------------------------------------


def plain(log: Mapping[tuple[str, str], Event], member: str) -> bytes:
    """The canonical JSON of ``log`` (events sorted by id, then flag)."""
    events = [{"clock": e.clock, "flag": e.flag, "id": e.id, "machine": e.machine, "value": e.value}
              for _, e in sorted(log.items())]
    return canonical_json({"events": events, "member": member, "schema_version": SCHEMA}, may_float=False)


def parse(data: bytes, member: str) -> Log:
    """The log in ``data`` (:func:`plain`, optionally followed by space padding).

    Raises :class:`StateError` (one line) for anything else: over
    :data:`MAX_BYTES`, not UTF-8 JSON, nested deeper than :data:`MAX_DEPTH`, not the
    schema, another member's log, an event with a malformed field, or a key twice.
    """
    from gitmail.core.model import _depth_over, strict_json

    def refuse(why: str) -> StateError:
        return StateError(f"the shared read state is not usable: {why}")

    if len(data) > MAX_BYTES:
        raise refuse(f"over {MAX_BYTES} bytes")
    data = data.rstrip(b" ")
    if _depth_over(data, MAX_DEPTH):
        raise refuse(f"nested deeper than {MAX_DEPTH} levels")

    try:
        raw = strict_json(data, floats=False)
    except ValueError as e:
        raise refuse(f"not JSON ({e})") from None
    if not isinstance(raw, dict) or set(raw) != {"events", "member", "schema_version"}:
        raise refuse("not a state log (expected the keys events, member, schema_version)")
    if raw["schema_version"] != SCHEMA or isinstance(raw["schema_version"], bool):
        raise refuse(f"unknown schema_version {str(raw['schema_version'])[:20]!r}")
    if raw["member"] != member:
        raise refuse(f"it is not {member}'s state")
    if not isinstance(raw["events"], list):
        raise refuse("events is not a list")
    out: Log = {}
    for i, ev in enumerate(raw["events"]):
        event = _event(ev)
        if event is None:
            raise refuse(f"event {i} is malformed")
        if event.key in out:
            raise refuse(f"event {i} repeats the message and flag of another")
        out[event.key] = event
    return out


def _event(ev: object) -> Optional[Event]:
    if not isinstance(ev, dict) or set(ev) != {"clock", "flag", "id", "machine", "value"}:
        return None
    c, f, i, m, v = ev["clock"], ev["flag"], ev["id"], ev["machine"], ev["value"]
    if not (isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= MAX_CLOCK):
        return None
    if f not in FLAGS or not isinstance(v, bool):
        return None
    if not (isinstance(i, str) and _HEX64.match(i) and isinstance(m, str) and _MACHINE.match(m)):
        return None
    return Event(i, f, v, c, m)


def encode(log: Mapping[tuple[str, str], Event], member: str, key_line: str) -> bytes:
    """``state.age``: :func:`plain` padded with spaces to a power of two (at least 1 KiB), sealed to ``key_line``."""
    from gitmail.core import crypto

    p = plain(log, member)
    return crypto.seal(p + b" " * (crypto.bucket(len(p)) - len(p)), [key_line])


def decode(cipher: bytes, member: str, identities: Sequence[object]) -> Log:
    """Open ``state.age`` with the member's identities and :func:`parse` it. Raises :class:`StateError`."""
    from gitmail.core import crypto
    from gitmail.errors import GitmailError

    if len(cipher) > MAX_BYTES:
        raise StateError(f"the shared read state is not usable: over {MAX_BYTES} bytes")
    try:
        data = crypto.open_(cipher, identities, [member])
    except crypto.NotARecipientError:
        # Sealed to the member alone, so to a key of theirs this machine does not hold: rotated
        # on another machine (a key of someone else's is the guard's and the signature's case).
        raise StateError(f"the shared read state is sealed to a key of {member}'s this machine does not hold "
                         "(rotated on another machine? 'gitmail sync' then says so; copy the new key here)") from None
    except GitmailError as e:
        raise StateError(f"the shared read state cannot be decrypted: {e.message}") from None
    return parse(data, member)


# -- age header: to whom a ciphertext is sealed (checked by the guard, which cannot decrypt) --------

_RECIPIENT_TYPES = {"X25519", "scrypt", "ssh-rsa", "ssh-ed25519"}


def key_tag(key_line: str) -> str:
    """age's ``ssh-ed25519`` stanza tag of a key: unpadded base64 of the first 4 bytes of sha256(key blob)."""
    from gitmail.core.signing import parse_public_key, public_key_line

    blob = base64.b64decode(public_key_line(parse_public_key(key_line)).split()[1])
    return base64.b64encode(hashlib.sha256(blob).digest()[:4]).decode().rstrip("=")


def sealed_problem(cipher: bytes, key_line: str) -> Optional[str]:
    """Why ``cipher`` is not an age file sealed to ``key_line`` alone, or None.

    Reads the header only (up to the ``---`` line): the version line must be
    ``age-encryption.org/v1``; every stanza of a recipient type the age spec
    defines (X25519, scrypt, ssh-rsa, ssh-ed25519) must be ``ssh-ed25519`` with
    the key's tag, and there must be at least one.
    """
    head = cipher[:64 * 1024]
    lines = head.split(b"\n")
    if not lines or lines[0] != b"age-encryption.org/v1":
        return "not an age file (age-encryption.org/v1)"
    tag = key_tag(key_line)
    ours = 0
    for ln in lines[1:]:
        if ln.startswith(b"---"):
            return None if ours else "not sealed to the owner's encryption key"
        if not ln.startswith(b"-> "):
            continue
        args = ln[3:].decode("ascii", "replace").split(" ")
        if args[0] == "ssh-ed25519" and len(args) > 1 and args[1] == tag:
            ours += 1
        elif args[0] in _RECIPIENT_TYPES:
            return "sealed to a key that is not the owner's encryption key"
    return "not an age file (no header end)"


# -- the shared ref -------------------------------------------------------------------------------


def write_commit(pg: "pygit2.Repository", cipher: bytes, member: "Member", signer: "Signer",
                 parent: Optional[str]) -> str:
    """A commit signed by ``signer`` whose tree holds only ``state.age`` = ``cipher``, on ``parent``."""
    import time

    import pygit2

    from gitmail.core.objects import ident, signed_commit
    from gitmail.core.store import author_of

    tb = pg.TreeBuilder()
    tb.insert(STATE_FILE, pg.create_blob(cipher), pygit2.enums.FileMode.BLOB)
    who = ident(*author_of(member), int(time.time()))
    return signed_commit(pg, who, who, COMMIT_MESSAGE, str(tb.write()), [parent] if parent else [], signer.sign)


def commit_problem(pg: "pygit2.Repository", oid: str, keys: Iterable[str]) -> "tuple[Optional[str], bytes]":
    """``(why commit oid is not a state commit signed by one of keys, or None; its state.age bytes)``.

    A state commit has at most one parent, a good signature by one of ``keys``
    and a tree of exactly one blob, ``state.age``, of at most :data:`MAX_BYTES`.
    """
    from gitmail.core.objects import TooLargeError, blob_data, load_commit, only_entry
    from gitmail.core.signing import signer_of

    c = load_commit(pg, oid)
    if isinstance(c, str):
        return c, b""
    if len(c.parent_ids) > 1:
        return f"commit {oid[:10]} is a merge; the state line is linear", b""
    try:
        key = signer_of(c)
    except VerificationError as e:
        return f"commit {oid[:10]}: {e.message}", b""
    if key not in set(keys):
        return f"commit {oid[:10]} is not signed by the owner's key", b""
    try:
        entry = only_entry(pg, c.tree_id, STATE_FILE)
    except (ValueError, KeyError, TypeError) as e:
        return f"commit {oid[:10]}: {e}", b""
    if entry is None:
        return f"commit {oid[:10]} must hold exactly one file, {STATE_FILE}", b""
    try:
        return None, blob_data(pg, entry[1], MAX_BYTES)  # the size from the header first: never inflated past it
    except TypeError:
        return f"commit {oid[:10]}: {STATE_FILE} is not a file", b""
    except TooLargeError:
        return f"commit {oid[:10]}: {STATE_FILE} is over {MAX_BYTES} bytes", b""


def read_commit(pg: "pygit2.Repository", oid: str, member: "Member", identities: Sequence[object],
                replaceable: bool = False) -> "tuple[Log, Optional[str]]":
    """``(the log on the shared state commit oid of member, None)``.

    Checks before decrypting (:func:`commit_problem`: signed by a key of the
    member that is not revoked, one file); raises :class:`StateError`. With
    ``replaceable`` (a push round), a tip that is no state commit of the member's
    (unsigned, another key, not one file, too large) gives ``(log, why)`` instead,
    ``log`` the merged logs of the member's newest state commits under it
    (:func:`_under`): the round writes the member's log on top of it, a
    fast-forward (readers read only the tip), where before every later round
    failed on it until an admin deleted the ref. Content that is the member's own but cannot be read here
    (sealed to a key this clone lacks) is refused either way.
    """
    why, cipher = commit_problem(pg, oid, member.all_keys())
    if why and replaceable:
        return _under(pg, oid, member, identities), why
    if why:
        raise StateError(f"the shared read state on {refs.head(refs.state_path(member.name))} is not usable: {why}")
    return decode(cipher, member.name, identities), None


WALK_MAX = 256  # commits looked at under a tip that is no state commit of the member's
WALK_COMMIT_MAX = 64 * 1024  # bytes of a commit looked at there (a genuine state commit takes about 1 KB)


def _under(pg: "pygit2.Repository", oid: str, member: "Member", identities: Sequence[object]) -> Log:
    """The merged logs of the member's newest state commits under ``oid`` (itself none): junk
    pushed on top of the genuine tip where no guard runs hides another machine's events, and
    replacing it must not drop them. Walks parents breadth-first, not past a state commit of the
    member's; parents as git reads them (:func:`gitmail.core.objects.parent_ids`). Bounded
    whatever the junk: at most :data:`WALK_MAX` commits are ever queued (a commit may name
    thousands of parents), each read only when at most :data:`WALK_COMMIT_MAX` bytes, and
    :data:`MAX_BYTES` of ``state.age`` in all; a missing, larger or unreadable commit ends its
    branch. A state commit of the member's that cannot be opened here raises
    :class:`StateError`, as at the tip."""
    from collections import deque

    import pygit2

    from gitmail.core.objects import COMMIT, TooLargeError, object_size, parent_ids

    keys = member.all_keys()
    logs: list[Log] = []
    budget = MAX_BYTES  # what one tip may cost: a junk merge naming every old state commit buys no more
    seen = {oid}
    todo: deque[str] = deque()

    def small(o: str) -> bool:
        try:
            object_size(pg, o, COMMIT, WALK_COMMIT_MAX)
            return True
        except (KeyError, TypeError, ValueError, TooLargeError, pygit2.GitError):
            return False

    def queue_parents(o: str) -> None:  # o: a commit small() passed
        try:
            found = parent_ids(pg, o)  # as git reads them: a commit libgit2 refuses hides nothing
        except KeyError:
            return
        for p in found:
            if len(seen) >= WALK_MAX:
                return
            if p not in seen:
                seen.add(p)
                todo.append(p)

    if small(oid):
        queue_parents(oid)
    while todo:
        o = todo.popleft()
        if not small(o):
            continue
        why, cipher = commit_problem(pg, o, keys)
        if why is None:
            budget -= len(cipher)
            if budget < 0:
                break
            logs.append(decode(cipher, member.name, identities))
        else:
            queue_parents(o)
    return merge(*logs)


def guard_problems(pg: "pygit2.Repository", ref: str, old: Optional[str], new: Optional[str],
                   members: Mapping[str, "Member"], linear: "Optional[str]") -> list[str]:
    """Why the guard refuses the update ``old -> new`` of the state ref ``ref`` (empty: accept).

    ``members``: the directory after the push; ``linear``: the guard's
    fast-forward verdict for the update (None when it is one). The owner is the
    member named by the ref (canonical ref-safe form); every new commit must be
    signed by the owner's current key, hold only ``state.age`` and seal it to
    the owner's encryption key alone (:func:`sealed_problem`). Deleting is refused.
    """
    owner = owner_of(ref[len(refs.HEADS):])
    if owner is None or owner not in members:
        return [f"{ref}: not the state ref of a member (gitmail/state/<member>)"]
    if new is None:
        return [f"{ref}: deleting a member's state is not allowed"]
    if linear:
        return [linear]
    m = members[owner]
    if not m.encryption_key:
        return [f"{ref}: {owner} has published no encryption key; the state must be sealed to it"]
    from gitmail.core.objects import first_parent_line

    errors = []
    for oid, _ in first_parent_line(pg, new, old):
        why, cipher = commit_problem(pg, oid, [m.signing_key])
        if why is None:
            why = sealed_problem(cipher, m.encryption_key)
        if why:
            errors.append(f"{ref}: {why}")
    return errors


def owner_of(path: str) -> Optional[str]:
    """The member whose state path ``path`` (``gitmail/state/<ref-safe name>``) is, when canonical."""
    return refs.member_of(path, refs.STATE_SHARED)


# -- local state <-> events ------------------------------------------------------------------------


def record(local: State, base: State, ids: Mapping[tuple[str, int], str], now: int, machine: str) -> Log:
    """The events of what changed locally since ``base`` (the state last applied on this machine).

    ``ids``: (mailbox path, ordinal) -> Message-ID of the member's inbox copies.
    Every message with a copy whose ``flag`` differs between ``local`` and
    ``base`` gets one event at clock ``now``; its value is whether any copy
    has the flag in ``local``. Copies the cache does not know are skipped.
    """
    out: Log = {}
    for flag in FLAGS:
        have = positions(local, flag)
        had = positions(base, flag)
        touched = {ids[p] for p in have ^ had if p in ids}
        if not touched:
            continue
        on = {ids[p] for p in have if p in ids}
        for mid in sorted(touched):
            out[(mid, flag)] = Event(mid, flag, mid in on, now, machine)
    return out


def journal(ids: Iterable[str], flag: str, value: bool, now: int, machine: str) -> Log:
    """The events of a flag change made through gitmail (``mark``, ``archive``, ``read``) at clock ``now``."""
    return {(mid, flag): Event(mid, flag, value, now, machine) for mid in ids}


def positions(st: State, flag: str) -> set[tuple[str, int]]:
    """Every ``(mailbox path, ordinal)`` that has ``flag`` in ``st``."""
    return {(path, o) for path, mb in st.mailboxes.items() for o in expand(getattr(mb, flag))}


def apply(local: State, log: Mapping[tuple[str, str], Event], copies: Mapping[str, list[tuple[str, int]]]) -> State:
    """``local`` with every message of ``copies`` (Message-ID -> its inbox copies) set as ``log`` says.

    Messages without an event keep their local flags; events of messages this
    clone does not have are kept in the log and applied once they arrive.
    """
    pos = {flag: positions(local, flag) for flag in FLAGS}
    for (mid, flag), e in log.items():
        for p in copies.get(mid, ()):
            (pos[flag].add if e.value else pos[flag].discard)(p)
    by_path: dict[str, dict[str, list[int]]] = {}
    for flag in FLAGS:
        for path, o in pos[flag]:
            by_path.setdefault(path, {"read": [], "archived": []})[flag].append(o)
    out = State.model_validate(local.model_dump())
    out.mailboxes = {path: MailboxState(read=normalize_ranges(f["read"]), archived=normalize_ranges(f["archived"]))
                     for path, f in sorted(by_path.items())}
    return out


def same_flags(a: State, b: State) -> bool:
    """Whether ``a`` and ``b`` set the same flags (empty mailbox entries aside)."""
    return all(positions(a, flag) == positions(b, flag) for flag in FLAGS)
