"""Writing many message commits at once, as one pack (for imports, fan-out and benchmarks).

:func:`gitmail.core.store.write_message_commit` writes three loose objects per
message through pygit2, which costs a file (and an fsync-free zlib stream)
each. For a batch, this module builds the same objects in memory (byte for
byte what pygit2 would write: the commits verify identically), streams them
as one undeltified pack (pack format v2, gitformat-pack(5)) into ``git
index-pack --stdin``, which writes the pack and its index. Pack entry headers
come from dulwich.
"""

from __future__ import annotations

import hashlib
import struct
import time
import zlib
from datetime import datetime
from typing import TYPE_CHECKING, Iterable, Optional

from gitmail import git
from gitmail.core.model import Member, Message
from gitmail.core.signing import Signer
from gitmail.core.store import MESSAGE_FILE, _clean, commit_message

if TYPE_CHECKING:
    from gitmail.core.repo import Repo

_BLOB, _TREE, _COMMIT = 3, 2, 1
_TYPE_NAME = {_BLOB: b"blob", _TREE: b"tree", _COMMIT: b"commit"}


class PackWriter:
    """Collects whole objects; :meth:`finish` hands the pack to ``git index-pack``."""

    def __init__(self) -> None:
        self._entries: list[bytes] = []
        self._seen: set[bytes] = set()

    def add(self, type_num: int, raw: bytes) -> bytes:
        """Add an object (once); return its binary sha1 oid."""
        from dulwich.object_format import DEFAULT_OBJECT_FORMAT
        from dulwich.pack import pack_object_header

        oid = hashlib.sha1(b"%s %d\0%s" % (_TYPE_NAME[type_num], len(raw), raw)).digest()
        if oid not in self._seen:
            self._seen.add(oid)
            head = bytes(pack_object_header(type_num, None, len(raw), DEFAULT_OBJECT_FORMAT))
            self._entries.append(head + zlib.compress(raw, 1))
        return oid

    def finish(self, repo: "Repo") -> None:
        """Write the pack into ``repo`` (no-op when empty)."""
        if not self._entries:
            return
        body = b"PACK" + struct.pack(">II", 2, len(self._entries)) + b"".join(self._entries)
        data = body + hashlib.sha1(body).digest()
        git.run(["index-pack", "--stdin"], repo.git_dir, input=data)
        self._entries.clear()


def _ident(author: Member, when: int) -> bytes:
    name = _clean(author.display_name or author.name)
    return f"{name} <{_clean(author.email)}> {when} +0000".encode("utf-8")


def message_commit(
    pack: PackWriter, msg: Message, author: Member, signer: Signer, parent: Optional[bytes], now: int
) -> bytes:
    """Add blob, tree and signed commit of ``msg`` to ``pack``; return the commit's binary oid.

    The commit bytes follow git's canonical layout (tree, parent, author,
    committer, gpgsig, blank line, message), the same as
    :func:`gitmail.core.store.write_message_commit` produces.
    """
    blob = pack.add(_BLOB, msg.to_blob())
    tree = pack.add(_TREE, b"100644 " + MESSAGE_FILE.encode() + b"\0" + blob)
    when = int(datetime.fromisoformat(msg.date.replace("Z", "+00:00")).timestamp())
    head = b"tree " + tree.hex().encode() + b"\n"
    if parent is not None:
        head += b"parent " + parent.hex().encode() + b"\n"
    head += b"author " + _ident(author, when) + b"\ncommitter " + _ident(author, now) + b"\n"
    body = b"\n" + commit_message(msg).encode("utf-8")
    sig = signer.sign(head + body).encode("ascii")
    gpgsig = b"gpgsig " + sig.replace(b"\n", b"\n ") + b"\n"
    return pack.add(_COMMIT, head + gpgsig + body)


def write_chain(
    repo: "Repo", messages: Iterable[Message], author: Member, signer: Signer, parent: Optional[str]
) -> Optional[str]:
    """Write ``messages`` as a chain of commits on top of ``parent``; return the new tip (hex).

    No ref moves; the caller updates the ref (under :meth:`Repo.lock`).
    """
    pack = PackWriter()
    now = int(time.time())
    tip = bytes.fromhex(parent) if parent else None
    for msg in messages:
        tip = message_commit(pack, msg, author, signer, tip, now)
    pack.finish(repo)
    return tip.hex() if tip is not None else parent
