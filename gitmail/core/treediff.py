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
* every tree listed must be in git's own form (:func:`gitmail.core.objects.parse_tree`: sorted,
  each name once, git's modes and names): on any other, git and libgit2 may take one name for
  different entries (a duplicate member file: ``git diff-tree`` paired the second copy, ``git
  show`` the first), so readers could disagree on what the directory says;
* it descends only into trees less than :data:`DEPTH` path components deep; a changed tree at
  that depth is reported as itself (path, mode 040000, its id; removed: mode 0), unread. The
  directory's readers take any path deeper than an entry for "a folder where a file belongs",
  so they read the same either way. Where ``git diff-tree -r`` would list nothing below such a
  tree (it holds only empty folders), this still reports it, as a full read of the tree
  (``directory.from_tree``) would find it; the empty tree itself, known by its id, is not;
* at most :data:`CALL_BYTES` of trees are listed a call, and a commit listing more than
  :data:`PAIR_BYTES` is refused.

Otherwise the answer is ``git diff-tree -r --no-renames``'s: for each (old tree, new tree), the
paths that differ as ``(path, new mode, new oid)``, mode 0 and an all-zero id for a removed path,
a type change (file to folder or back) as the removal of one and the addition of the other
(``tests/core/test_treediff.py`` checks it against git, hypothesis).

Consecutive directory commits change a few entries of each folder, so a new tree is read as
the old one with its changed middle parsed anew: the bytes both share at the start and at the
end are found by binary search (C comparisons), and only the entries between are parsed and
compared; each tree read is kept, by id, for the next commit (bounded).
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Iterator, Optional, Sequence, Union, cast

from gitmail.core import objects
from gitmail.core.objects import TREE_MODE

if TYPE_CHECKING:
    import pygit2

DEPTH = 4  # path components; the directory's deepest entry has three
# Tree bytes one call lists: its pairs together (the pairs past the budget are left for the
# next call), and any one pair (over it, the pair is refused). A directory commit of an org of
# 100,000 members lists about 5 MB at the most (its first, or a change of layout: every entry);
# a listed entry takes about five times its bytes in memory while it is compared.
CALL_BYTES = 8 * 1024 * 1024
PAIR_BYTES = 16 * 1024 * 1024

Change = tuple[str, int, str]  # path, new mode (0: removed), new oid (all zeros when removed)
Result = Union[list[Change], str]  # a pair's changes, or why its trees are not read
_Entry = tuple[str, int, str, int, str]  # name, old mode, old oid, new mode, new oid (mode 0: absent)
_Item = tuple[int, str, Optional[str], Optional[str]]  # pair index, path prefix, old tree, new tree


def empty_tree(hexlen: int) -> str:
    """The id of the empty tree in a repository whose ids have ``hexlen`` hex digits (40: SHA-1, 64: SHA-256)."""
    return objects.object_id(b"tree", b"", hexlen)


def changes(pg: "pygit2.Repository", pairs: Sequence[tuple[str, str]]) -> list[Result]:
    """For the first pairs of ``pairs`` (``(old tree, new tree)`` ids; the empty tree's id for
    none), in order, each one's changes or the reason its trees are not read (see the module's
    docstring): at least one pair, fewer than all once :data:`CALL_BYTES` of trees are listed
    (call again for the rest; :func:`each`)."""
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
        sizes = _sizes(pg, list(dict.fromkeys(o for _, _, a, b in items for o in (a, b) if o is not None)))
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
        for i, prefix, a, b in live:
            entries = _compare_or_why(pg, a, b, hexlen)
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


def _sizes(pg: "pygit2.Repository", oids: list[str]) -> dict[str, tuple[int, int]]:
    """oid -> (type, bytes) from each object's header (nothing inflated; a tree already read:
    its bytes); type 0: missing."""
    out: dict[str, tuple[int, int]] = {}
    for o in oids:
        t = _KEPT.get(pg, o)
        if t is not None:
            out[o] = (objects.TREE, len(t.raw))
            continue
        try:
            kind, n = pg.odb.read_header(o)
            out[o] = (int(kind), int(n))
        except KeyError:
            out[o] = (0, 0)
    return out


def each(pg: "pygit2.Repository", pairs: Sequence[tuple[str, str]], chunk: int = 1024) -> Iterator[Result]:
    """:func:`changes` of every pair of ``pairs``, in order, listed ``chunk`` pairs (or a
    budget) at a time, as the caller takes them."""
    i, ask = 0, chunk
    while i < len(pairs):
        part = changes(pg, pairs[i : i + ask])
        yield from part
        i += len(part)
        # A call the budget cut short: ask for about what fits next time (the pairs asked past
        # the cut had their first level listed for nothing).
        ask = chunk if len(part) == ask else min(chunk, len(part) + len(part) // 4 + 1)


def _unreadable(oid: str, kind: int, size: int) -> Optional[str]:
    """Why tree ``oid`` (of type ``kind`` and ``size`` bytes by its header; type 0: missing) is
    not read (:func:`gitmail.core.objects.check_header`), or None."""
    if kind == 0:
        return f"{oid[:10]} is missing"
    try:
        objects.check_header(oid, kind, size, objects.TREE, objects.MAX_TREE)
    except (TypeError, objects.TooLargeError) as e:
        return str(e)
    return None


def _compare_or_why(pg: "pygit2.Repository", a: Optional[str], b: Optional[str], hexlen: int) -> Union[list[_Entry], str]:
    """The entries of trees ``a`` and ``b`` (already sized; None: no tree) that differ, one
    level, or why one of them is not read: not in git's form (:func:`objects.parse_tree`: on
    such a tree git and libgit2 may take a name for different entries), or unparsable."""
    import pygit2

    try:
        old = _KEPT.read(pg, a) if a is not None else None
        if b is None:
            return _merge(old.entries if old is not None else [], [], hexlen)
        kept = _KEPT.get(pg, b)
        if kept is not None:
            if old is None:
                return _merge([], kept.entries, hexlen)
            i, j_old, j_new = _middle(old, kept)
            return _merge(old.entries[i:j_old], kept.entries[i:j_new], hexlen)
        raw = _read_raw(pg, b)
        if old is not None:
            spliced = _splice(old, raw, hexlen // 2)
            if spliced is not None:
                new, i, j_old, mid = spliced
                _KEPT.keep(pg, b, new)
                return _merge(old.entries[i:j_old], mid, hexlen)
        new = _parse_whole(b, raw, hexlen // 2)
        _KEPT.keep(pg, b, new)
        return _merge(old.entries if old is not None else [], new.entries, hexlen)
    except (pygit2.GitError, ValueError, KeyError, TypeError) as e:
        return str(e).splitlines()[0] if str(e) else type(e).__name__


_Row = tuple[int, bytes, bytes, bytes]  # mode, name, raw oid, sort key (objects.parse_tree_at)


class _Tree:
    """A tree read in git's form: its bytes, entries, and each entry's offset (and the end)."""

    __slots__ = ("raw", "entries", "offsets", "names")

    def __init__(self, raw: bytes, entries: list[_Row], offsets: list[int], names: set[bytes]) -> None:
        self.raw, self.entries, self.offsets, self.names = raw, entries, offsets, names


class _Kept:
    """Trees already read, by repository and id; the new tree of one directory commit is the
    old tree of the next. Bounded in bytes; safe across threads (the guard's daemon)."""

    LIMIT = 8 * 1024 * 1024  # bytes of trees; parsed, about eight times that in memory

    def __init__(self) -> None:
        import threading

        self.trees: dict[tuple[str, str], _Tree] = {}
        self.bytes = 0
        self.lock = threading.Lock()

    def get(self, pg: "pygit2.Repository", oid: str) -> Optional[_Tree]:
        return self.trees.get((pg.path, oid))

    def read(self, pg: "pygit2.Repository", oid: str) -> _Tree:
        hit = self.trees.get((pg.path, oid))
        if hit is None:
            hit = _parse_whole(oid, _read_raw(pg, oid), len(oid) // 2)
            self.keep(pg, oid, hit)
        return hit

    def keep(self, pg: "pygit2.Repository", oid: str, t: _Tree) -> None:
        if len(t.raw) > self.LIMIT:
            return
        with self.lock:
            while self.trees and self.bytes + len(t.raw) > self.LIMIT:
                gone = self.trees.pop(next(iter(self.trees)))
                self.bytes -= len(gone.raw)
            if (pg.path, oid) not in self.trees:
                self.trees[(pg.path, oid)] = t
                self.bytes += len(t.raw)


_KEPT = _Kept()


def _read_raw(pg: "pygit2.Repository", oid: str) -> bytes:
    kind, data = pg.read(oid)
    if int(kind) != objects.TREE:
        raise TypeError(f"{oid[:10]} is not a tree")
    return bytes(data)


def _parse_whole(oid: str, raw: bytes, oid_bytes: int) -> _Tree:
    names: set[bytes] = set()
    entries, offsets, problem = objects.parse_tree_at(raw, oid_bytes, 0, len(raw), names=names)
    if problem is not None:
        raise ValueError(f"{oid[:10]} is not in git's form: {problem}")
    return _Tree(raw, entries, offsets + [len(raw)], names)


def _common(a: bytes, b: bytes) -> tuple[int, int]:
    """Lengths of the longest common prefix of ``a`` and ``b`` and of their longest common
    suffix within what is left (binary searches of C comparisons, each over the part not yet
    known: about twice the bytes in all)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    p = lo
    la, lb = len(a), len(b)
    lo, hi = 0, min(la, lb) - p
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[la - mid : la - lo] == b[lb - mid : lb - lo]:
            lo = mid
        else:
            hi = mid - 1
    return p, lo


def _middle(old: _Tree, new: _Tree) -> tuple[int, int, int]:
    """``(i, j_old, j_new)``: the entries before ``i`` and from ``j_old``/``j_new`` on are the
    same bytes in both trees; only ``old.entries[i:j_old]`` and ``new.entries[i:j_new]`` may differ."""
    p, s = _common(old.raw, new.raw)
    n_old, n_new = len(old.entries), len(new.entries)
    i = min(bisect.bisect_right(old.offsets, p, 1) - 1, bisect.bisect_right(new.offsets, p, 1) - 1)
    c = min(n_old - bisect.bisect_left(old.offsets, len(old.raw) - s, 0, n_old),
            n_new - bisect.bisect_left(new.offsets, len(new.raw) - s, 0, n_new), n_old - i, n_new - i)
    return i, n_old - c, n_new - c


def _splice(old: _Tree, raw: bytes, oid_bytes: int) -> Optional[tuple[_Tree, int, int, list[_Row]]]:
    """The tree of bytes ``raw`` read as ``old`` with its middle parsed anew, when ``raw`` keeps
    ``old``'s first and last entries byte for byte and the result is in git's form:
    ``(tree, i, j_old, new middle entries)``; None otherwise (then the whole is parsed, which
    also names the rule broken)."""
    p, s = _common(old.raw, raw)
    n = len(old.entries)
    i = bisect.bisect_right(old.offsets, p, 1) - 1
    j = max(i, bisect.bisect_left(old.offsets, len(old.raw) - s, 0, n))
    start, tail = old.offsets[i], len(old.raw) - old.offsets[j]
    end = len(raw) - tail
    if end < start:
        return None
    mid, offs, problem = objects.parse_tree_at(raw, oid_bytes, start, end, old.entries[i - 1][3] if i else b"")
    if problem is not None:
        return None
    last = mid[-1][3] if mid else (old.entries[i - 1][3] if i else b"")
    if j < n and old.entries[j][3] <= last:
        return None
    was = {e[1] for e in old.entries[i:j]}
    now = {e[1] for e in mid}
    if now == was:
        names = old.names  # the same names (only ids or modes changed): shared, never changed in place
    else:
        if any(name in old.names and name not in was for name in now):
            return None  # a name twice: the whole is parsed, naming it
        names = (old.names - was) | now
    shift = len(raw) - len(old.raw)
    rest = old.offsets[j:] if not shift else [o + shift for o in old.offsets[j:]]
    tree = _Tree(raw, old.entries[:i] + mid + old.entries[j:], old.offsets[:i] + offs + rest, names)
    return tree, i, j, mid


def _merge(old: list[_Row], new: list[_Row], hexlen: int) -> list[_Entry]:
    """The entries of two sorted lists that differ, as git pairs them (by sort key: a file and
    a folder of one name are two entries, ``base_name_compare``)."""
    zeros = "0" * hexlen
    out: list[_Entry] = []
    i = j = 0
    while i < len(old) or j < len(new):
        x = old[i] if i < len(old) else None
        y = new[j] if j < len(new) else None
        if y is None or (x is not None and x[3] < y[3]):
            assert x is not None
            out.append((x[1].decode("utf-8", "surrogateescape"), x[0], x[2].hex(), 0, zeros))
            i += 1
        elif x is None or y[3] < x[3]:
            out.append((y[1].decode("utf-8", "surrogateescape"), 0, zeros, y[0], y[2].hex()))
            j += 1
        else:
            if (x[0], x[2]) != (y[0], y[2]):
                out.append((x[1].decode("utf-8", "surrogateescape"), x[0], x[2].hex(), y[0], y[2].hex()))
            i += 1
            j += 1
    return out
