"""Helpers that write commits the way an attacker (or a buggy client) would.

They use gitmail's own writers or plain git, then push with plain git, so the
receiving side meets them exactly as it would in the wild.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pygit2

from gitmail.core import refs
from gitmail.core.model import Member, Message, format_date, utcnow
from gitmail.core.objects import signed_commit
from gitmail.core.signing import Signer, generate_key, load_key
from gitmail.core.store import write_message_commit
from tests.conftest import Org, git


def key_of(org: Org, name: str) -> Signer:
    from gitmail.core.repo import open_repo

    return load_key(open_repo(org.clones[name]).key_path(name))


def stranger_key(tmp: Path) -> Signer:
    return generate_key(tmp / "stranger_key")


def make_message(sender: str, to: str, body: str = "hello", **kw: object) -> Message:
    m = Message(**{"from": sender}, to=[to], date=format_date(utcnow()), subject=body[:40], body=body, **kw)
    m.id = m.compute_id()
    return m


def push_commit(clone: Path, recipient: str, sender: str, oid: str, force: bool = False) -> None:
    path = refs.mail_path(recipient, sender)
    spec = f"{'+' if force else ''}{oid}:refs/heads/{path}"
    git("push", "-q", "origin", spec, cwd=clone)


def tip(clone: Path, recipient: str, sender: str) -> Optional[str]:
    git("fetch", "-q", "origin", cwd=clone)
    p = git("rev-parse", "-q", "--verify", f"refs/remotes/origin/{refs.mail_path(recipient, sender)}", cwd=clone, check=False)
    return p.stdout.strip() or None


def write_signed(clone: Path, msg: Message, author_name: str, signer: Signer, parent: Optional[str],
                 blob: Optional[bytes] = None) -> str:
    """A signed message commit; ``blob`` replaces message.json's bytes when given."""
    pg = pygit2.Repository(str(clone))
    author = Member(name=author_name, email=f"{author_name}@x", signing_key=signer.public_key)
    if blob is None:
        return write_message_commit(pg, msg, author, signer, parent)
    b = pg.create_blob(blob)
    tb = pg.TreeBuilder()
    tb.insert("message.json", b, pygit2.enums.FileMode.BLOB)
    sig = pygit2.Signature(author_name, f"{author_name}@x", 1700000000, 0)
    return signed_commit(pg, sig, sig, "x\n", tb.write(), [parent] if parent else [], signer.sign)


def write_unsigned(clone: Path, msg: Message, parent: Optional[str]) -> str:
    pg = pygit2.Repository(str(clone))
    b = pg.create_blob(msg.to_blob())
    tb = pg.TreeBuilder()
    tb.insert("message.json", b, pygit2.enums.FileMode.BLOB)
    sig = pygit2.Signature("max", "max@x", 1700000000, 0)
    return str(pg.create_commit(None, sig, sig, "unsigned\n", tb.write(), [pygit2.Oid(hex=parent)] if parent else []))
