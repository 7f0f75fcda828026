"""Private runtime directories for gitmail's warm processes: the guard daemon's sockets
(:mod:`gitmail.guard.daemon`) and the warm CLI server's (:mod:`gitmail.cli.warm`).

One rule, one home: a socket directory is ``<base>/<name>-<uid>``, where ``base`` is
``$XDG_RUNTIME_DIR`` when that is an absolute path, else ``/tmp``; it is used only when it
is a real directory (not a symlink), owned by this uid and closed to group and others
(mode 0700), so no other user can plant or read a socket there. The guard's hook script
(``hooks/pre-receive``) carries its own copy of this rule, as it may import nothing of
gitmail. Standard library only, and only ``os`` at import: the CLI launcher imports it on
every start. Also the one test of whether such a process is alive (:func:`held`).
"""

from __future__ import annotations

import os


def base() -> str:
    """``$XDG_RUNTIME_DIR`` when it is an absolute path, else ``/tmp``."""
    b = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    return b if b.startswith("/") else "/tmp"


def private_dir(name: str, parent: str | None = None, create: bool = True) -> str | None:
    """``<parent>/<name>-<uid>`` (``parent`` default: :func:`base`), created with mode 0700
    when ``create``; None when it cannot be made, or is not a directory (a symlink counts
    as not), or is owned by another uid, or is open to group or others."""
    d = os.path.join(parent if parent is not None else base(), f"{name}-{os.getuid()}")
    try:
        if create:
            try:
                os.mkdir(d, 0o700)
            except FileExistsError:
                pass
        st = os.lstat(d)
    except OSError:
        return None
    if st.st_mode & 0o170000 != 0o040000 or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None
    return d


def held(lock: str) -> bool:
    """Whether a live process holds the ``flock`` on ``lock`` (a warm process's lock file:
    held for as long as it serves). A missing or unopenable file, or a symlink, is not held."""
    import fcntl

    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def unlink_ours(sock_path: str, ino: int) -> None:
    """Remove the socket a warm process bound at ``sock_path`` (inode ``ino``), unless the path
    now names another one (a newer process's); never raises."""
    try:
        if os.stat(sock_path).st_ino == ino:
            os.unlink(sock_path)
    except OSError:
        pass


def free_lock(fd: int) -> None:
    """Empty a warm process's lock file (its pid) and close it: the lock is free, and the next
    process to start writes its own pid."""
    os.ftruncate(fd, 0)
    os.close(fd)
