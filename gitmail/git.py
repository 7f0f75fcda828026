"""The one place through which every ``git`` subprocess goes.

gitmail uses the system ``git`` binary for everything that touches a remote
(fetch, push, ls-remote) so that the user's SSH keys, ssh-agent, credential
helpers and remotes work unchanged, and for the few cheap queries on the fast
path (``for-each-ref``, ``config``) where importing pygit2 would cost more than
the query itself.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Iterable, Mapping

from gitmail.errors import GitError, NotARepoError, RemoteUnreachableError

# Messages git prints when the remote could not be reached at all (as opposed
# to a remote that answered and refused).
UNREACHABLE = re.compile(
    rb"(Could not read from remote|unable to connect|Connection refused|"
    rb"does not appear to be a git repository|Could not resolve host|"
    rb"unable to access|Connection timed out|No route to host|"
    rb"remote end hung up unexpectedly|not a git repository)",
    re.I,
)


def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    # Never let git stop and ask for a password in a non-interactive call.
    env.setdefault("GIT_TERMINAL_PROMPT", "0")
    env["LC_ALL"] = "C"
    if extra:
        env.update(extra)
    return env


def run(
    args: Iterable[str],
    cwd: str | Path | None = None,
    *,
    input: bytes | None = None,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    remote: bool = False,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``git ARGS`` and return the completed process (stdout/stderr as bytes).

    Raises :class:`GitError` (command, exit code, stdout, stderr) when ``check``
    and git exits non-zero; :class:`RemoteUnreachableError` instead when
    ``remote`` is true and git's stderr says the remote could not be reached.
    """
    cmd = ["git", *args]
    proc = subprocess.run(
        cmd, cwd=cwd, input=input, capture_output=True, env=_env(env), check=False
    )
    if check and proc.returncode != 0:
        if remote and UNREACHABLE.search(proc.stderr):
            raise RemoteUnreachableError(cmd, proc.returncode, proc.stdout, proc.stderr)
        raise GitError(cmd, proc.returncode, proc.stdout, proc.stderr)
    return proc


def output(args: Iterable[str], cwd: str | Path | None = None, **kw: object) -> str:
    """Run git and return its stdout decoded as UTF-8, trailing newline stripped."""
    return run(args, cwd, **kw).stdout.decode("utf-8", "replace").rstrip("\n")  # type: ignore[arg-type]


def git_dir(path: str | Path) -> Path:
    """Absolute ``.git`` directory of the repository containing ``path``.

    Raises :class:`NotARepoError` when ``path`` is not inside a git repository.
    """
    p = Path(path)
    if not p.is_dir():
        raise NotARepoError(f"not a git repository: {path} (no such directory)")
    proc = run(["rev-parse", "--absolute-git-dir"], p, check=False)
    if proc.returncode != 0:
        raise NotARepoError(f"not a git repository: {p.resolve()}")
    return Path(proc.stdout.decode().strip())


def config_all(cwd: str | Path) -> dict[str, str]:
    """Every ``gitmail.*`` and ``remote.*`` config entry, last value wins.

    Keys are as git prints them (section and variable lower-cased, subsection
    kept verbatim), e.g. ``gitmail.Mac CLI 小克.key``.
    """
    proc = run(["config", "-z", "--get-regexp", r"^(gitmail|remote)\."], cwd, check=False)
    out: dict[str, str] = {}
    for item in proc.stdout.split(b"\0"):
        if not item:
            continue
        key, _, value = item.partition(b"\n")
        out[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return out


def config_set(cwd: str | Path, key: str, value: str) -> None:
    """``git config --local KEY VALUE``."""
    run(["config", "--local", key, value], cwd)


def config_add(cwd: str | Path, key: str, value: str) -> None:
    """``git config --local --add KEY VALUE`` (multi-valued keys such as refspecs)."""
    run(["config", "--local", "--add", key, value], cwd)


def config_get_all(cwd: str | Path, key: str) -> list[str]:
    """All values of a multi-valued key, empty when unset."""
    proc = run(["config", "--get-all", key], cwd, check=False)
    return [v for v in proc.stdout.decode("utf-8", "replace").split("\n") if v]


def for_each_ref(cwd: str | Path, patterns: list[str]) -> dict[str, str]:
    """Map refname -> oid for the refs matching ``patterns`` (git's wildmatch)."""
    proc = run(["for-each-ref", "--format=%(objectname) %(refname)", *patterns], cwd)
    refs: dict[str, str] = {}
    for line in proc.stdout.decode("utf-8", "surrogateescape").splitlines():
        oid, _, name = line.partition(" ")
        refs[name] = oid
    return refs
