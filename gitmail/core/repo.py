"""Opening a clone of the org repo and resolving settings (docs/protocol.md, "Settings").

Settings come from git config (a ``gitmail.*`` section) with an environment
variable for every default:

=====================  ===========================  =====================================
setting                git config                   environment
=====================  ===========================  =====================================
repository             (cwd)                        ``GITMAIL_REPO``
identity               ``gitmail.user``             ``GITMAIL_USER``
remote                 ``gitmail.remote``           ``GITMAIL_REMOTE``
key of member NAME     ``gitmail.NAME.key``         (``$GITMAIL_HOME/keys/<ref-safe NAME>``)
data home (keys)       --                           ``GITMAIL_HOME`` (``$XDG_DATA_HOME/gitmail``)
key passphrase         --                           ``GITMAIL_PASSPHRASE``
hook notice subjects   ``gitmail.noticeSubjects``   ``GITMAIL_NOTICE_SUBJECTS`` (docs/sync.md)
=====================  ===========================  =====================================
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

from gitmail import git
from gitmail.core.address import normalize, to_ref
from gitmail.errors import NotInitializedError

if TYPE_CHECKING:
    import pygit2


def data_home() -> Path:
    """Where gitmail keeps keys it generates: ``$GITMAIL_HOME`` or ``$XDG_DATA_HOME/gitmail``."""
    if os.environ.get("GITMAIL_HOME"):
        return Path(os.environ["GITMAIL_HOME"])
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "gitmail"


@dataclass
class Repo:
    """A clone of the org repo (or the org repo itself) as gitmail sees it."""

    path: Path
    git_dir: Path
    config: dict[str, str] = field(default_factory=dict)
    _pg: Any = None

    @property
    def remote(self) -> Optional[str]:
        """The org remote's name, or None when this repo is the org repo itself."""
        r = os.environ.get("GITMAIL_REMOTE") or self.config.get("gitmail.remote")
        if r and (not r.isprintable() or any(0xDC80 <= ord(c) <= 0xDCFF for c in r)):
            from gitmail.errors import UsageError

            # bytes that are not UTF-8 (or control characters) make no ref name gitmail can read
            raise UsageError("the org remote's name (GITMAIL_REMOTE or gitmail.remote) is not a git remote name")
        return r or None

    @property
    def data_dir(self) -> Path:
        """``.git/gitmail``: caches, lock, allowed-signers file (local, never pushed)."""
        d = self.git_dir / "gitmail"
        d.mkdir(exist_ok=True)
        return d

    @property
    def pg(self) -> "pygit2.Repository":
        """The pygit2 repository (imported lazily: it costs ~70 ms)."""
        if self._pg is None:
            import pygit2

            from gitmail.core.objects import configure_reads

            configure_reads()  # before the first read: a window mapped earlier keeps the default size
            self._pg = pygit2.Repository(str(self.git_dir))
        return self._pg

    def reload_config(self) -> None:
        self.config = git.config_all(self.path)

    def identity(self, as_: Optional[str] = None) -> str:
        """The acting member: ``--as``, else ``$GITMAIL_USER``, else ``gitmail.user``.

        Raises :class:`NotInitializedError` when none is set.
        """
        name = as_ or os.environ.get("GITMAIL_USER") or self.config.get("gitmail.user")
        if not name:
            raise NotInitializedError(
                "no gitmail identity here: run 'gitmail init --name NAME' (or pass --as NAME)"
            )
        return normalize(name)

    def key_path(self, name: str) -> Path:
        """The key file of member ``name`` in this clone (config, else the default location)."""
        configured = self.config.get(f"gitmail.{name}.key")
        if configured:
            return Path(configured).expanduser()
        return data_home() / "keys" / to_ref(name)

    @contextlib.contextmanager
    def lock(self, name: str = "lock") -> Iterator[bool]:
        """Serialise local ref updates between gitmail processes on this clone.

        ``name``: the lock file in ``.git/gitmail`` (``deliver.lock``: one delivery round at
        a time, :func:`gitmail.core.sync.deliver`). Yields True when another process held it
        and this one waited.
        """
        fd = os.open(self.data_dir / name, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                waited = False
            except BlockingIOError:
                fcntl.flock(fd, fcntl.LOCK_EX)
                waited = True
            yield waited
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # -- refs through pygit2 --------------------------------------------------

    def ref_target(self, name: str) -> Optional[str]:
        """Hex oid a ref points at, or None."""
        try:
            return str(self.pg.references[name].target)
        except KeyError:
            return None

    def set_ref(self, name: str, oid: str, old: Optional[str], message: str = "gitmail") -> None:
        """Update ``name`` to ``oid`` if it still points at ``old`` (None: must not exist).

        Callers hold :meth:`lock`; the check guards against a process that did not.
        """
        current = self.ref_target(name)
        if current != old:
            from gitmail.errors import GitmailError

            raise GitmailError(f"ref {name} moved while updating it; try again")
        import pygit2

        self._past_a_stale_lock(name, lambda: self.pg.create_reference_direct(name, pygit2.Oid(hex=oid), True,
                                                                                message=message))

    def _past_a_stale_lock(self, name: str, write: "Callable[[], object]") -> None:
        """``write()`` (libgit2 moving or deleting ref ``name``), once more after removing the
        lock file a dead process left on it (:meth:`_drop_stale_locks`) when libgit2 could not
        lock the ref; any other error, or a lock that is not gitmail's to remove, is raised."""
        import pygit2

        try:
            write()
        except (OSError, pygit2.GitError) as e:
            if "failed to lock file" not in str(e) or not self._drop_stale_locks([name]):
                raise
            write()

    def _drop_stale_locks(self, names: list[str]) -> bool:
        """Remove the ``<ref>.lock`` files of gitmail's own local refs ``names`` (``refs/gitmail/``:
        written only by gitmail, under :meth:`lock`, which the caller holds): a process killed
        while it moved one left its lock file, and every later send then failed to lock the ref
        (exit 70). Returns whether one was removed. Other refs' locks are git's business."""
        dropped = False
        for n in names:
            if not n.startswith("refs/gitmail/") or ".." in n.split("/"):
                continue
            try:
                os.unlink(self.git_dir / (n + ".lock"))
                dropped = True
            except FileNotFoundError:
                pass
        return dropped

    def update_refs(self, updates: list[tuple[str, str, Optional[str]]], message: str = "gitmail") -> None:
        """Move several refs at once, all or none: ``(name, new oid, expected old oid or None)``.

        One ``git update-ref --stdin`` transaction, so a crash never leaves a
        message queued for some recipients only. Raises :class:`GitError` when
        a ref moved meanwhile (nothing is changed then).
        """
        if len(updates) == 1:  # one ref: no transaction needed (callers hold the lock)
            self.set_ref(updates[0][0], updates[0][1], updates[0][2], message)
            return
        zero = "0" * 40
        self._drop_stale_locks([n for n, _, _ in updates])  # the caller holds lock(): any such file is a dead process's
        lines = ["start"] + [f"update {n} {new} {old or zero}" for n, new, old in updates] + ["prepare", "commit", ""]
        git.run(["update-ref", "--stdin", "-m", message], self.path, input="\n".join(lines).encode())

    def delete_ref(self, name: str) -> None:
        """Delete ``name`` if it exists (callers hold :meth:`lock`). Raises ``OSError`` or
        ``pygit2.GitError`` when libgit2 cannot (a live lock on a ref that is not gitmail's)."""

        def delete() -> None:
            try:
                self.pg.references.delete(name)
            except KeyError:
                pass

        self._past_a_stale_lock(name, delete)


def open_repo(path: Optional[str | Path] = None) -> Repo:
    """Open the repository at ``path``, ``$GITMAIL_REPO`` or the current directory.

    Raises :class:`NotARepoError` when it is not a git repository.
    """
    p = Path(path or os.environ.get("GITMAIL_REPO") or ".").expanduser()
    key = (str(p.absolute()), *sorted(f"{k}={v}" for k, v in os.environ.items() if k in _GIT_ENV or k.startswith("GIT_")))
    hit = _OPENED.get(key)
    if hit is not None and hit[2] == _config_stamp(hit[1]) and (hit[0] / "HEAD").exists():
        return Repo(path=p, git_dir=hit[0], config=dict(hit[3]))
    gd = git.git_dir(p)
    files = _config_files(gd)
    stamp = _config_stamp(files)  # before reading: a change meanwhile is seen next time
    origins: set[Path] = set()
    config = git.config_all(p, origins)
    extra = sorted(origins - set(files))
    _OPENED[key] = (gd, files + extra, stamp + _config_stamp(extra), config)
    return Repo(path=p, git_dir=gd, config=dict(config))


# Long-lived processes (the MCP server, the warm CLI's workers, library users) open the same
# clone again and again: remember what two git subprocesses said, per path and git-related
# environment, until a config file changes (any file git reads by default, or one an entry
# came from: an include). A file that is included but held none of gitmail's entries when
# the config was read is not watched.
# key -> (git dir, the config files watched, their stamp, the config)
_OPENED: dict[tuple[str, ...], tuple[Path, list[Path], tuple[int, ...], dict[str, str]]] = {}
_GIT_ENV = frozenset({"HOME", "XDG_CONFIG_HOME"})  # with every GIT_*: what git's config depends on


def opened_git_dirs() -> list[Path]:
    """The git dirs this process opened, most recent last (where to look when a write
    failed without saying why: gitmail.errors.local_storage_error)."""
    return [hit[0] for hit in _OPENED.values()]


def _config_files(git_dir: Path) -> list[Path]:
    """The config files git reads by default for the repository at ``git_dir``
    (git-config(1), FILES): system, global (or ``$GIT_CONFIG_GLOBAL``), XDG, local, worktree."""
    home = Path.home()
    system = os.environ.get("GIT_CONFIG_SYSTEM") or "/etc/gitconfig"
    return [Path(system), Path(os.environ.get("GIT_CONFIG_GLOBAL") or home / ".gitconfig"),
            Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "git" / "config",
            git_dir / "config", git_dir / "config.worktree"]


def _config_stamp(files: list[Path]) -> tuple[int, ...]:
    """Identity, size and modification time of each of ``files`` (zeros when absent): git
    writes a config file by renaming a new one over it, so any write changes the inode."""
    out: list[int] = []
    for f in files:
        try:
            st = f.stat()
            out += (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            out += (0, 0, 0)
    return tuple(out)
