"""Issue 16, item 5: the directory is verified once, incrementally, with the same verdicts.

Differential: random directory histories (registrations, key rotations with
retired tips, revocations, display-name changes back and forth, groups, policy,
removals, promotions, then one forged or malformed commit and more on top) are
verified three ways, which must agree exactly (accepted tip, problem text,
members, groups, policy, key history, every member's entry versions):

* the reference: the per-commit full-snapshot verifier as it was before issue 16
  (kept below, verbatim but for names), O(members) per commit;
* :func:`gitmail.core.directory.advance` from the root in one call;
* :func:`advance` in small steps, the ledger written and read back between steps
  (what successive syncs do with ``.git/gitmail/directory-ledger.json``).

Then the clone-level rules: a load whose directory did not move verifies nothing,
one bringing k commits verifies those k, a deleted ledger is rebuilt from git, and a
ledger for another tip is never trusted.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Iterator, Optional

import pygit2
import pytest

from gitmail.core import directory as dirmod
from gitmail.core import refs, treediff
from gitmail.core.address import to_ref
from gitmail.core.directory import Directory, Ledger, check_new_name, from_tree, validate
from gitmail.core.model import Member, canonical_json
from gitmail.core.objects import blob_data, commit, first_parent_line
from gitmail.core.objects import tree as objtree
from gitmail.core.repo import open_repo
from gitmail.core.signing import Signer, public_key_line, signer_of
from gitmail.errors import DirectoryError, VerificationError

from tests.conftest import Org, git, recorded

# -- the reference: verification as it was before issue 16 (one full snapshot per commit) --


def _ref_entries(pg: pygit2.Repository, tip: Optional[str]) -> Iterator[Member]:
    seen: set[str] = set()
    for oid, _ in first_parent_line(pg, tip) if tip else ():
        tree = commit(pg, oid).tree
        if "members" not in tree:
            continue
        files = []
        for e in objtree(pg, tree["members"].id):  # either layout: a file, or a shard folder of files
            files += list(objtree(pg, e.id)) if e.filemode == pygit2.enums.FileMode.TREE else [e]
        for e in files:
            if str(e.id) in seen:
                continue
            seen.add(str(e.id))
            try:
                yield Member.model_validate_json(blob_data(pg, e.id))
            except (ValueError, TypeError):
                continue


def ref_key_history(pg: pygit2.Repository, tip: Optional[str]) -> dict[str, str]:
    owners: dict[str, str] = {}
    for m in _ref_entries(pg, tip):
        for k in m.owned_keys():
            owners.setdefault(k, m.name)
    return owners


def ref_entry_history(pg: pygit2.Repository, tip: str) -> dict[str, list[Member]]:
    hit: dict[str, list[Member]] = {}
    for m in _ref_entries(pg, tip):
        hit.setdefault(m.name, []).append(m)
    return hit


def _ref_check_keys(old: Optional[Directory], new: Directory, history: dict[str, str]) -> None:
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


def ref_check_change(old: Optional[Directory], new: Directory, signer_key: str, history: dict[str, str]) -> None:
    validate(new)
    added = set(new.members) - set(old.members if old else ())
    for name in sorted(added):
        check_new_name(name, [n for n in new.members if n != name], new.policy)
    _ref_check_keys(old, new, history)
    if old is None or not old.members:
        if len(new.members) != 1:
            raise DirectoryError("the first directory commit must register exactly one member")
        (m,) = new.members.values()
        if m.role != "admin" or m.signing_key != signer_key:
            raise DirectoryError("the first member must be an admin signing with their own key")
        return
    if new.policy.directory_layout < old.policy.directory_layout:
        raise DirectoryError(f"the directory layout never goes back (from {old.policy.directory_layout} "
                             f"to {new.policy.directory_layout})")
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


def ref_verify_range(pg: pygit2.Repository, old_tip: Optional[str], new_tip: str) -> tuple[Directory, list[str]]:
    def at(tip: Optional[str]) -> Directory:
        return from_tree(pg, commit(pg, tip)) if tip else Directory()

    chain = []
    for oid, ps in first_parent_line(pg, new_tip, old_tip):
        chain.append(commit(pg, oid))
        if len(ps) > 1:
            return at(old_tip), [f"directory commit {oid[:10]} is a merge"]
        if not ps and old_tip is not None:
            return at(old_tip), ["directory history was rewritten (not a fast-forward)"]
    current = at(old_tip)
    history = ref_key_history(pg, old_tip)
    for c in reversed(chain):
        try:
            new = from_tree(pg, c)
            ref_check_change(current if current.tip else None, new, signer_of(c), history)
        except (DirectoryError, VerificationError) as e:
            return current, [f"directory commit {str(c.id)[:10]} rejected: {e}"]
        current = new
        for m in new.members.values():
            for k in m.owned_keys():
                history.setdefault(k, m.name)
    return current, []


# -- writing random directory histories ------------------------------------------------------


def _key() -> Signer:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    k = Ed25519PrivateKey.generate()
    return Signer(public_key_line(k.public_key().public_bytes(serialization.Encoding.Raw,
                                                              serialization.PublicFormat.Raw)), k.sign, "memory")


class History:
    """A bare repo and the intended directory; :meth:`commit` writes it as a (signed) directory commit."""

    def __init__(self, path: Path) -> None:
        self.pg = pygit2.init_repository(str(path), bare=True)
        self.tip: Optional[str] = None
        self.members: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self.policy: dict[str, Any] = {"schema_version": 1}
        self.keys: dict[str, Signer] = {}  # the current key of each member
        self.old_keys: dict[str, list[Signer]] = {}  # retired keys, newest first
        self.gone_keys: list[Signer] = []  # keys of removed members
        self.tips: list[str] = []

    def entry(self, name: str, key: Signer, **kw: Any) -> dict[str, Any]:
        e: dict[str, Any] = {"schema_version": 1, "name": name, "display_name": name, "kind": "human",
                             "email": f"{to_ref(name)}@gitmail.invalid", "signing_key": key.public_key,
                             "previous_keys": [], "encryption_key": None, "role": "member"}
        e.update(kw)
        return e

    def signers_text(self, members: dict[str, dict[str, Any]]) -> bytes:
        lines = []
        for name in sorted(members):
            e = members[name]
            for k in [e["signing_key"], *e.get("previous_keys", [])]:
                lines.append(f'"{name}" namespaces="git" {k}\n')
        return "".join(lines).encode()

    def commit(self, signer: Optional[Signer], members: Optional[dict[str, dict[str, Any]]] = None,
               groups: Optional[dict[str, dict[str, Any]]] = None, policy: Optional[dict[str, Any]] = None,
               signers: Optional[bytes] = None, paths: Optional[dict[str, str]] = None) -> str:
        """Write the directory as one commit, in the layout its policy names (docs/protocol.md §8)
        unless ``paths`` (member name -> path under members/) places some entries elsewhere."""
        pg = self.pg
        members = self.members if members is None else members
        groups = self.groups if groups is None else groups
        policy = self.policy if policy is None else policy
        layout = policy.get("directory_layout", 1)
        root = pg.TreeBuilder()
        for folder, items in (("members", members), ("groups", groups)):
            if items:
                files: dict[str, Any] = {}
                for n, e in items.items():
                    path = (paths or {}).get(n) or (dirmod.member_file(n, layout) if folder == "members"
                                                    else f"{to_ref(n)}.json")
                    *sub, base = path.split("/")
                    node = files
                    for f in sub:
                        node = node.setdefault(f, {})
                    node[base] = pg.create_blob(canonical_json(e))
                root.insert(folder, self._tree(files), pygit2.enums.FileMode.TREE)
        root.insert("org.json", pg.create_blob(canonical_json(policy)), pygit2.enums.FileMode.BLOB)
        if signers is not None or layout == 1:
            text = self.signers_text(members) if signers is None else signers
            root.insert("allowed_signers", pg.create_blob(text), pygit2.enums.FileMode.BLOB)
        else:
            shards: dict[str, Any] = {}
            for n in members:
                shards.setdefault(dirmod.shard(n), {})[n] = members[n]
            root.insert("allowed_signers", self._tree({sh: pg.create_blob(self.signers_text(ms))
                                                       for sh, ms in shards.items()}), pygit2.enums.FileMode.TREE)
        sig = pygit2.Signature("x", "x@gitmail.invalid", 1_700_000_000 + len(self.tips), 0)
        parents = [pygit2.Oid(hex=self.tip)] if self.tip else []
        if signer is None:
            oid = str(pg.create_commit(None, sig, sig, "directory change\n", root.write(), parents))
        else:
            from gitmail.core.objects import signed_commit

            oid = signed_commit(pg, sig, sig, "directory change\n", root.write(), [self.tip] if self.tip else [],
                                signer.sign)
        self.tip = oid
        self.tips.append(oid)
        return oid

    def _tree(self, files: dict[str, Any]) -> pygit2.Oid:
        tb = self.pg.TreeBuilder()
        for k, v in files.items():
            if isinstance(v, dict):
                tb.insert(k, self._tree(v), pygit2.enums.FileMode.TREE)
            else:
                tb.insert(k, v, pygit2.enums.FileMode.BLOB)
        return tb.write()

    @property
    def layout(self) -> int:
        return int(self.policy.get("directory_layout", 1))


def _copy(d: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: {**v, "previous_keys": list(v.get("previous_keys", []))} for k, v in d.items()}


def _valid_step(h: History, rng: random.Random, i: int) -> None:
    """One change the rules accept, chosen at random."""
    names = sorted(h.members)
    plain = [n for n in names if n != "admin"]
    op = rng.choice(["join", "join", "join", "rotate", "revoke", "display", "group", "policy", "remove", "promote",
                     "migrate"])
    if op == "join" or not plain:
        name = f"m{i}"
        k = _key()
        h.members[name] = h.entry(name, k)
        h.keys[name] = k
        h.commit(k)
        return
    who = rng.choice(plain)
    e = h.members[who]
    if op == "rotate":
        old = h.keys[who]
        new = _key()
        e["previous_keys"] = [old.public_key, *e["previous_keys"]]
        if rng.random() < 0.5:
            e.setdefault("retired", {})[old.public_key] = {refs.mail_path("admin", who): f"{rng.getrandbits(160):040x}"}
        e["signing_key"] = new.public_key
        h.keys[who] = new
        h.old_keys.setdefault(who, []).insert(0, old)
        h.commit(old)
    elif op == "revoke" and e["previous_keys"]:
        k = e["previous_keys"].pop()
        e.get("retired", {}).pop(k, None)
        if not e.get("retired"):
            e.pop("retired", None)
        e.setdefault("revoked_keys", []).append(k)
        h.commit(h.keys[who])
    elif op == "display" or op == "revoke":
        # back and forth: the same blob comes back (one version, listed once)
        e["display_name"] = who.upper() if e["display_name"] == who else who
        h.commit(h.keys[who])
    elif op == "group":
        g = rng.choice(["team", "ops"])
        h.groups[g] = {"schema_version": 1, "name": g, "members": sorted(rng.sample(names, min(len(names), 2)))}
        h.commit(h.keys["admin"])
    elif op == "policy":
        h.policy = {**h.policy, "body_limit": rng.randint(1000, 100000)}
        h.commit(h.keys["admin"])
    elif op == "remove":
        del h.members[who]
        h.gone_keys.append(h.keys.pop(who))
        for grp in h.groups.values():
            grp["members"] = [n for n in grp["members"] if n != who]
        h.commit(h.keys["admin"])
    elif op == "migrate" and h.layout == 1:  # an admin moves the org to the fan-out layout
        h.policy = {**h.policy, "directory_layout": 2}
        h.commit(h.keys["admin"])
    else:  # promote
        e["role"] = "admin"
        h.commit(h.keys["admin"])


FORGERIES = ["other_entry", "wrong_key_join", "bad_signers", "unsigned", "bad_email", "reuse_gone_key",
             "rotate_back", "confusable", "retired_signer", "policy_by_member", "mixed_script", "drop_key",
             "two_joins", "bad_file_name", "group_by_member", "not_json", "last_admin_leaves", "key_of_another",
             # the fan-out layout (docs/protocol.md §8, "Layouts")
             "wrong_shard", "flat_file_in_fanout", "layout_back", "layout_by_member", "stale_flat_after_migrate",
             "signers_one_shard", "signers_flat_in_fanout", "shard_is_a_file",
             # a file replaced by a folder that plain git shows as nothing (it holds one empty folder)
             "removed_as_empty_folder"]
FANOUT_FORGERIES = {"wrong_shard", "flat_file_in_fanout", "layout_back", "signers_one_shard",
                    "signers_flat_in_fanout", "shard_is_a_file"}  # forged on an org already in layout 2


def _forge(h: History, rng: random.Random, kind: str) -> None:
    """One commit the rules refuse (or, where its precondition is missing, a harmless valid one)."""
    plain = sorted(n for n in h.members if n not in ("admin", "max") and h.members[n]["role"] == "member")
    m = _copy(h.members)
    if kind == "other_entry" and len(plain) >= 2:
        a, b = plain[:2]
        m[b]["display_name"] = "owned"
        h.commit(h.keys[a], m)
    elif kind == "wrong_key_join":
        k = _key()
        m["evil"] = h.entry("evil", k)
        h.commit(_key(), m)
    elif kind == "bad_signers":
        k = _key()
        m["late"] = h.entry("late", k)
        h.commit(k, m, signers=h.signers_text(h.members))
    elif kind == "unsigned":
        k = _key()
        m["late"] = h.entry("late", k)
        h.commit(None, m)
    elif kind == "bad_email":
        k = _key()
        m["late"] = h.entry("late", k, email="nope")
        h.commit(k, m)
    elif kind == "reuse_gone_key" and h.gone_keys:
        k = h.gone_keys[0]
        m["back"] = h.entry("back", k)
        h.commit(k, m)
    elif kind == "rotate_back" and any(h.members[n]["previous_keys"] for n in plain):
        who = next(n for n in plain if h.members[n]["previous_keys"])
        m[who]["previous_keys"] = [h.keys[who].public_key] + [x for x in m[who]["previous_keys"][1:]]
        m[who]["signing_key"] = h.members[who]["previous_keys"][0]
        m[who].pop("retired", None)
        h.commit(h.keys[who], m)
    elif kind == "confusable":
        k = _key()
        m["\uff4d\uff41\uff58"] = h.entry("\uff4d\uff41\uff58", k)  # fullwidth "max"
        h.commit(k, m)
    elif kind == "retired_signer" and any(h.old_keys.get(n) for n in plain):
        who = next(n for n in plain if h.old_keys.get(n))
        m[who]["display_name"] = "via an old key"
        h.commit(h.old_keys[who][0], m)
    elif kind == "policy_by_member" and plain:
        h.commit(h.keys[plain[0]], policy={**h.policy, "body_limit": 12345})
    elif kind == "mixed_script":
        k = _key()
        m["b\u043eb"] = h.entry("b\u043eb", k)
        h.commit(k, m)
    elif kind == "drop_key" and any(h.members[n]["previous_keys"] for n in plain):
        who = next(n for n in plain if h.members[n]["previous_keys"])
        m[who]["previous_keys"] = []
        m[who].pop("retired", None)
        h.commit(h.keys[who], m)
    elif kind == "two_joins":
        k = _key()
        m["late"] = h.entry("late", k)
        m["later"] = h.entry("later", _key())
        h.commit(k, m)
    elif kind == "bad_file_name":
        k = _key()
        m["late"] = h.entry("other-name", k)
        h.commit(k, m, signers=h.signers_text({**h.members, "other-name": m["late"]}))
    elif kind == "group_by_member" and plain:
        h.commit(h.keys[plain[0]], groups={**h.groups, "mine": {"schema_version": 1, "name": "mine",
                                                                "members": [plain[0]]}})
    elif kind == "not_json":
        k = _key()
        pg = h.pg
        root = pg.TreeBuilder(commit(pg, h.tip).tree) if h.tip else pg.TreeBuilder()
        tb = pg.TreeBuilder(objtree(pg, commit(pg, h.tip).tree["members"].id)) if h.tip else pg.TreeBuilder()
        tb.insert("late.json", pg.create_blob(b"{not json"), pygit2.enums.FileMode.BLOB)
        root.insert("members", tb.write(), pygit2.enums.FileMode.TREE)
        from gitmail.core.objects import signed_commit

        sig = pygit2.Signature("x", "x@gitmail.invalid", 1_700_000_000, 0)
        h.tip = signed_commit(pg, sig, sig, "junk\n", root.write(), [h.tip] if h.tip else [], k.sign)
        h.tips.append(h.tip)
    elif kind == "last_admin_leaves":
        m["admin"]["role"] = "member"
        for n in m:
            m[n]["role"] = "member"
        h.commit(h.keys["admin"], m)
    elif kind == "key_of_another" and plain:
        k = _key()
        m["late"] = h.entry("late", k, previous_keys=[h.keys[plain[0]].public_key])
        h.commit(k, m)
    elif kind in FANOUT_FORGERIES and h.layout == 1:
        h.policy = {**h.policy, "directory_layout": 2}  # not forged: the precondition
        h.commit(h.keys["admin"])
    elif kind == "wrong_shard":  # a newcomer's file one shard over
        k = _key()
        m["late"] = h.entry("late", k)
        wrong = f"{(int(dirmod.shard('late'), 16) + 1) % 256:02x}"
        h.commit(k, m, paths={"late": f"{wrong}/late.json"})
    elif kind == "flat_file_in_fanout":  # a newcomer's file straight under members/
        k = _key()
        m["late"] = h.entry("late", k)
        h.commit(k, m, paths={"late": "late.json"})
    elif kind == "layout_back":  # an admin puts the org back to layout 1
        h.commit(h.keys["admin"], policy={**h.policy, "directory_layout": 1})
    elif kind == "layout_by_member" and h.layout == 1 and plain:  # a member moves the org to the fan-out
        h.commit(h.keys[plain[0]], policy={**h.policy, "directory_layout": 2})
    elif kind == "stale_flat_after_migrate" and h.layout == 1 and plain:  # the move leaves one file behind
        h.commit(h.keys["admin"], policy={**h.policy, "directory_layout": 2}, paths={plain[0]: f"{to_ref(plain[0])}.json"})
    elif kind == "signers_one_shard":  # every line in one shard file
        k = _key()
        m["late"] = h.entry("late", k)
        pg = h.pg
        sb = pg.TreeBuilder()
        sb.insert("00", pg.create_blob(h.signers_text(m)), pygit2.enums.FileMode.BLOB)
        h.commit(k, m, signers=b"")  # written, then its allowed_signers swapped for the one-shard tree below
        c = commit(pg, h.tip or "")
        root = pg.TreeBuilder(c.tree)
        root.insert("allowed_signers", sb.write(), pygit2.enums.FileMode.TREE)
        from gitmail.core.objects import signed_commit

        sig = pygit2.Signature("x", "x@gitmail.invalid", 1_700_000_000, 0)
        h.tips.pop()
        h.tip = signed_commit(pg, sig, sig, "directory change\n", root.write(), [h.tips[-1]], k.sign)
        h.tips.append(h.tip)
    elif kind == "signers_flat_in_fanout":  # the layout 1 file in a layout 2 tree
        k = _key()
        m["late"] = h.entry("late", k)
        h.commit(k, m, signers=h.signers_text(m))
    elif kind == "removed_as_empty_folder" and plain:
        # An admin "removes" a member by putting, where their file was, a folder that holds only
        # an empty folder: git diff-tree -r lists the file's removal and nothing else, but the
        # tree still has a folder where a file belongs (a full read: malformed).
        who = plain[0]
        del m[who]
        h.commit(h.keys["admin"], m)
        pg = h.pg
        c = commit(pg, h.tip or "")
        *folders, base = ("members/" + dirmod.member_file(who, h.layout)).split("/")
        empty = pg.TreeBuilder().write()
        inner = pg.TreeBuilder()
        inner.insert("q", empty, pygit2.enums.FileMode.TREE)
        node = inner.write()

        def rebuilt(tree: pygit2.Tree, path: list[str]) -> pygit2.Oid:
            tb = pg.TreeBuilder(tree)
            if path:
                sub = tree[path[0]] if path[0] in tree else None
                kid = rebuilt(pg[sub.id] if sub is not None else pg[empty], path[1:])  # type: ignore[arg-type]
                tb.insert(path[0], kid, pygit2.enums.FileMode.TREE)
            else:
                tb.insert(base, node, pygit2.enums.FileMode.TREE)
            return tb.write()

        from gitmail.core.objects import signed_commit

        sig = pygit2.Signature("x", "x@gitmail.invalid", 1_700_000_000, 0)
        h.tips.pop()
        h.tip = signed_commit(pg, sig, sig, "directory change\n", rebuilt(c.tree, folders), [h.tips[-1]],
                              h.keys["admin"].sign)
        h.tips.append(h.tip)
    elif kind == "shard_is_a_file":  # a shard folder replaced by a file
        k = _key()
        m["late"] = h.entry("late", k)
        h.commit(k, m, paths={"late": dirmod.shard("late")})
    else:
        _valid_step(h, rng, 999)


def _random_history(tmp: Path, seed: int) -> History:
    rng = random.Random(seed)
    h = History(tmp / f"h{seed}.git")
    if seed % 3 == 1:
        h.policy["directory_layout"] = 2  # a new org: fan-out from its first commit
    admin = _key()
    h.members["admin"] = h.entry("admin", admin, role="admin")
    h.keys["admin"] = admin
    h.commit(admin)
    k = _key()
    h.members["max"] = h.entry("max", k)
    h.keys["max"] = k
    h.commit(k)
    for i in range(rng.randint(6, 16)):
        _valid_step(h, rng, i)
    if seed % 3 == 2 and h.layout == 1:  # a third of the histories move to the fan-out layout here
        h.policy = {**h.policy, "directory_layout": 2}
        h.commit(h.keys["admin"])
        for i in range(rng.randint(0, 4)):
            _valid_step(h, rng, 50 + i)
    if seed % 4 != 3:  # most histories end in a forged commit, then more changes on top of it
        _forge(h, rng, FORGERIES[seed % len(FORGERIES)])
        for i in range(rng.randint(0, 2)):
            _valid_step(h, rng, 100 + i)
    return h


def _state(pg: pygit2.Repository, d: Directory) -> tuple[Any, ...]:
    return (d.tip, {n: m.model_dump() for n, m in d.members.items()}, {n: g.model_dump() for n, g in d.groups.items()},
            d.policy.model_dump())


@pytest.mark.parametrize("seed", range(len(FORGERIES) + 6))
def test_incremental_equals_from_scratch_equals_reference(tmp_path: Path, seed: int) -> None:
    h = _random_history(tmp_path, seed)
    pg = h.pg
    want_dir, want_problems = ref_verify_range(pg, None, h.tip or "")
    dirmod._LEDGERS.clear()
    full, full_problems = dirmod.advance(pg, Ledger(), h.tip or "")
    assert full_problems == want_problems
    assert _state(pg, full.directory()) == _state(pg, want_dir)
    # in batches of 3, and with every tree listed a call at a time (a tiny budget), nothing kept
    for batch, budget in ((3, 1), (1024, 10**9)):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(dirmod, "BATCH", batch)
            mp.setattr(treediff, "CALL_BYTES", budget)
            treediff._KEPT.__init__()  # type: ignore[misc]
            dirmod._LEDGERS.clear()
            other, other_problems = dirmod.advance(pg, Ledger(), h.tip or "")
        assert other_problems == want_problems
        assert _state(pg, other.directory()) == _state(pg, want_dir) and other.history == full.history
        assert other.versions == full.versions and other.signers_oid == full.signers_oid
    # in steps of 1-4 commits, the ledger saved and read back between steps (one sync each)
    rng = random.Random(seed)
    L, i = Ledger(), 0
    problems: list[str] = []
    while i < len(h.tips):
        i = min(len(h.tips), i + rng.randint(1, 4))
        dirmod._LEDGERS.clear()
        L = Ledger.undump(L.dump()) if L.tip else L
        L, problems = dirmod.advance(pg, L, h.tips[i - 1])
    assert problems == want_problems
    got = L.directory()
    assert _state(pg, got) == _state(pg, want_dir)
    assert L.history == ref_key_history(pg, want_dir.tip)
    assert L.root == h.tips[0]
    # every member's entry versions (the author history of docs/protocol.md §6)
    hist = ref_entry_history(pg, want_dir.tip or "")
    for name in set(hist) | set(got.members):
        want = ([want_dir.members[name]] if name in want_dir.members else []) + hist.get(name, [])
        assert got.entries_of(pg, name) == want, name
        assert L.directory().entries_of(pg, name) == want
    assert dirmod.entry_history(pg, want_dir.tip or "") == hist  # the derivation for ledger-less snapshots
    assert dirmod.key_history(pg, want_dir.tip) == ref_key_history(pg, want_dir.tip)
    if want_problems:
        assert "rejected" in want_problems[0] and want_dir.tip != h.tip


def test_every_forgery_is_refused_with_the_reference_verdict(tmp_path: Path) -> None:
    """Each forgery kind on a fixed history, with a remembered ledger (the guard's warm path)."""
    seen = set()
    for n, kind in enumerate(FORGERIES):
        rng = random.Random(n)
        h = History(tmp_path / f"f{n}.git")
        admin = _key()
        h.members["admin"] = h.entry("admin", admin, role="admin")
        h.keys["admin"] = admin
        h.commit(admin)
        for name in ("max", "ann", "bo", "cy", "dee"):
            k = _key()
            h.members[name] = h.entry(name, k)
            h.keys[name] = k
            h.commit(k)
        old = h.members["ann"]["signing_key"]
        new = _key()
        h.members["ann"] = {**h.members["ann"], "previous_keys": [old], "signing_key": new.public_key}
        h.old_keys["ann"] = [h.keys["ann"]]
        h.commit(h.keys["ann"])
        h.keys["ann"] = new
        del h.members["bo"]
        h.gone_keys.append(h.keys.pop("bo"))
        h.commit(admin)
        if kind in FANOUT_FORGERIES:
            h.policy = {**h.policy, "directory_layout": 2}
            h.commit(admin)
        good = h.tip or ""
        _forge(h, rng, kind)
        want_dir, want = ref_verify_range(h.pg, good, h.tip or "")
        d, got = dirmod.verify_range(h.pg, good, h.tip or "")
        assert got == want, kind
        assert want and d.tip == good == want_dir.tip, kind
        seen.add(want[0].split(": ", 1)[1].split(" at ")[0][:40])
    assert len(seen) >= 12  # the forgeries hit many different rules


# -- the clone: no work when nothing moved, k commits verified when k arrived ----------------


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    calls = {"commits": 0, "walks": 0}
    check, walk = dirmod._check_commit, dirmod._changes

    def counted_check(*a: Any, **kw: Any) -> Any:
        calls["commits"] += 1
        return check(*a, **kw)

    def counted_walk(*a: Any, **kw: Any) -> Any:
        calls["walks"] += 1
        return walk(*a, **kw)

    monkeypatch.setattr(dirmod, "_check_commit", counted_check)
    monkeypatch.setattr(dirmod, "_changes", counted_walk)
    return calls


def test_load_verifies_only_what_arrived(org: Org, counting: dict[str, int]) -> None:
    org.join("max")
    ann = org.join("ann")
    repo = open_repo(ann)
    before = dirmod.load(repo)
    assert (repo.data_dir / dirmod.LEDGER_FILE).exists()
    # a new process (nothing remembered): the ledger file at the verified tip, no verification
    dirmod._LEDGERS.clear()
    counting.update(commits=0, walks=0)
    again = dirmod.load(repo)
    assert counting == {"commits": 0, "walks": 0}
    assert again.members == before.members and again.tip == before.tip
    # three members join elsewhere; ann's fetch brings exactly three directory commits
    for n in ("bo", "cy", "di"):
        org.join(n)
    git("fetch", "-q", "origin", cwd=ann)
    dirmod._LEDGERS.clear()
    counting.update(commits=0, walks=0)
    d = dirmod.load(repo)
    assert counting["commits"] == 3
    assert {"bo", "cy", "di"} <= set(d.members)
    assert repo.ref_target(refs.verified(refs.DIRECTORY)) == d.tip
    # and a sync in which the directory did not move does no directory work at all
    dirmod._LEDGERS.clear()
    counting.update(commits=0, walks=0)
    r = org.as_("ann", "sync")
    assert r.code == 0, r.err
    assert counting == {"commits": 0, "walks": 0}


def test_deleted_ledger_is_rebuilt_from_git(org: Org, counting: dict[str, int]) -> None:
    org.join("max")
    for n in ("ann", "bo"):
        org.join(n)
    repo = open_repo(org.clones["max"])
    git("fetch", "-q", "origin", cwd=org.clones["max"])
    want = dirmod.load(repo)
    path = repo.data_dir / dirmod.LEDGER_FILE
    path.unlink()
    dirmod._LEDGERS.clear()
    counting.update(commits=0)
    got = dirmod.load(repo)
    assert got.members == want.members and got.tip == want.tip
    assert counting["commits"] == len(list(first_parent_line(repo.pg, want.tip or "")))  # the history, once
    assert Ledger.undump(path.read_bytes()).tip == want.tip
    # Anything the ledger reader refuses costs a verification from the root, never an error:
    # not JSON, JSON that is not an object (this crashed the reader before: AttributeError),
    # bytes that are not UTF-8 (the fast JSON reader refuses them; the other one decides).
    for junk in (b"not a ledger", b"[1, 2]", b"null", b'{"format": 2, "tip": "\xff"}', path.read_bytes()[:-9]):
        path.write_bytes(junk)
        dirmod._LEDGERS.clear()
        assert dirmod.load(repo).members == want.members
        assert Ledger.undump(path.read_bytes()).tip == want.tip  # and written anew


def test_ledger_for_another_tip_is_never_trusted(org: Org, counting: dict[str, int]) -> None:
    org.join("max")
    repo = open_repo(org.clones["max"])
    early = dirmod.load(repo)
    path = repo.data_dir / dirmod.LEDGER_FILE
    stale = Ledger.undump(path.read_bytes())
    assert stale.tip == early.tip
    org.join("ann")
    git("fetch", "-q", "origin", cwd=org.clones["max"])
    dirmod._LEDGERS.clear()
    d = dirmod.load(repo)  # advances the file's ledger by the one new commit
    assert "ann" in d.members
    # put back a forged ledger for the old tip, claiming a member that does not exist
    forged = Ledger.undump(stale.dump())
    forged.members["ghost"] = forged.members["max"].model_copy(update={"name": "ghost"})
    forged.raw["ghost"] = canonical_json(forged.members["ghost"].stored())
    forged.files["ghost"] = ("ghost.json", "0" * 40)
    path.write_bytes(forged.dump())
    dirmod._LEDGERS.clear()
    counting.update(commits=0)
    d = dirmod.load(repo)
    assert "ghost" not in d.members and "ann" in d.members
    assert counting["commits"] == len(list(first_parent_line(repo.pg, d.tip or "")))  # rebuilt from git


def test_writer_check_matches_reader_for_a_registration(org: Org) -> None:
    """check_change (what init checks before writing) takes the ledger path and agrees with the reference."""
    org.join("max")
    repo = open_repo(org.clones["max"])
    d = dirmod.load(repo)
    k = _key()
    m = Member(name="ｍａｘ", email="x@gitmail.invalid", signing_key=k.public_key)
    new = Directory(None, {**d.members, m.name: m}, dict(d.groups), d.policy)
    with pytest.raises(DirectoryError) as fast:
        dirmod.check_change(d, new, k.public_key, dirmod.key_history(repo.pg, d.tip))
    with pytest.raises(DirectoryError) as ref:
        ref_check_change(d, new, k.public_key, ref_key_history(repo.pg, d.tip))
    assert str(fast.value) == str(ref.value)
    ok = Member(name="zed", email="z@gitmail.invalid", signing_key=k.public_key)
    dirmod.check_change(d, Directory(None, {**d.members, "zed": ok}, dict(d.groups), d.policy), k.public_key)


def test_verification_work_is_linear_in_the_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """60 self-registrations: each entry is parsed and checked once (the full-snapshot verifier
    checked 1 + 2 + ... + 60 entries), and the whole walk reads the tree changes in one batch."""
    h = History(tmp_path / "lin.git")
    admin = _key()
    h.members["admin"] = h.entry("admin", admin, role="admin")
    h.keys["admin"] = admin
    h.commit(admin)
    for i in range(59):
        k = _key()
        h.members[f"m{i:02d}"] = h.entry(f"m{i:02d}", k)
        h.commit(k)
    checked: list[str] = []
    real = dirmod.validate_member

    def counted(m: Member) -> None:
        checked.append(m.name)
        real(m)

    monkeypatch.setattr(dirmod, "validate_member", counted)
    dirmod._LEDGERS.clear()
    L, problems = dirmod.advance(h.pg, Ledger(), h.tip or "")
    assert problems == [] and len(L.members) == 60
    assert sorted(checked) == sorted(h.members)  # each entry once
    checked.clear()
    ref_verify_range(h.pg, None, h.tip or "")
    assert len(checked) == 60 * 61 // 2 * 2  # the reference: every entry of every snapshot, twice


# -- the guard: the ledger of the accepted tip is kept in the org repo -------------------------


def test_a_cold_guard_verifies_only_the_pushed_directory_commits(org: Org, counting: dict[str, int]) -> None:
    """A guard that starts cold (a new daemon after its idle timeout, or the in-process check)
    used to verify the directory from the root on every directory push: at 10,000 members
    that is the whole registration history. It now keeps the ledger of the tip it verified in
    ``<org.git>/gitmail/directory-ledger.json`` and trusts it only for that tip."""
    from gitmail.guard.check import Update, check_push

    org.join("max")
    for n in ("ann", "bo"):
        org.join(n)
    pg = pygit2.Repository(org.url)
    dir_ref = refs.head(refs.DIRECTORY)
    kept = Path(org.url) / "gitmail" / dirmod.LEDGER_FILE
    tip = str(pg.references[dir_ref].target)
    history = len(list(first_parent_line(pg, tip)))
    below = str(commit(pg, tip).parent_ids[0])
    # No ledger kept yet: the whole history, once; the ledger of the checked tip is kept.
    dirmod._LEDGERS.clear()
    counting.update(commits=0)
    assert check_push(pg, [Update(below, tip, dir_ref)]) == []
    assert counting["commits"] == history and Ledger.undump(kept.read_bytes()).tip == tip
    # The push was accepted (the ref is at that tip); one more member registers: a cold guard
    # checks that one commit only.
    org.join("cy")
    pg = pygit2.Repository(org.url)
    new = str(pg.references[dir_ref].target)
    dirmod._LEDGERS.clear()
    counting.update(commits=0)
    assert check_push(pg, [Update(tip, new, dir_ref)]) == []
    assert counting["commits"] == 1 and Ledger.undump(kept.read_bytes()).tip == new
    # A ledger kept for another tip (a push that was then refused, or a stale file) is never
    # trusted: the guard verifies from the root again, with the same verdict.
    org.join("di")
    pg = pygit2.Repository(org.url)
    newer = str(pg.references[dir_ref].target)
    kept.write_bytes(Ledger.undump(kept.read_bytes()).dump().replace(new.encode(), tip.encode()))
    dirmod._LEDGERS.clear()
    counting.update(commits=0)
    assert check_push(pg, [Update(new, newer, dir_ref)]) == []
    assert counting["commits"] == len(list(first_parent_line(pg, newer)))
    # A rewind is still refused by a cold guard holding the good ledger.
    dirmod._LEDGERS.clear()
    errors = check_push(pg, [Update(newer, tip, dir_ref)])
    assert len(errors) == 1 and "fast-forward" in errors[0], errors


def test_the_guard_reads_the_current_directory_from_its_kept_ledger(
    org: Org, counting: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a push is checked against (the directory at the org repo's tip) comes from the
    ledger the guard kept for that tip, not from parsing the whole tree again (0.4 s at 10,000
    members, on every push after the directory moved); a push that moves the directory reads
    neither. A ledger kept for another tip is never used: the tree is parsed, as before."""
    from gitmail.guard.check import Update, _directory_after, check_push

    org.join("max")
    org.join("ann")
    pg = pygit2.Repository(org.url)
    dir_ref = refs.head(refs.DIRECTORY)
    kept = Path(org.url) / "gitmail" / dirmod.LEDGER_FILE
    real = dirmod.from_tree
    parsed = recorded(monkeypatch, dirmod, "from_tree", lambda pg_, c: str(c.id))
    tip = str(pg.references[dir_ref].target)
    below = str(commit(pg, tip).parent_ids[0])
    dirmod._LEDGERS.clear()
    assert check_push(pg, [Update(below, tip, dir_ref)]) == []  # the guard verifies ann's registration
    assert parsed == [] and Ledger.undump(kept.read_bytes()).tip == tip
    reference = real(pg, commit(pg, tip))
    for cold in (False, True):  # the warm guard's process memory, then a cold one reading the file
        if cold:
            dirmod._LEDGERS.clear()
        cache: dict[str, Directory] = {}
        d, errors = _directory_after(pg, None, cache)
        assert errors == [] and parsed == []
        assert (d.tip, d.members, d.groups, d.policy) == (reference.tip, reference.members, reference.groups,
                                                          reference.policy)
        assert cache == {tip: d}
    # A ledger kept for another tip: the tree is parsed, with the same directory.
    kept.write_bytes(Ledger.undump(kept.read_bytes()).dump().replace(tip.encode(), below.encode()))
    dirmod._LEDGERS.clear()
    d, errors = _directory_after(pg, None, {})
    assert errors == [] and parsed == [tip] and d.members == reference.members
