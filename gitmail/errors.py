"""One error hierarchy for gitmail, mapped to exit codes in one place.

Every error a user can hit is a :class:`GitmailError` subclass whose message
is one clear line. The CLI prints ``gitmail: <message>`` on stderr and exits
with :attr:`GitmailError.exit_code`; the MCP server returns the message as a
tool error. Nothing else ever reaches the user as a traceback.
"""

from __future__ import annotations

import errno
import os
from typing import Sequence


class GitmailError(Exception):
    """Base class. ``exit_code`` is the process exit status for the CLI."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(GitmailError):
    """Bad input from the user: empty message, body over the limit, bad JSON."""

    exit_code = 2


class NotARepoError(GitmailError):
    """The path given (or the current directory) is not a git repository."""

    exit_code = 3


class NotInitializedError(GitmailError):
    """The repository or identity has not been set up with ``gitmail init``."""

    exit_code = 3


class AddressError(UsageError):
    """A member name git cannot hold, or one that is reserved."""


class UnknownRecipientError(GitmailError):
    """A recipient, group or member that the directory does not know."""

    exit_code = 4


class MessageNotFoundError(GitmailError):
    """A message id (or unique prefix) that matches nothing."""

    exit_code = 4


class AmbiguousIdError(GitmailError):
    """A short id prefix that matches more than one message."""

    exit_code = 4


class KeyError_(GitmailError):
    """A missing, unreadable, malformed or locked signing key."""

    exit_code = 5


class DirectoryError(GitmailError):
    """A directory change that the rules forbid (e.g. replacing another member's key)."""

    exit_code = 6


class VerificationError(GitmailError):
    """A signature, message or history that fails verification."""

    exit_code = 7


class CorruptMessageError(VerificationError):
    """A message blob in history that cannot be parsed."""


class GitError(GitmailError):
    """A git subprocess failed. Carries the command, exit code, stdout and stderr."""

    exit_code = 8

    def __init__(self, cmd: list[str], returncode: int, stdout: bytes, stderr: bytes) -> None:
        self.cmd = cmd
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        last = stderr.decode("utf-8", "replace").strip().splitlines()
        # git often ends with a generic line ("unpack-objects failed"); a line naming a
        # full or read-only disk says more.
        disk = [ln for ln in last if any(w in ln.lower() for w in _GIT_DISK_WORDS)]
        detail = disk[-1] if disk else last[-1] if last else f"exit code {returncode}"
        super().__init__(f"git {' '.join(cmd[1:3])} failed: {detail}")


_GIT_DISK_WORDS = ("no space left on device", "disk quota exceeded", "read-only file system")


class RemoteUnreachableError(GitError):
    """The org remote could not be reached (network down, server stopped)."""

    exit_code = 9


class PushRejectedError(GitmailError):
    """The remote refused an update (guard hook, or a race lost too many times)."""

    exit_code = 10


class AttachmentError(GitmailError):
    """A file that cannot be attached (missing, a directory, unreadable, over the
    limit) or an attachment that cannot be fetched, verified or saved
    (docs/attachments.md)."""

    exit_code = 11


class LFSUnreachableError(RemoteUnreachableError):
    """The org's LFS store could not be reached: the message stays queued."""

    def __init__(self, message: str) -> None:
        GitmailError.__init__(self, message)
        self.cmd = ["git-lfs"]
        self.returncode = 1
        self.stdout = b""
        self.stderr = message.encode("utf-8", "replace")


class LocalStorageError(GitmailError):
    """This clone, its cache or the attachment folder cannot be written: the disk is full,
    the file system is read-only, permission is denied or the disk fails. The command
    stopped before its commit point (a ref move or a cache transaction), so nothing is
    left half-written (docs/protocol.md §15)."""

    exit_code = 13


_DISK_CAUSES = (  # (errnos, words of the message, verb, cause)
    ((errno.ENOSPC, errno.EDQUOT), ("no space left on device", "disk quota exceeded"), "write",
     "no space left on the device"),
    ((errno.EROFS,), ("read-only file system",), "write", "the file system is read-only"),
    ((errno.EACCES, errno.EPERM), ("permission denied",), "access", "permission denied"),
    ((errno.EIO,), (), "access", "input/output error (a failing disk?)"),
)


FULL_BELOW = 1024 * 1024  # bytes free under which a failed write is put down to a full disk


def local_storage_error(e: BaseException, places: "Sequence[str | os.PathLike[str]]" = ()) -> "LocalStorageError | None":
    """The :class:`LocalStorageError` an unexpected exception stands for, or None.

    Recognises ``OSError`` (by errno, else by its text) for a full disk or
    quota, a read-only file system, a denied permission and an I/O error, and
    ``sqlite3`` errors of the local cache (``.git/gitmail/cache``). Errors that
    do not say why (libgit2's, e.g. ``object not found`` after a failed write;
    SQLite's ``disk I/O error``) are put down to the disk only when one of
    ``places`` (the git dirs the command opened) is on a read-only file system
    or has less than :data:`FULL_BELOW` bytes free. The message names the
    cause and, when known, the file or folder.
    """
    import sqlite3

    if isinstance(e, sqlite3.Error) and not isinstance(e, (sqlite3.ProgrammingError, sqlite3.InterfaceError)):
        name = getattr(e, "sqlite_errorname", "") or ""
        text = str(e).lower()
        where = "the local cache (.git/gitmail/cache)"
        # SHMSIZE: growing the WAL index (-shm) failed, which SQLite documents as a full disk.
        if name in ("SQLITE_FULL", "SQLITE_IOERR_SHMSIZE") or "disk is full" in text:
            return LocalStorageError(f"cannot write {where}: no space left on the device")
        if name.startswith("SQLITE_READONLY") or "readonly" in text:
            return LocalStorageError(f"cannot write {where}: it is read-only")
        if name.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
            return LocalStorageError(f"cannot open {where}: the folder is read-only, full or missing")
        if name.startswith("SQLITE_IOERR") or "disk i/o error" in text:
            probed = _probe(places)
            if probed is not None:
                return probed
            return LocalStorageError(
                f"cannot write {where}: disk I/O error{f' ({name})' if name else ''}: the disk is full, read-only or failing")
        return None
    if isinstance(e, OSError):
        text = str(e).lower()
        for codes, words, verb, cause in _DISK_CAUSES:
            if e.errno in codes or any(w in text for w in words):
                what = f" {e.filename}" if getattr(e, "filename", None) else (" to this clone" if verb == "write" else "")
                return LocalStorageError(f"cannot {verb}{what}: {cause}")
        return _probe(places) if e.errno is None else None
    if type(e).__module__ in ("_pygit2", "pygit2"):
        return _probe(places)
    return None


def _probe(places: "Sequence[str | os.PathLike[str]]") -> "LocalStorageError | None":
    for p in places:
        try:
            st = os.statvfs(p)
        except OSError:
            continue
        if st.f_flag & os.ST_RDONLY:
            return LocalStorageError(f"cannot write to {os.fspath(p)}: the file system is read-only")
        if st.f_bavail * st.f_frsize < FULL_BELOW:
            return LocalStorageError(f"cannot write to {os.fspath(p)}: no space left on the device")
    return None
