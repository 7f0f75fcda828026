"""The warm CLI server: one per user and gitmail install, a fork per command (docs/sync.md,
"The warm CLI server").

Started by the launcher (:mod:`gitmail.cli.launch`) when none answered, as
``python -c BOOT --socket PATH --lock-fd FD``. It imports what commands need
(click, the pydantic models, pygit2, cryptography, pyrage, the api and every
command module) once, then serves its unix socket single-threaded: for each
connection from the same uid (``SO_PEERCRED``) it checks that gitmail's code
and the interpreter are unchanged (else it closes the connection without an
ack, so the client runs the command itself, and exits), forks, and goes back
to waiting. It never runs a command itself, so every child starts from the
same clean state. It reaps its children (SIGCHLD wakes it) and tells the
client of a child killed by a signal (``S<N>``). It exits after
``GITMAIL_WARM_IDLE`` seconds (default 300) without a command and with no
child left, on SIGTERM, when its socket is removed or replaced, or when the
code changed.

The child (:func:`_child`): reads the request (fds by ``SCM_RIGHTS``), becomes
the leader of a process group of its own, moves to the client's directory
(fchdir), takes the client's environment (then ``time.tzset()``, libgit2's
config search paths and ``tempfile``'s directory are recomputed from it), umask
and standard streams (dup2 onto 0, 1, 2; ``sys.std*`` rebuilt with the
client's encodings), resets its signal handlers, writes ``A<pid>`` and runs
the command only after the client's ``G``. It ends with ``X<status>``; ``R``
when the command asked for the terminal (:mod:`gitmail.cli.terminal`) before
doing anything, ``O`` when the repository's git config says
``gitmail.warm=false``: the client then runs the command itself.

Workers: a fork and its copied pages cost a send more than its own Python
does (docs/sync.md, "The cost of one send"). So a child whose command was one
of :data:`gitmail.cli.launch.REUSABLE` and ended with status 0 does not exit:
it points its standard streams at ``/dev/null`` (the client's pipes see their
end), says ``X0``, and serves the next command of the same *session* (the
same request but for the argv: environment, umask, streams' settings; its
key is :func:`gitmail.cli.launch.session_key`) on ``w<key>-<i>.wsock``, holding
``w<key>-<i>.wlock`` for the first free ``i`` below
:data:`gitmail.cli.launch.WORKERS` (none free: it exits). It takes one
connection at a time and removes its socket
while a command runs (other clients go to the server meanwhile), checks the
peer's uid and gitmail's code as the server does, declines (no ack) a
request of another session, and takes on the client's state exactly as a
fresh child does. It exits after any other command or status, after a command
that left a worker pool in flight or took its peak memory over
:data:`WORKER_PEAK_MAX` (a first sync of a big mailbox), after
:data:`WORKER_MAX` commands, after ``min(WORKER_IDLE, GITMAIL_WARM_IDLE)``
seconds without one, and when the server is gone or its socket is removed.
What a process remembers between commands (the opened clone's config, checked
against its files; directory ledgers and bounds keyed by commit ids) is what
the MCP server, also one long-lived process, remembers.
"""

from __future__ import annotations

import errno
import io
import os
import select
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any, Optional

from gitmail import rundir
from gitmail.cli import launch

READ_TIMEOUT = 10.0  # the child's wait for the request and for the client's go
OFF_STATUS = 3  # a child's exit status when warm runs are off for its repository
RERUN_STATUS = 4  # ... when its command needs the terminal
WORKER_MAX = 1000  # commands one process serves at most (its memory is bounded by it)
WORKER_IDLE = 30.0  # seconds a worker waits for its session's next command
# Bytes of peak resident memory above which a process serves no further command: what a big
# command left allocated is not kept for the next (a sync at 10,000 members peaks near 90 MB,
# a first sync of 1,000,000 messages near 205 MB).
WORKER_PEAK_MAX = 160 * 2**20


class _Server:
    """What a child knows of its server: to serve as a worker and notice the server's end."""

    def __init__(self, sock_path: str, ino: int, files: list[str], stamp: tuple[int, ...], idle: float) -> None:
        self.pid = os.getpid()
        self.sock_path = sock_path
        self.ino = ino
        self.files = files
        self.stamp = stamp
        self.idle = min(WORKER_IDLE, idle)

    def alive(self) -> bool:
        """The server still runs and still serves its socket."""
        if os.getppid() != self.pid:
            return False
        try:
            return os.stat(self.sock_path).st_ino == self.ino
        except OSError:
            return False

    def fresh(self) -> bool:
        """gitmail's code is still the one the server started with."""
        from gitmail.guard.daemon import code_stamp

        return code_stamp(self.files) == self.stamp


def warm_up() -> None:
    """Import what commands use and build the pydantic models they validate with, so that a
    forked child does neither (nothing that reads the environment, which differs per client,
    is computed here: imports and model schemas only)."""
    import importlib
    import pkgutil

    from gitmail.cli import main as cli_main

    cli_main._skip_pydantic_plugins()
    import click  # noqa: F401
    import pydantic
    import pygit2  # noqa: F401
    import pyrage  # noqa: F401
    from cryptography.hazmat.primitives.serialization import ssh  # noqa: F401

    import gitmail.api
    import gitmail.core

    names = [f"gitmail.{pkg.__name__.rsplit('.', 1)[1]}.{m.name}"
             for pkg in (gitmail.core, gitmail.api) for m in pkgutil.iter_modules(pkg.__path__)]
    names += [f"gitmail.cli.commands.{mod}" for cmd, mod in cli_main.COMMANDS.items() if cmd not in launch.IN_PROCESS]
    names += ["gitmail.cli.editor", "gitmail.cli.render", "tempfile"]
    mods = [importlib.import_module(n) for n in names]
    for mod in mods:  # the models gitmail builds on first use (defer_build): build them now
        for obj in list(vars(mod).values()):
            if (isinstance(obj, type) and issubclass(obj, pydantic.BaseModel) and obj.__module__ == mod.__name__
                    and not obj.__pydantic_complete__):
                try:
                    obj.model_rebuild()
                except Exception:  # a model that cannot be built yet is built on use, as before
                    pass


def code_files() -> list[str]:
    """gitmail's own modules and the interpreter: a change to any (an upgrade) retires a server."""
    pkg = Path(__file__).resolve().parent.parent
    return [sys.executable, *(str(f) for f in sorted(pkg.rglob("*.py")))]


def serve(sock_path: str, lock_fd: Optional[int] = None) -> int:
    """Serve ``sock_path`` until idle; 0 at once when another server holds the lock."""
    from gitmail.guard.daemon import _take_lock, code_stamp

    if not sock_path.endswith(".sock"):
        return 2
    lock_path = sock_path[: -len(".sock")] + ".lock"
    d = os.path.dirname(sock_path)
    if launch.private_dir(os.path.dirname(d), create=False) != d:
        return 1  # not our private directory
    fd = _take_lock(lock_fd, lock_path)
    if fd is None:
        return 0  # another server
    os.umask(0o077)
    files = code_files()
    stamp = code_stamp(files)
    warm_up()
    import gc

    gc.freeze()  # what warm_up made is never collected: a child's collections skip it (fewer copied pages)
    listener, ino = _listen(sock_path, 64)  # a dead server's socket, if any, replaced
    listener.setblocking(False)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    stop = []
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    signal.set_wakeup_fd(wake_w)
    children: dict[int, socket.socket] = {}
    idle = launch.idle_timeout()
    server = _Server(sock_path, ino, files, stamp, idle)
    last = time.monotonic()
    try:
        while not stop:
            last = max(last, _reap(children))
            if not children and time.monotonic() - last > idle:
                break
            try:
                if os.stat(sock_path).st_ino != ino:
                    break
            except OSError:
                break
            try:
                ready, _, _ = select.select([listener.fileno(), wake_r], [], [], min(1.0, idle))
            except InterruptedError:
                continue
            if wake_r in ready:
                try:
                    while os.read(wake_r, 512):
                        pass
                except OSError:
                    pass
            if listener.fileno() not in ready:
                continue
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                continue
            if not _same_uid(conn):
                conn.close()
                continue
            if not server.fresh():
                conn.close()  # no ack: the client runs the command itself (with the new code)
                break
            last = time.monotonic()
            try:
                conn.send(b"H\n")  # the greeting: alive (a stopped server sends nothing)
            except OSError:
                conn.close()
                continue
            pid = os.fork()
            if pid == 0:
                _child(conn, [listener, *children.values()], [wake_r, wake_w, fd], server)  # never returns
            conn.setblocking(False)  # the server's copy: for the S<N> line, never blocking
            children[pid] = conn
    finally:
        signal.set_wakeup_fd(-1)
        rundir.unlink_ours(sock_path, ino)
        listener.close()
        rundir.free_lock(fd)  # the next client may start a server
        while children:  # the running commands finish; reap them and tell their clients
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            _ended(children.pop(pid, None), status)
        for c in children.values():
            c.close()
    return 0


def _listen(sock_path: str, backlog: int) -> tuple[socket.socket, int]:
    """A unix socket listening at ``sock_path`` (a stale socket file there, left by a dead
    process, is removed first) and its inode; OSError when that cannot be done."""
    try:
        os.unlink(sock_path)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(sock_path)
        ino = os.stat(sock_path).st_ino
        listener.listen(backlog)
    except OSError:
        listener.close()
        raise
    return listener, ino


def _same_uid(conn: socket.socket) -> bool:
    """The peer of ``conn`` runs as this process's uid (``SO_PEERCRED``)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return bool(struct.unpack("3i", creds)[1] == os.getuid())


def _reap(children: dict[int, socket.socket]) -> float:
    """Reap every ended child; the time of the last that ran a command (0.0 for none)."""
    served = 0.0
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return served
        if pid == 0:
            return served
        _ended(children.pop(pid, None), status)
        if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == OFF_STATUS):
            served = time.monotonic()  # a child for a repo with warm off does not keep us alive


def _ended(conn: Optional[socket.socket], status: int) -> None:
    """A child ended: a client whose child was killed learns the signal."""
    if conn is None:
        return
    if os.WIFSIGNALED(status):
        try:
            conn.send(b"S%d\n" % os.WTERMSIG(status))
        except OSError:
            pass
    conn.close()


# -- the child ---------------------------------------------------------------------------


def _child(conn: socket.socket, sockets: list[socket.socket], fds: list[int], server: _Server) -> None:
    """Run one command for the client on ``conn`` (see the module docstring), then serve its
    session as a worker while that is allowed; never returns. ``sockets`` and ``fds``: the
    server's, closed first (the listener, other clients' connections, the wake-up pipe,
    the lock)."""
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for sock in sockets:
            sock.close()
        for f in fds:
            os.close(f)
        os.setpgid(0, 0)  # the client forwards signals to this group (git children included)
        session = _start(conn, None)
        if session is not None:
            _run(conn, session[1])
            _serve_session(server, session[0])
    except BaseException:  # a Ctrl-C reaching an idle worker, say
        pass
    # Never back into serve(): its clean-up, run in this copy of it, would remove the server's socket.
    os._exit(1)


def _start(conn: socket.socket, session: Optional[str]) -> Optional[tuple[str, list[str]]]:
    """Read the request on ``conn``, take on the client's state, ack and wait for the go:
    ``(session key, argv)``; None when the command must not run here (a garbled request, a
    client that gave up, or another session than ``session``): ``conn`` is closed unacked
    and the client asks elsewhere or runs the command itself."""
    try:
        conn.setblocking(True)
        conn.settimeout(READ_TIMEOUT)
        key, argv = _take_request(conn)
        if session is not None and key != session:
            conn.close()
            return None
        conn.sendall(b"A%d\n" % os.getpid())
        if conn.recv(1) != b"G":
            conn.close()
            return None  # the client gave up before committing: it runs the command itself
        conn.settimeout(None)
    except KeyboardInterrupt:  # forwarded between ack and go
        from gitmail.cli.main import _interrupt

        _finish(conn, b"X%d\n" % _interrupt())
    except BaseException:
        conn.close()
        return None
    return key, argv


def _serve_session(server: _Server, session: str) -> None:
    """Serve the next commands of ``session`` as its worker (module docstring, "Workers");
    never returns."""
    from gitmail.guard.daemon import _take_lock

    for slot in range(launch.WORKERS):
        paths = launch.worker_paths(server.sock_path, session, slot)
        if paths is None:
            os._exit(0)
        try:
            if _take_lock(None, paths[1]) is not None:  # held until this process ends
                break
        except OSError:
            os._exit(0)
    else:
        os._exit(0)  # as many workers serve this session as may
    served = 1
    while served < WORKER_MAX:
        conn = _next_client(server, paths[0])
        if conn is None:
            break
        if not _same_uid(conn) or not server.fresh():
            conn.close()  # no greeting: the client asks the server (which retires if code changed)
            break
        try:
            conn.send(b"H\n")
        except OSError:
            conn.close()
            continue
        started = _start(conn, session)
        if started is None:
            break
        served += 1
        _run(conn, started[1])
    os._exit(0)


def _next_client(server: _Server, sock_path: str) -> Optional[socket.socket]:
    """The next connection to the worker's socket, taken with the socket removed again (while
    a command runs, other clients find no worker and ask the server); None when idle too long
    or the server is gone."""
    try:
        listener, ino = _listen(sock_path, 8)  # a killed worker's socket replaced (we hold the lock)
    except OSError:
        return None
    try:
        deadline = time.monotonic() + server.idle
        while time.monotonic() < deadline and server.alive():
            try:
                ready, _, _ = select.select([listener], [], [], 0.5)
            except InterruptedError:
                continue
            if ready:
                try:
                    conn, _ = listener.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                return conn
        return None
    finally:
        # Connections queued behind the one taken get no greeting: their clients ask the server.
        rundir.unlink_ours(sock_path, ino)
        listener.close()


def _take_request(conn: socket.socket) -> tuple[str, list[str]]:
    """Read the request and take on the client's state; its session key and the argv
    (without argv[0])."""
    msg, fds, _, _ = socket.recv_fds(conn, 65536, 8)
    if len(fds) != 4:
        raise ValueError("expected 4 file descriptors")
    head = len(launch.MAGIC) + 4
    while len(msg) < head:
        more = conn.recv(65536)
        if not more:
            raise ValueError("short request")
        msg += more
    if not msg.startswith(launch.MAGIC):
        raise ValueError("bad magic")
    n = int.from_bytes(msg[len(launch.MAGIC):head], "big")
    if n > launch.MAX_REQUEST:
        raise ValueError("request too long")
    while len(msg) < head + n:
        more = conn.recv(min(1 << 20, head + n - len(msg)))
        if not more:
            raise ValueError("short request")
        msg += more
    fields = launch.unpack(msg[head:head + n])
    if len(fields) < 12 or fields[0] != b"run":
        raise ValueError("bad request")
    mask = int(fields[1])
    streams = [fields[2 + 3 * i: 5 + 3 * i] for i in range(3)]
    nargs = int(fields[11])
    args = [os.fsdecode(a) for a in fields[12:12 + nargs]]
    env = fields[12 + nargs:]
    stdin, stdout, stderr, cwd = fds
    os.fchdir(cwd)
    os.close(cwd)
    os.environb.clear()
    for kv in env:
        k, sep, v = kv.partition(b"=")
        if sep and k:
            os.environb[k] = v
    time.tzset()
    os.umask(mask)
    for src, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(src, target)
    for src in {stdin, stdout, stderr} - {0, 1, 2}:
        os.close(src)
    for name, fd, mode, info in (("stdin", 0, "r", streams[0]), ("stdout", 1, "w", streams[1]),
                                 ("stderr", 2, "w", streams[2])):
        stream = _text(fd, mode, *info)
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)
    sys.argv = args or ["gitmail"]
    _env_changed()
    return launch.session_key(fields), args[1:]


def _text(fd: int, mode: str, encoding: bytes, errors: bytes, line_buffering: bytes) -> io.TextIOWrapper:
    """A text stream over ``fd`` as the client's interpreter had it."""
    raw = io.FileIO(fd, mode, closefd=False)
    buf: Any = io.BufferedReader(raw) if mode == "r" else io.BufferedWriter(raw)
    return io.TextIOWrapper(buf, encoding=encoding.decode(), errors=errors.decode(),
                            line_buffering=bool(line_buffering))


def _env_changed() -> None:
    """What the server computed from its own environment, computed again from the client's."""
    import tempfile

    tempfile.tempdir = None
    import pygit2
    from pygit2.enums import ConfigLevel

    for level in (ConfigLevel.SYSTEM, ConfigLevel.XDG, ConfigLevel.GLOBAL):
        try:
            pygit2.settings.search_path[level] = None  # type: ignore[assignment]  # None: libgit2's default, from $HOME
        except (pygit2.GitError, ValueError):
            pass


def _warm_off(args: list[str]) -> bool:
    """The command's repository has ``gitmail.warm`` false in its git config. Read as the command
    itself reads it (gitmail.core.repo.open_repo, remembered in this process for the command)."""
    from gitmail.core.repo import open_repo
    from gitmail.errors import GitmailError

    try:
        value = open_repo(launch.repo_arg(args)).config.get("gitmail.warm")
    except (GitmailError, OSError):
        return False  # not a repository (yet): the command reports it
    return value is not None and launch.is_off(value)


def _run(conn: socket.socket, args: list[str]) -> None:
    """Run the command; exit, unless it may serve again (``X0`` said, streams released)."""
    from gitmail.cli import main as cli_main
    from gitmail.cli import terminal

    try:
        if _warm_off(args):
            _finish(conn, b"O\n", status=OFF_STATUS)
        terminal.WARM_CHILD = True
        code = cli_main.main(args)
        if code == 0 and cli_main.LAST_COMMAND in launch.REUSABLE and _lean() and _release(conn):
            return
    except terminal.RerunHere:
        _finish(conn, b"R\n", status=RERUN_STATUS)
    except KeyboardInterrupt:  # Ctrl-C before main took over (while the config was read)
        from gitmail.cli.main import _interrupt

        code = _interrupt()
    except BaseException:  # what main lets through (GITMAIL_DEBUG=1): as an uncaught exception
        import traceback

        traceback.print_exc()
        _finish(conn, b"X1\n")
    _finish(conn, b"X%d\n" % (code & 0xFF if code >= 0 else 1))


def _lean() -> bool:
    """Whether this process may serve another command: no worker pool left in flight (an
    interrupted check: :func:`gitmail.core.workers.stuck`) and a peak resident memory
    within ``$GITMAIL_WARM_PEAK_MB`` (the client's environment; default :data:`WORKER_PEAK_MAX`)."""
    import resource

    workers = sys.modules.get("gitmail.core.workers")
    if workers is not None and workers.stuck():
        return False
    try:
        bound = int(os.environ.get("GITMAIL_WARM_PEAK_MB", "")) * 2**20
    except ValueError:
        bound = WORKER_PEAK_MAX
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak * (1 if sys.platform == "darwin" else 1024) <= bound  # bytes on macOS, KiB elsewhere


def _release(conn: socket.socket) -> bool:
    """After a command that ended with 0: flush its output, point the standard streams at
    ``/dev/null`` (the client's pipes and terminal are this process's no more, so a reader
    of them sees their end) and leave its directory, then tell the client ``X0``. False
    (nothing said) when any step fails: the caller ends the process as usual."""
    try:
        for s in (sys.stdout, sys.stderr):
            s.flush()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        os.chdir("/")  # nor its directory (a worker must not keep a file system busy)
    except (OSError, ValueError):
        return False
    try:
        conn.sendall(b"X0\n")
    except OSError:
        pass  # the client went away after the command: its status was 0 all the same
    conn.close()
    return True


def _finish(conn: socket.socket, line: bytes, say: str = "", status: int = 0) -> None:
    """Flush the command's output (not for ``R``/``O``: nothing was meant for the client's
    streams, and a rerun must find them as they were), tell the client ``line`` and exit
    without running any of the server's clean-up (os._exit)."""
    try:
        if line not in (b"R\n", b"O\n"):
            if say:
                sys.stderr.write(say + "\n")
            for s in (sys.stdout, sys.stderr):
                try:
                    s.flush()
                except (OSError, ValueError):
                    pass
        conn.sendall(line)
    except BaseException:
        pass
    os._exit(status)


def serve_main(argv: Optional[list[str]] = None) -> int:
    """``--socket PATH [--lock-fd FD]``: run the server (what the launcher starts)."""
    import argparse

    ap = argparse.ArgumentParser(prog="gitmail-warm")
    ap.add_argument("--socket", required=True)
    ap.add_argument("--lock-fd", type=int)
    a = ap.parse_args(argv)
    try:
        return serve(a.socket, a.lock_fd)
    except OSError as e:
        if e.errno in (errno.EADDRINUSE, errno.ENAMETOOLONG):
            return 1
        raise
