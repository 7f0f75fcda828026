"""The org directory: members, groups and policy on ``refs/heads/gitmail/directory``.

Tree layout (docs/protocol.md, "Directory"): ``org.json``, ``members/<ref-safe
name>.json``, ``groups/<ref-safe name>.json`` and ``allowed_signers`` (generated
from the members, for auditors using stock git). Every commit is signed; the
rules in :func:`check_change` decide which changes a signer may make.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Optional, Sequence

from gitmail.core import problems, refs, refspecs
from gitmail.core.address import BROADCAST, GROUP_PREFIX, is_mixed_script, normalize, principal, skeleton, to_ref
from gitmail.core.files import write_atomic
from gitmail.core.model import Group, Member, OrgPolicy, canonical_json
from gitmail.core.objects import blob_data, commit, first_parent_line, signed_commit
from gitmail.core.objects import tree as objtree
from gitmail.core.signing import Signer, check_stored_key, signer_of
from gitmail.errors import AddressError, DirectoryError, KeyError_, UnknownRecipientError, VerificationError

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
        self._by_key = {k: m for m in self.members.values() for k in m.owned_keys()}

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
        group's members (none for a group the directory does not hold), a name itself.
        The one recipient expansion (readers of encrypted mail, who owes an ack)."""
        out: set[str] = set()
        for r in recipients:
            if r == BROADCAST:
                out |= set(self.members)
            elif r.startswith(GROUP_PREFIX):
                g = self.groups.get(r[len(GROUP_PREFIX):])
                out |= set(g.members) if g else set()
            else:
                out.add(r)
        return out

    def groups_of(self, name: str) -> list[str]:
        """Group addresses (``team:NAME``) that list member ``name``."""
        return [GROUP_PREFIX + g.name for g in self.groups.values() if name in g.members]

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
        if tip is not None and (tip == commit_id or _descends(pg, tip, commit_id)):
            return None
        return f"signed with a key {m.name} retired before this message was sent"

    def entries_of(self, pg: "pygit2.Repository", name: str) -> list[Member]:
        """Every version of member ``name``'s entry up to this directory's tip, the current one
        first (docs/protocol.md §6: a message commit's author is rendered from one of them)."""
        current = [self.members[name]] if name in self.members else []
        return current + (entry_history(pg, self.tip).get(name, []) if self.tip else [])

    def allowed_signers(self) -> str:
        """The allowed-signers file (ssh-keygen(1) ALLOWED SIGNERS), docs/protocol.md §8.

        One line per member key, current then retired (revoked keys are left
        out), members sorted by name (code points): ``"<name>" namespaces="git"
        ssh-ed25519 <base64>`` and a newline. Raises :class:`AddressError` for
        a name that cannot be quoted literally (never in a validated directory).
        """
        lines = []
        for name in sorted(self.members):
            m = self.members[name]
            p = principal(name)
            for key in m.all_keys():
                lines.append(f'{p} namespaces="git" {check_stored_key(key)}')
        return "\n".join(lines) + ("\n" if lines else "")

    def files(self) -> dict[str, bytes]:
        """The directory's tree as path -> content."""
        out = {"org.json": canonical_json(self.policy.model_dump(mode="json"))}
        for name, m in self.members.items():
            out[f"members/{to_ref(name)}.json"] = canonical_json(m.stored())
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
                if e.name != to_ref(g.name) + ".json":
                    raise ValueError(f"group file {e.name} does not match its name")
                groups[g.name] = g
        d = Directory(str(commit.id), members, groups, policy)
        validate(d)
    except (ValueError, KeyError, TypeError, DirectoryError, AddressError, KeyError_) as e:
        raise VerificationError(f"malformed directory at {str(commit.id)[:10]}: {str(e).splitlines()[0]}") from None
    if "allowed_signers" not in tree or blob_data(pg, tree["allowed_signers"].id) != d.allowed_signers().encode():
        raise VerificationError(f"directory at {str(commit.id)[:10]}: allowed_signers does not match the members")
    return d


# -- the directory entry grammar (docs/protocol.md §8), checked on every read and write --

MAX_DISPLAY_NAME = 200  # bytes of UTF-8
MAX_EMAIL = 254  # bytes of UTF-8
MAX_KEYS = 1000  # keys (current, retired, revoked) in one entry
_BAD_CATEGORIES = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")
_HEX40 = frozenset("0123456789abcdef")


def _text_ok(value: str) -> Optional[str]:
    import unicodedata

    for ch in value:
        if unicodedata.category(ch) in _BAD_CATEGORIES:
            return f"a control or format character (U+{ord(ch):04X})"
        if ch in "<>":
            return f"{ch!r}"
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
    import unicodedata

    try:
        if normalize(m.name) != m.name:
            raise DirectoryError(f"member name {m.name!r} is not in normal form")
    except AddressError as e:
        raise DirectoryError(str(e)) from None
    who = f"member {m.name!r}"
    dn = m.display_name
    if len(dn.encode("utf-8", "surrogatepass")) > MAX_DISPLAY_NAME:
        raise DirectoryError(f"{who}: display_name over {MAX_DISPLAY_NAME} bytes")
    bad = _text_ok(dn)
    if bad:
        raise DirectoryError(f"{who}: display_name contains {bad}")
    em = m.email
    local, at, domain = em.partition("@")
    if (not at or not local or not domain or "@" in domain or len(em.encode("utf-8", "surrogatepass")) > MAX_EMAIL
            or any(unicodedata.category(ch).startswith("Z") or ch.isspace() or ch == '"' for ch in em) or _text_ok(em)):
        raise DirectoryError(f"{who}: email {em[:60]!r} is not local@domain")
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
    if not policy.allow_mixed_script and is_mixed_script(name):
        raise DirectoryError(f"member name {name!r} mixes scripts (the org policy allow_mixed_script is off)")


def _entries(pg: "pygit2.Repository", tip: Optional[str]) -> Iterator[Member]:
    """Every version of every member entry in the directory history up to ``tip``, newest
    commit first, each distinct blob parsed once (entries that do not parse are skipped)."""
    seen: set[str] = set()
    for oid, _ in first_parent_line(pg, tip) if tip else ():
        tree = commit(pg, oid).tree
        if "members" not in tree:
            continue
        for e in objtree(pg, tree["members"].id):
            if str(e.id) in seen:
                continue
            seen.add(str(e.id))
            try:
                yield Member.model_validate_json(blob_data(pg, e.id))
            except ValueError:
                continue


def key_history(pg: "pygit2.Repository", tip: Optional[str]) -> dict[str, str]:
    """Every key any member entry held in the directory history up to ``tip``: key -> member name.

    Walks the (linear) chain to the root; each member blob is parsed once.
    """
    owners: dict[str, str] = {}
    for m in _entries(pg, tip):
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
        for m in _entries(pg, tip):
            hit.setdefault(m.name, []).append(m)
        if len(_ENTRY_HISTORY) > 16:
            _ENTRY_HISTORY.clear()
        _ENTRY_HISTORY[tip] = hit
    return hit


def _descends(pg: "pygit2.Repository", tip: str, oid: str) -> bool:
    import pygit2

    try:
        return bool(pg.descendant_of(pygit2.Oid(hex=tip), pygit2.Oid(hex=oid)))
    except (KeyError, ValueError, pygit2.GitError):
        return False


def _check_keys(old: Optional[Directory], new: Directory, history: dict[str, str]) -> None:
    """The key rules (docs/protocol.md §8): a key belongs to one member, ever; keys are never
    dropped or reused; a retired key is never current again. Raises :class:`DirectoryError`."""
    for name, m in new.members.items():
        for k in m.owned_keys():
            if history.get(k, name) != name:
                raise DirectoryError(f"a key of {name!r} is (or was) a key of {history[k]!r}; a key belongs to one member, ever")
        before = old.members.get(name) if old else None
        held = {k for k, n in history.items() if n == name}
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


def check_change(old: Optional[Directory], new: Directory, signer_key: str,
                 history: Optional[dict[str, str]] = None) -> None:
    """Check that the holder of ``signer_key`` may turn ``old`` into ``new``.

    ``new`` must be valid (:func:`validate`) and keep the key rules against
    ``history`` (:func:`key_history` of ``old``; without it, only ``old``'s keys).

    Rules: the first commit registers exactly one member, an admin, with the
    signing key; an admin may change anything; a member may change only their
    own entry (key rotation included, signed with their current key) and never
    their role; a newcomer may add exactly their own entry, as a plain member,
    signed with the key they register. Raises :class:`DirectoryError`.
    """
    validate(new)
    added = set(new.members) - set(old.members if old else ())
    for name in sorted(added):
        check_new_name(name, [n for n in new.members if n != name], new.policy)
    if history is None:
        history = {k: m.name for m in (old.members.values() if old else ()) for k in m.owned_keys()}
    _check_keys(old, new, history)
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
    if actor is None and signer_key in history:
        raise DirectoryError("signed with a key that belonged to a former member")
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
    for oid, ps in first_parent_line(pg, new_tip, old_tip):
        chain.append(commit(pg, oid))
        if len(ps) > 1:
            return _at(pg, old_tip), [f"directory commit {oid[:10]} is a merge"]
        if not ps and old_tip is not None:
            return _at(pg, old_tip), ["directory history was rewritten (not a fast-forward)"]
    current = _at(pg, old_tip)
    history = key_history(pg, old_tip)
    for c in reversed(chain):
        try:
            new = from_tree(pg, c)
            check_change(current if current.tip else None, new, signer_of(c), history)
        except (DirectoryError, VerificationError) as e:
            return current, [f"directory commit {str(c.id)[:10]} rejected: {e}"]
        current = new
        for m in new.members.values():
            for k in m.owned_keys():
                history.setdefault(k, m.name)
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
        if not (repo.data_dir / "members.json").exists():
            write_signers(repo, d)
        refspecs.keep(repo, d.tip, d.groups_if_member)
        return d
    d, probs = verify_range(pg, old, tip)
    if d.tip != old and d.tip:
        with repo.lock():
            repo.set_ref(vref, d.tip, repo.ref_target(vref), "gitmail: verified directory")
    problems.record(repo, "directory", probs)
    write_signers(repo, d)
    refspecs.keep(repo, d.tip, d.groups_if_member)  # a plain git pull follows group changes from here on
    return d


def write_signers(repo: "Repo", d: Directory) -> None:
    """Write the allowed-signers file (with the user's own signers appended) and the member list."""
    path = repo.data_dir / "allowed_signers"
    write_atomic(path, _with_user_signers(d.allowed_signers()), only_if_changed=True)
    import json

    write_atomic(repo.data_dir / "members.json", json.dumps(sorted(d.members)) + "\n", only_if_changed=True)


USER_SIGNERS_HEADER = "# below: the allowed signers of the user's own git configuration (global/system)\n"


def _with_user_signers(text: str) -> str:
    """gitmail's allowed signers, then the lines of the file the user configured globally.

    ``gitmail init`` sets ``gpg.ssh.allowedSignersFile`` in the clone, which hides
    the user's global one; appending its lines keeps their teammates' signed
    code commits verifying (the file is regenerated on every directory load).
    """
    from gitmail import git

    for scope in ("--global", "--system"):
        try:
            out = git.run(["config", scope, "--path", "--get", "gpg.ssh.allowedSignersFile"]).stdout
        except Exception:
            continue
        p = out.decode("utf-8", "surrogateescape").strip()
        if not p:
            continue
        try:
            theirs = open(os.path.expanduser(p), encoding="utf-8", errors="surrogateescape").read()
        except OSError:
            return text
        if theirs and not theirs.endswith("\n"):
            theirs += "\n"
        return text + USER_SIGNERS_HEADER + theirs
    return text


# -- the org fingerprint (docs/protocol.md §7, "Trust on first use") -----------


def org_fingerprint(pg: "pygit2.Repository", tip: str) -> str:
    """``<root commit id>:<SHA256 fingerprint of the first admin's key>`` of the directory at ``tip``.

    The root is the first directory commit; its one member is the first admin
    (:func:`check_change`). Raises :class:`VerificationError` when the root
    does not hold exactly one member.
    """
    from gitmail.core.signing import fingerprint

    *_, (root_id, _) = first_parent_line(pg, tip)
    c = commit(pg, root_id)
    root = from_tree(pg, c)
    if len(root.members) != 1:
        raise VerificationError("the directory's first commit does not register exactly one member")
    (first,) = root.members.values()
    return f"{c.id}:{fingerprint(first.signing_key)}"
