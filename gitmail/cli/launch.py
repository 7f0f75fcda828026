"""The ``gitmail`` / ``git-mail`` entry point: a client of the warm CLI server (docs/sync.md,
"The warm CLI server").

Standard library only, and only cheap parts of it (``_socket``, ``_signal``):
importing this module loads no click, pydantic, pygit2 or cryptography
(tests/cli/test_warm.py checks ``sys.modules``). It hands the command to the
user's warm server (:mod:`gitmail.cli.warm`, which has those imported and
forks one child per command) over a unix socket: the argv, the whole
environment, the umask, the encodings of the standard streams, and as file
descriptors (``SCM_RIGHTS``) stdin, stdout, stderr and the current directory.

Exactly once: the server greets a connection (``H``) before anything is sent
to it; the child then reads the request and answers ``A<pid>`` (ack); only then does this client
answer ``G`` (go), and only after reading ``G`` does the child run the
command. A client that got no ack (no server, a dead, retiring or stopped
one: ``ACK_TIMEOUT``) never sends ``G`` and runs the command in-process, as
if there were no server, so it certainly runs once. After ``G`` it never runs
the command itself: it forwards SIGINT, SIGTERM and SIGHUP to the child's
process group and exits with the child's status (``X<code>``); a child killed
by signal N (``S<N>``, sent by the server, which reaps it) exits 128+N with one
line; a child that asks for the terminal before doing anything (``R``: an
editor or a confirmation, :mod:`gitmail.cli.terminal`) or finds warm runs
turned off in the repository's git config (``O``) has the command run here.

When no server answers, this process runs the command in-process and starts a
server for the next command (detached, new session, ``/dev/null`` for its
standard streams), unless one is still starting. ``GITMAIL_WARM=off`` (also
``0``, ``false``, ``no``) in the environment always runs in-process; so do the
machine-facing and long-running commands in :data:`IN_PROCESS`.

Where: ``${XDG_RUNTIME_DIR:-/tmp}/gitmail-cli-<uid>/`` (0700, owned by this
uid; any other owner or mode and nothing warm is used), ``<h>.sock`` and
``<h>.lock`` where ``h`` hashes this interpreter, this gitmail package's
directory and the interpreter's text settings (two installs or worktrees
never share a server). The server holds an ``flock`` on the lock file.

A command in :data:`REUSABLE` (``send``, ``reply``, ``sync``) is first offered to the
*workers* of this client's session, ``w<s>-<i>.wsock`` beside them (``i``
from 0 to :data:`WORKERS` - 1, tried in order), where ``s`` hashes ``h`` and
everything in the request but the argv (the umask, the streams' settings, the
whole environment): a child whose reusable command ended with status 0
serves the next command of an identical session itself instead of exiting
(gitmail.cli.warm, "Workers"). The exchange with one is the same as with the
server; when none answers (a busy worker has no socket), or one declines, the
client asks the server as before.
"""

from __future__ import annotations

import os
import sys
TYPE_CHECKING = False  # not typing's: importing typing costs a few ms of start-up
if TYPE_CHECKING:
    from typing import Any, Optional, Sequence

MAGIC = b"gitmail-warm-1\n"
ACK_TIMEOUT = 3.0  # no ack within this: a stopped or wedged server; run here
SOCK_MAX = 100  # sun_path holds 108 bytes on Linux, 104 on BSDs
MAX_REQUEST = 16 << 20  # argv and environment: far below this
OFF = ("off", "0", "false", "no")
# Commands that always run in this process: machine-facing servers and hooks (their peer
# talks to this very process for a long time), the completion protocol, and init (a first
# contact with a remote may ask on the terminal, e.g. ssh's host key).
IN_PROCESS = frozenset({"mcp", "hook", "hooks", "guard", "init"})
# Commands after which a warm child may serve the next command of the same session (the
# hot path of an agent that sends many messages); any other command ends its process.
REUSABLE = frozenset({"send", "reply", "sync"})
WORKERS = 8  # workers of one session at most (its concurrent senders each find an idle one)
# The server: run without the current directory on sys.path.
BOOT = "import sys; del sys.path[0]; from gitmail.cli.warm import serve_main; sys.exit(serve_main())"


def _sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data``, from the C module when there is one (hashlib's OpenSSL start-up
    costs more than the rest of this client)."""
    import importlib

    for name in ("_sha256", "_sha2"):  # Python <= 3.11, 3.12+
        try:
            return str(importlib.import_module(name).sha256(data).hexdigest())
        except ImportError:
            continue
    import hashlib

    return hashlib.sha256(data).hexdigest()


def private_dir(base: Optional[str] = None, create: bool = True) -> Optional[str]:
    """``<base>/gitmail-cli-<uid>`` (base: ``$XDG_RUNTIME_DIR``, else ``/tmp``), created 0700;
    None when it is not safe (:func:`gitmail.rundir.private_dir`, the guard's rule too)."""
    from gitmail.rundir import private_dir as private

    return private("gitmail-cli", base, create)


def key() -> str:
    """What makes two processes share a server: the interpreter (as invoked: venvs differ), the
    gitmail package's directory, and the interpreter's text settings a child inherits."""
    pkg = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    parts = [sys.executable, pkg, sys.getfilesystemencoding(), str(sys.flags.utf8_mode),
             os.environ.get("PYTHONPATH", ""), os.environ.get("PYTHONHOME", "")]
    return _sha256("\0".join(parts).encode("utf-8", "surrogateescape"))[:32]


def paths(base: Optional[str] = None, create: bool = True) -> Optional[tuple[str, str]]:
    """``(socket, lock file)`` of this install's server, or None when none may be used."""
    d = private_dir(base, create)
    if d is None:
        return None
    stem = os.path.join(d, key())
    if len(os.fsencode(stem + ".sock")) > SOCK_MAX:
        return None
    return stem + ".sock", stem + ".lock"


def idle_timeout() -> float:
    """Seconds a server waits for a command before it exits (``GITMAIL_WARM_IDLE``, default 300)."""
    try:
        v = float(os.environ.get("GITMAIL_WARM_IDLE", ""))
    except ValueError:
        return 300.0
    return v if v > 0 else 300.0


def session_key(fields: Sequence[bytes]) -> str:
    """What a worker serves (:data:`REUSABLE`): the hash of this install's :func:`key` and the
    request ``fields`` (:func:`request`) without the argv: two requests with the same key
    differ in nothing but their argv and descriptors. 24 hex digits."""
    nargs = int(fields[11])
    return _sha256(pack([key().encode(), *fields[:11], *fields[12 + nargs:]]))[:24]


def worker_paths(sock_path: str, session: str, slot: int) -> Optional[tuple[str, str]]:
    """``(socket, lock file)`` of worker ``slot`` of ``session`` beside the server's
    ``sock_path`` (``w<session>-<slot>.wsock``, ``.wlock``: never taken for a server's), or
    None when the path would not fit in a socket address."""
    stem = os.path.join(os.path.dirname(sock_path), f"w{session}-{slot}")
    if len(os.fsencode(stem + ".wsock")) > SOCK_MAX:
        return None
    return stem + ".wsock", stem + ".wlock"


# -- wire format -------------------------------------------------------------------------


def pack(fields: Sequence[bytes]) -> bytes:
    """``MAGIC``, the payload's length (4 bytes, big-endian), then each field length-prefixed."""
    body = b"".join(len(f).to_bytes(4, "big") + f for f in fields)
    return MAGIC + len(body).to_bytes(4, "big") + body


def unpack(body: bytes) -> list[bytes]:
    """The fields of a payload (what follows ``MAGIC`` and its length); ValueError when garbled."""
    out, i = [], 0
    while i < len(body):
        if i + 4 > len(body):
            raise ValueError("short field length")
        n = int.from_bytes(body[i:i + 4], "big")
        if i + 4 + n > len(body):
            raise ValueError("short field")
        out.append(body[i + 4:i + 4 + n])
        i += 4 + n
    return out


def _stream_info(stream: Any) -> list[bytes]:
    """Encoding, error handler and line buffering of one of this process's text streams."""
    enc = getattr(stream, "encoding", None) or "utf-8"
    errors = getattr(stream, "errors", None) or "strict"
    return [enc.encode(), errors.encode(), b"1" if getattr(stream, "line_buffering", False) else b""]


def request(argv: Sequence[str]) -> list[bytes]:
    """The request fields: ``run``, the umask, each standard stream's text settings, the argv
    (``sys.argv[0]`` first) and the environment (``KEY=VALUE``, in order)."""
    mask = os.umask(0o022)
    os.umask(mask)
    fields = [b"run", b"%d" % mask]
    for s in (sys.stdin, sys.stdout, sys.stderr):
        fields += _stream_info(s)
    args = [os.fsencode(sys.argv[0] if sys.argv else "gitmail"), *(os.fsencode(a) for a in argv)]
    fields += [b"%d" % len(args), *args]
    fields += [k + b"=" + v for k, v in os.environb.items()]
    return fields


# -- the client --------------------------------------------------------------------------


def _read_line(sock: Any, limit: int = 64) -> bytes:
    buf = b""
    while not buf.endswith(b"\n"):
        c = sock.recv(1)
        if not c:
            return buf  # end of stream: an incomplete line (the caller tells)
        buf += c
        if len(buf) > limit:
            raise ValueError("line too long")
    return buf


def _command(argv: Sequence[str]) -> "Optional[str]":
    """The command's name as the client guesses it: the first argument not an option."""
    return next((a for a in argv if not a.startswith("-")), None)


def _enabled(argv: Sequence[str]) -> bool:
    if os.environ.get("GITMAIL_WARM", "").strip().lower() in OFF:
        return False
    if os.environ.get("_GITMAIL_COMPLETE"):
        return False
    first = _command(argv)
    if first is None or first in IN_PROCESS:
        return False  # --help, --version, no command: cheap anyway; and the in-process commands
    return True


def _stdio_open() -> bool:
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            return False
    return True


def _connect(sock_path: str, data: bytes) -> Any:
    """A connected socket on which the request ``data`` (:func:`pack` of :func:`request`) was
    sent, or None (no server to talk to)."""
    import _socket

    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.settimeout(ACK_TIMEOUT)
        s.connect(sock_path)
        # The server's greeting first: a stopped or wedged server's socket still takes
        # connections (the kernel queues them), and the descriptors sent to it would stay
        # open in that queue (a reader of our stdout would wait for its end meanwhile).
        if _read_line(s) != b"H\n":
            s.close()
            return None
        cwd = os.open(".", getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            import array

            sent = s.sendmsg([data[:4096]], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                              array.array("i", (0, 1, 2, cwd)).tobytes())])
            if sent < len(data):
                s.sendall(data[sent:])
        finally:
            os.close(cwd)
    except (OSError, ValueError):
        s.close()
        return None
    return s


def _ask(sock_path: str, data: bytes) -> tuple[str, int]:
    """Run the request ``data`` through the server (or worker) at ``sock_path``.

    ``("done", status)`` when the server ran it (never run it again);
    ``("here", 0)`` when it did not start it and it must run here;
    ``("none", 0)`` when no server answered (run here, and start one).
    """
    s = _connect(sock_path, data)
    if s is None:
        return "none", 0
    try:
        try:
            ack = _read_line(s)
        except (OSError, ValueError):
            ack = b""
        if not (ack.startswith(b"A") and ack.endswith(b"\n") and ack[1:-1].isdigit()):
            return "none", 0  # no ack: the command was not started, and will not be (no G)
        pid = int(ack[1:-1])
        import _signal

        def forward(signum: int, frame: Any) -> None:
            try:
                os.killpg(pid, signum)  # the child leads its own group: its git processes too
            except OSError:
                try:
                    os.kill(pid, signum)
                except OSError:
                    pass

        for sig in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP):
            _signal.signal(sig, forward)
        s.settimeout(None)
        try:
            s.sendall(b"G")
        except OSError:
            pass  # committed all the same: the child may have read it; never run it here
        try:
            end = _read_line(s)
        except (OSError, ValueError):
            end = b""
        if end in (b"R\n", b"O\n"):
            return "here", 0  # the child stopped before doing anything
        if end.startswith(b"X") and end[1:-1].isdigit():
            return "done", int(end[1:-1])
        if end.startswith(b"S") and end[1:-1].isdigit():
            n = int(end[1:-1])
            _say(f"gitmail: the command was ended by signal {n}")
            return "done", 128 + n
        _say("gitmail: lost the warm server's command process; the command may or may not have run "
             "(check: gitmail outbox, gitmail log)")
        return "done", 1
    finally:
        s.close()


def _say(line: str) -> None:
    try:
        os.write(2, (line + "\n").encode("utf-8", "replace"))
    except OSError:
        pass


def start_server(sock_path: str, lock_path: str) -> None:
    """Start a server for the next command, detached, unless one holds the lock (alive, or still
    starting). The lock is taken here and handed over (``--lock-fd``), so that no second server
    is started meanwhile. Never raises."""
    import fcntl

    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return
        env = {k: v for k, v in os.environb.items() if not k.startswith(b"GIT_")}
        argv = [sys.executable, "-c", BOOT, "--socket", sock_path, "--lock-fd", str(fd)]
        try:
            pid = os.fork()
        except OSError:
            return
        if pid == 0:  # the intermediate: a new session, and a grandchild nobody waits for
            try:
                os.setsid()
                if os.fork() == 0:
                    null = os.open(os.devnull, os.O_RDWR)
                    for target in (0, 1, 2):
                        os.dup2(null, target)
                    os.set_inheritable(fd, True)
                    os.closerange(3, fd)
                    os.closerange(fd + 1, 1 << 16)
                    os.chdir("/")
                    os.execve(sys.executable, argv, env)
            except BaseException:
                pass
            os._exit(0)
        try:
            os.waitpid(pid, 0)
        except OSError:
            pass
    finally:
        os.close(fd)  # the server's copy keeps the lock


def repo_arg(argv: Sequence[str]) -> "Optional[str]":
    """The value of the command's ``--repo PATH`` or ``--repo=PATH`` (the last one given,
    before any ``--``), or None."""
    repo = None
    for i, a in enumerate(argv):
        if a == "--":
            break
        if a == "--repo" and i + 1 < len(argv):
            repo = argv[i + 1]
        elif a.startswith("--repo="):
            repo = a[len("--repo="):]
    return repo


def _warm_off_in_config(argv: Sequence[str]) -> bool:
    """``git config gitmail.warm`` of the repository the command names (``--repo``,
    ``$GITMAIL_REPO``, else the current directory) is false. One git process: asked only
    before starting a server (each warm child reads the config its command opens anyway)."""
    repo = repo_arg(argv)
    if repo is None:
        repo = os.environ.get("GITMAIL_REPO") or "."
    import subprocess

    try:
        r = subprocess.run(["git", "-C", os.path.expanduser(repo), "config", "--get", "gitmail.warm"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    except OSError:
        return False
    return r.returncode == 0 and is_off(r.stdout.decode("utf-8", "replace"))


def is_off(value: str) -> bool:
    """A git boolean that is false (``false``, ``no``, ``off``, ``0``, or empty)."""
    return value.strip().lower() in OFF + ("",)


def in_process(argv: Sequence[str]) -> int:
    """Run the command in this process, as ``gitmail.cli.main.main`` always did."""
    from gitmail.cli.main import main as cli_main

    sanitize_stdfds()
    return finish(cli_main(list(argv)))


def sanitize_stdfds() -> None:
    """Open /dev/null on each standard descriptor (0, 1, 2) the caller left closed (``>&-``),
    as git does at start-up (``sanitize_stdfds``), and give Python streams to those it left
    None. Otherwise the first file this process opens takes that number, and what is written
    to standard output, by gitmail or by a git child inheriting it, lands in that file; and the
    first print after the work (``Sent to alex``) failed, so a message that went out ended in
    an internal error (exit 70) that invites sending it again."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: ``fd`` itself
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    if sys.stdin is None:
        sys.stdin = open(0, "r", closefd=False)
    if sys.stdout is None:
        sys.stdout = open(1, "w", closefd=False)
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False, errors="backslashreplace")


def finish(code: int) -> int:
    """``code``, after a command ran in this process; when a worker pool was left with work
    in flight (:func:`gitmail.core.workers.stuck`: an error, Ctrl-C or a dead worker), the
    process ends here with ``os._exit(code)`` after flushing its output: a normal exit would
    join CPython's pool thread, which waits for those tasks (for ever, for a dead worker)."""
    workers = sys.modules.get("gitmail.core.workers")
    if workers is not None and workers.stuck():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The console script: the command through the warm server, else in-process; its exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    sanitize_stdfds()
    if not _enabled(args) or not _stdio_open():
        return in_process(args)
    p = paths()
    if p is None:
        return in_process(args)
    fields = request(args)
    data = pack(fields)
    try:
        how, code = "none", 0
        if _command(args) in REUSABLE:
            session = session_key(fields)
            for slot in range(WORKERS):
                worker = worker_paths(p[0], session, slot)
                if worker is None:
                    break
                how, code = _ask(worker[0], data)
                if how != "none":
                    break
        if how == "none":  # no idle worker, or it declined before the ack: the server
            how, code = _ask(p[0], data)
    except KeyboardInterrupt:  # before the ack: nothing was started
        _say("gitmail: interrupted")
        return 130
    if how == "done":
        return code
    if how == "none" and not _warm_off_in_config(args):
        start_server(*p)
    return in_process(args)
