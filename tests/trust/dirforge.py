"""Writing directory commits by hand, as an attacker with plain git would (no gitmail checks)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Optional

import pygit2

from gitmail.core.address import to_ref
from gitmail.core.directory import shard
from gitmail.core.model import canonical_json
from gitmail.core.objects import signed_commit
from gitmail.core.signing import Signer

from tests.conftest import git


def entry(name: str, key: str, **kw: Any) -> dict[str, Any]:
    """A member entry as stored (any field may be hostile)."""
    d: dict[str, Any] = {"schema_version": 1, "name": name, "display_name": name,
                         "email": f"{to_ref(name)}@gitmail.invalid", "signing_key": key, "previous_keys": [],
                         "encryption_key": None, "role": "member", "kind": "human"}
    d.update(kw)
    return d


def naive_signers(entries: list[dict[str, Any]]) -> bytes:
    """The allowed-signers text the code before issue 10 wrote: fields pasted verbatim."""
    lines = []
    for e in sorted(entries, key=lambda e: e["name"]):
        for k in [e["signing_key"], *e.get("previous_keys", [])]:
            lines.append(f'"{e["name"]}" namespaces="git" {k}')
    return ("\n".join(lines) + "\n").encode()


def _policy_at(pg: pygit2.Repository, oid: Optional[str]) -> dict[str, Any]:
    if oid is None:
        return {"schema_version": 1}
    c = pg[oid]
    assert isinstance(c, pygit2.Commit)
    b = pg[c.tree["org.json"].id] if "org.json" in c.tree else None
    return json.loads(b.data) if isinstance(b, pygit2.Blob) else {"schema_version": 1}


def write_dir_commit(clone: Path, entries: list[dict[str, Any]], signer: Signer, parent: Optional[str],
                     policy: Optional[dict[str, Any]] = None, signers: Optional[bytes] = None,
                     raw: Optional[dict[str, bytes]] = None, policy_raw: Optional[bytes] = None) -> str:
    """A signed directory commit holding exactly ``entries``, written with pygit2 in the layout
    of its policy: the parent's org.json with ``policy``'s fields over it (docs/protocol.md §8).
    ``raw``: the bytes of some entries' files as given (by name), not their canonical JSON;
    ``policy_raw``: org.json's bytes as given."""
    raw = raw or {}
    pg = pygit2.Repository(str(clone))
    pol = {**_policy_at(pg, parent), **(policy or {})}
    fanout = pol.get("directory_layout", 1) == 2
    shards: dict[str, pygit2.TreeBuilder] = {}
    mb = pg.TreeBuilder()
    for e in entries:
        blob = pg.create_blob(raw.get(e["name"], canonical_json(e)))
        if fanout:
            shards.setdefault(shard(e["name"]), pg.TreeBuilder()).insert(f"{to_ref(e['name'])}.json", blob,
                                                                         pygit2.enums.FileMode.BLOB)
        else:
            mb.insert(f"{to_ref(e['name'])}.json", blob, pygit2.enums.FileMode.BLOB)
    for sh, tb in shards.items():
        mb.insert(sh, tb.write(), pygit2.enums.FileMode.TREE)
    root = pg.TreeBuilder()
    root.insert("members", mb.write(), pygit2.enums.FileMode.TREE)
    root.insert("org.json", pg.create_blob(policy_raw if policy_raw is not None else canonical_json(pol)),
                pygit2.enums.FileMode.BLOB)
    if fanout and signers is None:
        sb = pg.TreeBuilder()
        for sh in {shard(e["name"]) for e in entries}:
            sb.insert(sh, pg.create_blob(naive_signers([e for e in entries if shard(e["name"]) == sh])),
                      pygit2.enums.FileMode.BLOB)
        root.insert("allowed_signers", sb.write(), pygit2.enums.FileMode.TREE)
    else:
        root.insert("allowed_signers", pg.create_blob(signers if signers is not None else naive_signers(entries)),
                    pygit2.enums.FileMode.BLOB)
    sig = pygit2.Signature("x", "x@gitmail.invalid", 1_700_000_000, 0)
    return signed_commit(pg, sig, sig, "directory change\n", root.write(), [parent] if parent else [], signer.sign)


def current_entries(clone: Path, remote_ref: str = "refs/remotes/origin/gitmail/directory") -> tuple[str, list[dict[str, Any]]]:
    """The org's directory tip and its member entries as JSON dicts (either layout)."""
    git("fetch", "-q", "origin", cwd=clone)
    pg = pygit2.Repository(str(clone))
    tip = pg.references[remote_ref].target
    c = pg[tip]
    assert isinstance(c, pygit2.Commit)
    out = []
    stack = [pg[c.tree["members"].id]]
    while stack:
        t = stack.pop()
        assert isinstance(t, pygit2.Tree)
        for e in t:
            b = pg[e.id]
            if isinstance(b, pygit2.Tree):
                stack.append(b)
                continue
            assert isinstance(b, pygit2.Blob)
            out.append(json.loads(b.data))
    return str(tip), out


def push_dir(clone: Path, oid: str) -> subprocess.CompletedProcess[str]:
    return git("push", "origin", f"{oid}:refs/heads/gitmail/directory", cwd=clone, check=False)

