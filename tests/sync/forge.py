"""Crafting commits by hand (good, unsigned, wrongly signed, malformed) and pushing them with plain git."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import pygit2

from gitmail.core.objects import signed_commit

from gitmail.core import directory as dirmod
from gitmail.core import refs
from gitmail.core.model import Message, format_date, utcnow
from gitmail.core.repo import open_repo
from gitmail.core.signing import Signer, generate_key, load_key
from gitmail.core.store import MESSAGE_FILE, commit_message, write_message_commit
from tests.conftest import git


def key_of(name: str) -> Signer:
    return load_key(Path(os.environ["GITMAIL_HOME"]) / "keys" / name)


def stranger_key(tmp: Path) -> Signer:
    return generate_key(tmp / "stranger-key", comment="not a member")


def message(sender: str, to: list[str], body: str = "forged?") -> Message:
    m = Message(**{"from": sender}, to=to, date=format_date(utcnow()), subject=body[:40], summary=body[:40], body=body)
    m.id = m.compute_id()
    return m


def tip(clone: Path, path: str) -> Optional[str]:
    r = open_repo(clone)
    return r.ref_target(refs.tracking(path, r.remote))


def signed(clone: Path, rcpt: str, sender: str, signer: Signer, *, claim: Optional[str] = None,
           parent: Optional[str] = "tip", extra: Optional[dict[str, tuple[str, int]]] = None, body: str = "forged?") -> str:
    """A message commit on ``mail/<rcpt>/<sender>`` claiming to be from ``claim`` (default sender), signed by ``signer``."""
    r = open_repo(clone)
    path = refs.mail_path(rcpt, sender)
    d = dirmod.load(r)
    author = d.members[claim or sender]
    p = tip(clone, path) if parent == "tip" else parent
    return write_message_commit(r.pg, message(claim or sender, [rcpt], body), author, signer, p, extra)


def unsigned(clone: Path, rcpt: str, sender: str, blob: Optional[bytes] = None) -> str:
    """An unsigned commit (plain git) on top of ``mail/<rcpt>/<sender>``."""
    r = open_repo(clone)
    pg = r.pg
    m = message(sender, [rcpt])
    tb = pg.TreeBuilder()
    tb.insert(MESSAGE_FILE, pg.create_blob(blob if blob is not None else m.to_blob()), pygit2.enums.FileMode.BLOB)
    sig = pygit2.Signature(sender, f"{sender}@gitmail.invalid")
    p = tip(clone, refs.mail_path(rcpt, sender))
    oid = pg.create_commit(None, sig, sig, commit_message(m), tb.write(), [pygit2.Oid(hex=p)] if p else [])
    return str(oid)


def malformed(clone: Path, rcpt: str, sender: str, signer: Signer) -> str:
    """A signed commit whose message.json is not a message."""
    r = open_repo(clone)
    pg = r.pg
    tb = pg.TreeBuilder()
    tb.insert(MESSAGE_FILE, pg.create_blob(b'{"not": "a message"'), pygit2.enums.FileMode.BLOB)
    sig = pygit2.Signature(sender, f"{sender}@gitmail.invalid")
    p = tip(clone, refs.mail_path(rcpt, sender))
    return signed_commit(pg, sig, sig, "junk\n", tb.write(), [p] if p else [], signer.sign)


def lfs_pointer(clone: Path, size: int) -> str:
    """A Git LFS pointer blob for ``size`` bytes; returns its oid."""
    text = f"version https://git-lfs.github.com/spec/v1\noid sha256:{'ab' * 32}\nsize {size}\n"
    return str(open_repo(clone).pg.create_blob(text.encode()))


def push(clone: Path, src: str, dst: str, *flags: str) -> "tuple[int, str]":
    """A plain ``git push`` of ``src`` to ``dst`` from ``clone``. A clone fetches only its
    member's refs (docs/protocol.md §3), so git moves no remote-tracking ref for another
    mailbox; the forger refreshes it, as their next fetch of it would (deleting it on a delete)."""
    p = git("push", "--porcelain", *flags, "origin", f"{src}:{dst}", cwd=clone, check=False)
    if p.returncode == 0 and dst.startswith("refs/heads/gitmail/"):
        track = "refs/remotes/origin/" + dst[len("refs/heads/"):]
        if src:
            git("update-ref", track, src, cwd=clone)
        else:
            git("update-ref", "-d", track, cwd=clone, check=False)
    return p.returncode, p.stdout + p.stderr
