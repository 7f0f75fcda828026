"""The warm guard: one long-lived process per bare org repo that checks pushes (docs/sync.md, "The guard").

Modelled on git's ``credential-cache--daemon``. ``hooks/pre-receive`` is a
small stdlib-only client: it sends each push (the pre-receive input and git's
quarantine directories) over a unix socket to this daemon, which has pygit2,
pydantic and cryptography already imported, and prints the verdict. When no
daemon answers, the hook starts one (``python -m gitmail.guard serve``) for
the next push and checks the current push in a process of its own, exactly
as before. Nothing is ever accepted because the daemon is missing or
misbehaves: every doubt ends in the full in-process check.

Where: ``${XDG_RUNTIME_DIR:-/tmp}/gitmail-guard-<uid>/``, a directory that
must be owned by the current uid and closed to group and others (0700;
otherwise neither the hook nor the daemon uses it). In it, per repo,
``<h>.sock`` and ``<h>.lock`` where ``h`` hashes the real path of the git
dir and the hook's KEY (written by ``gitmail guard install``, new on every
install: an upgraded gitmail's hooks start a new daemon, the old one idles
out). The daemon holds an ``flock`` on the lock file for its lifetime (a
second one exits at once; the hook takes the lock before it starts a daemon
and hands it over, ``--lock-fd``, so that no second daemon is started while
one is starting up), writes its pid there, and exits after
``GITMAIL_GUARD_IDLE`` seconds without a request (default 300), when its
socket is removed, when the repo disappears, or when gitmail's code changed
(an upgrade: it declines the request it is given, so the hook checks that
push itself and the next one starts a daemon with the new code).

Wire format (both ways): ``MAGIC`` then length-prefixed fields
(``!I`` + bytes). Request: op (``check``/``ping``/``stop``), git dir,
``GIT_QUARANTINE_PATH``, ``GIT_OBJECT_DIRECTORY``,
``GIT_ALTERNATE_OBJECT_DIRECTORIES``, the pre-receive input. Reply: status
(``0`` accept, ``1`` refuse, ``2`` declined: check it yourself), text. The
daemon sends the reply's ``MAGIC`` as soon as it takes the connection, before
it reads the request: a client that has not seen it within ``ACK_TIMEOUT``
(a daemon stopped with SIGSTOP, or wedged) checks the push itself, within a
second or two instead of ``REPLY_TIMEOUT``. (Clients that read the whole
reply at once see the same bytes as before.)
The copy of the client logic in ``hooks/pre-receive`` must agree with
:func:`paths` and this format (tests/sync/test_guard_daemon.py checks that).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import re
import socket
import stat
import struct
import sys
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Optional

from gitmail import rundir

if TYPE_CHECKING:
    from gitmail.core.directory import Directory

MAGIC = b"gitmail-guard-1\n"
ACCEPT, REFUSE, DECLINE = 0, 1, 2
IDLE_DEFAULT = 300.0
REPLY_TIMEOUT = 30.0  # the hook's wait for a verdict before it checks the push itself
# The hook's wait for the daemon's greeting (MAGIC, sent as soon as a connection is taken):
# a stopped (SIGSTOP) or wedged daemon still has its socket accept connections in the kernel,
# so only a greeting tells a live one; without it within this, the hook checks the push itself.
ACK_TIMEOUT = 1.5
READ_TIMEOUT = 10.0  # the daemon's wait for a request
MAX_FIELD = 64 << 20  # pre-receive input of a huge push is still far below this
SOCK_MAX = 100  # sun_path holds 108 bytes on Linux, 104 on BSDs
KEY_RE = re.compile(r'^KEY = "([0-9a-f]+)"$', re.M)


# -- where ---------------------------------------------------------------------------


def _bases() -> list[str]:
    return [rundir.base()]


def runtime_dir(base: Optional[str] = None, create: bool = True) -> Optional[str]:
    """The private socket directory (created 0700), or None when it is missing or not safe to use
    (:func:`gitmail.rundir.private_dir`)."""
    return rundir.private_dir("gitmail-guard", base, create)


def name(git_dir: str, key: str) -> str:
    """The file name stem of a repo's socket and lock file (the hook computes the same)."""
    raw = (os.path.realpath(git_dir) + "\0" + key).encode("utf-8", "surrogateescape")
    return hashlib.sha256(raw).hexdigest()[:32]


def paths(git_dir: str, key: str, base: Optional[str] = None, create: bool = True) -> Optional[tuple[str, str]]:
    """``(socket, lock file)`` of the daemon for ``git_dir`` and ``key``, or None when none may be used."""
    d = runtime_dir(base, create)
    if d is None:
        return None
    stem = os.path.join(d, name(git_dir, key))
    if len(os.fsencode(stem + ".sock")) > SOCK_MAX:
        return None
    return stem + ".sock", stem + ".lock"


# -- the hook's KEY ----------------------------------------------------------------------


def new_key() -> str:
    """A KEY for a newly installed hook: this interpreter, this gitmail, this moment."""
    from gitmail import __version__

    seed = f"{sys.executable}\0{__version__}\0{time.time_ns()}\0{os.getpid()}".encode()
    return hashlib.sha256(seed + os.urandom(8)).hexdigest()[:16]


def fill_hook(text: str, daemon: bool = True) -> str:
    """The pre-receive template with its KEY and daemon switch filled in."""
    return text.replace("@GUARD_KEY@", new_key()).replace("@GUARD_DAEMON@", "on" if daemon else "off")


def hook_key(hook: Path) -> Optional[str]:
    """The KEY written into an installed pre-receive hook (None: not a warm-guard hook)."""
    try:
        m = KEY_RE.search(hook.read_text(errors="replace"))
    except OSError:
        return None
    return m.group(1) if m else None


# -- wire format ---------------------------------------------------------------------


def encode(fields: list[bytes]) -> bytes:
    return MAGIC + b"".join(struct.pack("!I", len(f)) + f for f in fields)


def decode(stream: "IO[bytes] | io.BufferedIOBase", count: int) -> list[bytes]:
    """Read ``count`` fields; ValueError on anything else (short read, bad magic, oversized field)."""
    if stream.read(len(MAGIC)) != MAGIC:
        raise ValueError("bad magic")
    return decode_fields(stream, count)


def decode_fields(stream: "IO[bytes] | io.BufferedIOBase", count: int) -> list[bytes]:
    """Read ``count`` length-prefixed fields (what follows ``MAGIC``); ValueError as :func:`decode`."""
    out = []
    for _ in range(count):
        head = stream.read(4)
        if len(head) != 4:
            raise ValueError("short read")
        (n,) = struct.unpack("!I", head)
        if n > MAX_FIELD:
            raise ValueError("field too long")
        f = stream.read(n)
        if len(f) != n:
            raise ValueError("short read")
        out.append(f)
    return out


def request(sock_path: str, fields: list[bytes], timeout: float = REPLY_TIMEOUT,
            ack_timeout: float = ACK_TIMEOUT) -> tuple[int, str]:
    """Send one request; ``(status, text)``. Raises OSError or ValueError when there is no good answer
    (``TimeoutError`` when the daemon's greeting does not come within ``ack_timeout`` seconds, or the
    reply within ``timeout``)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(min(ack_timeout, timeout))
        s.connect(sock_path)
        s.sendall(encode(fields))
        s.shutdown(socket.SHUT_WR)
        with s.makefile("rb") as f:
            if f.read(len(MAGIC)) != MAGIC:  # the greeting: the daemon is alive and took the request
                raise ValueError("bad magic")
            s.settimeout(timeout)
            status, text = decode_fields(f, 2)
    if status not in (b"0", b"1", b"2"):
        raise ValueError("bad status")
    return int(status), text.decode("utf-8", "replace")


# -- managing a repo's daemon ----------------------------------------------------------


def _target(bare: str | Path, key: Optional[str]) -> tuple[str, Optional[str]]:
    """The real git dir of ``bare`` and the KEY of its installed hook (None without one)."""
    from gitmail.hookscripts import repo_dirs

    gd, hooks = repo_dirs(bare, other_owner=True)
    return os.path.realpath(gd), key or hook_key(hooks / "pre-receive")


def _sockets(gd: str, key: str) -> list[str]:
    out = []
    for base in dict.fromkeys(_bases() + ["/tmp"]):
        p = paths(gd, key, base, create=False)
        if p:
            out.append(p[0])
    return out


def status(bare: str | Path, key: Optional[str] = None) -> Optional[dict[str, int]]:
    """``{"pid": ..., "checks": ..., "declined": ...}`` of the running daemon of ``bare`` (its current hook's KEY), or None."""
    gd, key = _target(bare, key)
    if not key:
        return None
    for sock in _sockets(gd, key):
        try:
            code, text = request(sock, [b"ping", os.fsencode(gd), b"", b"", b"", b""], timeout=5, ack_timeout=5)
            pid, checks, declined = (int(x) for x in text.split())
        except (OSError, ValueError):
            continue
        return {"pid": pid, "checks": checks, "declined": declined}
    return None


def stop(bare: str | Path, key: Optional[str] = None, wait: float = 10.0) -> Optional[int]:
    """Tell the daemon of ``bare`` to exit and wait until it has; its pid, or None if none was running.

    ``key`` defaults to the KEY of the hook installed in ``bare``. Raises
    :class:`NotARepoError` when ``bare`` is not a git repository.
    """
    gd, key = _target(bare, key)
    if not key:
        return None
    for sock in _sockets(gd, key):
        pid = stop_socket(sock, wait)
        if pid is not None:
            return pid
    return None


def stop_socket(sock: str, wait: float = 10.0) -> Optional[int]:
    """Tell the daemon listening on ``sock`` to exit and wait until it has; its pid, or None."""
    try:
        # A management request, not a push: on a loaded machine wait as long as a push would.
        code, text = request(sock, [b"stop", b"", b"", b"", b"", b""], timeout=REPLY_TIMEOUT, ack_timeout=REPLY_TIMEOUT)
        pid = int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return None
    lock = sock[: -len(".sock")] + ".lock"
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and _locked(lock):
        time.sleep(0.02)
    return pid


def _locked(lock: str) -> bool:
    """Whether a live daemon holds ``lock`` (:func:`gitmail.rundir.held`)."""
    return rundir.held(lock)


# -- the daemon ----------------------------------------------------------------------


def idle_timeout() -> float:
    try:
        v = float(os.environ.get("GITMAIL_GUARD_IDLE", ""))
    except ValueError:
        return IDLE_DEFAULT
    return v if v > 0 else IDLE_DEFAULT


def _inside(path: str, parent: str) -> bool:
    return path.startswith(parent.rstrip("/") + "/")


class Guard:
    """What the daemon knows: its repo, and how to check one request."""

    def __init__(self, git_dir: str) -> None:
        self.git_dir = os.path.realpath(git_dir)
        self.objects = os.path.realpath(os.path.join(self.git_dir, "objects"))
        self.checks = 0
        self.declined = 0
        self.directories: dict[str, Directory] = {}  # the directory parsed at its current tip
        self.busy = 0
        self.last = time.monotonic()
        self.lock = threading.Lock()

    def quarantine(self, quarantine: str, objdir: str, alternates: str) -> list[str] | str:
        """The object directories to add for a push, or why the request is declined."""
        extra: list[str] = []
        for p in (quarantine, objdir):
            if not p:
                continue
            rp = os.path.realpath(p)
            if rp == self.objects or rp in extra:
                continue
            if not (_inside(rp, self.objects) and os.path.isdir(rp)):
                return f"object directory {p!r} is not inside {self.objects}"
            extra.append(rp)
        for p in alternates.split(":") if alternates else []:
            rp = os.path.realpath(p)
            if p.startswith('"') or not (rp == self.objects or rp in extra):
                return f"alternate object directory {p!r} is not this repository's"
        return extra

    def check(self, fields: list[bytes]) -> tuple[int, str]:
        """``(status, text)`` for a ``check`` request; DECLINE on any doubt."""
        code, text = self._check(fields)
        with self.lock:
            if code == DECLINE:
                self.declined += 1
            else:
                self.checks += 1
        return code, text

    def _check(self, fields: list[bytes]) -> tuple[int, str]:
        import pygit2

        from gitmail.guard.check import parse_updates, verdict

        git_dir, quarantine, objdir, alternates, data = (f.decode("utf-8", "surrogateescape") for f in fields)
        if os.path.realpath(git_dir) != self.git_dir:
            return DECLINE, f"this daemon serves {self.git_dir}, not {git_dir}"
        extra = self.quarantine(quarantine, objdir, alternates)
        if isinstance(extra, str):
            return DECLINE, extra
        failed: list[str] = []

        def open_repo() -> pygit2.Repository:
            try:
                pg = pygit2.Repository(self.git_dir)
                for d in extra:
                    pg.odb.add_disk_alternate(d)
            except Exception as e:
                failed.append(f"{type(e).__name__}: {e}")
                raise
            return pg

        try:
            code, text = verdict(parse_updates(data), open_repo, self.directories)
        except Exception as e:
            return DECLINE, f"{type(e).__name__}: {e}"
        if failed or (code and "internal error while checking the push" in text):
            return DECLINE, text  # not the push's fault as far as we can tell: let the hook check itself
        return code, text


def code_files() -> list[str]:
    """gitmail's own modules that the guard runs (the package's base, its core and the guard)."""
    pkg = Path(__file__).resolve().parent.parent
    return [str(f) for d in (pkg, pkg / "core", pkg / "guard") for f in sorted(d.glob("*.py"))]


def code_stamp(files: list[str]) -> tuple[int, ...]:
    """The modification times of ``files``: an upgrade (``pip install -U``) changes them,
    and a daemon still running the old code then declines and exits."""
    out = []
    for f in files:
        try:
            out.append(os.stat(f).st_mtime_ns)
        except OSError:
            out.append(-1)
    return tuple(out)


def _handed_lock(fd: Optional[int], lock_path: str) -> Optional[int]:
    """``fd`` when it is an open descriptor of ``lock_path`` itself (flock, being per open file,
    then succeeds again on it), else None (closing a stray descriptor)."""
    if fd is None:
        return None
    try:
        mine, there = os.fstat(fd), os.lstat(lock_path)
    except OSError:
        return None
    if (mine.st_dev, mine.st_ino) != (there.st_dev, there.st_ino) or not stat.S_ISREG(there.st_mode):
        os.close(fd)
        return None
    os.set_inheritable(fd, False)
    return fd


def serve(git_dir: str, key: str, lock_fd: Optional[int] = None) -> int:
    """Run the daemon of ``git_dir`` until idle; 0 at once when another one holds the lock.

    ``lock_fd``: the lock file, opened and locked by the hook that started this
    daemon and handed over (so no second hook starts another daemon while this
    one starts up); used only if it is that very file.
    """
    import signal
    import socketserver

    guard = Guard(git_dir)
    p = paths(guard.git_dir, key)
    if p is None or not os.path.isdir(guard.objects):
        return 1
    sock_path, lock_path = p
    fd = _take_lock(lock_fd, lock_path)
    if fd is None:
        return 0  # another daemon serves this repo
    try:
        os.unlink(sock_path)  # a dead daemon's socket
    except FileNotFoundError:
        pass
    os.umask(0o077)
    own_code = code_files()
    stamp = code_stamp(own_code)

    def shutdown() -> None:  # from a request or a signal: never in the serving thread itself
        threading.Thread(target=server.shutdown, daemon=True).start()

    class Server(socketserver.ThreadingUnixStreamServer):
        daemon_threads = True
        request_queue_size = 64

    server = Server(sock_path, _handler(guard, own_code, stamp, shutdown))
    ino = os.stat(sock_path).st_ino
    signal.signal(signal.SIGTERM, lambda *_: shutdown())
    threading.Thread(target=_watch, args=(server, guard, sock_path, ino, own_code, stamp), daemon=True).start()
    try:
        # Warm up now, not during the first push: the imports a check needs.
        import pygit2  # noqa: F401

        import gitmail.core.directory  # noqa: F401
        import gitmail.core.store  # noqa: F401

        with guard.lock:
            guard.last = time.monotonic()  # idle from now on: the warm-up is no idleness
        server.serve_forever(poll_interval=0.5)
    finally:
        rundir.unlink_ours(sock_path, ino)
        server.server_close()
        rundir.free_lock(fd)
    return 0


def _take_lock(lock_fd: Optional[int], lock_path: str) -> Optional[int]:
    """The daemon's lock file descriptor, locked, with this process's pid written in it
    (the one handed over by the hook when it is that very file, else opened here);
    None when another daemon holds the lock."""
    fd = _handed_lock(lock_fd, lock_path)
    if fd is None:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _answer(guard: "Guard", fields: list[bytes], fresh: bool, shutdown: "Callable[[], None]") -> tuple[int, str]:
    """``(code, text)`` for one request (``check``, ``ping``, ``stop``); ``fresh``: gitmail's
    code is still the one this daemon started with (else a check is declined and the daemon stops)."""
    op = fields[0]
    if op == b"check" and not fresh:  # gitmail was upgraded under us
        shutdown()
        return DECLINE, "gitmail changed since this daemon started"
    if op == b"check":
        return guard.check(fields[1:])
    if op == b"ping":
        return ACCEPT, f"{os.getpid()} {guard.checks} {guard.declined}"
    if op == b"stop":
        shutdown()
        return ACCEPT, f"{os.getpid()}"
    return DECLINE, "unknown request"


def _handler(guard: "Guard", own_code: list[str], stamp: tuple[int, ...], shutdown: "Callable[[], None]") -> type:
    """The request handler class: same-user peers only, greeting, one request, one answer."""
    import socketserver

    uid = os.getuid()

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            conn = self.connection
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            if struct.unpack("3i", creds)[1] != uid:
                return
            conn.settimeout(READ_TIMEOUT)
            with guard.lock:
                guard.busy += 1
                guard.last = time.monotonic()
            try:
                self.wfile.write(MAGIC)  # the greeting: alive (a stopped daemon sends nothing)
                try:
                    fields = decode(self.rfile, 6)
                except (OSError, ValueError):
                    return
                code, text = _answer(guard, fields, code_stamp(own_code) == stamp, shutdown)
                conn.settimeout(REPLY_TIMEOUT)
                self.wfile.write(encode([str(code).encode(), text.encode("utf-8", "replace")])[len(MAGIC):])
            except OSError:
                pass
            finally:
                with guard.lock:
                    guard.busy -= 1
                    guard.last = time.monotonic()

    return Handler


def _watch(server: Any, guard: "Guard", sock_path: str, ino: int, own_code: list[str], stamp: tuple[int, ...]) -> None:
    """Shut ``server`` down when idle, when the socket is gone or replaced, when the repo is
    gone, or when gitmail's code changed. A stuck request that nobody waits for any more does
    not keep the daemon alive either."""
    idle = idle_timeout()
    while True:
        time.sleep(min(1.0, idle / 4))
        with guard.lock:
            quiet = time.monotonic() - guard.last
            # A request still running after its client gave up (REPLY_TIMEOUT) does not keep us alive.
            limit = idle if guard.busy == 0 else max(idle, 2 * REPLY_TIMEOUT)
        try:
            moved = os.stat(sock_path).st_ino != ino
        except OSError:
            moved = True
        if quiet > limit or moved or not os.path.isdir(guard.objects) or code_stamp(own_code) != stamp:
            server.shutdown()
            return
