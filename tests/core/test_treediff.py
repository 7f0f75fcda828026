"""gitmail.core.treediff: the directory's tree diff, checked against stock ``git diff-tree -r``.

The diff must give git's own recursive answer for every path no deeper than DEPTH components,
report a changed tree at DEPTH as itself, and give a pair whose trees cannot be read (too
large, not trees, not in git's form) the reason, unread. Trees are random nested folders
written into a real repository (hypothesis), listed both from scratch and as changes of the
tree before (the spliced reading); the reference is ``git diff-tree -r``.
"""

from __future__ import annotations

import subprocess
from typing import Any, Union

import pygit2
import pytest
from hypothesis import HealthCheck, example, given, settings
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
def test_the_diff_is_git_s_recursive_diff_down_to_the_depth(repo: pygit2.Repository, pairs: Any, depth: int) -> None:
    oids = [(_write(repo, a), _write(repo, b)) for a, b in pairs]
    want = [_reference(repo.path, a, b, depth) for a, b in oids]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(treediff, "DEPTH", depth)
        treediff._KEPT.__init__()  # type: ignore[misc]  # nothing read before: every tree parsed whole
        cold = treediff.changes(repo, oids)
        warm = treediff.changes(repo, oids)  # every tree kept: changes found between kept trees
        # a chain: each new tree read as the one before it with its middle parsed anew
        treediff._KEPT.__init__()  # type: ignore[misc]
        chain = [(a if i == 0 else oids[i - 1][1], b) for i, (a, b) in enumerate(oids)]
        spliced = treediff.changes(repo, chain)
    assert [sorted(c) for c in cold] == [sorted(c) for c in warm] == want
    assert [sorted(c) for c in spliced] == [_reference(repo.path, a, b, depth) for a, b in chain]


def test_the_empty_tree_stands_for_none(repo: pygit2.Repository) -> None:
    t = _write(repo, {"members": {"ab": {"x.json": b"1"}}, "org.json": b"2"})
    empty = treediff.empty_tree(len(t))
    added = treediff.changes(repo, [(empty, t)])[0]
    removed = treediff.changes(repo, [(t, empty)])[0]
    assert isinstance(added, list) and isinstance(removed, list)
    assert sorted(p for p, _, _ in added) == sorted(p for p, _, _ in removed) == ["members/ab/x.json", "org.json"]
    assert all(m == 0 and o == "0" * len(t) for _, m, o in removed)
    assert treediff.changes(repo, [(empty, t), (t, empty), (t, t)]) == [added, removed, []]


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
    the reason, naming the path and the size; other pairs are unharmed."""
    old, new, big = _bloated(repo, at, 6000)
    size = repo.odb.read_header(big)[1]
    monkeypatch.setattr(objects, "MAX_TREE", size - 1)
    ok = (_write(repo, {"a": b"1"}), _write(repo, {"a": b"2"}))
    pairs = [ok, (old, new)] * 10
    want = f"{at}: {big[:10]} is {size} bytes, over the {size - 1} a reader reads"
    got = treediff.changes(repo, pairs)
    assert got[1] == want and got[0] == [("a", 0o100644, str(repo.create_blob(b"2")))]


def test_a_tree_deeper_than_an_entry_is_reported_unread(repo: pygit2.Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    """At DEPTH components a changed tree is reported as itself: its size never matters."""
    old, new, big = _bloated(repo, "members/ab/x.json/deeper", 6000)
    monkeypatch.setattr(objects, "MAX_TREE", 100)
    want = [("members/ab/x.json/deeper", treediff.TREE_MODE, big)]
    assert treediff.changes(repo, [(old, new)]) == [want]


def test_a_folder_entry_that_is_not_a_tree_is_named(repo: pygit2.Repository) -> None:
    """A folder's entry (mode 040000) naming a blob: the pair is refused, naming it."""
    blob = repo.create_blob(b"not a tree")
    tb = repo.TreeBuilder()
    tb.insert("org.json", blob, pygit2.enums.FileMode.BLOB)
    old = str(tb.write())
    raw = b"40000 members\0" + blob.raw + b"100644 org.json\0" + blob.raw
    new = str(repo.odb.write(pygit2.enums.ObjectType.TREE, raw))
    want = f"members: {str(blob)[:10]} is not a tree"
    assert treediff.changes(repo, [(old, new)]) == [want]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(st.tuples(_trees, _trees), min_size=1, max_size=6), budget=st.sampled_from([1, 200, 600, 10**9]),
       chunk=st.sampled_from([1, 2, 5]))
def test_a_budgeted_call_lists_a_prefix_and_each_lists_them_all(repo: pygit2.Repository, pairs: Any, budget: int,
                                                               chunk: int) -> None:
    """A call stops once its trees pass CALL_BYTES (never before its first pair), and
    ``each`` asks again from there: the same answers as one call without a budget."""
    oids = [(_write(repo, a), _write(repo, b)) for a, b in pairs]
    whole = treediff.changes(repo, oids)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(treediff, "CALL_BYTES", budget)
        part = treediff.changes(repo, oids)
        assert 1 <= len(part) <= len(oids) and part == whole[: len(part)]
        if budget == 10**9:
            assert len(part) == len(oids)
        assert list(treediff.each(repo, oids, chunk)) == whole


def test_a_tree_named_many_times_is_refused_before_it_is_listed(repo: pygit2.Repository) -> None:
    """One folder of about 100 KB named by 700 entries of a new root: git stores it once (the
    push is small), but listing the change would read 70 MB of trees and give 1.4 million
    paths. The pair is refused once its trees pass PAIR_BYTES, before that level is listed,
    the next pair left to the next call."""
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
        assert treediff.changes(repo, pairs) == [want]  # the call ends with it
    assert list(treediff.each(repo, [(empty, root), ok] * 10))[:2] == [want, [("a", 0o100644, str(repo.create_blob(b"2")))]]


def test_a_tree_not_in_git_s_form_is_named_not_raised(repo: pygit2.Repository) -> None:
    """A folder git cannot parse (an entry cut short), one naming a file twice, one out of
    order: the pair gets the reason (the rule broken), whether the folder is read whole or as
    a change of the one before; the pairs before it are listed."""
    blob = repo.create_blob(b"1").raw
    other = repo.create_blob(b"2").raw
    shapes = {
        "cut short": b"100644 x\0short",
        "'x.json' twice": b"100644 x.json\0" + blob + b"100644 x.json\0" + other,
        "'a.json' out of order": b"100644 b.json\0" + blob + b"100644 a.json\0" + other,
    }
    good = repo.odb.write(pygit2.enums.ObjectType.TREE, b"100644 x.json\0" + blob)
    for why, raw in shapes.items():
        bad = repo.odb.write(pygit2.enums.ObjectType.TREE, raw)
        trees = []
        for inner in (good, bad):
            tb = repo.TreeBuilder()
            tb.insert("members", inner, pygit2.enums.FileMode.TREE)
            trees.append(str(tb.write()))
        ok = (_write(repo, {"a": b"1"}), _write(repo, {"a": b"2"}))
        empty = treediff.empty_tree(40)
        for pairs in ([ok, (empty, trees[1])], [ok, (trees[0], trees[1])]):
            treediff._KEPT.__init__()  # type: ignore[misc]
            treediff.changes(repo, [(empty, trees[0])])  # the good folder kept: the bad one read as its change
            got = treediff.changes(repo, pairs)
            assert got[0] == [("a", 0o100644, str(repo.create_blob(b"2")))]
            assert isinstance(got[1], str) and got[1].startswith(f"members: {str(bad)[:10]} is not in git's form: ")
            assert why in got[1], (why, got[1])


_names_raw = st.sampled_from([b"a", b"a.b", b"a-b", b"ab", b"b", b"c", b"x.json", b"", b".", b"a/b"])
_modes_raw = st.sampled_from([b"100644", b"100755", b"40000", b"100664"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# shapes where only the entries kept on either side show the order or a name twice
@example(old={b"a": 0, b"b": 1, b"c": 2}, edits=[(1, True, b"100644", b"x.json", 1)])
@example(old={b"a": 0, b"b": 1, b"c": 2}, edits=[(1, True, b"100644", b"c", 1)])
@example(old={b"a": 0, b"b": 1, b"c": 2}, edits=[(1, False, b"100644", b"a", 0)])
@example(old={b"a": 0, b"b": 1}, edits=[(1, False, b"40000", b"a", 1)])
@given(old=st.dictionaries(st.sampled_from([b"a", b"a.b", b"ab", b"b", b"c", b"x.json"]), st.integers(0, 2), max_size=6),
       edits=st.lists(st.tuples(st.integers(0, 8), st.booleans(), _modes_raw, _names_raw, st.integers(0, 2)), max_size=3))
def test_a_spliced_reading_equals_a_whole_one(repo: pygit2.Repository, old: dict[bytes, int], edits: Any) -> None:
    """The spliced reading (a new tree read as the kept old one with its changed middle parsed)
    is a second copy of the whole reading, for speed: for a valid old tree and a new one made
    by inserting, replacing or dropping entries anywhere (valid or not), both give the same
    changes, or the same reason."""
    blobs = [repo.create_blob(b"%d" % i) for i in range(3)]
    rows = [(b"100644", name, k) for name, k in sorted(old.items())]
    old_raw = b"".join(m + b" " + n + b"\0" + blobs[k].raw for m, n, k in rows)
    for at, replace, mode, name, k in edits:
        at = min(at, len(rows))
        if replace and at < len(rows):
            rows[at] = (mode, name, k)
        elif replace and rows:
            rows.pop()
        else:
            rows.insert(at, (mode, name, k))
    new_raw = b"".join(m + b" " + n + b"\0" + blobs[k].raw for m, n, k in rows)
    a = str(repo.odb.write(pygit2.enums.ObjectType.TREE, old_raw))
    b = str(repo.odb.write(pygit2.enums.ObjectType.TREE, new_raw))
    # the whole reading: both trees parsed from their first byte, then merged
    old_rows, _, _ = objects.parse_tree_at(old_raw, 20, 0, len(old_raw))
    new_rows, _, problem = objects.parse_tree_at(new_raw, 20, 0, len(new_raw))
    whole = f"{b[:10]} is not in git's form: {problem}" if problem is not None else treediff._merge(old_rows, new_rows, 40)
    treediff._KEPT.__init__()  # type: ignore[misc]
    spliced = treediff._compare_or_why(repo, a, b, 40)  # a read (kept), b read as its change
    again = treediff._compare_or_why(repo, a, b, 40)  # both kept when b is in git's form
    assert spliced == whole == again
