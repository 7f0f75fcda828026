"""gitmail.core.objects.parse_tree: a tree is read only in git's own form, where a name means
the entry git finds.

Checked against stock git on raw tree objects drawn by hypothesis (any order, duplicates, odd
modes and names): whenever ``parse_tree`` takes a tree, ``git ls-tree`` lists exactly its
entries and ``git rev-parse <tree>:<name>`` finds each one; and every tree git's own writer
(``git mktree``) makes is taken.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pygit2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitmail.core import objects


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> pygit2.Repository:
    path = tmp_path_factory.mktemp("treeform")
    subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True)
    return pygit2.Repository(str(path))


_modes = st.sampled_from([b"100644", b"100755", b"120000", b"40000", b"160000", b"100664", b"040000", b"0100644"])
_names = st.sampled_from([b"a", b"a.b", b"a-b", b"ab", b"b", b"message.json", b"", b".", b"..", b"a/b", b"\xc3\xa9"])
_any_entries = st.lists(st.tuples(_modes, _names, st.integers(0, 2)), max_size=5)
# Half the draws in git's form (valid names and modes, git's order), so both branches are tried.
_git_form = st.dictionaries(st.sampled_from([b"a", b"a.b", b"a-b", b"ab", b"b", b"message.json", b"\xc3\xa9"]),
                            st.tuples(st.sampled_from([b"100644", b"100755", b"120000", b"40000"]), st.integers(0, 2)),
                            max_size=5).map(
    lambda d: sorted(((m, n, k) for n, (m, k) in d.items()), key=lambda e: e[1] + b"/" if e[0] == b"40000" else e[1]))
_entries = st.one_of(_any_entries, _git_form)


def _raw(repo: pygit2.Repository, entries: Any) -> bytes:
    blobs = [repo.create_blob(b"%d" % i) for i in range(3)]
    sub = repo.TreeBuilder()
    sub.insert("x", blobs[0], pygit2.enums.FileMode.BLOB)
    tree = sub.write()
    out = b""
    for mode, name, k in entries:
        target = tree if mode in (b"40000", b"040000") else blobs[k]
        out += mode + b" " + name + b"\0" + target.raw
    return out


def _git(repo: pygit2.Repository, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "--git-dir", repo.path, *args], capture_output=True)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=_entries)
def test_a_tree_taken_is_read_by_git_entry_for_entry(repo: pygit2.Repository, entries: Any) -> None:
    raw = _raw(repo, entries)
    oid = str(repo.odb.write(pygit2.enums.ObjectType.TREE, raw))
    parsed, problem = objects.parse_tree(raw, 20)
    if problem is not None:
        with pytest.raises(ValueError, match="not in git's form"):
            objects.tree_entries(repo, oid, objects.MAX_TREE)
        return
    listed = _git(repo, "ls-tree", "-z", "--full-tree", oid)
    assert listed.returncode == 0, listed.stderr
    want = []
    for rec in listed.stdout.split(b"\0")[:-1]:
        meta, name = rec.split(b"\t", 1)
        mode, _, h = meta.split(b" ")
        want.append((int(mode, 8), name.decode("utf-8", "surrogateescape"), h.decode()))
    assert parsed == want == objects.tree_entries(repo, oid, objects.MAX_TREE)
    for _, path, want_oid in parsed:
        found = _git(repo, "rev-parse", "--verify", "-q", f"{oid}:{path}")
        assert found.stdout.decode().strip() == want_oid, (path, found)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.dictionaries(st.text(st.characters(codec="utf-8", blacklist_characters="/\0\n"),
                                     min_size=1, max_size=6).filter(lambda n: n not in (".", "..")),
                             st.sampled_from(["100644", "100755", "120000", "040000"]), max_size=6))
def test_every_tree_git_writes_is_taken(repo: pygit2.Repository, files: dict[str, str]) -> None:
    blob = str(repo.create_blob(b"1"))
    sub = repo.TreeBuilder()
    sub.insert("x", pygit2.Oid(hex=blob), pygit2.enums.FileMode.BLOB)
    tree = str(sub.write())
    text = "".join(f"{m} {'tree' if m == '040000' else 'blob'} {tree if m == '040000' else blob}\t{n}\0"
                   for n, m in files.items())
    made = subprocess.run(["git", "--git-dir", repo.path, "mktree", "-z"], input=text.encode(), capture_output=True)
    assert made.returncode == 0, made.stderr
    oid = made.stdout.decode().strip()
    parsed, problem = objects.parse_tree(repo.read(oid)[1], 20)
    assert problem is None
    assert sorted(n for _, n, _ in parsed) == sorted(files)


def test_parse_tree_never_raises_on_any_bytes() -> None:
    @given(st.binary(max_size=200))
    @settings(max_examples=500, deadline=None)
    def run(data: bytes) -> None:
        entries, problem = objects.parse_tree(data, 20)
        assert all(len(h) == 40 and m in (0o100644, 0o100755, 0o120000, 0o40000, 0o160000) for m, _, h in entries)
        assert problem is not None or not data or entries  # bytes taken whole are entries

    run()
