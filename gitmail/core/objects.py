"""Typed access to git objects through pygit2 (its lookups return the untyped ``Object``)."""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING, Iterator, Optional, Sequence, Union

if TYPE_CHECKING:
    import pygit2

OidLike = Union[str, "pygit2.Oid"]


def commit(pg: "pygit2.Repository", oid: OidLike) -> "pygit2.Commit":
    """The commit ``oid``. Raises ``KeyError`` if missing, ``TypeError`` if not a commit,
    :class:`TooLargeError` (not read) over :data:`MAX_COMMIT` bytes."""
    import pygit2

    object_size(pg, oid, COMMIT, MAX_COMMIT)
    obj = pg[oid]
    if not isinstance(obj, pygit2.Commit):
        raise TypeError(f"{oid} is not a commit")
    return obj


def tree(pg: "pygit2.Repository", oid: OidLike) -> "pygit2.Tree":
    """The tree ``oid``. Raises ``KeyError`` if missing, ``TypeError`` if not a tree,
    :class:`TooLargeError` (not read) over :data:`MAX_TREE` bytes."""
    import pygit2

    object_size(pg, oid, TREE, MAX_TREE)
    obj = pg[oid]
    if not isinstance(obj, pygit2.Tree):
        raise TypeError(f"{oid} is not a tree")
    return obj


# The largest objects a reader inflates (bytes). Git compresses an object with zlib, which packs
# about a thousand bytes of one repeated byte into one: a 1 MB push can carry a 1 GB blob, and
# reading it whole would take a gigabyte of memory in every reader and in the guard. So the size
# is read from the object's header first (libgit2 ``git_odb_read_header``: no inflating), and an
# object over its bound is refused unread. A blob: message.json's bound (model.MAX_BLOB is this
# number), unless the caller gives a tighter one. A commit: that, plus room for the headers, the signature and
# up to 1,000 ``To:`` trailers (the commit text repeats the body). A tree: a message's or the
# directory's (100,000 members' entries fit).
MAX_BLOB_READ = 16 * 1024 * 1024
MAX_COMMIT = MAX_BLOB_READ + 1024 * 1024
MAX_TREE = 16 * 1024 * 1024
ONE_FILE_TREE = 256  # a tree that must hold one file (a packed map, the shared state): far over one entry


class TooLargeError(ValueError):
    """An object whose header gives a size over the reader's bound (it was not read)."""


# git's object types (pygit2.enums.ObjectType, an IntEnum): plain ints, for the reads of every message.
COMMIT, TREE, BLOB = 1, 2, 3


def object_size(pg: "pygit2.Repository", oid: OidLike, kind: int, limit: int) -> int:
    """The size (bytes) of object ``oid`` from its header, without reading it. Raises ``KeyError``
    (missing), ``TypeError`` (not of type ``kind``: :data:`COMMIT`, :data:`TREE`, :data:`BLOB`),
    :class:`TooLargeError` (over ``limit``), ``ValueError`` (not an object id),
    ``pygit2.GitError`` (unreadable)."""
    t, size = pg.odb.read_header(oid)
    check_header(oid, int(t), int(size), kind, limit)
    return int(size)


def check_header(oid: OidLike, found: int, size: int, kind: int, limit: int) -> None:
    """:func:`object_size`'s rule for a header already read (type ``found``, ``size`` bytes):
    raises ``TypeError`` when it is not of type ``kind``, :class:`TooLargeError` over ``limit``."""
    if found != kind:
        raise TypeError(f"{str(oid)[:10]} is not a {_NAMES.get(kind, kind)}")
    if size > limit:
        raise TooLargeError(f"{str(oid)[:10]} is {size} bytes, over the {limit} a reader reads")


_NAMES = {COMMIT: "commit", TREE: "tree", BLOB: "blob", 4: "tag"}


def blob_data(pg: "pygit2.Repository", oid: OidLike, limit: int = MAX_BLOB_READ) -> bytes:
    """The bytes of blob ``oid``, read only when its header gives at most ``limit`` bytes.
    Raises ``KeyError`` (missing), ``TypeError`` (not a blob), :class:`TooLargeError` (over
    ``limit``: never inflated), ``ValueError`` (not an object id)."""
    object_size(pg, oid, BLOB, limit)
    # One read of the object database gives the bytes; a lookup (``pg[oid]``) builds an object
    # first and reads the data again (twice the time, issue 16).
    return pg.read(oid)[1]


def object_id(kind: bytes, body: bytes, hexlen: int) -> str:
    """The git object id of an object of type ``kind`` (``b"blob"``, ``b"tree"``) holding
    ``body``: SHA-1 of ``<kind> <size>\\0<body>``, or SHA-256 in a repository whose ids have
    ``hexlen`` 64 hex digits."""
    import hashlib

    h = hashlib.sha1() if hexlen == 40 else hashlib.sha256()
    h.update(b"%s %d\0" % (kind, len(body)))
    h.update(body)
    return h.hexdigest()


def file_entry(name: str, oid: str) -> bytes:
    """A regular file's entry in a tree object (``100644 <name>\\0<binary id>``)."""
    return b"100644 %s\0%s" % (name.encode(), bytes.fromhex(oid))


TREE_MODE = 0o040000  # a folder's mode in a tree entry

# The modes git itself writes (git fsck calls any other "badFilemode"): a file, an executable,
# a symbolic link, a folder, a submodule's commit.
TREE_MODES = frozenset((b"100644", b"100755", b"120000", b"40000", b"160000"))
_MODES = {m: int(m, 8) for m in TREE_MODES}


def tree_entries(pg: "pygit2.Repository", oid: OidLike, limit: Optional[int] = None) -> list[tuple[int, str, str]]:
    """``(mode, name, oid)`` of each entry of tree ``oid`` as git reads it, from the object's
    bytes (read only when its header gives at most ``limit`` bytes, default :data:`MAX_TREE`). Raises ``KeyError``
    (missing), ``TypeError`` (not a tree), :class:`TooLargeError`, and ``ValueError`` when the
    bytes are not a tree in git's own form (:func:`tree_problem`): on such a tree libgit2 and
    git may find different entries under one name (a duplicate ``message.json``: pygit2 read
    the second, ``git show`` the first), so a reader could show what an auditor's git does not.
    """
    object_size(pg, oid, TREE, MAX_TREE if limit is None else limit)
    data = pg.read(oid)[1]
    entries, problem = parse_tree(data, len(str(oid)) // 2)
    if problem is not None:
        raise ValueError(f"tree {str(oid)[:10]} is not in git's form: {problem}")
    return entries


def only_entry(pg: "pygit2.Repository", oid: OidLike, name: str) -> Optional[tuple[int, str]]:
    """``(mode, oid)`` of the entry of tree ``oid`` when it holds exactly one, named ``name``
    (a packed map, the shared state); None otherwise, a tree over :data:`ONE_FILE_TREE` bytes
    among them (not read). Raises as :func:`tree_entries` (``ValueError``: not git's form)."""
    try:
        entries = tree_entries(pg, oid, ONE_FILE_TREE)
    except TooLargeError:
        return None
    if len(entries) != 1 or entries[0][1] != name:
        return None
    return entries[0][0], entries[0][2]


def parse_tree(data: bytes, oid_bytes: int) -> tuple[list[tuple[int, str, str]], Optional[str]]:
    """The entries of a tree object's bytes, ``(mode, name, oid)``, and why the bytes are not a
    tree in the form git writes (None when they are): each entry ``<mode> <name>\\0<oid>``
    with a mode of :data:`TREE_MODES`, a name neither empty nor ``.``/``..`` nor holding
    ``/``, in git's order (``base_name_compare``: a folder's name sorts as if it ended in
    ``/``), and no name twice (git fsck: ``badFilemode``, ``emptyName``, ``hasDot``,
    ``hasDotdot``, ``fullPathname``, ``treeNotSorted``, ``duplicateEntries``)."""
    entries, _, problem = parse_tree_at(data, oid_bytes, 0, len(data))
    return [(m, n.decode("utf-8", "surrogateescape"), h.hex()) for m, n, h, _ in entries], problem


def parse_tree_at(data: bytes, oid_bytes: int, start: int, end: int, last: bytes = b"",
                  names: Optional[set[bytes]] = None) -> tuple[list[tuple[int, bytes, bytes, bytes]], list[int], Optional[str]]:
    """:func:`parse_tree` of ``data[start:end]`` (whole entries), after an entry whose sort key
    is ``last`` and with ``names`` already taken: ``(mode, name, raw oid, sort key)`` of each
    entry (a file's key is its name, the same object), the offset of each, and the first rule
    broken (None: none)."""
    out: list[tuple[int, bytes, bytes, bytes]] = []
    offsets: list[int] = []
    seen = set() if names is None else names
    pos = start
    while pos < end:
        sp = data.find(b" ", pos, end)
        nul = data.find(b"\0", sp + 1, end) if sp >= 0 else -1
        if sp < 0 or nul < 0 or nul + 1 + oid_bytes > end:
            return out, offsets, "an entry is cut short"
        mode, name = data[pos:sp], data[sp + 1 : nul]
        if mode not in TREE_MODES:
            return out, offsets, f"mode {mode.decode('ascii', 'replace')!r} of {name.decode('utf-8', 'replace')!r}"
        if not name or name in (b".", b"..") or b"/" in name:
            return out, offsets, f"entry name {name.decode('utf-8', 'replace')!r}"
        key = name + b"/" if mode == b"40000" else name
        if name in seen:
            return out, offsets, f"{name.decode('utf-8', 'replace')!r} twice"
        if key <= last:
            return out, offsets, f"{name.decode('utf-8', 'replace')!r} out of order"
        seen.add(name)
        last = key
        offsets.append(pos)
        out.append((_MODES[mode], name, data[nul + 1 : nul + 1 + oid_bytes], key))
        pos = nul + 1 + oid_bytes
    return out, offsets, None


def author_name(s: str) -> str:
    """A string git accepts in an author name or email: no angle brackets or line breaks
    (docs/protocol.md §6)."""
    return " ".join(s.replace("<", "").replace(">", "").split()) or "unknown"


def ident(name: str, email: str, when: int) -> str:
    """An author or committer value as git writes it, ``Name <email> <seconds> +0000``, with
    ``name`` and ``email`` exactly as given (the caller has removed ``<``, ``>`` and line
    breaks: :func:`author_name`). Not through ``pygit2.Signature``:
    libgit2 trims ``' " , : ; \\``, white space and control characters from both ends, so a
    display name ``'Bob'`` or an email ending in ``;`` was written as other than the directory
    entry readers compare it with, and every message of that member was refused."""
    return f"{name} <{email}> {int(when)} +0000"


def _ident_of(who: "Union[str, pygit2.Signature]") -> str:
    if isinstance(who, str):
        return who
    off = who.offset
    return f"{who.name} <{who.email}> {who.time} {'-' if off < 0 else '+'}{abs(off) // 60:02d}{abs(off) % 60:02d}"


def signed_commit(
    pg: "pygit2.Repository",
    author: "Union[str, pygit2.Signature]",
    committer: "Union[str, pygit2.Signature]",
    message: str,
    tree_id: OidLike,
    parents: Sequence[str],
    sign: "Callable[[bytes], str]",
) -> str:
    """Write a commit signed by ``sign(commit bytes) -> armored signature``; return its hex oid.

    ``author``/``committer``: the header value (:func:`ident`), or a ``pygit2.Signature``
    (a test's). The commit text is git's (``tree``, ``parent`` lines, ``author``,
    ``committer``, a blank line, ``message`` as given), written here so that the identity
    is exactly the one given (docs/protocol.md §6)."""
    head = [f"tree {tree_id}", *(f"parent {p}" for p in parents),
            f"author {_ident_of(author)}", f"committer {_ident_of(committer)}"]
    text = "\n".join(head) + "\n\n" + message
    return str(pg.create_commit_with_signature(text, sign(text.encode("utf-8")), "gpgsig"))


if TYPE_CHECKING:
    from typing import Callable


CACHE_BYTES = 16 << 20  # libgit2's cache of parsed objects (its default, 256 MiB, fills on a long walk)
WINDOW_BYTES = 8 << 20  # one mapped window of a pack file (default 1 GiB)
# All mapped pack windows together (default 8 GiB: every page of a big pack a walk touched stays
# resident, 0.4 KB a message in the walking process). 32 MiB measured as fast as 8 GiB at 100,000.
MAPPED_BYTES = 32 << 20


def configure_reads() -> None:
    """Set libgit2's process-wide read settings for this process (and the workers it forks),
    before the first read. Idempotent; called by :attr:`gitmail.core.repo.Repo.pg` and the
    :class:`~gitmail.core.store.Checker`.

    * Memory (issue 16, item 2): libgit2's object cache and pack mappings are capped; a walk
      over a million commits otherwise keeps hundreds of MB of parsed commits and every page
      of the pack it touched. What stays: the pack's ``.idx``, mapped whole by libgit2 (28
      bytes an object: about 3 objects a message).
    * Time (issue 16, item 4): libgit2 hashes every object it reads again to compare it with
      its id ("strict hash verification", on by default; SHA-1 with collision detection);
      git itself does not. An object's id is computed from its content when it enters the
      object database (``index-pack`` hashes every object of a fetched or pushed pack, and
      ``hash-object``/libgit2 every object written), which is where the id binds the bytes
      gitmail then verifies; hashing again on each read only detects a corruption of the
      local disk afterwards (``git fsck`` does that). Off: about 1.5 µs a read, some 7 µs
      of the CPU of each message a first sync checks (bench/bench_scale.py).
    """
    import pygit2

    pygit2.settings.cache_max_size(CACHE_BYTES)
    pygit2.settings.mwindow_size = WINDOW_BYTES
    pygit2.settings.mwindow_mapped_limit = MAPPED_BYTES
    pygit2.settings.enable_strict_hash_verification(False)


# -- history: the one first-parent walker, robust to hostile commits ------------------


def load_commit(pg: "pygit2.Repository", oid: str) -> "Union[pygit2.Commit, str]":
    """The commit ``oid``, or why it cannot be read as one (a hostile object git stored,
    e.g. a malformed author line, or one over :data:`MAX_COMMIT` bytes, which is not read).
    Raises ``KeyError`` for a missing object."""
    import pygit2

    try:
        object_size(pg, oid, COMMIT, MAX_COMMIT)
        obj = pg[oid]
    except KeyError:
        raise
    except TooLargeError as e:
        return f"commit {e}"
    except TypeError:
        return f"{oid[:10]} is not a commit"
    except (pygit2.GitError, ValueError) as e:
        return f"commit {oid[:10]} cannot be parsed: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    if not isinstance(obj, pygit2.Commit):
        return f"{oid[:10]} is not a commit"
    return obj


def parent_ids(pg: "pygit2.Repository", oid: str) -> list[str]:
    """The parents of commit ``oid``, read from the raw object when libgit2's parser refuses it
    (so one hostile commit never hides the messages below it), as git reads them there (commit.c,
    ``parse_commit_buffer``): the ``parent <hex>`` lines right after the first line, ``tree``;
    a ``parent`` line anywhere else is no parent to git. Raises ``KeyError`` if missing."""
    c = load_commit(pg, oid)
    if not isinstance(c, str):
        return [str(p) for p in c.parent_ids]
    import pygit2

    try:
        object_size(pg, oid, COMMIT, MAX_COMMIT)
    except (TypeError, TooLargeError):
        return []  # not read: the line ends here (a mailbox then keeps its verified copy)
    try:
        kind, data = pg.read(oid)
    except (pygit2.GitError, ValueError) as e:
        raise KeyError(oid) from e
    if kind != pygit2.enums.ObjectType.COMMIT:
        return []
    lines = data.split(b"\n")
    if not (lines[0].startswith(b"tree ") and _HEX40.fullmatch(lines[0], 5)):
        return []  # git refuses it ("bogus commit object"): no parents to follow
    out = []
    for line in lines[1:]:
        if not (line.startswith(b"parent ") and _HEX40.fullmatch(line, 7)):
            break
        out.append(line[7:].decode("ascii").lower())  # git's hex reader takes either case
    return out


_HEX40 = re.compile(rb"[0-9a-fA-F]{40}")


def unfollowed(pg: "pygit2.Repository", oid: str) -> Optional[str]:
    """Why the first-parent line cannot be followed below commit ``oid`` (the last one a walk
    gave), or None (a root, or below is simply not there): a commit over :data:`MAX_COMMIT`
    bytes is not read, so its parents are not known (:func:`parent_ids` gives none)."""
    try:
        object_size(pg, oid, COMMIT, MAX_COMMIT)
    except TooLargeError as e:
        return f"commit {e}; the history below it cannot be read"
    except Exception:  # missing, not a commit, unreadable: parent_ids decides as before
        return None
    return None


def first_parent_line(pg: "pygit2.Repository", tip: str, stop: Optional[str] = None) -> Iterator[tuple[str, list[str]]]:
    """``(commit id, its parent ids)`` from ``tip`` down the first-parent line, newest first,
    to (not including) ``stop`` or through the root commit.

    The one history walker of gitmail: mailboxes and the directory are linear, and
    every caller decides what a merge (more than one parent id) means for it.
    Parents are read from the raw object where git's parser refuses a commit
    (:func:`parent_ids`), so one hostile commit never hides the history below
    it, which ``pygit2.Walker`` cannot do. Raises ``KeyError`` for a missing object.
    """
    oid: Optional[str] = tip
    while oid is not None and oid != stop:
        ps = parent_ids(pg, oid)
        yield oid, ps
        oid = ps[0] if ps else None


class _Line:
    """The first-parent line below one tip, walked lazily (:func:`first_parent_line`) as far as
    the questions asked of it need, each commit read once; the ids seen are kept (about 85 bytes
    a commit: a set of raw ids)."""

    def __init__(self, tip: str) -> None:
        self.seen: set[bytes] = set()
        self.next: Optional[str] = tip
        self.lock = threading.Lock()  # the warm guard checks pushes on several threads

    def holds(self, pg: "pygit2.Repository", oid: str) -> bool:
        with self.lock:
            return self._holds(pg, oid)

    def _holds(self, pg: "pygit2.Repository", oid: str) -> bool:
        raw = bytes.fromhex(oid)
        if raw in self.seen:
            return True
        while self.next is not None:
            cur = self.next
            try:
                ps = parent_ids(pg, cur)
            except KeyError:  # the line goes on below a missing object: nothing further to read
                ps = []
            self.seen.add(bytes.fromhex(cur))
            self.next = ps[0] if ps else None
            if cur == oid:
                return True
        return False


_LINES: "dict[str, _Line]" = {}
_LINES_KEPT = 4
_LINES_LOCK = threading.Lock()


def on_line(pg: "pygit2.Repository", tip: str, oid: str) -> bool:
    """Whether commit ``oid`` is ``tip`` or on its first-parent line, reading parents as git
    does (:func:`parent_ids`: a commit libgit2 cannot parse still has the parents git sees).

    Asked for every commit a retired key signed (docs/protocol.md §7, "Key validity"), so each
    line is walked once per process and kept (the last :data:`_LINES_KEPT` tips; a line below
    a commit id never changes): a walk per question made a first sync of a rotated member's
    100,000 messages quadratic (libgit2's ``descendant_of`` takes 4 µs a commit between the two)."""
    with _LINES_LOCK:  # the warm guard's threads share the memo
        line = _LINES.pop(tip, None) or _Line(tip)
        _LINES[tip] = line  # most recently used last
        while len(_LINES) > _LINES_KEPT:
            del _LINES[next(iter(_LINES))]
    return line.holds(pg, oid)


def chain(pg: "pygit2.Repository", tip: str, stop: Optional[str] = None) -> tuple[list[str], bool]:
    """Commit ids from ``tip`` down its first-parent line to (not including) ``stop``,
    newest first, and whether a merge (a commit with several parents) was met (the
    walk stops at it, it included). Raises ``KeyError`` for a missing object."""
    out: list[str] = []
    for oid, ps in first_parent_line(pg, tip, stop):
        out.append(oid)
        if len(ps) > 1:
            return out, True
    return out, False


def extends(pg: "pygit2.Repository", tip: str, base: str) -> bool:
    """Whether ``base`` is on the first-parent line below ``tip`` with no merge between
    (a fast-forward of a mailbox ref), walking raw objects where git's parser refuses.
    Streams: memory does not grow with the length of the line."""
    last: Optional[list[str]] = None
    for _, ps in first_parent_line(pg, tip, base):
        if len(ps) > 1:
            return False
        last = ps
    return last is None or last == [base]


def mailbox_move_problem(pg: "pygit2.Repository", path: str, line: "OidStack", merge: bool,
                         verified: Optional[str]) -> Optional[str]:
    """Why mailbox ``path`` cannot move to the commits ``line`` (:func:`collect` from its new
    tip down to ``verified``, its verified tip, None: never verified), or None: the one rule
    (docs/protocol.md §7, "Verification") that a sync, ``verify`` and ``verify --all`` apply,
    in the same words. A mailbox moves only by a fast-forward along its first-parent line,
    with no merge; a commit too large to read (:func:`unfollowed`) ends the line, so what is
    below it is not known. One line naming ``path``; where there is a verified copy it is
    what the member keeps, and the line says so."""
    if not len(line):
        return None
    cut = unfollowed(pg, line[-1])
    if verified is not None:
        parents = [] if merge else parent_ids(pg, line[-1])
        if parents == [verified]:
            return None
        return f"{path}: {cut or REWRITTEN}; kept the verified copy"
    if merge:
        return f"{path}: history contains a merge at {line[-1][:10]}; mailbox refs must be linear"
    return f"{path}: {cut}" if cut else None


REWRITTEN = "history was rewritten on the org repo (not a fast-forward)"


class OidStack:
    """Commit ids in a flat byte string (20 bytes each for SHA-1): a million of them take 20 MB,
    where a Python list of hex strings takes over 90 MB. Indexed like a list."""

    def __init__(self) -> None:
        self._b = bytearray()
        self._w = 0

    def append(self, oid: str) -> None:
        raw = bytes.fromhex(oid)
        if not self._w:
            self._w = len(raw)
        elif len(raw) != self._w:
            raise ValueError(f"object id of another length: {oid}")
        self._b += raw

    def extend(self, other: "OidStack") -> None:
        """Append ``other``'s ids after these (the line below, when both are newest first)."""
        if other._w and self._w and other._w != self._w:
            raise ValueError("object ids of another length")
        self._w = self._w or other._w
        self._b += other._b

    def __len__(self) -> int:
        return len(self._b) // self._w if self._w else 0

    def __getitem__(self, i: int) -> str:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._b[i * self._w : (i + 1) * self._w].hex()


def collect(pg: "pygit2.Repository", tip: str, stop: Optional[str] = None) -> tuple[OidStack, bool]:
    """:func:`chain` into an :class:`OidStack` (newest first): the same walk, a fifth of the memory."""
    out = OidStack()
    for oid, ps in first_parent_line(pg, tip, stop):
        out.append(oid)
        if len(ps) > 1:
            return out, True
    return out, False
