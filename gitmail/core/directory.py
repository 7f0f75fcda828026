"""The org directory: members, groups and policy on ``refs/heads/gitmail/directory``.

Tree layout (docs/protocol.md, "Directory"): ``org.json``, ``members/<ref-safe
name>.json``, ``groups/<ref-safe name>.json`` and ``allowed_signers`` (generated
from the members, for auditors using stock git). Every commit is signed; the
rules in :func:`check_change` decide which changes a signer may make.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from gitmail.core import problems, refs
from gitmail.core.address import BROADCAST, GROUP_PREFIX, normalize, to_ref
from gitmail.core.files import write_atomic
from gitmail.core.model import Group, Member, OrgPolicy, canonical_json
from gitmail.core.objects import blob_data, commit, signed_commit
from gitmail.core.objects import tree as objtree
from gitmail.core.signing import Signer, signer_of
from gitmail.errors import DirectoryError, UnknownRecipientError, VerificationError

if TYPE_CHECKING:
    import pygit2

    from gitmail.core.repo import Repo


@dataclass
class Directory:
    """A snapshot of the directory at one commit (``tip``; None when empty)."""

    tip: Optional[str] = None
    members: dict[str, Member] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    policy: OrgPolicy = field(default_factory=OrgPolicy)

    def __post_init__(self) -> None:
        self._by_key = {k: m for m in self.members.values() for k in m.all_keys()}

    def member_by_key(self, key: str) -> Optional[Member]:
        return self._by_key.get(key)

    def member(self, name: str) -> Member:
        """The member called ``name``. Raises :class:`UnknownRecipientError`."""
        m = self.members.get(name)
        if m is None:
            raise UnknownRecipientError(f"unknown member {name!r} (see 'gitmail members')")
        return m

    def groups_of(self, name: str) -> list[str]:
        """Group addresses (``team:NAME``) that list member ``name``."""
        return [GROUP_PREFIX + g.name for g in self.groups.values() if name in g.members]

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

    def allowed_signers(self) -> str:
        """The allowed-signers file (ssh-keygen(1) ALLOWED SIGNERS) for every member key."""
        lines = []
        for name in sorted(self.members):
            m = self.members[name]
            for key in m.all_keys():
                lines.append(f'"{name}" namespaces="git" {key}')
        return "\n".join(lines) + ("\n" if lines else "")

    def files(self) -> dict[str, bytes]:
        """The directory's tree as path -> content."""
        out = {"org.json": canonical_json(self.policy.model_dump(mode="json"))}
        for name, m in self.members.items():
            out[f"members/{to_ref(name)}.json"] = canonical_json(m.model_dump(mode="json"))
        for name, g in self.groups.items():
            out[f"groups/{to_ref(name)}.json"] = canonical_json(g.model_dump(mode="json"))
        out["allowed_signers"] = self.allowed_signers().encode()
        return out


def from_tree(pg: "pygit2.Repository", commit: "pygit2.Commit") -> Directory:
    """Parse the directory at ``commit``. Raises :class:`VerificationError` if malformed."""
    tree = commit.tree
    try:
        policy = OrgPolicy.model_validate_json(blob_data(pg, tree["org.json"].id)) if "org.json" in tree else OrgPolicy()
        members: dict[str, Member] = {}
        if "members" in tree:
            for e in objtree(pg, tree["members"].id):
                m = Member.model_validate_json(blob_data(pg, e.id))
                if e.name != to_ref(m.name) + ".json":
                    raise ValueError(f"member file {e.name} does not match its name")
                members[m.name] = m
        groups: dict[str, Group] = {}
        if "groups" in tree:
            for e in objtree(pg, tree["groups"].id):
                g = Group.model_validate_json(blob_data(pg, e.id))
                groups[g.name] = g
    except (ValueError, KeyError, TypeError) as e:
        raise VerificationError(f"malformed directory at {str(commit.id)[:10]}: {str(e).splitlines()[0]}") from None
    d = Directory(str(commit.id), members, groups, policy)
    if "allowed_signers" not in tree or blob_data(pg, tree["allowed_signers"].id) != d.allowed_signers().encode():
        raise VerificationError(f"directory at {str(commit.id)[:10]}: allowed_signers does not match the members")
    return d


def check_change(old: Optional[Directory], new: Directory, signer_key: str) -> None:
    """Check that the holder of ``signer_key`` may turn ``old`` into ``new``.

    Rules: the first commit registers exactly one member, an admin, with the
    signing key; an admin may change anything; a member may change only their
    own entry (key rotation included, signed with their current key) and never
    their role; a newcomer may add exactly their own entry, as a plain member,
    signed with the key they register. Raises :class:`DirectoryError`.
    """
    if old is None or not old.members:
        if len(new.members) != 1:
            raise DirectoryError("the first directory commit must register exactly one member")
        (m,) = new.members.values()
        if m.role != "admin" or m.signing_key != signer_key:
            raise DirectoryError("the first member must be an admin signing with their own key")
        return
    actor = old.member_by_key(signer_key)
    if actor is not None and actor.signing_key != signer_key:
        raise DirectoryError(f"{actor.name} signed with a retired key")
    if actor is not None and actor.role == "admin":
        if not any(m.role == "admin" for m in new.members.values()):
            raise DirectoryError("the directory must keep at least one admin")
        return
    changed = {n for n in set(old.members) | set(new.members) if old.members.get(n) != new.members.get(n)}
    if old.groups != new.groups or old.policy != new.policy:
        raise DirectoryError("only an admin may change groups or org policy")
    if actor is not None:
        if changed - {actor.name}:
            raise DirectoryError(f"{actor.name} may not change other members' entries")
        mine = new.members.get(actor.name)
        if mine is None or mine.role != actor.role:
            raise DirectoryError(f"{actor.name} may not remove themself or change their role")
        return
    added = set(new.members) - set(old.members)
    if changed != added or len(added) != 1:
        raise DirectoryError("a newcomer may only add their own entry")
    (name,) = added
    m = new.members[name]
    if m.signing_key != signer_key or m.role != "member":
        raise DirectoryError(f"registration of {name} must be signed by its own key, as a member")
    if old.member_by_key(signer_key) is not None:
        raise DirectoryError("that key is already registered to another member")


def verify_range(pg: "pygit2.Repository", old_tip: Optional[str], new_tip: str) -> tuple[Directory, list[str]]:
    """Verify directory commits after ``old_tip`` up to ``new_tip``, in order.

    Returns the directory at the last good commit and the problems found (a
    bad commit stops the walk; nothing after it is accepted). A ``new_tip``
    that does not descend from ``old_tip`` is a rewrite: nothing is accepted.
    """
    chain = []
    c = commit(pg, new_tip)
    while str(c.id) != old_tip:
        chain.append(c)
        if len(c.parent_ids) > 1:
            return _at(pg, old_tip), [f"directory commit {str(c.id)[:10]} is a merge"]
        if not c.parent_ids:
            if old_tip is not None:
                return _at(pg, old_tip), ["directory history was rewritten (not a fast-forward)"]
            break
        c = commit(pg, c.parent_ids[0])
    current = _at(pg, old_tip)
    for c in reversed(chain):
        try:
            new = from_tree(pg, c)
            check_change(current if current.tip else None, new, signer_of(c))
        except (DirectoryError, VerificationError) as e:
            return current, [f"directory commit {str(c.id)[:10]} rejected: {e}"]
        current = new
    return current, []


def _at(pg: "pygit2.Repository", tip: Optional[str]) -> Directory:
    return from_tree(pg, commit(pg, tip)) if tip else Directory()


def write_commit(
    pg: "pygit2.Repository", d: Directory, signer: Signer, author: Member, parent: Optional[str], subject: str
) -> str:
    """Write ``d`` as a signed directory commit on ``parent``; return its oid."""
    import time

    import pygit2

    root = pg.TreeBuilder()
    subs: dict[str, "pygit2.TreeBuilder"] = {}
    for path, data in sorted(d.files().items()):
        blob = pg.create_blob(data)
        head, _, rest = path.partition("/")
        if rest:
            subs.setdefault(head, pg.TreeBuilder()).insert(rest, blob, pygit2.enums.FileMode.BLOB)
        else:
            root.insert(head, blob, pygit2.enums.FileMode.BLOB)
    for name, tb in subs.items():
        root.insert(name, tb.write(), pygit2.enums.FileMode.TREE)
    name = " ".join((author.display_name or author.name).replace("<", "").replace(">", "").split())
    sig = pygit2.Signature(name, author.email, int(time.time()), 0)
    return signed_commit(pg, sig, sig, subject + "\n", root.write(), [parent] if parent else [], signer.sign)


# -- loading with verification -------------------------------------------------


def load(repo: "Repo") -> Directory:
    """The verified directory of this clone.

    Verifies any directory commits fetched since the last verified tip, moves
    ``refs/gitmail/verified/directory`` forward over the good ones and rewrites
    the allowed-signers file. Problems are recorded (see :func:`problems`).
    """
    pg = repo.pg
    vref = refs.verified(refs.DIRECTORY)
    tip = repo.ref_target(refs.tracking(refs.DIRECTORY, repo.remote))
    old = repo.ref_target(vref)
    if tip is None or tip == old:
        d = _at(pg, old)
        _write_signers(repo, d)
        return d
    d, probs = verify_range(pg, old, tip)
    if d.tip != old and d.tip:
        with repo.lock():
            repo.set_ref(vref, d.tip, repo.ref_target(vref), "gitmail: verified directory")
    problems.record(repo, "directory", probs)
    _write_signers(repo, d)
    return d


def _write_signers(repo: "Repo", d: Directory) -> None:
    path = repo.data_dir / "allowed_signers"
    write_atomic(path, d.allowed_signers(), only_if_changed=True)
