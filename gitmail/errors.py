"""One error hierarchy for gitmail, mapped to exit codes in one place.

Every error a user can hit is a :class:`GitmailError` subclass whose message
is one clear line. The CLI prints ``gitmail: <message>`` on stderr and exits
with :attr:`GitmailError.exit_code`; the MCP server returns the message as a
tool error. Nothing else ever reaches the user as a traceback.
"""

from __future__ import annotations


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


class NotAMemberError(NotInitializedError):
    """The acting identity (``--as``, ``$GITMAIL_USER``, ``gitmail.user``) is not a member of the org's directory."""


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
        detail = last[-1] if last else f"exit code {returncode}"
        super().__init__(f"git {' '.join(cmd[1:3])} failed: {detail}")


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
