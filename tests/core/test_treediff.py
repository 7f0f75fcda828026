"""gitmail.core.treediff: the directory's tree diff, checked against stock ``git diff-tree -r``.

Both ways of listing a level (git's processes, pygit2's entries) must give git's own recursive
answer for every path no deeper than DEPTH components, report a changed tree at DEPTH as itself,
and give a pair whose trees cannot be read the same reason, unread. Trees are random nested
folders written into a real repository (hypothesis); the reference is ``git diff-tree -r``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Union

import pygit2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitmail.core import objects, treediff

Node = Union[bytes, dict[str, Any]]  # a file's bytes, or a folder

_names = st.sampled_from(["a", "b", "a.json", "a-b", "ab", "members", "zz", "é"])
_leaf = st.sampled_from([b"1", b"2", b"3"])
_trees: st.SearchStrategy[dict[str, Any]] = st.recursive(
    st.dictionaries(_names, _leaf, max_size=3),
    lambda kids: st.dictionaries(_names, st.one_of(_leaf, kids), max_size=4),
    max_leaves=20,
).filter(lambda t: isinstance(t, dict))


def _write(pg: pygit2.Repository, node: dict[str, Any], exec_names: frozenset[str] = frozenset({"b"})) -> str:
    tb = pg.TreeBuilder()
    for name, kid in node.items():
        if isinstance(kid, dict):
            if kid:  # git keeps no empty folders
                tb.insert(name, pygit2.Oid(hex=_write(pg, kid, exec_names)), pygit2.enums.FileMode.TREE)
        else:
            mode = pygit2.enums.FileMode.BLOB_EXECUTABLE if name in exec_names else pygit2.enums.FileMode.BLOB
            tb.insert(name, pg.create_blob(kid), mode)
    return str(tb.write())


def _reference(git_dir: str, a: str, b: str, depth: int) -> list[treediff.Change]:
    """What the diff must say: ``git diff-tree -r``'s records no deeper than ``depth`` components,
    and for each folder exactly ``depth`` deep that differs (from ``git ls-tree -r -t``): the
    folder as it is in ``b``, or removed when ``b`` has none there (an empty tree counts as none)."""
    out = subprocess.run(["git", "--git-dir", git_dir, "diff-tree", "-r", "-z", "--no-renames", "--no-abbrev", a, b],
                         capture_output=True, check=True).stdout.split(b"\0")
    zeros, empty = "0" * len(a), treediff.empty_tree(len(a))
    want: set[treediff.Change] = set()
    for meta, path in zip(out[0:-1:2], out[1::2]):
        f = meta[1:].split(b" ")
        p = path.decode("utf-8", "surrogateescape")
        if len(p.split("/")) <= depth:
            want.add((p, int(f[1], 8), f[3].decode()) if f[4] != b"D" else (p, 0, zeros))
    old, new = _folders(git_dir, a, depth), _folders(git_dir, b, depth)
    for p in old.keys() | new.keys():
        o, n = old.get(p, empty), new.get(p, empty)
        if o != n:
            want.add((p, treediff.TREE_MODE, n) if n != empty else (p, 0, zeros))
    return sorted(want)


def _folders(git_dir: str, tree: str, depth: int) -> dict[str, str]:
    """path -> id of every folder exactly ``depth`` components deep in ``tree``."""
    p = subprocess.run(["git", "--git-dir", git_dir, "ls-tree", "-r", "-t", "-z", tree], capture_output=True, check=True)
    out = {}
    for rec in p.stdout.split(b"\0")[:-1]:
        meta, path = rec.split(b"\t", 1)
        mode, _, oid = meta.split(b" ")
        name = path.decode("utf-8", "surrogateescape")
        if int(mode, 8) == treediff.TREE_MODE and len(name.split("/")) == depth:
            out[name] = oid.decode()
    return out


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> pygit2.Repository:
    path = tmp_path_factory.mktemp("treediff")
    subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True)
    return pygit2.Repository(str(path))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(st.tuples(_trees, _trees), min_size=1, max_size=4), depth=st.sampled_from([2, 3, 4]))
def test_both_readers_give_git_s_recursive_diff_down_to_the_depth(repo: pygit2.Repository, pairs: Any, depth: int) -> None:
    oids = [(_write(repo, a), _write(repo, b)) for a, b in pairs]
    want = [_reference(repo.path, a, b, depth) for a, b in oids]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(treediff, "DEPTH", depth)
        by_git = treediff.changes_git(repo.path, oids)
        by_pg = treediff.changes_pg(repo, oids)
    assert [sorted(c) for c in by_git] == want
    assert [sorted(c) for c in by_pg] == want


def test_the_empty_tree_stands_for_none(repo: pygit2.Repository) -> None:
    t = _write(repo, {"members": {"ab": {"x.json": b"1"}}, "org.json": b"2"})
    empty = treediff.empty_tree(len(t))
    added = treediff.changes_pg(repo, [(empty, t)])[0]
    removed = treediff.changes_pg(repo, [(t, empty)])[0]
    assert isinstance(added, list) and isinstance(removed, list)
    assert sorted(p for p, _, _ in added) == sorted(p for p, _, _ in removed) == ["members/ab/x.json", "org.json"]
    assert all(m == 0 and o == "0" * len(t) for _, m, o in removed)
    assert treediff.changes_git(repo.path, [(empty, t), (t, empty), (t, t)]) == [added, removed, []]


def _bloated(pg: pygit2.Repository, at: str, size: int) -> tuple[str, str, str]:
    """Two directory-like trees differing at ``at`` (a folder path), where the new folder's
    tree is ``size`` bytes or more; and the big tree's id."""
    blob = pg.create_blob(b"x")
    n = max(1, size // 60)
    raw = b"".join(b"100644 " + b"f" * 40 + b"%08d" % i + b"\0" + blob.raw for i in range(n))
    big = str(pg.odb.write(pygit2.enums.ObjectType.TREE, raw))
    small = _write(pg, {"x.json": b"1"})

    def around(parts: list[str], inner: str) -> str:
        if not parts:
            return inner
        tb = pg.TreeBuilder()
        tb.insert(parts[0], pygit2.Oid(hex=around(parts[1:], inner)), pygit2.enums.FileMode.TREE)
        tb.insert("org.json", pg.create_blob(b"{}"), pygit2.enums.FileMode.BLOB)
        return str(tb.write())

    parts = at.split("/")
    return around(parts, small), around(parts, big), big


@pytest.mark.parametrize("at", ["members", "members/zz", "members/ab/x.json"])
def test_a_tree_over_the_bound_on_a_changed_path_is_not_read(repo: pygit2.Repository, at: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Anywhere an entry can be (three components deep), a tree over MAX_TREE gives its pair
    the reason, naming the path and the size, by both readers alike; other pairs are unharmed."""
    old, new, big = _bloated(repo, at, 6000)
    size = repo.odb.read_header(big)[1]
    monkeypatch.setattr(objects, "MAX_TREE", size - 1)
    ok = (_write(repo, {"a": b"1"}), _write(repo, {"a": b"2"}))
    pairs = [ok, (old, new)] * 10  # twenty pairs: git's way is taken too
    want = f"{at}: {big[:10]} is {size} bytes, over the {size - 1} a reader reads"
    for got in (treediff.changes(repo, pairs), treediff.changes_pg(repo, pairs), treediff.changes_git(repo.path, pairs)):
        assert got[1] == want and got[0] == [("a", 0o100644, str(repo.create_blob(b"2")))]


def test_a_tree_deeper_than_an_entry_is_reported_unread(repo: pygit2.Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    """At DEPTH components a changed tree is reported as itself: its size never matters."""
    old, new, big = _bloated(repo, "members/ab/x.json/deeper", 6000)
    monkeypatch.setattr(objects, "MAX_TREE", 100)
    want = [("members/ab/x.json/deeper", treediff.TREE_MODE, big)]
    assert treediff.changes_pg(repo, [(old, new)]) == [want]
    assert treediff.changes_git(repo.path, [(old, new)]) == [want]


def test_a_folder_entry_that_is_not_a_tree_is_named(repo: pygit2.Repository) -> None:
    """A folder's entry (mode 040000) naming a blob: both readers refuse the pair the same way."""
    blob = repo.create_blob(b"not a tree")
    tb = repo.TreeBuilder()
    tb.insert("org.json", blob, pygit2.enums.FileMode.BLOB)
    old = str(tb.write())
    raw = b"40000 members\0" + blob.raw + b"100644 org.json\0" + blob.raw
    new = str(repo.odb.write(pygit2.enums.ObjectType.TREE, raw))
    want = f"members: {str(blob)[:10]} is not a tree"
    assert treediff.changes_pg(repo, [(old, new)]) == [want]
    assert treediff.changes_git(repo.path, [(old, new)]) == [want]


def test_git_s_way_gives_way_when_git_cannot_see_an_object(repo: pygit2.Repository, tmp_path: Path) -> None:
    """The guard adds a push's quarantine to pygit2 only: git's processes cannot read those
    objects, and pygit2's way answers instead."""
    other = tmp_path / "quarantine.git"
    subprocess.run(["git", "init", "-q", "--bare", str(other)], check=True)
    q = pygit2.Repository(str(other))
    a, b = _write(q, {"a": b"1"}), _write(q, {"a": b"2", "members": {"x.json": b"3"}})
    pg = pygit2.Repository(repo.path)
    pg.odb.add_disk_alternate(str(other / "objects"))
    with pytest.raises(Exception):
        treediff.changes_git(pg.path, [(a, b)])
    got = treediff.changes(pg, [(a, b)] * treediff.GIT_MIN)[0]
    assert isinstance(got, list) and got == treediff.changes_pg(pg, [(a, b)])[0]
    assert sorted(p for p, _, _ in got) == ["a", "members/x.json"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(st.tuples(_trees, _trees), min_size=1, max_size=6), budget=st.sampled_from([1, 200, 600, 10**9]),
       chunk=st.sampled_from([1, 2, 5]))
def test_a_budgeted_call_lists_a_prefix_and_each_lists_them_all(repo: pygit2.Repository, pairs: Any, budget: int,
                                                               chunk: int) -> None:
    """A call stops once its trees pass CALL_BYTES (never before its first pair), and
    ``each`` asks again from there: the same answers as one call without a budget."""
    oids = [(_write(repo, a), _write(repo, b)) for a, b in pairs]
    whole = treediff.changes_pg(repo, oids)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(treediff, "CALL_BYTES", budget)
        for part in (treediff.changes_pg(repo, oids), treediff.changes_git(repo.path, oids)):
            assert 1 <= len(part) <= len(oids) and part == whole[: len(part)]
            if budget == 10**9:
                assert len(part) == len(oids)
        assert list(treediff.each(repo, oids, chunk)) == whole


def test_a_tree_named_many_times_is_refused_before_it_is_listed(repo: pygit2.Repository) -> None:
    """One folder of about 100 KB named by 700 entries of a new root: git stores it once (the
    push is small), but listing the change would read 70 MB of trees and give 1.4 million
    paths. The pair is refused once its trees pass PAIR_BYTES, before that level is listed,
    by both readers alike."""
    blob = repo.create_blob(b"x")
    sub = str(repo.odb.write(pygit2.enums.ObjectType.TREE, b"".join(
        b"100644 " + b"f" * 12 + b"%08d" % i + b"\0" + blob.raw for i in range(2500))))
    sub_size = repo.odb.read_header(sub)[1]
    tb = repo.TreeBuilder()
    for i in range(700):
        tb.insert(f"d{i:04d}", pygit2.Oid(hex=sub), pygit2.enums.FileMode.TREE)
    root = str(tb.write())
    empty = treediff.empty_tree(len(root))
    total = 700 * sub_size + repo.odb.read_header(root)[1]
    assert total > treediff.PAIR_BYTES
    want = f"its trees are {total} bytes together, over the {treediff.PAIR_BYTES} a reader reads for one commit"
    ok = (_write(repo, {"a": b"1"}), _write(repo, {"a": b"2"}))
    for pairs in ([(empty, root)], [(empty, root), ok] * 10):
        for got in (treediff.changes_pg(repo, pairs), treediff.changes_git(repo.path, pairs)):
            assert got == [want]  # the call ends with it: the next pair is listed by the next call
    assert list(treediff.each(repo, [(empty, root), ok] * 10))[:2] == [want, [("a", 0o100644, str(repo.create_blob(b"2")))]]


def test_a_tree_that_does_not_parse_is_named_not_raised(repo: pygit2.Repository) -> None:
    """A tree object git and libgit2 cannot parse (an entry cut short): git diff-tree dies on
    it, pygit2's way then answers, naming it; the pairs before it are listed."""
    bad = str(repo.odb.write(pygit2.enums.ObjectType.TREE, b"100644 x\0short"))
    tb = repo.TreeBuilder()
    tb.insert("members", pygit2.Oid(hex=bad), pygit2.enums.FileMode.TREE)
    new = str(tb.write())
    old = _write(repo, {"members": {"a.json": b"1"}})
    ok = (_write(repo, {"a": b"1"}), _write(repo, {"a": b"2"}))
    with pytest.raises(Exception):
        treediff.changes_git(repo.path, [ok, (old, new)])
    got = treediff.changes(repo, [ok, (old, new)] * 8)
    assert got[0] == [("a", 0o100644, str(repo.create_blob(b"2")))]
    assert isinstance(got[1], str) and got[1].startswith("members: ") and "parse" in got[1], got[1]


def test_one_git_process_answers_many_calls(repo: pygit2.Repository) -> None:
    """A Lister keeps one git diff-tree for many calls (each level one request, ended by a
    marker git echoes): the answers are those of a git started for each call; a git that
    died says why."""
    from gitmail import git
    from gitmail.errors import GitError

    pairs = [(_write(repo, {"a": b"1", "m": {"x": b"1"}}), _write(repo, {"a": b"2", "m": {"x": b"2", "y": b"3"}})),
             (_write(repo, {"b": b"1"}), _write(repo, {"b": {"c": {"d": b"1"}}}))]
    with treediff.Lister(repo.path) as lister:
        for _ in range(3):
            for p in pairs:
                assert treediff.changes_git(repo.path, [p], lister) == treediff.changes_git(repo.path, [p])
    bad = str(repo.odb.write(pygit2.enums.ObjectType.TREE, b"100644 x\0short"))
    with git.Conversation(["--git-dir", repo.path, "diff-tree", "--stdin", "-z"]) as talk:
        assert talk.ask(f"{pairs[1][0]} {pairs[1][1]}\n".encode()).startswith(pairs[1][0].encode())
        with pytest.raises(GitError, match="too-short tree object"):  # git's own words
            talk.ask(f"{pairs[1][0]} {bad}\n".encode())
