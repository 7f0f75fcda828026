"""Writing directory commits by hand, as an attacker with plain git would (no gitmail checks)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Optional

import pygit2

from gitmail.core.address import to_ref
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


def write_dir_commit(clone: Path, entries: list[dict[str, Any]], signer: Signer, parent: Optional[str],
                     policy: Optional[dict[str, Any]] = None, signers: Optional[bytes] = None) -> str:
    """A signed directory commit holding exactly ``entries`` (and ``policy``), written with pygit2."""
    pg = pygit2.Repository(str(clone))
    mb = pg.TreeBuilder()
    for e in entries:
        mb.insert(f"{to_ref(e['name'])}.json", pg.create_blob(canonical_json(e)), pygit2.enums.FileMode.BLOB)
    root = pg.TreeBuilder()
    root.insert("members", mb.write(), pygit2.enums.FileMode.TREE)
    pol = policy or {"schema_version": 1}
    root.insert("org.json", pg.create_blob(canonical_json(pol)), pygit2.enums.FileMode.BLOB)
    root.insert("allowed_signers", pg.create_blob(signers if signers is not None else naive_signers(entries)),
                pygit2.enums.FileMode.BLOB)
    sig = pygit2.Signature("x", "x@gitmail.invalid", 1_700_000_000, 0)
    return signed_commit(pg, sig, sig, "directory change\n", root.write(), [parent] if parent else [], signer.sign)


def current_entries(clone: Path, remote_ref: str = "refs/remotes/origin/gitmail/directory") -> tuple[str, list[dict[str, Any]]]:
    """The org's directory tip and its member entries as JSON dicts."""
    git("fetch", "-q", "origin", cwd=clone)
    pg = pygit2.Repository(str(clone))
    tip = pg.references[remote_ref].target
    c = pg[tip]
    assert isinstance(c, pygit2.Commit)
    mt = pg[c.tree["members"].id]
    assert isinstance(mt, pygit2.Tree)
    out = []
    for e in mt:
        b = pg[e.id]
        assert isinstance(b, pygit2.Blob)
        out.append(json.loads(b.data))
    return str(tip), out


def push_dir(clone: Path, oid: str) -> subprocess.CompletedProcess[str]:
    return git("push", "origin", f"{oid}:refs/heads/gitmail/directory", cwd=clone, check=False)

