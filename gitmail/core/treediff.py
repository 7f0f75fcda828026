"""A tree diff for hostile trees: each tree is sized before it is read, and the diff stops at a depth.

The directory's entries lie at most three path components deep (``members/<shard>/<name>.json``,
docs/protocol.md §8), and its commits come from other members. zlib packs a tree of repeated
entries about seventy to one (a 616 KB push held a 44 MB tree), and a recursive diff (libgit2's,
``git diff-tree -r``) inflates every tree on a changed path whole, however deep. This one goes a
level at a time:

* before a level is listed, every tree in it is sized from its object header (nothing inflated):
  a pair holding a tree over :data:`gitmail.core.objects.MAX_TREE` bytes, or an object that is
  not a tree where its entry says tree, gets the reason instead of its changes, unread
  (docs/protocol.md §13);
* it descends only into trees less than :data:`DEPTH` path components deep; a changed tree at
  that depth is reported as itself (path, mode 040000, its id; removed: mode 0), unread. The
  directory's readers take any path deeper than an entry for "a folder where a file belongs",
  so they read the same either way. Where ``git diff-tree -r`` would list nothing below such a
  tree (it holds only empty folders), this still reports it, as a full read of the tree
  (``directory.from_tree``) would find it; the empty tree itself, known by its id, is not.

Otherwise the answer is ``git diff-tree -r --no-renames``'s: for each (old tree, new tree), the
paths that differ as ``(path, new mode, new oid)``, mode 0 and an all-zero id for a removed path,
a type change (file to folder or back) as the removal of one and the addition of the other.

Two ways to list a level give the same answer (``tests/core/test_treediff.py``): one
``git diff-tree --stdin`` and one ``git cat-file --batch-check`` a level for many pairs (git
reads trees faster than Python walks them; they run in another thread, so no pygit2 there),
and pygit2's entries compared in Python for a few pairs, and for objects only pygit2 sees
(the guard's quarantined push).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Callable, Iterator, Optional, Sequence, Union, cast

from gitmail.core import objects

if TYPE_CHECKING:
    import pygit2

    from gitmail import git

DEPTH = 4  # path components; the directory's deepest entry has three
GIT_MIN = 16  # pairs from which git's processes beat pygit2's reads
# Tree bytes one call lists: its pairs together (the pairs past the budget are left for the
# next call), and any one pair (over it, the pair is refused: a directory commit reads its old
# and new trees down to its entries, a few times objects.MAX_TREE at the most).
CALL_BYTES = 32 * 1024 * 1024
PAIR_BYTES = 64 * 1024 * 1024
TREE_MODE = 0o040000

Change = tuple[str, int, str]  # path, new mode (0: removed), new oid (all zeros when removed)
Result = Union[list[Change], str]  # a pair's changes, or why its trees are not read
_Entry = tuple[str, int, str, int, str]  # name, old mode, old oid, new mode, new oid (mode 0: absent)
_Item = tuple[int, str, Optional[str], Optional[str]]  # pair index, path prefix, old tree, new tree


class _GitCannot(Exception):
    """git cannot read what pygit2 may (an object outside git's view): list the batch with pygit2."""


def empty_tree(hexlen: int) -> str:
    """The id of the empty tree in a repository whose ids have ``hexlen`` hex digits (40: SHA-1, 64: SHA-256)."""
    return (hashlib.sha1 if hexlen == 40 else hashlib.sha256)(b"tree 0\0").hexdigest()


def changes(pg: "pygit2.Repository", pairs: Sequence[tuple[str, str]]) -> list[Result]:
    """For the first pairs of ``pairs`` (``(old tree, new tree)`` ids; the empty tree's id for
    none), in order, each one's changes or the reason its trees are not read (see the module's
    docstring): at least one pair, fewer than all once :data:`CALL_BYTES` of trees are listed
    (call again for the rest; :func:`each`). git lists :data:`GIT_MIN` pairs or more, pygit2
    fewer, and any batch git cannot read."""
    if len(pairs) >= GIT_MIN:
        try:
            return changes_git(pg.path, pairs)
        except Exception:
            pass
    return changes_pg(pg, pairs)


def each(pg: "pygit2.Repository", pairs: Sequence[tuple[str, str]], chunk: int = 1024) -> Iterator[Result]:
    """:func:`changes` of every pair of ``pairs``, in order, listed ``chunk`` pairs (or a
    budget) at a time, as the caller takes them."""
    i = 0
    while i < len(pairs):
        part = changes(pg, pairs[i : i + chunk])
        yield from part
        i += len(part)


def changes_pg(pg: "pygit2.Repository", pairs: Sequence[tuple[str, str]]) -> list[Result]:
    """:func:`changes` read through pygit2 (any object ``pg`` sees); a prefix of ``pairs``, as there."""

    def level(items: list[_Item]) -> list[Union[list[_Entry], str]]:
        return [_compare_or_why(pg, a, b, len(pairs[0][1])) for _, _, a, b in items]

    return _walk(pairs, lambda oids: _sizes(pg, oids, missing_ok=True), level)


def changes_git(git_dir: str, pairs: Sequence[tuple[str, str]], lister: "Optional[Lister]" = None) -> list[Result]:
    """:func:`changes` (a prefix of ``pairs``) listed by ``git diff-tree --stdin`` in
    ``git_dir``, asked a level at a time (safe in any thread: sizes come from a repository
    opened here, as libgit2 allows one a thread). ``lister``: one kept for many calls (else
    one is made for this call). Raises when either cannot read an object (then
    :func:`changes_pg` decides)."""
    if lister is not None:
        return lister.changes(pairs)
    with Lister(git_dir) as own:
        return own.changes(pairs)


class Lister:
    """One ``git diff-tree --stdin`` and one repository for object headers, kept for many
    :func:`changes_git` calls from one thread (one git start, git's caches kept warm)."""

    def __init__(self, git_dir: str) -> None:
        import pygit2

        from gitmail import git

        self.repo = pygit2.Repository(git_dir)
        self.talk = git.Conversation(["--git-dir", git_dir, "diff-tree", "--stdin", "-z", "--no-renames",
                                      "--no-abbrev"])

    def changes(self, pairs: Sequence[tuple[str, str]]) -> list[Result]:
        empty = empty_tree(len(pairs[0][1])) if pairs else ""

        def level(items: list[_Item]) -> list[list[_Entry]]:
            wanted = [(a or empty, b or empty) for _, _, a, b in items]
            listed = _diff_tree(self.talk, list(dict.fromkeys(wanted)))  # in history order: git's delta cache hits
            return [listed.get(w, []) for w in wanted]

        return _walk(pairs, lambda oids: _sizes(self.repo, oids, missing_ok=False), level)

    def close(self) -> None:
        self.talk.close()

    def __enter__(self) -> "Lister":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sizes(pg: "pygit2.Repository", oids: list[str], missing_ok: bool) -> dict[str, tuple[int, int]]:
    """oid -> (type, bytes) from each object's header (nothing inflated); type 0: missing, or
    :class:`_GitCannot` unless ``missing_ok``."""
    out: dict[str, tuple[int, int]] = {}
    for o in oids:
        try:
            t, n = pg.odb.read_header(o)
            out[o] = (int(t), int(n))
        except KeyError:
            if not missing_ok:
                raise _GitCannot(f"{o} is missing") from None
            out[o] = (0, 0)
    return out


def _walk(pairs: Sequence[tuple[str, str]], size: Callable[[list[str]], dict[str, tuple[int, int]]],
          level: Callable[[list[_Item]], Sequence[Union[list[_Entry], str]]]) -> list[Result]:
    """The level-at-a-time diff over ``size`` (oid -> (type, bytes); type 0: missing) and
    ``level`` (each item's entries that differ, one level, unread below)."""
    if not pairs:
        return []
    hexlen = len(pairs[0][1])
    empty, zeros = empty_tree(hexlen), "0" * hexlen
    out: list[list[Change]] = [[] for _ in pairs]
    bad: dict[int, str] = {}
    spent = [0] * len(pairs)  # tree bytes listed for each pair
    cut = len(pairs)  # pairs from here on are left for the next call
    items: list[_Item] = [(i, "", a if a != empty else None, b if b != empty else None)
                          for i, (a, b) in enumerate(pairs) if a != b]
    depth = 0
    while items:
        sizes = size(list(dict.fromkeys(o for _, _, a, b in items for o in (a, b) if o is not None)))
        live = []
        for it in items:
            i, prefix = it[0], it[1]
            if i in bad:
                continue
            why = next((w for o in (it[2], it[3]) if o is not None
                        for w in [_unreadable(o, *sizes[o])] if w is not None), None)
            if why is not None:
                bad[i] = f"{prefix.rstrip('/') or 'the root tree'}: {why}"
                continue
            spent[i] += sum(sizes[o][1] for o in (it[2], it[3]) if o is not None)
            live.append(it)
        # The budgets, before anything of this level is read: a tree may be named by many
        # entries (git stores it once), so a small push can ask for a great many listings.
        if spent[0] > PAIR_BYTES and 0 not in bad:
            bad[0] = f"its trees are {spent[0]} bytes together, over the {PAIR_BYTES} a reader reads for one commit"
        total = 0
        for i in range(1, cut):
            total += spent[i - 1]
            if total + spent[i] > CALL_BYTES:
                cut = i
                break
        live = [it for it in live if it[0] < cut and it[0] not in bad]
        nxt: list[_Item] = []
        for (i, prefix, _, _), entries in zip(live, level(live)):
            if isinstance(entries, str):  # a tree that does not parse
                bad[i] = f"{prefix.rstrip('/') or 'the root tree'}: {entries}"
                continue
            for name, om, oo, nm, no in entries:
                path = prefix + name
                if depth + 1 < DEPTH and TREE_MODE in (om, nm):
                    # Into the tree side(s); a file on the other side is removed or added here.
                    if om and om != TREE_MODE:
                        out[i].append((path, 0, zeros))
                    if nm and nm != TREE_MODE:
                        out[i].append((path, nm, no))
                    nxt.append((i, path + "/", oo if om == TREE_MODE else None, no if nm == TREE_MODE else None))
                else:
                    # Not read below here. git -r shows nothing of an empty tree, and an empty
                    # tree's id says it is one.
                    if om == TREE_MODE and oo == empty:
                        om = 0
                    if nm == TREE_MODE and no == empty:
                        nm = 0
                    if nm:
                        out[i].append((path, nm, no))
                    elif om:
                        out[i].append((path, 0, zeros))
        items, depth = nxt, depth + 1
    return [bad.get(i, c) for i, c in enumerate(out[:cut])]


def _unreadable(oid: str, kind: int, size: int) -> Optional[str]:
    """Why tree ``oid`` (of type ``kind`` and ``size`` bytes by its header) is not read, or None."""
    if kind == 0:
        return f"{oid[:10]} is missing"
    if kind != objects.TREE:
        return f"{oid[:10]} is not a tree"
    if size > objects.MAX_TREE:
        return f"{oid[:10]} is {size} bytes, over the {objects.MAX_TREE} a reader reads"
    return None


def _compare_or_why(pg: "pygit2.Repository", a: Optional[str], b: Optional[str], hexlen: int) -> Union[list[_Entry], str]:
    """:func:`_compare`, or why a tree of the two does not parse (libgit2's words)."""
    import pygit2

    try:
        return _compare(pg, a, b, hexlen)
    except (pygit2.GitError, ValueError, KeyError, TypeError) as e:
        return str(e).splitlines()[0] if str(e) else type(e).__name__


def _compare(pg: "pygit2.Repository", a: Optional[str], b: Optional[str], hexlen: int) -> list[_Entry]:
    """The entries of trees ``a`` and ``b`` (already sized; None: no tree) that differ, one level.
    Both lists are in git's tree order (a folder's name sorts as if it ended in "/"), so they
    are merged in one pass; as in git, a file and a folder of one name are two entries
    (``base_name_compare``)."""
    zeros = "0" * hexlen
    xs, ys = _listing(pg, a), _listing(pg, b)
    out: list[_Entry] = []
    i = j = 0
    while i < len(xs) or j < len(ys):
        x = xs[i] if i < len(xs) else None
        y = ys[j] if j < len(ys) else None
        if y is None or (x is not None and x[0] < y[0]):
            assert x is not None
            out.append((x[1], x[2], x[3], 0, zeros))
            i += 1
        elif x is None or y[0] < x[0]:
            out.append((y[1], 0, zeros, y[2], y[3]))
            j += 1
        else:
            if (x[2], x[3]) != (y[2], y[3]):
                out.append((x[1], x[2], x[3], y[2], y[3]))
            i += 1
            j += 1
    return out


def _listing(pg: "pygit2.Repository", oid: Optional[str]) -> list[tuple[bytes, str, int, str]]:
    """(sort key, name, mode, id) of each entry of tree ``oid``, sorted as git sorts them."""
    if oid is None:
        return []
    out = []
    for e in cast("pygit2.Tree", pg[oid]):
        raw, mode = e.raw_name or b"", int(e.filemode)
        out.append((raw + b"/" if mode == TREE_MODE else raw, raw.decode("utf-8", "surrogateescape"), mode, str(e.id)))
    out.sort()  # a hostile tree may be out of order; git would then pair its entries differently anyway
    return out


def _diff_tree(talk: "git.Conversation", pairs: list[tuple[str, str]]) -> dict[tuple[str, str], list[_Entry]]:
    """One level of each pair, asked of a ``git diff-tree --stdin -z`` (no ``-r``: git reads
    only the two trees of a pair)."""
    text = "".join(f"{a} {b}\n" for a, b in pairs).encode()
    try:
        out = talk.ask(text)
    except Exception as e:
        raise _GitCannot(str(e)) from None
    found: dict[tuple[str, str], list[_Entry]] = {}
    cur: list[_Entry] = []
    pos, n = 0, len(out)
    while pos < n:
        if out[pos] == 0x3A:  # ':' a record: ":<old mode> <new mode> <old> <new> <status>\0<path>\0"
            meta_end = out.index(b"\0", pos)
            f = out[pos + 1 : meta_end].split(b" ")
            path_end = out.index(b"\0", meta_end + 1)
            name = out[meta_end + 1 : path_end].decode("utf-8", "surrogateescape")
            cur.append((name, int(f[0], 8), f[2].decode(), int(f[1], 8), f[3].decode()))
            pos = path_end + 1
        else:  # "<old tree> <new tree>\n" starts the next pair's records
            end = out.index(b"\n", pos)
            a, b = out[pos:end].decode().split(" ")
            cur = found.setdefault((a, b), [])
            pos = end + 1
    return found
