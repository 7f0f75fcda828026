"""The server guard front-end: the org repo's ``pre-receive`` check and its warm daemon.

:mod:`gitmail.guard.check` decides a push (docs/sync.md, "The guard");
:mod:`gitmail.guard.daemon` keeps it warm between pushes. The installed hook
runs ``from gitmail.guard import cli`` (keep that name: hooks installed by
earlier versions call it).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from gitmail import hookscripts
from gitmail.guard.check import check, main
from gitmail.hookscripts import Action

SERVER_HOOKS = ("pre-receive",)

__all__ = ["SERVER_HOOKS", "cli", "install", "main", "uninstall"]


def install(bare: str | Path, daemon: bool = True) -> list[Action]:
    """Install the guard's ``pre-receive`` into the org repo ``bare`` (stopping a running daemon).

    ``daemon`` false writes a hook that always checks in its own process.
    Raises :class:`UsageError` for a foreign hook that cannot be chained.
    """
    from gitmail.guard import daemon as daemon_mod

    daemon_mod.stop(bare)
    return hookscripts.install(bare, SERVER_HOOKS, lambda text: daemon_mod.fill_hook(text, daemon))


def uninstall(bare: str | Path) -> list[Action]:
    """Remove the guard (stopping its daemon) and put back a chained ``pre-receive``."""
    from gitmail.guard import daemon as daemon_mod

    daemon_mod.stop(bare)
    return hookscripts.uninstall(bare, SERVER_HOOKS)


USAGE = """usage: python -m gitmail.guard check        (check the push on stdin here; no chained hook)
       python -m gitmail.guard hook HOOK    (the whole pre-receive hook here, chained hook included)
       python -m gitmail.guard serve --git-dir DIR --key KEY [--lock-fd N]
                                            (the warm guard daemon of one repo; N: its lock file, already locked)"""


def cli(argv: Optional[list[str]] = None) -> int:
    """What the pre-receive hook runs: see :data:`USAGE` and :mod:`gitmail.guard.daemon`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["check"]:
        return check(sys.stdin.read())
    if len(args) == 2 and args[0] == "hook":
        return main(hook_path=args[1])
    if len(args) in (5, 7) and args[0] == "serve" and args[1] == "--git-dir" and args[3] == "--key":
        from gitmail.guard import daemon

        if len(args) == 5:
            return daemon.serve(args[2], args[4])
        if args[5] == "--lock-fd" and args[6].isdigit():
            return daemon.serve(args[2], args[4], lock_fd=int(args[6]))
    print(USAGE, file=sys.stderr)
    return 2

