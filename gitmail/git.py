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
from typing import Callable, Iterable, Mapping, Optional

from gitmail.errors import GitError, GitTooOldError, NotARepoError, RemoteUnreachableError

STALL_WORDS = rb"sent and took no data for"  # the line :func:`run` gives a git it stopped

# Messages git prints when the remote could not be reached at all (as opposed
# to a remote that answered and refused).
UNREACHABLE = re.compile(
    rb"(Could not read from remote|unable to connect|Connection refused|"
    rb"does not appear to be a git repository|Could not resolve host|"
    rb"unable to access|Connection timed out|No route to host|"
    rb"remote end hung up unexpectedly|not a git repository|" + STALL_WORDS + rb")",
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
    meanwhile: Optional[Callable[[Callable[[], bool]], object]] = None,
    stall: Optional[float] = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``git ARGS`` and return the completed process (stdout/stderr as bytes).

    ``meanwhile``: called once git has started (and has its ``input``), with a function that
    tells whether git has ended; for work that needs nothing git is doing, done while git
    waits on the network (:func:`gitmail.core.sync.fetch`). git's output then goes to
    temporary files, so neither side can block on a full pipe.

    ``stall``: seconds git (with every process it started: ssh, a remote helper, index-pack)
    may go without reading or writing a byte before it is stopped (:func:`stall_timeout`):
    a server that takes the connection and then says nothing (a half-dead host, a stuck
    proxy) held a send, its outbox lock and every later delivery of the clone for ever.
    A stopped git (SIGTERM, then SIGKILL after :data:`STALL_GRACE`) gets the stderr line "the
    remote sent and took no data for N s" (:data:`UNREACHABLE` matches it). Counted from ``/proc/<pid>/io`` (Linux);
    where that cannot be read, git is waited for as before.

    Raises :class:`GitError` (command, exit code, stdout, stderr) when ``check``
    and git exits non-zero; :class:`RemoteUnreachableError` instead when
    ``remote`` is true and git's stderr says the remote could not be reached.
    """
    cmd = ["git", *args]
    try:
        if stall:
            proc = _run_meanwhile(cmd, cwd, input, env, meanwhile or (lambda done: None), stall)
        elif meanwhile is None:
            proc = subprocess.run(cmd, cwd=cwd, input=input, capture_output=True, env=_env(env), check=False)
        else:
            proc = _run_meanwhile(cmd, cwd, input, env, meanwhile)
    except FileNotFoundError:
        if shutil_which("git", env) is None:  # no git at all: a setup problem, not a bug (it said exit 70)
            raise GitError(cmd, 127, b"", b"git is not installed or not on PATH; gitmail needs git 2.29 or later")
        raise
    if check and proc.returncode != 0:
        raise failure(cmd, proc, remote)
    return proc


def shutil_which(name: str, env: Mapping[str, str] | None = None) -> Optional[str]:
    """Where ``name`` is on the ``PATH`` git would be run with."""
    import shutil

    return shutil.which(name, path=(_env(env)).get("PATH"))


def failure(cmd: list[str], proc: "subprocess.CompletedProcess[bytes]", remote: bool = False) -> GitError:
    """The error for git command ``cmd`` that failed as ``proc``: :class:`GitTooOldError` when
    the git on ``PATH`` is older than :data:`MIN_VERSION`, :class:`RemoteUnreachableError` when
    ``remote`` and git's stderr says the remote could not be reached, else :class:`GitError`.
    For callers that read a failed git's output first (``push --porcelain``) and :func:`run`."""
    found = version()
    if found is not None and found[:2] < MIN_VERSION:
        return GitTooOldError(cmd, proc.returncode, proc.stdout, proc.stderr, found, MIN_VERSION)
    if remote and UNREACHABLE.search(proc.stderr):
        return RemoteUnreachableError(cmd, proc.returncode, proc.stdout, proc.stderr)
    return GitError(cmd, proc.returncode, proc.stdout, proc.stderr)


# Negative refspecs and refspecs on stdin (docs/protocol.md §3): git 2.29 and later. Asked only
# when git fails (one ``git --version`` a process), so a working git costs nothing.
MIN_VERSION = (2, 29)
_VERSION: list[Optional[tuple[int, int, int]]] = []


def version() -> Optional[tuple[int, int, int]]:
    """``(major, minor, patch)`` of the git on ``PATH`` (``git --version``, read once a
    process), or None when it cannot be read."""
    if not _VERSION:
        try:
            out = subprocess.run(["git", "--version"], capture_output=True, env=_env(None), check=False).stdout
        except OSError:
            out = b""
        _VERSION.append(parse_version(out.decode("utf-8", "replace")))
    return _VERSION[0]


def parse_version(text: str) -> Optional[tuple[int, int, int]]:
    """The version in ``git --version``'s line (``git version 2.39.5``, ``git version
    2.45.1.windows.1``, ``git version 2.39.3 (Apple Git-146)``), or None for anything else."""
    m = re.match(r"git version (\d{1,6})\.(\d{1,6})(?:\.(\d{1,6}))?", text.strip())
    return None if m is None else (int(m[1]), int(m[2]), int(m[3] or 0))


def _run_meanwhile(
    cmd: list[str], cwd: str | Path | None, input: bytes | None, env: Mapping[str, str] | None,
    meanwhile: Callable[[Callable[[], bool]], object], stall: Optional[float] = None,
) -> subprocess.CompletedProcess[bytes]:
    """:func:`run`'s ``meanwhile`` and ``stall`` cases: as :func:`subprocess.run` (git killed and
    waited for when the caller's work raises, Ctrl-C included), with ``meanwhile`` run while
    git works, then git watched for ``stall`` seconds without I/O."""
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.PIPE if input is not None else None, stdout=out,
                             stderr=err, env=_env(env))
        try:
            if p.stdin is not None:
                try:
                    p.stdin.write(input or b"")
                    p.stdin.close()
                except BrokenPipeError:
                    pass  # git ended without reading it all: its exit code and stderr say why
            meanwhile(lambda: p.poll() is not None)
            stopped = False
            if stall:
                stopped = _watch(p, stall)
            else:
                p.wait()
        except BaseException:
            p.kill()
            p.wait()
            raise
        out.seek(0)
        err.seek(0)
        said = err.read()
        if stopped:
            said += b"fatal: the remote " + STALL_WORDS + f" {stall:g} s (git config gitmail.remoteTimeout)\n".encode()
        return subprocess.CompletedProcess(cmd, p.returncode, out.read(), said)


STALL_TIMEOUT = 120.0  # seconds (git config gitmail.remoteTimeout, GITMAIL_REMOTE_TIMEOUT; 0: never)
STALL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL of a stalled transfer
STALL_KEY = "gitmail.remoteTimeout"


def stall_timeout(config: Mapping[str, str], url: Optional[str] = None) -> Optional[float]:
    """Seconds a fetch or push may go without I/O (:func:`run`'s ``stall``): ``$GITMAIL_REMOTE_TIMEOUT``,
    else git config ``gitmail.remoteTimeout`` (``config``: lower-cased keys), else 120; 0 or
    a value that is not a number of seconds up to a day: None (never stopped). None too for a
    remote ``url`` on this machine (a path or ``file://``): git runs the server's side there
    (receive-pack, its pre-receive guard) as its own children, whose silence is work, not a
    stalled network."""
    if url is not None and is_local_url(url):
        return None
    raw = os.environ.get("GITMAIL_REMOTE_TIMEOUT") or config.get(STALL_KEY.lower()) or ""
    if not raw.strip():
        return STALL_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        return STALL_TIMEOUT
    return value if 0 < value <= 86400 else None


def is_local_url(url: str) -> bool:
    """Whether git reaches ``url`` on this machine: ``file://``, or a path (no ``scheme://``
    and no scp-like ``host:path``; git's own rule, connect.c ``url_is_local_not_ssh``)."""
    if url.startswith("file://"):
        return True
    if "://" in url:
        return False
    colon, slash = url.find(":"), url.find("/")
    return colon < 0 or (0 <= slash < colon)


def _watch(p: "subprocess.Popen[bytes]", stall: float) -> bool:
    """Wait for ``p``; stop it and every process under it after ``stall`` seconds in which none
    of them read or wrote a byte (sockets, pipes and files alike: ``rchar`` + ``wchar``) nor
    held the terminal open for a prompt (:func:`_asking`). True when it was stopped. Checked
    once a second; an exit is seen at once."""
    import threading
    import time

    ended = threading.Event()  # set by a blocking wait: Popen.wait(timeout) polls, up to 50 ms late

    def waiter() -> None:
        p.wait()
        ended.set()

    threading.Thread(target=waiter, daemon=True).start()
    last = _io_tree(p.pid)
    quiet_since = time.monotonic()
    while True:
        if ended.wait(1.0):
            return False
        now = _io_tree(p.pid)
        if now is None or now[0] != (last[0] if last else None) or _asking(now[1]):
            last, quiet_since = now, time.monotonic()
            if now is None:  # no /proc here: wait as before
                p.wait()
                return False
            continue
        if time.monotonic() - quiet_since >= stall:
            import signal

            # SIGTERM first: git cleans up its lock and temporary files, and ssh puts back a
            # terminal it had taken for a passphrase prompt (SIGKILL left echo off); then SIGKILL
            # what has not ended within the grace.
            for sig in (signal.SIGTERM, signal.SIGKILL):
                for pid in reversed(now[1]):
                    try:
                        os.kill(pid, sig)
                    except OSError:
                        pass
                if ended.wait(STALL_GRACE):
                    break
            p.wait()
            return True


def _asking(pids: list[int]) -> bool:
    """Whether one of ``pids`` holds ``/dev/tty`` open beyond its standard streams: ssh asking for
    a key's passphrase or to trust a new host key opens the terminal itself (a new descriptor),
    and a person's time to answer is no stalled network (a prompt left for 120 s was stopped as
    one). A standard stream on the terminal is only inherited (``exec </dev/tty`` in a wrapper
    made every silent transfer wait for ever). Without a terminal (agents, hooks, cron) nothing
    can open it, and the watchdog stops a silent transfer as before."""
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            if fd in ("0", "1", "2"):
                continue  # inherited (a hook's `exec </dev/tty`): a prompt opens the terminal afresh
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/tty":
                    return True
            except OSError:
                continue
    return False


def _io_tree(root: int) -> Optional[tuple[int, list[int]]]:
    """Bytes read and written so far by ``root`` and its descendants, and their pids (root
    first), from ``/proc``; None where ``/proc/<root>/io`` cannot be read."""
    kids: dict[int, list[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    for n in names:
        if not n.isdigit():
            continue
        try:
            with open(f"/proc/{n}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(n))
    pids, total = [root], 0
    for pid in pids:
        pids.extend(kids.get(pid, []))
    for i, pid in enumerate(pids):
        try:
            with open(f"/proc/{pid}/io", "rb") as f:
                for line in f:
                    if line.startswith((b"rchar:", b"wchar:")):
                        total += int(line.split()[1])
        except (OSError, ValueError):
            if i == 0:
                return None
    return total, pids


def output(args: Iterable[str], cwd: str | Path | None = None, **kw: object) -> str:
    """Run git and return its stdout decoded as UTF-8, trailing newline stripped."""
    return run(args, cwd, **kw).stdout.decode("utf-8", "replace").rstrip("\n")  # type: ignore[arg-type]


def git_dir(path: str | Path) -> Path:
    """Absolute ``.git`` directory of the repository containing ``path``: the one every
    worktree of it shares (``--git-common-dir``), where its objects, its refs and gitmail's
    data live. In a linked worktree (``git worktree add``) the worktree's own git directory
    held a second gitmail data folder (another lock, cache and allowed-signers file, which
    the shared config then pointed at and lost with ``git worktree remove``).

    Raises :class:`NotARepoError` when ``path`` is not inside a git repository.
    """
    p = Path(path)
    if not p.is_dir():
        raise NotARepoError(f"not a git repository: {path} (no such directory)")
    proc = run(["rev-parse", "--git-common-dir"], p, check=False)  # (--path-format: git 2.31)
    if proc.returncode != 0:
        raise NotARepoError(f"not a git repository: {p.resolve()}")
    return Path(os.path.normpath(p.resolve() / proc.stdout.decode().strip()))


def work_tree(path: str | Path) -> Optional[Path]:
    """The top of the work tree holding ``path`` (``git rev-parse --show-toplevel``), or None
    (a bare repository, a git directory, not a repository)."""
    top = run(["rev-parse", "--show-toplevel"], path, check=False).stdout.decode("utf-8", "surrogateescape").strip()
    return Path(top) if top else None


def config_all(cwd: str | Path, origins: Optional[set[Path]] = None) -> dict[str, str]:
    """Every ``gitmail.*`` and ``remote.*`` config entry, last value wins.

    Keys are as git prints them (section and variable lower-cased, subsection
    kept verbatim), e.g. ``gitmail.Mac CLI 小克.key``. ``origins``: filled with
    the files the entries came from (``git config --show-origin``: included
    files too), absolute.
    """
    args = ["config", "-z", *(["--show-origin"] if origins is not None else []), "--get-regexp",
            r"^(gitmail|remote)\."]
    proc = run(args, cwd, check=False)
    out: dict[str, str] = {}
    items = iter(proc.stdout.split(b"\0"))
    for item in items:
        if not item:
            continue
        if origins is not None:  # "<kind>:<where>", then the entry
            if item.startswith(b"file:"):
                origins.add(Path(cwd, os.fsdecode(item[len(b"file:"):])))
            item = next(items, b"")
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
    """Map refname -> oid for the refs matching ``patterns`` (git's wildmatch).

    Lines are split at LF alone: a ref name may hold U+0085, U+2028 or U+2029 (git
    check-ref-format allows them), where ``str.splitlines`` would also break, and a ref
    ``mail/alex/max<U+2028>zz`` pushed by anyone would then stand in for ``mail/alex/max``."""
    proc = run(["for-each-ref", "--format=%(objectname) %(refname)", *patterns], cwd)
    refs: dict[str, str] = {}
    for line in proc.stdout.decode("utf-8", "surrogateescape").split("\n"):
        oid, _, name = line.partition(" ")
        if name:
            refs[name] = oid
    return refs


# -- credentials and ssh, for the LFS client (git-credential(1), git-lfs server-discovery.md) ----

_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)([^/?#@\s:]*):([^/?#@\s]*)@")  # RFC 3986: the authority ends at / ? #
_QUERY = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s?#'\"]*)\?[^\s#'\"]*")


def redact(text: str) -> str:
    """``text`` (a URL, or a message holding URLs) with every password and query string hidden.

    ``https://alice:s3cret@host/x?token=abc`` becomes ``https://alice:***@host/x?***``.
    Every URL that gitmail shows in an error or log line goes through here: a
    query string often carries a signed token (pre-signed storage links).
    """
    return _QUERY.sub(r"\1?***", _USERINFO.sub(r"\1\2:***@", text))


def _credential(cwd: str | Path, action: str, cred: Mapping[str, str]) -> subprocess.CompletedProcess[bytes]:
    lines = "".join(f"{k}={v}\n" for k, v in cred.items() if "\n" not in k + v and "\0" not in k + v)
    return run(["credential", action], cwd, input=(lines + "\n").encode("utf-8"), check=False)


def credential_fill(cwd: str | Path, url: str) -> dict[str, str] | None:
    """The credential git's helpers give for ``url`` (``git credential fill``), or None.

    Returns git's answer as a dict (``protocol``, ``host``, ``username``,
    ``password``, ...): hand it back unchanged to :func:`credential_approve`
    or :func:`credential_reject`. None when no helper has one (git is run
    with ``GIT_TERMINAL_PROMPT=0``: it never stops to ask on a terminal).
    """
    proc = _credential(cwd, "fill", {"url": url})
    if proc.returncode != 0:
        return None
    out: dict[str, str] = {}
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value
    return out if out.get("password") is not None and out.get("username") is not None else None


def credential_approve(cwd: str | Path, cred: Mapping[str, str]) -> None:
    """``git credential approve``: the helpers may store ``cred`` (it worked)."""
    _credential(cwd, "approve", cred)


def credential_reject(cwd: str | Path, cred: Mapping[str, str]) -> None:
    """``git credential reject``: the helpers forget ``cred`` (the server refused it)."""
    _credential(cwd, "reject", cred)


def ssh_command(cwd: str | Path) -> list[str]:
    """The ssh program git would run: ``GIT_SSH_COMMAND``, ``core.sshCommand``, ``GIT_SSH``, else ``ssh``.

    A command (the first two) is run by ``sh -c`` with the arguments appended, as git does.
    """
    cmd = os.environ.get("GIT_SSH_COMMAND") or output(["config", "core.sshCommand"], cwd, check=False)
    if cmd:
        return ["sh", "-c", cmd + ' "$@"', "ssh"]
    return [os.environ.get("GIT_SSH") or "ssh"]


def lfs_authenticate(
    cwd: str | Path, user_host: str, port: str | None, path: str, operation: str, timeout: float
) -> dict[str, object]:
    """``ssh [-p PORT] USER@HOST git-lfs-authenticate PATH OPERATION``: its JSON answer.

    The answer is a batch API action (``href``, ``header``, ``expires_in`` /
    ``expires_at``; git-lfs ``docs/api/server-discovery.md``). Raises
    :class:`GitError` (command, exit code, ssh's stderr) when ssh fails,
    times out after ``timeout`` seconds, or prints something that is not a
    JSON object.
    """
    import json

    if user_host.startswith("-"):
        raise GitError(["ssh", user_host], -1, b"", b"refusing an ssh host that starts with '-'")
    cmd = [*ssh_command(cwd), *(["-p", port] if port else []), user_host,
           f"git-lfs-authenticate {_sh_quote(path)} {operation}"]
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, env=_env(None), stdin=subprocess.DEVNULL,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise GitError(cmd, -1, b"", f"no answer within {timeout:g} s".encode()) from None
    except OSError as e:
        raise GitError(cmd, -1, b"", str(e).encode()) from None
    if proc.returncode != 0:
        raise GitError(cmd, proc.returncode, proc.stdout, proc.stderr)
    try:
        data = json.loads(proc.stdout)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        data = None
    if not isinstance(data, dict):
        raise GitError(cmd, proc.returncode, proc.stdout, b"git-lfs-authenticate did not answer with a JSON object")
    return data


def _sh_quote(s: str) -> str:
    import shlex

    return shlex.quote(s)
