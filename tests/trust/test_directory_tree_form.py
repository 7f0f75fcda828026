"""Directory trees are read only in git's own form (docs/protocol.md §8 and §13).

A member's file named twice in one folder: ``git show`` (an auditor, a plain ``git pull``)
finds the first copy, while the diff git lists, or libgit2's lookup, may take the second. So
readers could disagree about what the directory says. Pushed with plain git to a real
``git daemon``: without the guard, a clone keeps its verified directory and names the folder
and the rule, a sync and a new member's init alike; with the guard, the push is refused.
"""

from __future__ import annotations

from pathlib import Path

import pygit2

from gitmail.core import directory as dirmod
from gitmail.core import objects, refs
from gitmail.core.model import canonical_json
from gitmail.core.repo import open_repo
from tests.sync import forge
from tests.sync.conftest import NetOrg, guard_runtime, net, unguarded  # noqa: F401 (fixtures)
from tests.trust.test_hostile_messages import raw_signed_commit
from tests.trust.test_zip_bombs import directory_ctx, mail_goes_on_and_init_refuses


def _twice(org: NetOrg) -> tuple[str, str, int, str]:
    """max signs and pushes a directory commit whose folder holding max's file names it twice:
    first as it is, then with another display name. Returns the tip before, the commit, and
    git push's exit code and output."""
    d_tip, c = directory_ctx(org)
    pg = c.pg
    d = dirmod.from_tree(pg, objects.commit(pg, d_tip))
    layout = d.policy.directory_layout
    path = "members/" + dirmod.member_file("max", layout)
    *folders, base = path.split("/")
    me = d.members["max"].stored()
    evil = pg.create_blob(canonical_json({**me, "display_name": "Not Max"}))
    root = objects.commit(pg, d_tip).tree

    def rebuilt(tree: pygit2.Tree, rest: list[str]) -> pygit2.Oid:
        if not rest:
            raw = b""
            for e in tree:  # the folder as it is, with base named a second time right after it
                raw += f"{int(e.filemode):o} {e.name}".encode() + b"\0" + e.id.raw
                if e.name == base:
                    raw += f"{int(e.filemode):o} {e.name}".encode() + b"\0" + evil.raw
            return pg.odb.write(pygit2.enums.ObjectType.TREE, raw)
        tb = pg.TreeBuilder(tree)
        tb.insert(rest[0], rebuilt(pg[tree[rest[0]].id], rest[1:]), pygit2.enums.FileMode.TREE)  # type: ignore[arg-type]
        return tb.write()

    new_root = rebuilt(root, folders)
    bomb = raw_signed_commit(pg, str(new_root), d_tip, c.author, "directory change\n", c.signer)
    code, out = forge.push(org.clones["max"], bomb, "refs/heads/gitmail/directory")
    return d_tip, bomb, code, out


def test_a_member_file_named_twice_is_malformed_for_every_reader(unguarded: NetOrg, tmp_path: Path) -> None:
    org = unguarded
    before, bomb, code, out = _twice(org)
    assert code == 0, out
    s = org.as_("alex", "sync")
    assert s.code == 0 and f"directory commit {bomb[:10]} rejected" in s.err and "'max.json' twice" in s.err, s.err
    r = open_repo(org.clones["alex"])
    assert r.ref_target(refs.verified(refs.DIRECTORY)) == before
    # mail goes on, and a new member, verifying the directory from its root, says the same
    mail_goes_on_and_init_refuses(org, tmp_path, "'max.json' twice")


def test_the_guard_refuses_a_member_file_named_twice(net: NetOrg) -> None:
    _, _, code, out = _twice(net)
    assert code != 0 and "push refused" in out and "'max.json' twice" in out, out
