"""The server guard front-end: the org repo's ``pre-receive`` check and its warm daemon.

:mod:`gitmail.guard.check` decides a push (docs/sync.md, "The guard");
:mod:`gitmail.guard.daemon` keeps it warm between pushes. The installed hook
runs ``from gitmail.guard import cli`` (keep that name: hooks installed by
earlier versions call it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

from gitmail import hookscripts
from gitmail.guard.check import check, main
from gitmail.hookscripts import Action

SERVER_HOOKS = ("pre-receive",)

__all__ = ["SERVER_HOOKS", "check_runnable", "cli", "install", "main", "uninstall"]

# What the hook runs (hooks/pre-receive): this interpreter, importing the guard.
_PROBE = "import sys; del sys.path[0]; import gitmail.guard"


def install(bare: str | Path, daemon: bool = True) -> list[Action]:
    """Install the guard's ``pre-receive`` into the org repo ``bare`` (stopping a running daemon).

    ``daemon`` false writes a hook that always checks in its own process.
    Raises :class:`UsageError` for a foreign hook that cannot be chained.
    """
    from gitmail.guard import daemon as daemon_mod

    why = not_bare(bare)
    if why is not None:
        from gitmail.errors import UsageError

        raise UsageError(why)
    daemon_mod.stop(bare)
    return hookscripts.install(bare, SERVER_HOOKS, lambda text: daemon_mod.fill_hook(text, daemon), other_owner=True)


def not_bare(bare: str | Path) -> Optional[str]:
    """Why ``bare`` is not a bare repository the guard can go into, or None. A clone's (or a
    folder inside one, whose hooks git finds in the clone around it) ``pre-receive`` runs only
    when someone pushes into that clone, so the org it was meant for would stay unguarded
    while the install said it was done. Raises :class:`NotARepoError` for no repository."""
    from gitmail import git

    gd, _ = hookscripts.repo_dirs(bare, other_owner=True)
    p = Path(bare).resolve()
    trust = ["-c", f"safe.directory={p}"]
    is_bare = git.run([*trust, "rev-parse", "--is-bare-repository"], p, check=False).stdout.strip() == b"true"
    if gd != p or not is_bare:
        return (f"{p} is not a bare repository: the guard goes into the org repo itself (its pre-receive "
                "runs when members push there); a clone's would run only when someone pushes into the clone")
    return None


def check_runnable(bare: str | Path, python: Optional[str] = None) -> Optional[str]:
    """Whether the owner of the org repo ``bare`` (the user git runs the hook as, on a server)
    can run the installed hook: ``python`` (default: this interpreter) importing gitmail's guard.

    Returns None when it can, else one line saying why not. As root, it runs the import as
    the owner (``subprocess`` with ``user=``/``group=``); as anyone else it can only check
    its own access, so for a repo owned by someone else it checks the permission bits of
    the interpreter and of every folder above it and above gitmail.
    """
    import subprocess

    exe = python or sys.executable
    st = os.stat(bare)  # not through git: it refuses a repo owned by someone else ("dubious ownership")
    cmd = [exe, "-c", _PROBE]
    if st.st_uid == os.geteuid() or os.geteuid() == 0:
        kw: dict[str, int] = {} if st.st_uid == os.geteuid() else {"user": st.st_uid, "group": st.st_gid}
        try:
            r = subprocess.run(cmd, capture_output=True, cwd="/", timeout=60, **kw)  # type: ignore[call-overload]
        except OSError as e:
            return f"the repo's owner (uid {st.st_uid}) cannot run {exe}: {e.strerror}"
        if r.returncode != 0:
            last = (r.stderr.decode("utf-8", "replace").strip().splitlines() or ["it failed"])[-1]
            return f"the repo's owner (uid {st.st_uid}) cannot run the guard with {exe}: {last}"
        return None
    import gitmail

    for path, need in ((Path(exe), os.X_OK), (Path(gitmail.__file__).parent, os.R_OK | os.X_OK)):
        why = _denied(path, st.st_uid, st.st_gid, need)
        if why:
            return f"the repo's owner (uid {st.st_uid}) cannot use {why}: the guard would refuse every push"
    return None


def _denied(path: Path, uid: int, gid: int, need: int) -> Optional[str]:
    """The first of ``path``'s folders (needing search, ``x``) or ``path`` itself (needing
    ``need``) that ``uid`` with primary group ``gid`` may not use; None when all allow it."""

    def allows(p: Path, want: int) -> bool:
        st = os.stat(p)
        shift = 6 if st.st_uid == uid else 3 if st.st_gid == gid else 0  # owner, group, other bits
        return (st.st_mode >> shift) & want == want

    resolved = path.resolve()
    for folder in reversed(resolved.parents):
        if not allows(folder, os.X_OK):
            return str(folder)
    return None if allows(resolved, need) else str(resolved)


def uninstall(bare: str | Path) -> list[Action]:
    """Remove the guard (stopping its daemon) and put back a chained ``pre-receive``."""
    from gitmail.guard import daemon as daemon_mod

    daemon_mod.stop(bare)
    return hookscripts.uninstall(bare, SERVER_HOOKS, other_owner=True)


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

