"""The org directory: members, groups and policy on ``refs/heads/gitmail/directory``.

Tree layout (docs/protocol.md §8, "Directory"): ``org.json``, the member entries,
``groups/<ref-safe name>.json`` and ``allowed_signers`` (generated from the members,
for auditors using stock git). Layout 1 (flat, orgs made before layout 2) keeps
``members/<ref-safe name>.json`` and one ``allowed_signers`` file; layout 2 (fan-out,
``org.json`` ``directory_layout``) keeps ``members/<shard>/<ref-safe name>.json`` and
``allowed_signers/<shard>``, so a commit rewrites about 1/256 of them instead of all.
Every commit is signed; the rules in :func:`check_change` decide which changes a
signer may make.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional, Sequence, TypeVar, cast

from gitmail.core import problems, refs, refspecs, treediff
from gitmail.core.address import (BROADCAST, GROUP_PREFIX, from_ref, ignorable, is_mixed_script, normalize, principal,
                                  reserved_lookalike, skeleton, to_ref)
from gitmail.core.files import write_atomic
from gitmail.core.model import Group, Member, OrgPolicy, canonical_json
from gitmail.core.objects import (TREE_MODE, blob_data, commit, file_entry, first_parent_line, object_id, on_line,
                                  signed_commit, tree_entries, unfollowed)
from gitmail.core.objects import tree as objtree
from gitmail.core.signing import Signer, check_stored_key, signer_of
from gitmail.errors import (AddressError, DirectoryError, KeyError_, NotInitializedError, UnknownRecipientError,
                            VerificationError)

if TYPE_CHECKING:
    import pygit2
    from pydantic import BaseModel

    from gitmail.core.repo import Repo

M = TypeVar("M", bound="BaseModel")


FLAT, FANOUT = 1, 2  # directory layouts (org.json ``directory_layout``; docs/protocol.md §8, "Layouts")


def shard(name: str) -> str:
    """The fan-out folder of member ``name`` in layout 2: the first two lowercase hex digits of
    SHA-256 of the name's UTF-8 (docs/protocol.md §8, "Layouts")."""
    import hashlib

    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:2]


def member_file(name: str, layout: int) -> str:
    """The path of member ``name``'s entry under ``members/``: ``<ref-safe name>.json`` in
    layout 1, ``<shard>/<ref-safe name>.json`` in layout 2."""
    f = to_ref(name) + ".json"
    return f if layout == FLAT else f"{shard(name)}/{f}"


def signers_files(members: dict[str, Member], layout: int) -> dict[str, bytes]:
    """The ``allowed_signers`` files of ``members`` as path -> content: ``allowed_signers``
    (layout 1), or ``allowed_signers/<shard>`` for each shard holding a member (layout 2),
    each the lines of its members sorted by name (code points), docs/protocol.md §7, §8."""
    if layout == FLAT:
        return {"allowed_signers": b"".join(_signers_lines(n, members[n]) for n in sorted(members))}
    return {f"allowed_signers/{s}": b"".join(_signers_lines(n, members[n]) for n in names)
            for s, names in sorted(_by_shard(members).items())}


def _by_shard(names: "Iterable[str]") -> dict[str, list[str]]:
    """Layout 2: shard -> the names in it, sorted by code point."""
    out: dict[str, list[str]] = {}
    for n in sorted(names):
        out.setdefault(shard(n), []).append(n)
    return out


def _shard_oids(members: dict[str, Member], hexlen: int) -> dict[str, str]:
    """Layout 2: shard -> the blob id of its ``allowed_signers`` file (:func:`signers_files`)."""
    return {p.rpartition("/")[2]: _blob_oid(t, hexlen) for p, t in signers_files(members, FANOUT).items()}


@dataclass
class Directory:
    """A snapshot of the directory at one commit (``tip``; None when empty)."""

    tip: Optional[str] = None
    members: dict[str, Member] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    policy: OrgPolicy = field(default_factory=OrgPolicy)
    # The widest body_limit of the verified history up to ``tip`` (bytes; 0: not known, the
    # policy's): what a reader checks a body against (docs/protocol.md §13).
    body_limit_read: int = 0
    # The verified ledger this snapshot was read from (:func:`load`, :func:`verify_range`), if any.
    _ledger: Optional["Ledger"] = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_key = {k: m for m in self.members.values() for k in m.owned_keys()}

    @property
    def read_body_limit(self) -> int:
        """The body limit a reader applies (bytes): the largest ``body_limit`` the org's policy
        had in any verified directory commit up to ``tip``, so lowering it never makes mail
        sent before unreadable (docs/protocol.md §13, as for the attachment limits,
        :func:`gitmail.core.attachments.read_bounds`). The guard and the writer apply
        ``policy.body_limit``: the limit in force for what is sent now."""
        return max(self.body_limit_read, self.policy.body_limit)

    def member_by_key(self, key: str) -> Optional[Member]:
        return self._by_key.get(key)

    def member(self, name: str) -> Member:
        """The member called ``name``. Raises :class:`UnknownRecipientError`."""
        m = self.members.get(name)
        if m is None:
            raise UnknownRecipientError(f"unknown member {name!r} (see 'gitmail members')")
        return m

    def expand(self, recipients: "Sequence[str]") -> set[str]:
        """The member names ``recipients`` reach: ``*`` is every member, ``team:NAME`` the
        group's members that the directory holds now (none for a group it does not hold: an
        admin who removes a member with plain git may leave the name in a group, and mail to
        the group must neither be sealed to it nor wait for its receipt), a name itself.
        The one recipient expansion (readers of encrypted mail, who owes an ack)."""
        out: set[str] = set()
        for r in recipients:
            if r == BROADCAST:
                out |= set(self.members)
            elif r.startswith(GROUP_PREFIX):
                g = self.groups.get(r[len(GROUP_PREFIX):])
                out |= {n for n in g.members if n in self.members} if g else set()
            else:
                out.add(r)
        return out

    def groups_of(self, name: str) -> list[str]:
        """Group addresses (``team:NAME``) that list member ``name``."""
        return [GROUP_PREFIX + g.name for g in self.groups.values() if name in g.members]

    def held(self, name: str) -> bool:
        """Whether a member holds or held ``name`` (:meth:`names_ever` without building the set)."""
        return name in self.members or (self._ledger is not None and name in self._ledger.versions)

    def names_ever(self) -> set[str]:
        """Every member name this directory holds or held (a removed member's refs stay)."""
        return set(self.members) | (set(self._ledger.versions) if self._ledger is not None else set())

    def groups_if_member(self, name: str) -> Optional[list[str]]:
        """:meth:`groups_of` for a member, None for a name that is not one."""
        return self.groups_of(name) if name in self.members else None

    def resolve(self, address: str) -> str:
        """Normalise a recipient address and check the directory knows it.

        Raises :class:`UnknownRecipientError` / :class:`AddressError`.
        """
        if address == BROADCAST:
            return BROADCAST
        if address.startswith(GROUP_PREFIX):
            g = address[len(GROUP_PREFIX) :]
            if g not in self.groups:
                raise UnknownRecipientError(f"unknown group {address!r}")
            return address
        return self.member(normalize(address)).name

    def key_problem(self, pg: "pygit2.Repository", key: str, commit_id: str, recipient: str, sender: str) -> Optional[str]:
        """Why ``key`` may not sign message commit ``commit_id`` on mailbox ``recipient``/``sender``, or None.

        The current key is always valid; a revoked key never; a retired key only
        for a commit at or below the tip of that mailbox recorded in the
        member's ``retired`` map when the key was retired (docs/protocol.md §8).
        """
        m = self._by_key.get(key)
        if m is None or key == m.signing_key:
            return None
        if key in m.revoked_keys:
            return f"signed with a revoked key of {m.name}"
        tip = m.retired.get(key, {}).get(refs.mail_path(recipient, sender))
        if tip is not None and on_line(pg, tip, commit_id):
            return None
        return f"signed with a key {m.name} retired before this message was sent"

    def entries_of(self, pg: "pygit2.Repository", name: str) -> list[Member]:
        """Every version of member ``name``'s entry up to this directory's tip, the current one
        first (docs/protocol.md §6: a message commit's author is rendered from one of them)."""
        current = [self.members[name]] if name in self.members else []
        if not self.tip:
            return current
        L = self._ledger
        if L is not None and L.tip == self.tip:
            return current + L.entry_versions(pg, name)
        return current + entry_history(pg, self.tip).get(name, [])

    def allowed_signers(self) -> str:
        """The allowed-signers file (ssh-keygen(1) ALLOWED SIGNERS), docs/protocol.md §8.

        One line per member key, current then retired (revoked keys are left
        out), members sorted by name (code points): ``"<name>" namespaces="git"
        ssh-ed25519 <base64>`` and a newline. Raises :class:`AddressError` for
        a name that cannot be quoted literally (never in a validated directory).
        """
        L = self._ledger
        if L is not None and L.tip == self.tip and L.members == self.members:
            return L.signers_text().decode("utf-8")
        return signers_files(self.members, FLAT)["allowed_signers"].decode("utf-8")

    def files(self) -> dict[str, bytes]:
        """The directory's tree as path -> content, in the layout its policy names."""
        layout = self.policy.directory_layout
        out = {"org.json": canonical_json(self.policy.model_dump(mode="json"))}
        for name, m in self.members.items():
            out["members/" + member_file(name, layout)] = canonical_json(m.stored())
        for name, g in self.groups.items():
            out[f"groups/{to_ref(name)}.json"] = canonical_json(g.model_dump(mode="json"))
        out.update(signers_files(self.members, layout))  # AddressError: a principal that cannot be written
        return out


def _member_blobs(pg: "pygit2.Repository", members_tree: str, layout: int) -> Iterator[tuple[str, str]]:
    """(path under ``members/``, object id) of every member file, in tree order, each folder
    read in git's own form (:func:`gitmail.core.objects.tree_entries`). Raises ``ValueError``
    for an entry of ``members/`` that is not a fan-out folder in layout 2, or a folder not in
    git's form."""
    for mode, name, oid in tree_entries(pg, members_tree):
        if layout == FLAT:
            yield name, oid
            continue
        if mode != TREE_MODE:
            raise ValueError(f"members/{name} is not a fan-out folder")
        for _, f, foid in tree_entries(pg, oid):
            yield f"{name}/{f}", foid


def signers_oid(members: dict[str, Member], layout: int, hexlen: int) -> str:
    """The object id ``allowed_signers`` must have in a tree holding ``members``: the blob of
    the file (layout 1) or the tree of its shards (layout 2), hashed with the repository's
    object format (``hexlen`` 40: SHA-1, 64: SHA-256)."""
    if layout == FLAT:
        return _blob_oid(signers_files(members, layout)["allowed_signers"], hexlen)
    return _tree_oid(_shard_oids(members, hexlen), hexlen)


def from_tree(pg: "pygit2.Repository", commit: "pygit2.Commit") -> Directory:
    """Parse the directory at ``commit``. Raises :class:`VerificationError` if malformed."""
    try:
        # sized first (a tree over objects.MAX_TREE is not read) and in git's own form
        tree = {name: (mode, oid) for mode, name, oid in tree_entries(pg, commit.tree_id)}
    except (ValueError, KeyError, TypeError) as why:
        raise VerificationError(f"malformed directory at {str(commit.id)[:10]}: {why}") from None
    try:
        policy = parse_file(OrgPolicy, blob_data(pg, tree["org.json"][1])) if "org.json" in tree else OrgPolicy()
        layout = policy.directory_layout
        members: dict[str, Member] = {}
        if "members" in tree:
            for path, oid in _member_blobs(pg, tree["members"][1], layout):
                m = parse_file(Member, blob_data(pg, oid))
                if path != member_file(m.name, layout):
                    raise ValueError(f"member file {path} does not match its name")
                members[m.name] = m
        groups: dict[str, Group] = {}
        if "groups" in tree:
            for _, gname, goid in tree_entries(pg, tree["groups"][1]):
                g = parse_file(Group, blob_data(pg, goid))
                if gname != to_ref(g.name) + ".json":
                    raise ValueError(f"group file {gname} does not match its name")
                groups[g.name] = g
        d = Directory(str(commit.id), members, groups, policy)
        validate(d)
    except (ValueError, KeyError, TypeError, DirectoryError, AddressError, KeyError_) as e:
        raise VerificationError(f"malformed directory at {str(commit.id)[:10]}: {str(e).splitlines()[0]}") from None
    se = tree.get("allowed_signers")
    if se is None or (se[0] == TREE_MODE) != (layout == FANOUT) \
            or se[1] != signers_oid(d.members, layout, len(str(commit.id))):
        raise VerificationError(f"directory at {str(commit.id)[:10]}: allowed_signers does not match the members")
    return d


# -- the directory entry grammar (docs/protocol.md §8), checked on every read and write --

MAX_DISPLAY_NAME = 200  # bytes of UTF-8
MAX_EMAIL = 254  # bytes of UTF-8
MAX_KEYS = 1000  # keys (current, retired, revoked) in one entry
MAX_UNKNOWN = 4096  # bytes of the fields this version does not know, in one directory file (§8)


def parse_file(cls: "type[M]", data: bytes) -> "M":
    """A directory file (``org.json``, a member or a group entry) as ``cls``, by the one rule
    of docs/protocol.md §8 every reader applies: canonical JSON (§4's form: a second spelling
    of the same values, duplicate keys included, is refused), each known field of its JSON
    type exactly (nothing converted), and the fields this version does not know at most
    :data:`MAX_UNKNOWN` bytes as canonical JSON (kept and ignored; unbounded, 20 compressed
    self-registrations of 15 MiB each made every member's ledger 315 MB). Raises ``ValueError``."""
    from pydantic import ValidationError

    from gitmail.core.model import parse_canonical
    from gitmail.errors import CorruptMessageError

    try:
        raw = parse_canonical(data)
    except CorruptMessageError as e:
        raise ValueError("not canonical JSON: " + e.message.partition(": ")[2]) from None
    try:
        obj = cls.model_validate(raw, strict=True)
    except ValidationError as e:
        err = e.errors()[0]
        raise ValueError(f"{'.'.join(str(x) for x in err['loc']) or 'file'}: {err['msg']}") from None
    extra = obj.model_extra
    if extra and len(canonical_json(extra)) > MAX_UNKNOWN:
        raise ValueError(f"unknown fields over {MAX_UNKNOWN} bytes")
    return obj


_BAD_CATEGORIES = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")
_HEX40 = frozenset("0123456789abcdef")


def _text_ok(value: str) -> Optional[str]:
    import unicodedata

    for ch in value:
        if unicodedata.category(ch) in _BAD_CATEGORIES:
            return f"a control or format character (U+{ord(ch):04X})"
        if ch in "<>":
            return f"{ch!r}"
    hidden = ignorable(value)
    if hidden is not None:
        return f"an invisible character (U+{ord(hidden):04X})"
    return None


def identity_problem(name: str, display_name: str, email: str) -> Optional[str]:
    """Why a member entry's ``name``, ``display_name`` and ``email`` break docs/protocol.md §8
    (:func:`validate_member`, which the directory's readers apply), or None; ``gitmail init``
    asks it before it writes anything."""
    import unicodedata

    try:
        if normalize(name) != name:
            return f"member name {name!r} is not in normal form"
    except AddressError as e:
        return str(e)
    who = f"member {name!r}"
    if len(display_name.encode("utf-8", "surrogatepass")) > MAX_DISPLAY_NAME:
        return f"{who}: display_name over {MAX_DISPLAY_NAME} bytes"
    bad = _text_ok(display_name)
    if bad:
        return f"{who}: display_name contains {bad}"
    local, at, domain = email.partition("@")
    if (not at or not local or not domain or "@" in domain or len(email.encode("utf-8", "surrogatepass")) > MAX_EMAIL
            or any(unicodedata.category(ch).startswith("Z") or ch.isspace() or ch == '"' for ch in email)
            or _text_ok(email)):
        return f"{who}: email {email[:60]!r} is not local@domain"
    return None


def validate_member(m: Member) -> None:
    """Check every field of a member entry against the grammar of docs/protocol.md §8.

    ``name``: a member name (:func:`gitmail.core.address.normalize`, unchanged by
    it); ``display_name``: at most 200 bytes, no control/format characters, no
    ``<`` ``>``; ``email``: at most 254 bytes, exactly one ``@`` with text on both
    sides, no white space, control/format characters, ``<`` ``>`` or ``"``;
    every key in the stored form (:func:`gitmail.core.signing.check_stored_key`),
    no key twice in the entry; ``encryption_key``: null or a stored key;
    ``retired``: only keys of ``previous_keys``, each a map from this member's
    sent-mailbox paths to 40-hex commit ids. Raises :class:`DirectoryError`.
    """
    problem = identity_problem(m.name, m.display_name, m.email)
    if problem:
        raise DirectoryError(problem)
    who = f"member {m.name!r}"
    keys = m.owned_keys() + ([m.encryption_key] if m.encryption_key is not None else [])
    if len(keys) > MAX_KEYS:
        raise DirectoryError(f"{who}: more than {MAX_KEYS} keys")
    for k in keys:
        try:
            check_stored_key(k)
        except KeyError_ as e:
            raise DirectoryError(f"{who}: {e}") from None
    owned = m.owned_keys()
    if len(set(owned)) != len(owned):
        raise DirectoryError(f"{who}: a key is listed twice")
    mine = "/" + to_ref(m.name)
    for k, tips in m.retired.items():
        if k not in m.previous_keys:
            raise DirectoryError(f"{who}: 'retired' names a key that is not in previous_keys")
        for path, tip in tips.items():
            if not (path.startswith(refs.MAIL) and path.endswith(mine) and path.count("/") == 3):
                raise DirectoryError(f"{who}: 'retired' names {path[:80]!r}, not one of their sent mailboxes")
            try:
                r, snd = refs.split_mail_path(path)
            except AddressError:
                raise DirectoryError(f"{who}: 'retired' names a malformed mailbox") from None
            if snd != m.name or refs.mail_path(r, snd) != path:
                raise DirectoryError(f"{who}: 'retired' names {path[:80]!r}, not one of their sent mailboxes")
            if not (isinstance(tip, str) and len(tip) == 40 and set(tip) <= _HEX40):
                raise DirectoryError(f"{who}: 'retired' tip {str(tip)[:50]!r} is not a commit id")


def validate_group(g: Group) -> None:
    """A group: ``name`` a name in normal form, ``members`` distinct names in normal form. Raises :class:`DirectoryError`."""
    try:
        for n in (g.name, *g.members):
            if normalize(n) != n:
                raise DirectoryError(f"group {g.name!r}: {n!r} is not in normal form")
    except AddressError as e:
        raise DirectoryError(f"group {g.name!r}: {e}") from None
    if len(set(g.members)) != len(g.members):
        raise DirectoryError(f"group {g.name!r} lists a member twice")


def validate(d: Directory) -> None:
    """Check a whole directory snapshot (docs/protocol.md §8): every entry, and no key in two entries.

    Raises :class:`DirectoryError`.
    """
    owner: dict[str, str] = {}
    for name, m in d.members.items():
        if name != m.name:
            raise DirectoryError(f"member {m.name!r} filed as {name!r}")
        validate_member(m)
        for k in m.owned_keys():
            if owner.setdefault(k, name) != name:
                raise DirectoryError(f"a key of {name!r} is also a key of {owner[k]!r}; a key belongs to one member, ever")
    for name, g in d.groups.items():
        if name != g.name:
            raise DirectoryError(f"group {g.name!r} filed as {name!r}")
        validate_group(g)
    d.allowed_signers()  # every principal can be written literally


def check_new_name(name: str, others: list[str], policy: OrgPolicy) -> None:
    """A name being registered (docs/protocol.md §2, "Confusable names"): refused when it
    mixes scripts (unless ``policy.allow_mixed_script``) or when its confusable
    skeleton (:func:`gitmail.core.address.skeleton`) equals another member's.
    Raises :class:`DirectoryError`."""
    sk = skeleton(name)
    for other in others:
        if skeleton(other) == sk:
            raise DirectoryError(f"member name {name!r} looks like the member name {other!r} (confusable)")
    _reserved_problem(name)
    if not policy.allow_mixed_script and is_mixed_script(name):
        raise DirectoryError(f"member name {name!r} mixes scripts (the org policy allow_mixed_script is off)")


def _reserved_problem(name: str) -> None:
    """Raise :class:`DirectoryError` when a name being registered looks like a reserved address."""
    look = reserved_lookalike(name)
    if look is not None:
        raise DirectoryError(f"member name {name!r} looks like the reserved address {look!r} (confusable)")


# -- verification: a ledger advanced one directory commit at a time --------------
#
# A directory commit rewrites the whole tree, so checking each one from a full
# snapshot costs O(members) per commit and O(members²) for a history of
# self-registrations. Instead, verification keeps a *ledger*: the directory at
# the last good commit plus what the rules need from the history below it (every
# key ever held and by whom, each member's entry versions, the confusable
# skeletons, the expected allowed_signers). Each commit is read as its change
# against the previous tree (``git diff-tree``), and only the entries it touches
# are parsed and checked; every verdict is the one a full check of the snapshot
# would give (docs/protocol.md §8, "Verifying incrementally").


def _blob_oid(data: bytes, hexlen: int) -> str:
    """The git object id of a blob holding ``data`` (sha1, or sha256 for 64-hex ids)."""
    return object_id(b"blob", data, hexlen)


def _tree_oid(blobs: dict[str, str], hexlen: int) -> str:
    """The git object id of a tree of regular files ``name -> blob oid`` (git's tree format:
    ``100644 <name>\\0<binary oid>`` sorted by name; names here are plain, no folders)."""
    return object_id(b"tree", b"".join(file_entry(n, o) for n, o in sorted(blobs.items())), hexlen)


def _signers_lines(name: str, m: Member) -> bytes:
    """The allowed-signers lines of one member, each ending in a line feed (§7)."""
    p = principal(name)
    return "".join(f'{p} namespaces="git" {check_stored_key(k)}\n' for k in m.all_keys()).encode("utf-8")


def _file_of(name: str) -> str:
    return to_ref(name) + ".json"


@dataclass
class Ledger:
    """The verified directory at ``tip`` and what verifying the next commit needs from its history.

    ``members``/``groups``: the entries, with the blob of each file (``files``:
    name -> (path under ``members/``, blob oid); ``group_files`` likewise); ``owner``: key ->
    member, for every key of a current entry; ``history``: key -> the first member
    that ever held it; ``held``: member -> the keys ``history`` gives them;
    ``skeletons``: member -> confusable skeleton; ``versions``: member -> blob ids
    of every version of their entry, newest first (each once); ``signers_oid``:
    the ``allowed_signers`` object at ``tip`` (a blob in layout 1, a tree in layout 2;
    checked equal to the members' text);
    ``root``: the first directory commit; ``tree``: the root tree at ``tip``.
    Never mutated once shared: :func:`advance` works on a copy.
    """

    tip: Optional[str] = None
    root: Optional[str] = None
    tree: Optional[str] = None
    members: dict[str, Member] = field(default_factory=dict)
    files: dict[str, tuple[str, str]] = field(default_factory=dict)
    raw: dict[str, bytes] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    group_files: dict[str, tuple[str, str]] = field(default_factory=dict)
    group_raw: dict[str, bytes] = field(default_factory=dict)
    policy: OrgPolicy = field(default_factory=OrgPolicy)
    policy_raw: Optional[bytes] = None
    owner: dict[str, str] = field(default_factory=dict)
    history: dict[str, str] = field(default_factory=dict)
    held: dict[str, frozenset[str]] = field(default_factory=dict)
    skeletons: dict[str, str] = field(default_factory=dict)
    versions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    signers_oid: Optional[str] = None
    admins: int = 0
    body_read: int = 0  # the widest policy.body_limit of the history up to tip (Directory.read_body_limit)
    _by_skeleton: Optional[dict[str, tuple[str, ...]]] = None
    _former: Optional[dict[str, set[str]]] = None  # skeleton -> names members held and no member holds now
    _sorted: Optional[list[str]] = None
    _chunks: Optional[list[bytes]] = None
    _shards: Optional[dict[str, list[str]]] = None  # layout 2: shard -> its member names, sorted
    _shard_oids: Optional[dict[str, str]] = None  # layout 2: shard -> blob id of its allowed_signers file
    _lines: Optional[dict[str, bytes]] = None  # layout 2: member -> allowed-signers lines, as needed
    _shard_entries: Optional[dict[str, bytes]] = None  # layout 2: shard -> its entry in the tree of shards
    _parsed: dict[str, Member] = field(default_factory=dict)

    @property
    def layout(self) -> int:
        return self.policy.directory_layout

    def drop_caches(self) -> None:
        """Forget the derived allowed-signers state (it may hold a refused commit's lines)."""
        self._sorted = self._chunks = None
        self._shards = self._shard_oids = None
        self._lines = self._shard_entries = None

    def copy(self) -> "Ledger":
        c = Ledger(self.tip, self.root, self.tree, dict(self.members), dict(self.files), dict(self.raw),
                   dict(self.groups), dict(self.group_files), dict(self.group_raw), self.policy, self.policy_raw,
                   dict(self.owner), dict(self.history), dict(self.held), dict(self.skeletons), dict(self.versions),
                   self.signers_oid, self.admins, self.body_read)
        c._by_skeleton = dict(self._by_skeleton) if self._by_skeleton is not None else None
        c._former = {k: set(v) for k, v in self._former.items()} if self._former is not None else None
        c._sorted = list(self._sorted) if self._sorted is not None else None
        c._chunks = list(self._chunks) if self._chunks is not None else None
        if self._shard_oids is not None:
            c._shard_oids = dict(self._shard_oids)
            c._shards = {k: list(v) for k, v in self._shards.items()} if self._shards is not None else None
            c._lines = dict(self._lines) if self._lines is not None else None
            c._shard_entries = dict(self._shard_entries) if self._shard_entries is not None else None
        return c

    def directory(self) -> Directory:
        """The directory at ``tip`` (its own dicts: callers may change them)."""
        d = Directory(self.tip, dict(self.members), dict(self.groups), self.policy, self.body_read)
        d._ledger = self
        return d

    def skeleton(self, name: str) -> str:
        sk = self.skeletons.get(name)
        if sk is None:
            sk = self.skeletons[name] = skeleton(name)
        return sk

    def former(self, sk: str) -> list[str]:
        """Names with skeleton ``sk`` that members held and no member holds now (an admin removed
        them), sorted; indexed once a process, then kept with each change (:func:`_apply`)."""
        if self._former is None:
            self._former = {}
            for n in self.versions:
                if n not in self.members:
                    self._former.setdefault(self.skeleton(n), set()).add(n)
        return sorted(self._former.get(sk, ()))

    def by_skeleton(self) -> dict[str, tuple[str, ...]]:
        if self._by_skeleton is None:
            idx: dict[str, tuple[str, ...]] = {}
            for n in self.members:
                sk = self.skeleton(n)
                idx[sk] = idx.get(sk, ()) + (n,)
            self._by_skeleton = idx
        return self._by_skeleton

    def signer_chunks(self) -> tuple[list[str], list[bytes]]:
        """Member names sorted by code point and their allowed-signers lines (built once, then kept up to date)."""
        if self._sorted is None or self._chunks is None:
            self._sorted = sorted(self.members)
            self._chunks = [_signers_lines(n, self.members[n]) for n in self._sorted]
        return self._sorted, self._chunks

    def signers_text(self) -> bytes:
        return b"".join(self.signer_chunks()[1])

    def shard_state(self, hexlen: int) -> tuple[dict[str, list[str]], dict[str, str]]:
        """Layout 2: shard -> sorted member names, and shard -> blob id of its signers file
        (built once, then kept up to date by :func:`_expected_signers_oid`)."""
        if self._shard_oids is None:
            self._shards = _by_shard(self.members)
            self._shard_oids = _shard_oids(self.members, hexlen)
        elif self._shards is None:  # read from a ledger file: the names by shard only when needed
            self._shards = _by_shard(self.members)
        return self._shards, self._shard_oids

    def entry_versions(self, pg: "pygit2.Repository", name: str) -> list[Member]:
        """Every version of ``name``'s entry up to ``tip``, newest first (each distinct blob once)."""
        out = []
        for oid in self.versions.get(name, ()):
            m = self._parsed.get(oid)
            if m is None:
                try:
                    m = self._parsed[oid] = Member.model_validate_json(blob_data(pg, oid))
                except (ValueError, KeyError, TypeError):
                    continue
            out.append(m)
        return out

    # -- persistence: a local cache keyed by the verified tip (never trusted for another tip) --

    def dump(self) -> bytes:
        import json

        data = {
            "format": LEDGER_FORMAT, "tip": self.tip, "root": self.root, "tree": self.tree,
            "signers_oid": self.signers_oid, "body_read": self.body_read,
            "policy": self.policy_raw.decode("utf-8", "surrogateescape") if self.policy_raw is not None else None,
            "members": {n: [f, b, self.raw[n].decode("utf-8", "surrogateescape"), self.skeletons.get(n)]
                        for n, (f, b) in self.files.items()},
            "groups": {n: [f, b, self.group_raw[n].decode("utf-8", "surrogateescape")]
                       for n, (f, b) in self.group_files.items()},
            "history": self.history, "versions": self.versions,
            # layout 2: each shard's allowed_signers blob id, so the next commit hashes only its own shards
            "shards": self._shard_oids,
        }
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogateescape")

    @classmethod
    def undump(cls, blob: bytes) -> "Ledger":
        """Parse :meth:`dump`'s bytes. Raises ``ValueError``/``KeyError``/``TypeError`` on anything else.

        With Python's cycle collector paused (:func:`gitmail.core.workers.collector_paused`):
        the parsed file and the ledger built from it are hundreds of thousands of objects at
        10,000 members, none in a cycle, and the collections their allocation triggered took
        half the time (120 against 60 ms)."""
        from gitmail.core.workers import collector_paused

        with collector_paused():
            return cls._undump(blob)

    @classmethod
    def _undump(cls, blob: bytes) -> "Ledger":
        import json

        import orjson

        try:  # orjson: a third of the time at 10,000 members; json for what it refuses (see dump)
            d = orjson.loads(blob)
        except orjson.JSONDecodeError:
            d = json.loads(blob.decode("utf-8", "surrogateescape"))
        if not isinstance(d, dict) or d.get("format") != LEDGER_FORMAT:
            raise ValueError("another ledger format")
        L = cls(d["tip"], d["root"], d["tree"], signers_oid=d["signers_oid"], body_read=int(d["body_read"]))
        if d["policy"] is not None:
            L.policy_raw = d["policy"].encode("utf-8", "surrogateescape")
            L.policy = OrgPolicy.model_validate_json(L.policy_raw)
        for n, (f, b, raw, sk) in d["members"].items():
            L.raw[n] = raw.encode("utf-8", "surrogateescape")
            m = L.members[n] = Member.model_validate_json(L.raw[n])
            L.files[n] = (f, b)
            if sk is not None:
                L.skeletons[n] = sk
            for k in m.owned_keys():
                L.owner[k] = n
            L.admins += m.role == "admin"
        for n, (f, b, raw) in d["groups"].items():
            L.group_raw[n] = raw.encode("utf-8", "surrogateescape")
            L.groups[n] = Group.model_validate_json(L.group_raw[n])
            L.group_files[n] = (f, b)
        L.history = {str(k): str(v) for k, v in d["history"].items()}
        held: dict[str, set[str]] = {}
        for k, n in L.history.items():
            held.setdefault(n, set()).add(k)
        L.held = {n: frozenset(ks) for n, ks in held.items()}
        L.versions = {str(n): tuple(v) for n, v in d["versions"].items()}
        if d.get("shards") is not None:
            # (the names by shard are derived when a directory commit is verified: shard_state)
            L._shard_oids = {str(k): str(v) for k, v in d["shards"].items()}
        return L


LEDGER_FORMAT = 5  # 2: member paths may hold a shard folder, signers_oid may be a tree (layout 2);
# 3: names and skeletons under the invisible-character rule (a kept ledger is rebuilt, so a
#    registration an older gitmail accepted is judged again);
# 4: the widest body_limit of the history (body_read: a kept ledger is rebuilt to learn it);
# 5: skeletons of transitive look-alike classes, names that look like reserved addresses refused
LEDGER_FILE = "directory-ledger.json"


@dataclass
class _Touched:
    """One member or group file a commit adds, changes or removes (``after`` None: removed)."""

    name: str
    file: str
    before: Optional[object]
    after: Optional[object]
    blob: Optional[str]
    raw: Optional[bytes]


@dataclass
class _Change:
    """What one directory commit changes against the ledger before it, in the tree's file order."""

    members: list[_Touched] = field(default_factory=list)
    groups: list[_Touched] = field(default_factory=list)
    policy: Optional[OrgPolicy] = None  # the new policy when org.json changed
    policy_raw: Optional[bytes] = None
    policy_touched: bool = False
    signers_oid: Optional[str] = None  # allowed_signers in the new tree (None: missing or not a blob)
    tree: Optional[str] = None


def _tree_entry(pg: "pygit2.Repository", tree: str, path: str) -> Optional[tuple[int, str]]:
    """(mode, oid) of ``path`` in tree ``tree``, None when absent (the rare, hostile cases only)."""
    import pygit2

    try:
        # One folder at a time, each sized first: a tree over objects.MAX_TREE is not read
        # (libgit2's lookup by path would read the folders on the way whole).
        t, *folders, last = [tree, *path.split("/")]
        for name in folders:
            e = objtree(pg, t)[name]
            if int(e.filemode) != TREE_MODE:
                return None
            t = str(e.id)
        e = objtree(pg, t)[last]
    except (KeyError, ValueError, TypeError, pygit2.GitError):
        return None
    return int(e.filemode), str(e.id)


def _changes(pg: "pygit2.Repository", pairs: list[tuple[str, str]]) -> Iterator[treediff.Result]:
    """For each (old tree, new tree), in order, as the caller takes them: the paths that differ
    as (path, new mode, new oid), mode 0 for a removed path, or why its trees are not read
    (:mod:`gitmail.core.treediff`: every tree sized before it is read and in git's own form,
    no deeper than an entry needs, a bounded amount listed at a time)."""
    return treediff.each(pg, pairs, BATCH)


_MALFORMED = (ValueError, KeyError, TypeError, DirectoryError, AddressError, KeyError_)


def _read_change(pg: "pygit2.Repository", L: Ledger, tree: str, raw: treediff.Result) -> _Change:
    """Parse what one commit changes, in the order a full read of its tree would
    (``org.json``, then ``members/`` and ``groups/`` in tree order), raising the
    error that read (:func:`from_tree`) would raise (``ValueError``, ``KeyError``, ``TypeError``).

    ``raw`` only says which paths differ from the tree before; every entry that
    matters is then taken from ``tree`` itself (a type change, say a file turned
    into a folder, is seen as what it is now)."""
    if isinstance(raw, str):
        raise ValueError(raw)  # a tree on a changed path is too large, missing or not a tree: not read
    ch = _Change(tree=tree)
    if any(p.partition("/")[0] == "org.json" for p, _, _ in raw):
        ch.policy_touched = True
        e = _tree_entry(pg, tree, "org.json")
        if e is None:
            ch.policy = OrgPolicy()
        else:
            ch.policy_raw = blob_data(pg, e[1])
            ch.policy = parse_file(OrgPolicy, ch.policy_raw)
    layout = ch.policy.directory_layout if ch.policy is not None else L.layout
    if layout != L.layout:
        # A change of layout moves every entry: read the whole new tree (what is there, and
        # every entry the ledger holds as gone unless it is found again at its new path).
        whole = treediff.changes(pg, [(treediff.empty_tree(len(tree)), tree)])[0]
        if isinstance(whole, str):
            raise ValueError(whole)
        raw = [("members/" + f, 0, "") for f, _ in L.files.values()] + whole
    touched: set[str] = set()
    kids: dict[str, dict[str, Optional[tuple[int, str]]]] = {"members": {}, "groups": {}}
    deep: dict[str, set[str]] = {"members": set(), "groups": set()}
    for path, mode, oid in raw:
        top, _, rest = path.partition("/")
        touched.add(top)
        if top in kids and rest:
            # an entry is one path component deep, two under members/ in layout 2 (the shard)
            depth = 2 if top == "members" and layout == FANOUT else 1
            parts = rest.split("/")
            kid = "/".join(parts[:depth])
            if len(parts) > depth:
                deep[top].add(kid)
            else:
                kids[top][kid] = (mode, oid) if mode else None
    tops = {t: _tree_entry(pg, tree, t) for t in touched if t in ("members", "groups", "allowed_signers")}
    for top in kids:
        for kid in deep[top]:  # a folder where a file belongs: the folder itself is the entry
            kids[top][kid] = _tree_entry(pg, tree, f"{top}/{kid}")
    for top, cls, known, current in (("members", Member, L.files, L.members), ("groups", Group, L.group_files, L.groups)):
        out: list[_Touched] = ch.members if top == "members" else ch.groups
        e = tops.get(top, (TREE_MODE, "")) if top in touched else (TREE_MODE, "")
        if e is not None and e[0] != TREE_MODE:
            objtree(pg, e[1])  # raises: not a tree
        if e is None:  # the whole folder went away
            out.extend(_Touched(n, f, current[n], None, None, None) for n, (f, _) in known.items())
            continue
        if not kids[top]:
            continue
        here = kids[top]
        order = sorted(here, key=lambda k: k.encode("utf-8", "surrogateescape")
                       + (b"/" if (here[k] or (0, ""))[0] == TREE_MODE else b""))
        gone = []
        for kid in order:
            ke = here[kid]
            if ke is None:
                # git lists a file replaced by a folder of empty folders as removed alone; the
                # tree still holds something there (a full read sees it: malformed).
                ke = _tree_entry(pg, tree, f"{top}/{kid}")
            if ke is None:
                was = _known_file(known, kid)
                if was is not None:
                    gone.append(_Touched(was, kid, current[was], None, None, None))
                continue
            if top == "members" and layout == FANOUT and "/" not in kid:
                raise ValueError(f"members/{kid} is not a fan-out folder")
            data = blob_data(pg, ke[1])
            obj = cast("Member | Group", parse_file(cls, data))
            name = obj.name
            if kid != (member_file(name, layout) if top == "members" else _file_of(name)):
                raise ValueError(f"{top[:-1]} file {kid} does not match its name")
            out.append(_Touched(name, kid, current.get(name), obj, ke[1], data))
        found = {t.name for t in out}
        out.extend(t for t in gone if t.name not in found)  # moved by a change of layout: not gone
    if "allowed_signers" in touched:
        se = tops.get("allowed_signers")
        ch.signers_oid = se[1] if se is not None and (se[0] == TREE_MODE) == (layout == FANOUT) else None
    else:
        ch.signers_oid = L.signers_oid
    return ch


def _known_file(known: dict[str, tuple[str, str]], file: str) -> Optional[str]:
    """The name whose entry is stored as ``file`` in ``known`` (name -> (path, blob)), if any."""
    base = file.rpartition("/")[2]
    if not base.endswith(".json"):
        return None
    try:
        name = from_ref(base[: -len(".json")])
    except AddressError:
        return None
    f = known.get(name)
    return name if f is not None and f[0] == file else None


def _validate_change(L: Ledger, ch: _Change) -> None:
    """:func:`validate` of the new snapshot, checking only what changed (the rest passed
    before and is unchanged): every touched entry, in tree order, and every key a touched
    entry shares with any entry. Raises :class:`DirectoryError`."""
    present = {t.name: t for t in ch.members if t.after is not None}
    touched = {t.name for t in ch.members}
    relevant: dict[str, tuple[Member, bool]] = {n: (cast(Member, t.after), True) for n, t in present.items()}
    for t in present.values():
        for k in cast(Member, t.after).owned_keys():
            holder = L.owner.get(k)
            if holder is not None and holder not in touched:
                relevant[holder] = (L.members[holder], False)
    owner: dict[str, str] = {}
    for name in sorted(relevant, key=lambda n: (present[n].file if n in present else L.files[n][0])
                       .encode("utf-8", "surrogateescape")):
        m, is_new = relevant[name]
        if name != m.name:
            raise DirectoryError(f"member {m.name!r} filed as {name!r}")
        if is_new:
            validate_member(m)
        for k in m.owned_keys():
            if owner.setdefault(k, name) != name:
                raise DirectoryError(f"a key of {name!r} is also a key of {owner[k]!r}; a key belongs to one member, ever")
    for t in ch.groups:
        if t.after is not None:
            validate_group(cast(Group, t.after))


def _check_rules(L: Ledger, ch: _Change, signer_key: str) -> None:
    """The rules of docs/protocol.md §8 for the change ``ch`` signed by ``signer_key`` (after
    :func:`_validate_change`): new names, the key rules, who may change what.
    Raises :class:`DirectoryError`."""
    after = {t.name: cast(Optional[Member], t.after) for t in ch.members}
    order = {t.name: i for i, t in enumerate(sorted(ch.members, key=lambda t: t.file.encode("utf-8", "surrogateescape")))}
    added = sorted(n for n, m in after.items() if m is not None and n not in L.members)
    policy = ch.policy if ch.policy_touched and ch.policy is not None else L.policy
    layout = policy.directory_layout
    if added:
        idx = L.by_skeleton()
        new_sk = {n: L.skeleton(n) for n in added}
        for name in added:
            sk = new_sk[name]
            others = [n for n in idx.get(sk, ()) if after.get(n, L.members.get(n)) is not None and n != name]
            others += [n for n in added if n != name and new_sk[n] == sk]
            if others:
                other = min(others, key=lambda n: member_file(n, layout).encode("utf-8", "surrogateescape"))
                raise DirectoryError(f"member name {name!r} looks like the member name {other!r} (confusable)")
            _reserved_problem(name)
            if name not in L.members:  # nor a look-alike of a name a removed member held
                former = [n for n in L.former(sk) if n != name]
                if former:
                    raise DirectoryError(f"member name {name!r} looks like {former[0]!r}, a former member's name "
                                         "(confusable)")
            if not policy.allow_mixed_script and is_mixed_script(name):
                raise DirectoryError(f"member name {name!r} mixes scripts (the org policy allow_mixed_script is off)")
    history = L.history
    for name in sorted((n for n, m in after.items() if m is not None), key=lambda n: order[n]):
        m = cast(Member, after[name])
        for k in m.owned_keys():
            if history.get(k, name) != name:
                raise DirectoryError(f"a key of {name!r} is (or was) a key of {history[k]!r}; a key belongs to one member, ever")
        before = L.members.get(name)
        held = L.held.get(name, frozenset())
        if before is None:
            if m.previous_keys or m.revoked_keys or m.retired:
                raise DirectoryError(f"a new entry ({name!r}) cannot list retired or revoked keys")
            if m.signing_key in held:
                raise DirectoryError(f"{name!r} cannot register a key they held before")
            continue
        if m.signing_key != before.signing_key and m.signing_key in held:
            raise DirectoryError(f"{name!r} cannot rotate back to a retired key")
        if not set(before.owned_keys()) <= set(m.owned_keys()):
            raise DirectoryError(f"{name!r}: keys are never dropped from an entry (retire or revoke them)")
        if not set(m.previous_keys) | set(m.revoked_keys) <= set(before.owned_keys()):
            raise DirectoryError(f"{name!r}: only keys the member held can be retired or revoked")
        if before.revoked_keys and not set(before.revoked_keys) <= set(m.revoked_keys):
            raise DirectoryError(f"{name!r}: a revoked key stays revoked")
        for k, tips in m.retired.items():
            if k in before.retired and before.retired[k] != tips:
                raise DirectoryError(f"{name!r}: the tips recorded when a key was retired never change")
            if k not in before.retired and k != before.signing_key:
                raise DirectoryError(f"{name!r}: tips are recorded only for the key being retired")
    count = len(L.members) + len(added) - sum(1 for n, m in after.items() if m is None and n in L.members)
    if not L.members:
        if count != 1:
            raise DirectoryError("the first directory commit must register exactly one member")
        (m,) = [m for m in after.values() if m is not None]
        if m.role != "admin" or m.signing_key != signer_key:
            raise DirectoryError("the first member must be an admin signing with their own key")
        return
    if layout < L.layout:
        raise DirectoryError(f"the directory layout never goes back (from {L.layout} to {layout})")
    if L.policy.packing and not policy.packing:
        # Packed pairs have no ref on the server: with packing off a sender's client would
        # take them for deleted mailboxes and send everything again (docs/protocol.md §3).
        raise DirectoryError("packing, once on, stays on")
    holder = L.owner.get(signer_key)
    actor = L.members[holder] if holder is not None else None
    if actor is not None and actor.signing_key != signer_key:
        raise DirectoryError(f"{actor.name} signed with a retired key")
    if actor is None and signer_key in history:
        raise DirectoryError("signed with a key that belonged to a former member")
    if actor is not None and actor.role == "admin":
        admins = L.admins + sum((m is not None and m.role == "admin") - (n in L.members and L.members[n].role == "admin")
                                for n, m in after.items())
        if admins <= 0:
            raise DirectoryError("the directory must keep at least one admin")
        return
    # A change is one of values: every file is canonical JSON of values of their exact types
    # (parse_file), so two spellings differ only in a field at its default written out or
    # left out, which our own writer does to files of an older version it re-renders.
    changed = {n for n, m in after.items() if L.members.get(n) != m}
    if any(t.before != t.after for t in ch.groups) or (ch.policy_touched and ch.policy != L.policy):
        raise DirectoryError("only an admin may change groups or org policy")
    if actor is not None:
        if changed - {actor.name}:
            raise DirectoryError(f"{actor.name} may not change other members' entries")
        mine = after[actor.name] if actor.name in after else actor
        if mine is None or mine.role != actor.role:
            raise DirectoryError(f"{actor.name} may not remove themself or change their role")
        return
    added_now = {n for n in added}
    if changed != added_now or len(added_now) != 1:
        raise DirectoryError("a newcomer may only add their own entry")
    (name,) = added_now
    m = cast(Member, after[name])
    if m.signing_key != signer_key or m.role != "member":
        raise DirectoryError(f"registration of {name} must be signed by its own key, as a member")
    if name in L.versions:
        # A name a member held (and an admin removed): a newcomer taking it would be listed in
        # the groups that still name it and be shown as the sender of its earlier mail.
        raise DirectoryError(f"the name {name!r} was a member's; only an admin may give it again")
    if signer_key in L.owner:
        raise DirectoryError("that key is already registered to another member")


def _apply(L: Ledger, ch: _Change, tip: str) -> None:
    """Move the (private) ledger ``L`` over an accepted change to commit ``tip`` (its sorted
    allowed-signers lines were already moved by :func:`_expected_signers_oid`)."""
    for t in ch.members:
        before, after = cast(Optional[Member], t.before), cast(Optional[Member], t.after)
        name = t.name
        if before is not None:
            for k in before.owned_keys():
                if L.owner.get(k) == name:
                    del L.owner[k]
            L.admins -= before.role == "admin"
        if after is None:
            if name in L.members:
                del L.members[name], L.files[name], L.raw[name]
                if L._former is not None:
                    L._former.setdefault(L.skeleton(name), set()).add(name)
                if L._by_skeleton is not None:
                    sk = L.skeleton(name)
                    L._by_skeleton[sk] = tuple(n for n in L._by_skeleton.get(sk, ()) if n != name)
            continue
        L.members[name] = after
        if L._former is not None:
            L._former.get(L.skeleton(name), set()).discard(name)
        L.files[name] = (t.file, cast(str, t.blob))
        L.raw[name] = cast(bytes, t.raw)
        for k in after.owned_keys():
            L.owner[k] = name
            if k not in L.history:
                L.history[k] = name
                L.held[name] = L.held.get(name, frozenset()) | {k}
        L.admins += after.role == "admin"
        vs = L.versions.get(name, ())
        if not vs or vs[0] != t.blob:
            L.versions[name] = (cast(str, t.blob),) + tuple(v for v in vs if v != t.blob)
        if before is None:
            sk = L.skeleton(name)
            if L._by_skeleton is not None:
                L._by_skeleton[sk] = L._by_skeleton.get(sk, ()) + (name,)
    for t in ch.groups:
        if t.after is None:
            L.groups.pop(t.name, None)
            L.group_files.pop(t.name, None)
            L.group_raw.pop(t.name, None)
        else:
            L.groups[t.name] = cast(Group, t.after)
            L.group_files[t.name] = (t.file, cast(str, t.blob))
            L.group_raw[t.name] = cast(bytes, t.raw)
    if ch.policy_touched and ch.policy is not None:
        L.policy, L.policy_raw = ch.policy, ch.policy_raw
    L.body_read = max(L.body_read, L.policy.body_limit)
    L.signers_oid = ch.signers_oid
    L.tree = ch.tree
    L.root = L.root or tip
    L.tip = tip


def _check_commit(pg: "pygit2.Repository", L: Ledger, oid: str, tree: str, raw: treediff.Result,
                  signer: "str | VerificationError") -> _Change:
    """Every check of one directory commit against the ledger before it, in the order of
    docs/protocol.md §8: its tree parses and every touched entry keeps the grammar, then
    ``allowed_signers`` matches, then the signature, then the rules. Raises
    :class:`VerificationError` / :class:`DirectoryError`; changes nothing."""
    try:
        ch = _read_change(pg, L, tree, raw)
        _validate_change(L, ch)
    except _MALFORMED as e:
        raise VerificationError(f"malformed directory at {oid[:10]}: {str(e).splitlines()[0]}") from None
    if ch.signers_oid is None or ch.signers_oid != _expected_signers_oid(L, ch, len(oid)):
        raise VerificationError(f"directory at {oid[:10]}: allowed_signers does not match the members")
    if isinstance(signer, VerificationError):
        raise signer
    _check_rules(L, ch, signer)
    return ch


def _expected_signers_oid(L: Ledger, ch: _Change, hexlen: int) -> str:
    """The id ``allowed_signers`` must have after ``ch`` (the blob of the text in layout 1, the
    tree of shard files in layout 2): hashed only when a member's lines change (else the
    verified object of the commit before). Updates the ledger's sorted lines and shards in
    place (:func:`advance` drops them if the commit is then refused)."""
    layout = ch.policy.directory_layout if ch.policy_touched and ch.policy is not None else L.layout
    if layout != L.layout:  # every file moves: the whole text, once
        after = dict(L.members)
        for t in ch.members:
            if t.after is None:
                after.pop(t.name, None)
            else:
                after[t.name] = cast(Member, t.after)
        L.drop_caches()
        return signers_oid(after, layout, hexlen)
    moved = [t for t in ch.members
             if (t.before is None) != (t.after is None)
             or (t.before is not None and t.after is not None
                 and cast(Member, t.before).all_keys() != cast(Member, t.after).all_keys())]
    if not moved and L.signers_oid is not None:
        return L.signers_oid
    if layout == FANOUT:
        return _expected_shards_oid(L, moved, hexlen)
    return _blob_oid(b"".join(_move_lines(L, moved, True)), hexlen)


def _move_lines(L: Ledger, moved: list[_Touched], build: bool) -> list[bytes]:
    """Move the ledger's sorted allowed-signers lines (the whole text, by member) over the
    members whose lines change; built first when ``build``, else left unbuilt (empty list)."""
    import bisect

    if not build and (L._sorted is None or L._chunks is None):
        return []
    names, chunks = L.signer_chunks()
    for t in moved:
        i = bisect.bisect_left(names, t.name)
        present = i < len(names) and names[i] == t.name
        if t.after is None:
            if present:
                del names[i], chunks[i]
        elif present:
            chunks[i] = _signers_lines(t.name, cast(Member, t.after))
        else:
            names.insert(i, t.name)
            chunks.insert(i, _signers_lines(t.name, cast(Member, t.after)))
    return chunks


def _expected_shards_oid(L: Ledger, moved: list[_Touched], hexlen: int) -> str:
    """:func:`_expected_signers_oid` in layout 2: only the shards of the members whose lines
    changed are hashed again, then the tree of shards."""
    import bisect

    shards, oids = L.shard_state(hexlen)
    _move_lines(L, moved, False)  # the one sorted text (the local file), when it is built
    now = {t.name: cast(Optional[Member], t.after) for t in moved}
    dirty = set()
    for name, m in now.items():
        s = shard(name)
        names = shards.setdefault(s, [])
        i = bisect.bisect_left(names, name)
        present = i < len(names) and names[i] == name
        if m is None and present:
            del names[i]
        elif m is not None and not present:
            names.insert(i, name)
        dirty.add(s)
    # Each member's lines and each shard's tree entry are kept between commits: a commit
    # changes one shard, and rebuilding every line of it (parsing each key) and the whole tree
    # of shards each time took most of a verification (issue 16 item 5).
    if L._lines is None or L._shard_entries is None:
        L._lines, L._shard_entries = {}, {k: file_entry(k, o) for k, o in oids.items()}
    lines, entries = L._lines, L._shard_entries
    for name, m in now.items():
        if m is None:
            lines.pop(name, None)
        else:
            lines[name] = _signers_lines(name, m)
    for s in dirty:
        names = shards[s]
        if not names:
            del shards[s]
            oids.pop(s, None)
            entries.pop(s, None)
            continue
        text = b"".join(lines[n] if n in lines else lines.setdefault(n, _signers_lines(n, L.members[n])) for n in names)
        oids[s] = _blob_oid(text, hexlen)
        entries[s] = file_entry(s, oids[s])
    return object_id(b"tree", b"".join(v for _, v in sorted(entries.items())), hexlen)  # as _tree_oid(oids)


BATCH = 1024  # directory commits read (objects, signatures, tree changes) at a time


def advance(pg: "pygit2.Repository", L: Ledger, new_tip: str) -> tuple[Ledger, list[str]]:
    """Verify the directory commits after ``L.tip`` up to ``new_tip``, in order (docs/protocol.md §8).

    Returns the ledger at the last good commit (``L`` itself when nothing was
    accepted; never mutates ``L``) and the problems found: a bad commit stops the
    walk (nothing after it is accepted); a ``new_tip`` that does not descend from
    ``L.tip`` (a rewrite) or a merge in between accepts nothing. Work is
    proportional to the commits after ``L.tip`` and to what they change.
    """
    from gitmail.core.signing import signers

    if new_tip == L.tip:
        return L, []
    if L.tip is None and new_tip in _LEDGERS:  # verified from the root by this process already
        return _LEDGERS[new_tip], []
    oids = []
    for oid, ps in first_parent_line(pg, new_tip, L.tip):
        oids.append(oid)
        if len(ps) > 1:
            return L, [f"directory commit {oid[:10]} is a merge"]
        if not ps:
            cut = unfollowed(pg, oid)  # too large to read: not read, and the walk ends there
            if cut:
                return L, [f"directory {cut}"]
            if L.tip is not None:
                return L, ["directory history was rewritten (not a fast-forward)"]
    oids.reverse()
    out = L.copy()
    commits = [commit(pg, o) for o in oids]
    trees = [str(c.tree_id) for c in commits]
    pairs = list(zip([L.tree or treediff.empty_tree(len(new_tip))] + trees[:-1], trees))
    changes = _changes(pg, pairs)
    for start in range(0, len(oids), BATCH):
        batch = commits[start : start + BATCH]
        sigs = signers(batch)
        for c, tree, raw, sig in zip(batch, trees[start : start + BATCH], changes, sigs):
            oid = str(c.id)
            try:
                ch = _check_commit(pg, out, oid, tree, raw, sig)
            except (DirectoryError, VerificationError) as e:
                out.drop_caches()  # may hold the refused commit's lines
                if out.tip == L.tip:
                    return L, [f"directory commit {oid[:10]} rejected: {e}"]
                _remember(out)
                return out, [f"directory commit {oid[:10]} rejected: {e}"]
            _apply(out, ch, oid)
    _remember(out)
    return out, []


_LEDGERS: dict[str, Ledger] = {}


def _remember(L: Ledger) -> None:
    """Keep a verified ledger for this process (keyed by tip: the history below a commit never changes)."""
    if L.tip is None:
        return
    if len(_LEDGERS) > 8:
        _LEDGERS.clear()
    _LEDGERS[L.tip] = L


def ledger_at(pg: "pygit2.Repository", tip: Optional[str]) -> tuple[Ledger, list[str]]:
    """The ledger at ``tip``, verified from the root (or remembered by this process)."""
    if tip is None:
        return Ledger(), []
    hit = _LEDGERS.get(tip)
    if hit is not None:
        return hit, []
    return advance(pg, Ledger(), tip)


def ledger_kept(pg: "pygit2.Repository", file: Path, tip: Optional[str]) -> tuple[Ledger, list[str]]:
    """The verified ledger at ``tip``, kept between processes in ``file`` (a client's
    ``.git/gitmail/directory-ledger.json``; the guard's ``<org.git>/gitmail/...``).

    Remembered by this process, else read from ``file`` when its tip is ``tip`` (the
    caller's anchor: the clone's verified ref, the org repo's directory ref, which only
    moves past the guard), else verified from the root and written to ``file``. A file
    for any other tip is never trusted, even one below ``tip``; one that cannot be read
    only costs a verification from the root.
    """
    if tip is None:
        return Ledger(), []
    hit = kept_ledger(file, tip)
    if hit is not None:
        return hit, []
    L, probs = advance(pg, Ledger(), tip)
    if L.tip == tip:
        save_ledger(file, L)
    return L, probs


def kept_ledger(file: Path, tip: str) -> Optional[Ledger]:
    """The verified ledger at exactly ``tip`` if this process remembers it or ``file`` holds it,
    else None (nothing is verified here: see :func:`ledger_kept`). A file that cannot be read
    or parsed counts as none."""
    hit = _LEDGERS.get(tip)
    if hit is not None:
        return hit
    try:
        kept = Ledger.undump(file.read_bytes())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if kept.tip != tip:
        return None
    _remember(kept)
    return kept


def save_ledger(file: Path, L: Ledger) -> None:
    """Write a ledger file (atomically, private; a lost write only costs a verification later)."""
    try:
        file.parent.mkdir(mode=0o700, exist_ok=True)
        write_atomic(file, L.dump())
    except OSError:
        pass


def verify_range(pg: "pygit2.Repository", old_tip: Optional[str], new_tip: str,
                 ledger: Optional[Ledger] = None, kept: Optional[Path] = None) -> tuple[Directory, list[str]]:
    """Verify directory commits after ``old_tip`` up to ``new_tip``, in order.

    Returns the directory at the last good commit and the problems found (a
    bad commit stops the walk; nothing after it is accepted). A ``new_tip``
    that does not descend from ``old_tip`` is a rewrite: nothing is accepted.
    ``ledger``: the verified ledger at ``old_tip`` when the caller has it;
    else ``kept``, a ledger file (:func:`ledger_kept`; the ledger at ``new_tip``
    is written there when every commit passed); else it is rebuilt by
    verifying from the root.
    """
    if ledger is None or ledger.tip != old_tip:
        ledger, probs = ledger_kept(pg, kept, old_tip) if kept is not None else ledger_at(pg, old_tip)
        if probs:
            return ledger.directory(), probs
    after, probs = advance(pg, ledger, new_tip)
    if kept is not None and not probs and after.tip == new_tip:
        # Kept for the next check: trusted then only if this tip has become the anchor
        # (the push was accepted); otherwise it is simply not used.
        save_ledger(kept, after)
    return after.directory(), probs


def _snapshot_ledger(old: Optional[Directory], history: Optional[dict[str, str]]) -> Ledger:
    """A ledger for a directory snapshot (no tree ids, no versions): what :func:`check_change` needs."""
    L = Ledger(old.tip if old else None)
    if old is None:
        return L
    L.members = dict(old.members)
    L.groups = dict(old.groups)
    L.policy = old.policy
    for n, m in old.members.items():
        L.files[n] = (member_file(n, old.policy.directory_layout), "")
        for k in m.owned_keys():
            L.owner[k] = n
        L.admins += m.role == "admin"
    for n, g in old.groups.items():
        L.group_files[n] = (_file_of(n), "")
    L.history = dict(history) if history is not None else {k: n for k, n in L.owner.items()}
    held: dict[str, set[str]] = {}
    for k, n in L.history.items():
        held.setdefault(n, set()).add(k)
    L.held = {n: frozenset(ks) for n, ks in held.items()}
    return L


def check_change(old: Optional[Directory], new: Directory, signer_key: str,
                 history: Optional[dict[str, str]] = None) -> None:
    """Check that the holder of ``signer_key`` may turn ``old`` into ``new`` (the writer's check).

    ``new`` must be valid (:func:`validate`) and keep the key rules against
    ``history`` (:func:`key_history` of ``old``; without it, only ``old``'s keys).
    The same rules, in the same order, as the reader's (:func:`advance`).

    Rules: the first commit registers exactly one member, an admin, with the
    signing key; an admin may change anything; a member may change only their
    own entry (key rotation included, signed with their current key) and never
    their role; a newcomer may add exactly their own entry, as a plain member,
    signed with the key they register. Raises :class:`DirectoryError`.
    """
    L = old._ledger if old is not None else None
    if old is None or L is None or L.tip != old.tip or L.members != old.members or L.groups != old.groups \
            or (history is not None and history != L.history):
        validate(new)  # the snapshot path: nothing below is known to be valid
        L = _snapshot_ledger(old if old is not None and (old.tip or old.members) else None, history)
    ch = _Change()
    layout = new.policy.directory_layout
    for n in set(L.members) | set(new.members):
        b, a = L.members.get(n), new.members.get(n)
        if b is not a:
            ch.members.append(_Touched(n, member_file(n, layout), b, a, None, None))
    ch.members.sort(key=lambda t: t.file.encode("utf-8", "surrogateescape"))
    for n in set(L.groups) | set(new.groups):
        gb, ga = L.groups.get(n), new.groups.get(n)
        if gb is not ga:
            ch.groups.append(_Touched(n, _file_of(n), gb, ga, None, None))
    ch.groups.sort(key=lambda t: t.file.encode("utf-8", "surrogateescape"))
    ch.policy_touched, ch.policy = new.policy is not L.policy, new.policy
    _validate_change(L, ch)
    _check_rules(L, ch, signer_key)


def _at(pg: "pygit2.Repository", tip: Optional[str]) -> Directory:
    return from_tree(pg, commit(pg, tip)) if tip else Directory()


# -- the history of entries and keys, derived without verifying (any tip) -------------


def _derive(pg: "pygit2.Repository", tip: str) -> list[Member]:
    """Every distinct member blob in the directory history up to ``tip``, newest first (by the
    last commit holding it; tree order within one commit), parsed (blobs that do not parse
    are left out). One pass over the commits, reading only what each one changes."""
    oids = [o for o, _ in first_parent_line(pg, tip)]
    oids.reverse()
    trees = [str(commit(pg, o).tree_id) for o in oids]
    empty = treediff.empty_tree(len(tip))
    present: dict[str, str] = {}  # file -> blob
    last: dict[str, tuple[int, str]] = {}  # blob -> (last commit index holding it, its file there)
    for i, raw in enumerate(_changes(pg, list(zip([empty] + trees[:-1], trees)))):
        if isinstance(raw, str):  # not read (too large, missing, not a tree): nothing derived from it
            continue
        for path, mode, oid in raw:
            top, _, rest = path.partition("/")
            if top != "members" or not rest or rest.count("/") > 1:  # either layout
                continue
            old = present.pop(rest, None)
            if old is not None:
                last[old] = max(last.get(old, (-1, "")), (i - 1, rest))
            if mode and mode != TREE_MODE:
                present[rest] = oid
    for f, b in present.items():
        last[b] = max(last.get(b, (-1, "")), (len(trees) - 1, f))
    out = []
    for b, _ in sorted(last.items(), key=lambda kv: (-kv[1][0], kv[1][1].encode("utf-8", "surrogateescape"))):
        try:
            out.append(Member.model_validate_json(blob_data(pg, b)))
        except (ValueError, KeyError, TypeError):
            continue
    return out


def key_history(pg: "pygit2.Repository", tip: Optional[str]) -> dict[str, str]:
    """Every key any member entry held in the directory history up to ``tip``: key -> member name.

    One pass over the (linear) chain; each member blob is parsed once.
    """
    if tip is None:
        return {}
    hit = _LEDGERS.get(tip)
    if hit is not None:
        return dict(hit.history)
    owners: dict[str, str] = {}
    for m in _derive(pg, tip):
        for k in m.owned_keys():
            owners.setdefault(k, m.name)
    return owners


_ENTRY_HISTORY: dict[str, dict[str, list[Member]]] = {}


def entry_history(pg: "pygit2.Repository", tip: str) -> dict[str, list[Member]]:
    """member name -> every version of that member's entry in the directory history up to
    ``tip`` (newest first). Cached per tip: the history below a commit never changes."""
    hit = _ENTRY_HISTORY.get(tip)
    if hit is None:
        hit = {}
        for m in _derive(pg, tip):
            hit.setdefault(m.name, []).append(m)
        if len(_ENTRY_HISTORY) > 16:
            _ENTRY_HISTORY.clear()
        _ENTRY_HISTORY[tip] = hit
    return hit


def write_commit(
    pg: "pygit2.Repository", d: Directory, signer: Signer, author: Member, parent: Optional[str], subject: str
) -> str:
    """Write ``d`` as a signed directory commit on ``parent``; return its oid."""
    import time

    import pygit2

    top: dict[str, Any] = {}  # folder name -> dict, file name -> blob id
    for path, data in d.files().items():
        *folders, base = path.split("/")
        node = top
        for f in folders:
            node = node.setdefault(f, {})
        node[base] = pg.create_blob(data)

    def write(node: dict[str, Any]) -> "pygit2.Oid":
        tb = pg.TreeBuilder()
        for k, v in node.items():
            if isinstance(v, dict):
                tb.insert(k, write(v), pygit2.enums.FileMode.TREE)
            else:
                tb.insert(k, v, pygit2.enums.FileMode.BLOB)
        return tb.write()

    root = write(top)
    from gitmail.core.objects import author_name, ident

    name = author_name(author.display_name or author.name)
    sig = ident(name, author_name(author.email), int(time.time()))
    return signed_commit(pg, sig, sig, subject + "\n", str(root), [parent] if parent else [], signer.sign)


# -- loading with verification -------------------------------------------------


def load(repo: "Repo") -> Directory:
    """The verified directory of this clone.

    Verifies the directory commits fetched since the last verified tip (only
    those: the ledger at that tip is kept in ``.git/gitmail/directory-ledger.json``,
    trusted only when its tip is the verified tip, rebuilt from git otherwise),
    moves ``refs/gitmail/verified/directory`` forward over the good ones and
    rewrites the allowed-signers file. When the directory did not move, nothing
    is verified again. Problems are recorded (see :func:`problems`).
    """
    pg = repo.pg
    vref = refs.verified(refs.DIRECTORY)
    tip = repo.ref_target(refs.tracking(refs.DIRECTORY, repo.remote))
    old = repo.ref_target(vref)
    L, probs = _ledger_of(repo, old)
    if tip is None or tip == old or tip == L.tip:
        if probs:
            problems.record(repo, "directory", probs)
        d = L.directory()
        if not (repo.data_dir / "members.json").exists():
            write_signers(repo, d)
        refspecs.keep(repo, d.tip, d.groups_if_member, d.names_ever())
        return d
    after, more = advance(pg, L, tip)
    if after.tip and after.tip != old:
        with repo.lock():
            repo.set_ref(vref, after.tip, repo.ref_target(vref), "gitmail: verified directory")
        _save(repo, after)
    problems.record(repo, "directory", probs + more)
    d = after.directory()
    write_signers(repo, d)
    refspecs.keep(repo, d.tip, d.groups_if_member, d.names_ever())  # a plain git pull follows group changes from here on
    return d


def load_existing(repo: "Repo") -> Directory:
    """:func:`load`, for a command that only reads the org (``members``, ``org``, ``group
    list``): raises :class:`NotInitializedError`, writing nothing, when this repository holds
    no gitmail directory at all (neither fetched nor verified): a plain git repository has no
    members, policy or groups to show, and showing the defaults would say there was an org."""
    if repo.ref_target(refs.tracking(refs.DIRECTORY, repo.remote)) is None \
            and repo.ref_target(refs.verified(refs.DIRECTORY)) is None:
        raise NotInitializedError(f"no gitmail org here: {repo.path.resolve()} holds no gitmail directory; "
                                  "run 'gitmail init --name NAME --org URL' (or pass --repo)")
    return load(repo)


def _ledger_of(repo: "Repo", tip: Optional[str]) -> tuple[Ledger, list[str]]:
    """The ledger at the verified tip ``tip`` (:func:`ledger_kept` with the clone's ledger file)."""
    return ledger_kept(repo.pg, repo.data_dir / LEDGER_FILE, tip)


def _save(repo: "Repo", L: Ledger) -> None:
    save_ledger(repo.data_dir / LEDGER_FILE, L)


def write_signers(repo: "Repo", d: Directory) -> None:
    """Write the allowed-signers file (with the user's own signers appended) and the member list."""
    path = repo.data_dir / "allowed_signers"
    write_atomic(path, _with_user_signers(d.allowed_signers(), repo.config.get(USER_SIGNERS_KEY.lower()), repo.path),
                 only_if_changed=True)
    import json

    write_atomic(repo.data_dir / "members.json", json.dumps(sorted(d.members)) + "\n", only_if_changed=True)


USER_SIGNERS_HEADER = "# below: the allowed signers of the user's own git configuration (global/system)\n"
# Where the clone's own gpg.ssh.allowedSignersFile pointed before ``gitmail init`` set it to
# gitmail's file (a project that signs its commits with SSH keys has one): its lines are kept.
USER_SIGNERS_KEY = "gitmail.userAllowedSignersFile"


def _with_user_signers(text: str, local: Optional[str] = None, cwd: Optional[Path] = None) -> str:
    """gitmail's allowed signers, then the lines of the file the user configured: the clone's
    own from before ``gitmail init`` (``local``, :data:`USER_SIGNERS_KEY`), else the one the
    user's global or system config gives in this repository (``cwd``; includes followed, so an
    ``includeIf "gitdir:..."`` work identity counts).

    ``gitmail init`` sets ``gpg.ssh.allowedSignersFile`` in the clone, which hides
    the user's; appending its lines keeps their teammates' signed code commits
    verifying (the file is regenerated on every directory load). The user's trust wins: a
    member whose name is one of the user's principals (or matches one of their patterns)
    gets no line here, so a member who registers as ``boss@team.example`` cannot sign code
    commits that git shows as a teammate's.
    """
    p = absolute_signers_path(local, cwd) if local else _configured_signers_file(cwd)
    if p:
        try:
            theirs = open(os.path.expanduser(p), encoding="utf-8", errors="surrogateescape").read()
        except OSError:
            return text
        if theirs and not theirs.endswith("\n"):
            theirs += "\n"
        taken = _principals(theirs)
        if taken:
            # a literal principal also covers its look-alikes ('Iisa@team.example' for 'lisa@...')
            looks = {skeleton(p) for p in taken if not any(c in p for c in "*?")}

            def theirs_too(name: str) -> bool:
                return skeleton(name) in looks or any(fnmatch.fnmatchcase(name, pat) for pat in taken)

            text = "".join(ln for ln in text.splitlines(keepends=True) if not any(map(theirs_too, _principals(ln))))
        return text + USER_SIGNERS_HEADER + theirs
    return text


def _principals(text: str) -> list[str]:
    """The principal patterns of an allowed-signers text (ssh-keygen(1), ALLOWED SIGNERS: the
    first field of each line, a comma-separated list, quoted when it holds spaces; ``!``
    negations left out)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith('"'):
            field = line[1:].split('"', 1)[0]
        else:
            field = line.split(None, 1)[0]
        out += [pat for pat in field.split(",") if pat and not pat.startswith("!")]
    return out


def _configured_signers_file(cwd: Optional[Path] = None) -> str:
    """The ``gpg.ssh.allowedSignersFile`` of the user's global, else system, git config, as git
    reads it in the repository at ``cwd`` (includes and ``includeIf`` followed), absolute ('' for none)."""
    from gitmail import git

    for scope in ("--global", "--system"):
        try:
            p = git.run(["config", scope, "--includes", "--path", "--get", "gpg.ssh.allowedSignersFile"], cwd).stdout
        except Exception:
            continue
        if p.strip():
            return absolute_signers_path(p.decode("utf-8", "surrogateescape").strip(), cwd)
    return ""


def absolute_signers_path(value: str, cwd: Optional[Path]) -> str:
    """``gpg.ssh.allowedSignersFile``'s value as a path gitmail can open from anywhere: ``~``
    expanded, a relative one taken from the top of the work tree (where git runs ssh-keygen;
    it was read from gitmail's own current directory, so a sync from a subfolder lost it)."""
    from gitmail import git

    value = os.path.expanduser(value)
    if os.path.isabs(value) or cwd is None:
        return value
    return os.path.join(git.work_tree(cwd) or cwd, value)


# -- the org fingerprint (docs/protocol.md §7, "Trust on first use") -----------


def org_fingerprint(pg: "pygit2.Repository", tip: str) -> str:
    """``<root commit id>:<SHA256 fingerprint of the first admin's key>`` of the directory at ``tip``.

    The root is the first directory commit; its one member is the first admin
    (:func:`check_change`). Raises :class:`VerificationError` when the root
    does not hold exactly one member.
    """
    from gitmail.core.signing import fingerprint

    hit = _LEDGERS.get(tip)
    if hit is not None and hit.root is not None:
        root_id = hit.root
    else:
        *_, (root_id, _) = first_parent_line(pg, tip)
    c = commit(pg, root_id)
    root = from_tree(pg, c)
    if len(root.members) != 1:
        raise VerificationError("the directory's first commit does not register exactly one member")
    (first,) = root.members.values()
    return f"{c.id}:{fingerprint(first.signing_key)}"
