"""Writing many message commits at once, as one pack (for imports, fan-out and benchmarks).

:func:`gitmail.core.store.write_message_commit` writes three loose objects per
message through pygit2, which costs a file (and an fsync-free zlib stream)
each. For a batch, this module builds the same objects in memory (byte for
byte what pygit2 would write: the commits verify identically), writes them
as one undeltified pack (pack format v2, gitformat-pack(5)) with its index
(dulwich's ``write_pack_index_v2``); ``git gc`` later deltifies as usual.
"""

from __future__ import annotations

import hashlib
import struct
import time
import zlib
from typing import TYPE_CHECKING, Iterable, Optional

from gitmail.core.private import CIPHER_FILE
from gitmail.core.model import Member, Message
from gitmail.core.signing import Signer
from gitmail.core.dates import date_seconds
from gitmail.core.store import MESSAGE_FILE, author_of, commit_message

if TYPE_CHECKING:
    from gitmail.core.repo import Repo

_BLOB, _TREE, _COMMIT = 3, 2, 1
# Files written without compression: an age file is ciphertext (docs/protocol.md §9).
STORED = frozenset({CIPHER_FILE})
_TYPE_NAME = {_BLOB: b"blob", _TREE: b"tree", _COMMIT: b"commit"}


class PackWriter:
    """Collects whole objects; :meth:`finish` writes them as one pack and its index."""

    def __init__(self) -> None:
        self._entries: list[bytes] = []
        self._index: list[tuple[bytes, int, int]] = []  # (oid, offset, crc32)
        self._offset = 12  # after the pack header
        self._seen: set[bytes] = set()

    def add(self, type_num: int, raw: bytes, level: int = 1) -> bytes:
        """Add an object (once); return its binary sha1 oid. ``level``: zlib's, 0 for data
        that does not compress (ciphertext): deflating it costs 13x the time for no gain."""
        oid = hashlib.sha1(b"%s %d\0%s" % (_TYPE_NAME[type_num], len(raw), raw)).digest()
        if oid not in self._seen:
            self._seen.add(oid)
            entry = _header(type_num, len(raw)) + _deflate(raw, level)
            self._entries.append(entry)
            self._index.append((oid, self._offset, zlib.crc32(entry)))
            self._offset += len(entry)
        return oid

    def finish(self, repo: "Repo") -> None:
        """Write ``pack-<sha>.pack`` then its ``.idx`` (v2) into the object store (no-op when empty).

        The index is written last, atomically: git ignores a pack without one,
        so a crash half-way leaves only an unused file for ``git gc``.
        """
        if not self._entries:
            return
        from dulwich.pack import write_pack_index_v2

        body = b"PACK" + struct.pack(">II", 2, len(self._entries)) + b"".join(self._entries)
        checksum = hashlib.sha1(body).digest()
        packdir = repo.git_dir / "objects" / "pack"
        packdir.mkdir(parents=True, exist_ok=True)
        stem = packdir / f"pack-{checksum.hex()}"
        tmp = stem.with_suffix(".pack.tmp")
        tmp.write_bytes(body + checksum)
        tmp.replace(stem.with_suffix(".pack"))
        itmp = stem.with_suffix(".idx.tmp")
        with open(itmp, "wb") as f:
            write_pack_index_v2(f, sorted(self._index), checksum)
        itmp.replace(stem.with_suffix(".idx"))
        self._reset()

    def _reset(self) -> None:
        # Every piece of per-pack state starts again, so a reused writer writes a
        # whole new pack: offsets count from its header, and an object already in
        # the finished pack is written again rather than referenced by a stale offset.
        self._entries = []
        self._index = []
        self._offset = 12
        self._seen = set()


def _deflate(raw: bytes, level: int = 1) -> bytes:
    """zlib-compress one object at ``level`` (RFC 1950): 1, as git's own packs are, or 0
    (stored blocks, still a valid zlib stream) for ciphertext.

    Level 1 costs about 5 µs for a 1 KB ``message.json`` and makes it about 9x
    smaller; storing objects uncompressed would have saved that but stays
    uncompressed for good: ``git gc`` and every push and fetch reuse a packed
    object's bytes as they are, so the org repo and every clone would carry them.
    """
    return zlib.compress(raw, level)


def _header(type_num: int, size: int) -> bytes:
    """A pack entry header: type and size as a varint (gitformat-pack(5))."""
    c = (type_num << 4) | (size & 0x0F)
    size >>= 4
    out = bytearray()
    while size:
        out.append(c | 0x80)
        c = size & 0x7F
        size >>= 7
    out.append(c)
    return bytes(out)


def _ident(author: Member, when: int) -> bytes:
    return b"%s %d +0000" % (_who(author), when)


def _who(author: Member) -> bytes:
    """``Name <email>`` for commit headers, cleaned once per author."""
    key = (author.display_name or author.name, author.email)
    who = _WHO.get(key)
    if who is None:
        name, email = author_of(author)  # the one rule readers check (docs/protocol.md §6)
        who = _WHO[key] = f"{name} <{email}>".encode("utf-8")
    return who


_WHO: dict[tuple[str, str], bytes] = {}


def message_commit(
    pack: PackWriter,
    msg: Message,
    author: Member,
    signer: Signer,
    parent: Optional[bytes],
    now: int,
    sealed: Optional[bytes] = None,
    extra: Optional[dict[str, bytes]] = None,
) -> bytes:
    """Add blob, tree and signed commit of ``msg`` to ``pack``; return the commit's binary oid.

    The commit bytes follow git's canonical layout (tree, parent, author,
    committer, gpgsig, blank line, message), the same as
    :func:`gitmail.core.store.write_message_commit` produces. ``extra``: more
    files at the tree's top level (e.g. ``message.age``), name -> content.
    """
    files = {MESSAGE_FILE: sealed if sealed is not None else msg.to_blob(), **(extra or {})}
    entries = b"".join(b"100644 " + name.encode() + b"\0" + pack.add(_BLOB, data, 0 if name in STORED else 1)
                       for name, data in sorted(files.items()))  # git sorts tree entries by name
    tree = pack.add(_TREE, entries)
    when = date_seconds(msg.date)
    head = b"tree " + tree.hex().encode() + b"\n"
    if parent is not None:
        head += b"parent " + parent.hex().encode() + b"\n"
    head += b"author " + _ident(author, when) + b"\ncommitter " + _ident(author, now) + b"\n"
    body = b"\n" + commit_message(msg).encode("utf-8")
    sig = signer.sign(head + body).encode("ascii")
    gpgsig = b"gpgsig " + sig.replace(b"\n", b"\n ") + b"\n"
    return pack.add(_COMMIT, head + gpgsig + body)


def write_chain(
    repo: "Repo",
    messages: Iterable[tuple[Message, bytes, Optional[dict[str, bytes]]]],
    author: Member,
    signer: Signer,
    parent: Optional[str],
) -> Optional[str]:
    """Write ``(message, message.json bytes, extra files)`` as a chain of commits on ``parent``;
    return the tip (hex).

    No ref moves; the caller updates the ref (under :meth:`Repo.lock`). ``msg.id`` must be
    the ``id`` in its blob (what :meth:`Message.seal` returns): each commit's Message-ID,
    parent and attachments are noted for the delivery round
    (:func:`gitmail.core.sync.note_written`), which then need not read the commits back.
    """
    from gitmail.core.attachments import TREE_DIR
    from gitmail.core.sync import Written, note_written

    pack = PackWriter()
    now = int(time.time())
    tip = bytes.fromhex(parent) if parent else None
    facts = []
    below = tip.hex() if tip is not None else None
    for msg, blob, extra in messages:
        tip = message_commit(pack, msg, author, signer, tip, now, blob, extra)
        key = tip.hex()
        facts.append((key, Written(msg.id, below, TREE_DIR in (extra or ()))))
        below = key
    pack.finish(repo)
    note_written(facts)  # only once the objects are in the store
    return tip.hex() if tip is not None else parent
