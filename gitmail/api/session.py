"""The acting member's session: the repository, the member, and the lazily loaded directory, key and cache.

Part of the library API (:mod:`gitmail.api`): plain data in and out, only
:class:`gitmail.errors.GitmailError` raised, nothing printed.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

from gitmail.core import cache, refs
from gitmail.core.repo import Repo, open_repo
from gitmail.errors import (
    AmbiguousIdError,
    MessageNotFoundError,
    UsageError,
)

if TYPE_CHECKING:

    from gitmail.core.directory import Directory
    from gitmail.core.model import Member
    from gitmail.core.signing import Signer


RepoLike = Union[str, Path, Repo, None]

SHORT_ID = 8

_ID_PREFIX = re.compile(r"^[0-9a-f]{4,64}$")


@dataclass
class Session:
    """A repository plus the acting member, with the expensive parts loaded lazily."""

    repo: Repo
    me: str
    _db: Optional[sqlite3.Connection] = None
    _directory: Optional["Directory"] = None
    _signer: Optional["Signer"] = None
    _identities: Optional[list[object]] = None
    problems: list[str] = field(default_factory=list)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = cache.connect(self.repo, self.me)
        return self._db

    @property
    def directory(self) -> "Directory":
        if self._directory is None:
            from gitmail.core import directory

            self._directory = directory.load(self.repo)
        return self._directory

    def reload_directory(self) -> None:
        """Forget the loaded directory (after a fetch): the next use verifies and loads it again."""
        self._directory = None

    @property
    def member(self) -> "Member":
        from gitmail.errors import NotAMemberError

        m = self.directory.members.get(self.me)
        if m is None:
            raise NotAMemberError(f"{self.me!r} is not a member of this org: run 'gitmail init --name NAME'")
        return m

    def require_member(self) -> None:
        """Raise :class:`NotAMemberError` unless the acting identity is a member.

        Reads the member list written with the verified directory (no pygit2)
        when it names the member; else verifies and loads the directory.
        """
        import json

        try:  # written by gitmail.core.directory.write_signers; read here without pydantic
            names = json.loads((self.repo.data_dir / "members.json").read_text("utf-8"))
        except (OSError, ValueError):
            names = []
        if isinstance(names, list) and self.me in names:
            return
        self.member

    @property
    def signer(self) -> "Signer":
        if self._signer is None:
            from gitmail.core.signing import load_key
            from gitmail.errors import KeyError_

            s = load_key(self.repo.key_path(self.me))
            if s.public_key not in self.member.all_keys():
                raise KeyError_(f"key {s.source} is not {self.me}'s key in the directory")
            if s.public_key != self.member.signing_key:
                from gitmail.errors import RetiredKeyError

                raise RetiredKeyError(f"key {s.source} is a retired key of {self.me}")
            self._signer = s
        return self._signer

    @property
    def identities(self) -> list[object]:
        """The member's age identities (current and retired keys), loaded once."""
        if self._identities is None:
            from gitmail.core import private

            self._identities = private.identities(self.repo, self.me)
        return self._identities

    def refresh(self) -> None:
        """Bring the cache up to date with the refs (fast when nothing moved)."""
        if not cache.fresh(self.repo, self.me, self.db):
            self.problems += cache.ingest(self.repo, self.me, self.db, self.directory)
            from gitmail.core.view import write_inbox_refs

            write_inbox_refs(self.repo, self.me, self.directory)



def sync_state_enabled(s: Session) -> bool:
    """Whether ``gitmail sync`` also pulls and pushes the shared read state (docs/protocol.md §10):
    ``$GITMAIL_SYNC_STATE``, else git config ``gitmail.syncState`` (a git boolean). Loads no pydantic."""
    import os

    raw = os.environ.get("GITMAIL_SYNC_STATE")
    if raw is None:
        raw = s.repo.config.get("gitmail.syncstate")
    if raw is None:
        return False
    return raw.strip().lower() in ("", "true", "yes", "on", "1")


def session(repo: RepoLike = None, as_: Optional[str] = None, *, member: bool = True) -> Session:
    """The session of the acting identity in ``repo``.

    ``member``: require that identity to be a member of the verified directory
    (:class:`NotAMemberError` otherwise); ``gitmail sync`` checks after fetching
    and ``whoami`` reports instead.
    """
    r = repo if isinstance(repo, Repo) else open_repo(repo)
    s = Session(r, r.identity(as_))
    if member:
        s.require_member()
    return s


def resolve_recipients(s: Session, to: list[str]) -> list[str]:
    """Normalised, de-duplicated recipients; refetches the directory once for a newcomer."""
    from gitmail.core import sync
    from gitmail.errors import UnknownRecipientError

    def resolve() -> list[str]:
        return list(dict.fromkeys(s.directory.resolve(t) for t in to))

    try:
        return resolve()
    except UnknownRecipientError:
        if not s.repo.remote:
            raise
    sync.fetch(s.repo, [refs.DIRECTORY])
    s.reload_directory()
    return resolve()


LIMIT_MAX = 2**31 - 1  # rows a listing may be asked for: SQLite takes it, Python's int would overflow it


def check_limit(limit: int) -> None:
    """Raise :class:`UsageError` unless ``limit`` (``--limit``: how many rows to show) is 1 to
    :data:`LIMIT_MAX`; the one rule of ``list``, ``search`` and ``log``."""
    if not 1 <= limit <= LIMIT_MAX:
        raise UsageError(f"--limit must be between 1 and {LIMIT_MAX}")


def resolve_id(s: Session, prefix: str) -> cache.Row:
    """The message whose Message-ID starts with ``prefix`` in ``s.me``'s view."""
    p = prefix.strip().lower()
    if not _ID_PREFIX.match(p):
        raise UsageError(f"malformed message id {prefix!r}: expected 4 to 64 hex digits")
    rows = cache.rows_by_prefix(s.db, p)
    ids = {r.id for r in rows}
    if not ids:
        raise MessageNotFoundError(f"no message {prefix!r} in {s.me}'s mailbox")
    if len(ids) > 1:
        raise AmbiguousIdError(f"message id {prefix!r} is ambiguous ({len(ids)} messages); give more digits")
    return rows[0]
