"""Whether this process may use the terminal: the one home of that check (docs/sync.md,
"The warm CLI server").

A command run by the warm server's forked child (:mod:`gitmail.cli.warm`) has
the client's terminal as stdin/stdout/stderr but is not in the terminal's
foreground process group (nor its session): an editor it started would be
stopped or would fight the shell for the keyboard, and a prompt's answer
would go to the shell. So everything that wants the terminal (the editor of
``gitmail send``/``reply``, click confirmations) calls :func:`need_terminal`
first, before it has written anything; in such a child it raises
:class:`RerunHere`, the child tells the client so, and the client runs the
command in its own process, which is in the foreground. Standard library only.
"""

from __future__ import annotations

import os

# Set by the warm server in each forked child (never in a process that runs a command itself).
WARM_CHILD = False


class RerunHere(BaseException):
    """The command needs the terminal and must run in the client's own process.

    A BaseException, like SystemExit: the CLI's error handling (gitmail.cli.main) must
    not turn it into an error message; the warm child catches it."""


def foreground(fd: int) -> bool:
    """Whether ``fd`` is a terminal in whose foreground process group this process is."""
    try:
        return os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:  # not our controlling terminal (ENOTTY), or closed
        return False


def need_terminal() -> None:
    """Call before using the terminal (an editor, a prompt) and before writing anything.

    A no-op in a normal process. In a warm child whose standard streams include
    a terminal it is not in the foreground of: raises :class:`RerunHere`.
    Without any terminal (pipes, files) the child goes on, as the command would
    in-process.
    """
    if not WARM_CHILD:
        return
    ttys = [fd for fd in (0, 1, 2) if _isatty(fd)]
    if ttys and not all(foreground(fd) for fd in ttys):
        raise RerunHere()


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False
