"""The warm CLI server (gitmail.cli.launch, gitmail.cli.warm): the console script as a client of a
per-user forking server, with real processes, a real org and git. Each test has its own
XDG_RUNTIME_DIR, turns GITMAIL_WARM on (the suite has it off) and checks at the end that no
server or command process of it is left."""

from __future__ import annotations

import json
import os
import pty
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator, Optional

import pytest

from gitmail import rundir
from gitmail.cli import launch
from tests.conftest import Org, git, wait_for

BIN = Path(sys.executable).parent
GITMAIL = str(BIN / "gitmail")
# The interpreter the console script runs (its shebang): the socket's name depends on it.
SCRIPT_PY = Path(GITMAIL).read_text().splitlines()[0][2:].strip()


class Warm:
    """The warm set-up of one test: its runtime dir, environment and server."""

    def __init__(self) -> None:
        # Short: a socket's path must fit in sun_path (pytest's tmp_path may not).
        self.run_dir = Path(tempfile.mkdtemp(prefix="gmw-", dir="/tmp"))
        self.env = {**os.environ, "GITMAIL_WARM": "on", "XDG_RUNTIME_DIR": str(self.run_dir)}
        self.dir = self.run_dir / f"gitmail-cli-{os.getuid()}"

    def paths(self) -> tuple[str, str]:
        """(socket, lock file) as the console script computes them."""
        out = subprocess.run([SCRIPT_PY, "-c", "from gitmail.cli import launch; print(*launch.paths())"],
                             env=self.env, capture_output=True, text=True, check=True).stdout.split()
        return out[0], out[1]

    def cli(self, *args: str, cwd: Optional[Path] = None, input: Optional[str] = None,
            env: Optional[dict[str, str]] = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([GITMAIL, *args], env=env or self.env, cwd=cwd, input=input, capture_output=True,
                              text=True, timeout=120)

    def server_pid(self) -> Optional[int]:
        """The pid of the live server holding the lock, or None."""
        for lock in self.dir.glob("*.lock") if self.dir.is_dir() else []:
            if not _locked(lock):
                continue
            text = lock.read_text().strip()
            if text.isdigit() and Path(f"/proc/{text}").exists():
                return int(text)
        return None

    def up(self) -> int:
        """A server is serving (start one with a harmless command if needed); its pid."""
        if self.server_pid() is None:
            self.cli("--version")  # in-process; does not start one
            self.cli("members", "--repo", "/nonexistent")  # a command: starts one
        pid = wait_for(self.server_pid)
        wait_for(lambda: list(self.dir.glob("*.sock")))
        return pid

    def children(self, pid: int) -> list[int]:
        try:
            text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        except OSError:
            return []
        return [int(x) for x in text.split()]

    def stop(self) -> None:
        pid = self.server_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: self.server_pid() is None)

    def left(self) -> list[str]:
        """Processes whose command line names this test's runtime dir (the server and its children)."""
        out = []
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                cmd = (p / "cmdline").read_bytes()
                state = (p / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if str(self.run_dir).encode() in cmd:
                out.append(f"{p.name} {state} {cmd!r}")
        return out


def _locked(lock: Path) -> bool:
    return rundir.held(str(lock))


@pytest.fixture
def warm() -> Iterator[Warm]:
    w = Warm()
    try:
        yield w
    finally:
        w.stop()
        deadline = time.monotonic() + 10
        while w.left() and time.monotonic() < deadline:
            time.sleep(0.1)
        left = w.left()
        shutil.rmtree(w.run_dir, ignore_errors=True)
    assert not left, left


def inbox(org: Org, name: str) -> list[dict[str, object]]:
    """Every message ``name`` has not read yet (synced first), oldest first, with bodies."""
    org.ok(name, "sync")
    out = json.loads(org.ok(name, "read", "--json").out)
    return sorted(out["messages"], key=lambda m: str(m["date"]))


def reading_stdin(warm: Warm, pid: int) -> int:
    """The server's child once it blocks reading its stdin (a pipe): the command is running."""
    def child() -> Optional[int]:
        for c in warm.children(pid):
            try:
                if "pipe" in Path(f"/proc/{c}/wchan").read_text():
                    return c
            except OSError:
                pass
        return None

    return wait_for(child)


def test_the_launcher_imports_nothing_heavy() -> None:
    code = ("import sys, gitmail.cli.launch as l; l.paths(create=False); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('click', 'pydantic', 'pygit2', 'cryptography', 'pyrage', 'typing', 'subprocess') "
            "or m in ('gitmail.cli.main', 'gitmail.api', 'gitmail.core')))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert p.stdout.strip() == "[]", p.stdout


def test_a_warm_send_delivers_one_signed_message_like_an_in_process_one(org: Org, warm: Warm) -> None:
    max_ = org.clones["max"]
    pid = warm.up()
    # Through the server: the body on stdin, held open until the command is seen in a child of it.
    p = subprocess.Popen([GITMAIL, "send", "alex", "-", "--subject", "warm", "--repo", str(max_)], env=warm.env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    child = wait_for(lambda: warm.children(pid))
    out, err = p.communicate("through the warm server\n", timeout=60)
    assert p.returncode == 0 and out.startswith("Sent to alex (encrypted)") and err == "", (out, err)
    assert child and warm.server_pid() == pid
    # The same send in-process.
    cold = warm.cli("send", "alex", "-", "--subject", "cold", "--repo", str(max_), input="in process\n",
                    env={**warm.env, "GITMAIL_WARM": "off"})
    assert cold.returncode == 0 and cold.stdout.startswith("Sent to alex (encrypted)"), cold
    msgs = {str(m["subject"]): m for m in inbox(org, "alex")}
    assert sorted(msgs) == ["cold", "warm"]
    a, b = msgs["warm"], msgs["cold"]
    assert a["body"] == "through the warm server\n" and b["body"] == "in process\n"
    for k in ("from", "to", "encrypted", "type", "priority"):
        assert a[k] == b[k], k
    tip = git("rev-parse", "gitmail/mail/alex/max", cwd=org.url).stdout.strip()
    for commit in (tip, tip + "~1"):
        v = git("verify-commit", commit, cwd=org.clones["alex"], check=False)
        assert v.returncode == 0, v.stderr


def test_bad_input_reads_the_same_warm_and_in_process(org: Org, warm: Warm) -> None:
    warm.up()
    max_ = str(org.clones["max"])
    for args in (["send", "nobody", "hi", "--repo", max_], ["frobnicate"], ["read", "ffff", "--repo", max_],
                 ["send", "alex", "x", "--payload", "[1]", "--repo", max_], ["list", "--repo", "/nonexistent"],
                 ["send", "--help"]):
        w = warm.cli(*args)
        c = warm.cli(*args, env={**warm.env, "GITMAIL_WARM": "off"})
        assert (w.returncode, w.stdout, w.stderr) == (c.returncode, c.stdout, c.stderr), args
        assert w.returncode != 0 or args[-1] == "--help"
    assert inbox(org, "alex") == []


def test_each_client_has_its_own_directory_environment_and_identity(org: Org, warm: Warm, tmp_path: Path) -> None:
    warm.up()
    max_, alex = org.clones["max"], org.clones["alex"]
    a = warm.cli("whoami", "--json", cwd=max_)
    # A large environment (far more than one message's worth) arrives whole, in order.
    b = warm.cli("whoami", "--json", cwd=tmp_path, env={**{f"BIG{i}": "x" * 100_000 for i in range(3)}, **warm.env, "GITMAIL_REPO": str(alex)})
    assert json.loads(a.stdout)["name"] == "max" and json.loads(b.stdout)["name"] == "alex", (a, b)
    assert warm.cli("send", "alex", "from max's directory", cwd=max_).returncode == 0
    assert warm.cli("send", "max", "from alex by GITMAIL_REPO", cwd=tmp_path,
                    env={**warm.env, "GITMAIL_REPO": str(alex)}).returncode == 0
    assert [(m["from"], m["body"]) for m in inbox(org, "alex")] == [("max", "from max's directory")]
    assert [(m["from"], m["body"]) for m in inbox(org, "max")] == [("alex", "from alex by GITMAIL_REPO")]
    # The time zone (TZ, then time.tzset()) is the client's, and nothing of an earlier
    # command (--utc sets a module-level flag) carries over to the next.
    assert warm.cli("list", "--all", "--utc", "--repo", str(max_)).returncode == 0
    for tz in ("UTC", "Asia/Kolkata"):
        env = {**warm.env, "TZ": tz}
        w = warm.cli("list", "--all", "--repo", str(max_), env=env)
        c = warm.cli("list", "--all", "--repo", str(max_), env={**env, "GITMAIL_WARM": "off"})
        assert w.stdout == c.stdout and w.returncode == 0, (w, c)
    # The umask: files the command writes (an export) get the client's.
    for mask in (0o022, 0o077):
        out = tmp_path / f"mbox-{mask:o}"
        r = subprocess.run(["sh", "-c", f'umask {mask:o} && exec "$0" "$@"', GITMAIL, "export", "--mbox", str(out),
                            "--repo", str(max_)], env=warm.env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert out.stat().st_mode & 0o777 == 0o666 & ~mask


def test_no_ack_runs_the_command_here_once(org: Org, warm: Warm) -> None:
    """A server that takes the connection and dies (closes it) before any ack: the command runs
    in-process, exactly once, with nothing said about it."""
    sock_path, _ = warm.paths()
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(8)
    seen = []

    def take() -> None:
        conn, _ = srv.accept()
        conn.sendall(b"H\n")  # a server's greeting, then it dies with the request read
        seen.append(conn.recv(len(launch.MAGIC)))
        conn.close()

    t = threading.Thread(target=take)
    t.start()
    try:
        r = warm.cli("send", "alex", "no ack", "--repo", str(org.clones["max"]))
    finally:
        t.join(10)
        srv.close()
        os.unlink(sock_path)
    assert seen == [launch.MAGIC]
    assert r.returncode == 0 and r.stdout.startswith("Sent to alex") and r.stderr == "", r
    assert [m["body"] for m in inbox(org, "alex")] == ["no ack"]


def test_a_stopped_server_is_passed_by_and_never_runs_the_command_later(org: Org, warm: Warm) -> None:
    pid = warm.up()
    os.kill(pid, signal.SIGSTOP)
    try:
        t = time.monotonic()
        r = warm.cli("send", "alex", "server stopped", "--repo", str(org.clones["max"]))
        assert r.returncode == 0 and r.stderr == "", r
        assert launch.ACK_TIMEOUT <= time.monotonic() - t
    finally:
        os.kill(pid, signal.SIGCONT)
    # The server now takes the queued connection: its child gets no go and runs nothing.
    time.sleep(1)
    wait_for(lambda: not warm.children(pid) or None, timeout=20)
    assert [m["body"] for m in inbox(org, "alex")] == ["server stopped"]


def test_a_child_killed_after_the_ack_is_never_run_again(org: Org, warm: Warm) -> None:
    pid = warm.up()
    p = subprocess.Popen([GITMAIL, "send", "alex", "-", "--repo", str(org.clones["max"])], env=warm.env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    child = reading_stdin(warm, pid)  # acked, told to go, and running the command
    os.kill(child, signal.SIGKILL)
    time.sleep(0.5)
    out, err = p.communicate("killed before it read its message\n", timeout=60)
    assert p.returncode == 128 + signal.SIGKILL, (p.returncode, out, err)
    assert out == "" and err == f"gitmail: the command was ended by signal {int(signal.SIGKILL)}\n", err
    assert inbox(org, "alex") == []
    assert not list(org.clones["max"].joinpath(".git", "gitmail").glob("outbox*/**/*.json"))


def test_signals_reach_the_command(org: Org, warm: Warm) -> None:
    """Ctrl-C (SIGINT) to the client ends the command in the child as it would in-process."""
    pid = warm.up()
    p = subprocess.Popen([GITMAIL, "send", "alex", "-", "--repo", str(org.clones["max"])], env=warm.env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reading_stdin(warm, pid)
    p.send_signal(signal.SIGINT)
    p.wait(timeout=60)  # stdin open until the client ends (see the test below: communicate() closes it)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130 and err == "gitmail: interrupted\n", (p.returncode, err)
    assert inbox(org, "alex") == []


def _on_tty(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run ``argv`` as the session leader of a new pseudo-terminal (its controlling terminal, and
    it in the foreground), as a shell runs a command."""
    pid, master = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode("utf-8", "replace").replace("\r\n", "\n")


def test_the_editor_on_a_terminal_runs_in_the_clients_foreground(org: Org, warm: Warm, tmp_path: Path) -> None:
    """send without a message on a terminal: the warm child must not open the editor (it is not
    in the terminal's foreground); the client runs the command itself, once."""
    pid = warm.up()
    seen = tmp_path / "seen"
    ed = tmp_path / "ed"
    # The editor records whether it is in its terminal's foreground process group
    # (/proc stat: field 5 the group, field 8 the terminal's foreground group; $4 and $7 here).
    ed.write_text("#!/bin/sh\nset -- \"$1\" $(sed 's/.*) //' /proc/$$/stat)\n"
                  f"if [ \"$4\" = \"$7\" ]; then echo fg >> {seen}; else echo bg >> {seen}; fi\n"
                  "printf 'Lunch?\\n\\nAt noon.\\n' > \"$1\"\n")
    ed.chmod(0o755)
    env = {**warm.env, "GIT_EDITOR": str(ed)}
    code, out = _on_tty([GITMAIL, "send", "alex", "--repo", str(org.clones["max"])], env)
    assert code == 0 and "Sent to alex" in out, out
    assert seen.read_text() == "fg\n"
    assert [(m["subject"], m["body"]) for m in inbox(org, "alex")] == [("Lunch?", "At noon.\n")]
    assert warm.server_pid() == pid  # the server was there and asked, and stays


def test_a_changed_gitmail_retires_the_server(org: Org, warm: Warm) -> None:
    pid = warm.up()
    f = Path(launch.__file__).with_name("terminal.py")
    st = f.stat()
    try:
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
        r = warm.cli("send", "alex", "after an upgrade", "--repo", str(org.clones["max"]))
        assert r.returncode == 0 and r.stderr == "", r
        wait_for(lambda: not Path(f"/proc/{pid}").exists() or None, timeout=20)
    finally:
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert [m["body"] for m in inbox(org, "alex")] == ["after an upgrade"]
    assert warm.server_pid() != pid


def test_idle_timeout_off_switches_and_an_unsafe_directory(org: Org, warm: Warm, tmp_path: Path) -> None:
    max_ = str(org.clones["max"])
    # GITMAIL_WARM=off: no server is started.
    assert warm.cli("members", "--repo", max_, env={**warm.env, "GITMAIL_WARM": "off"}).returncode == 0
    time.sleep(1)
    assert warm.server_pid() is None
    # git config gitmail.warm false (read before a server would be started): none either.
    git("config", "gitmail.warm", "false", cwd=max_)
    assert warm.cli("members", "--repo", max_).returncode == 0
    time.sleep(1)
    assert warm.server_pid() is None
    git("config", "--unset", "gitmail.warm", cwd=max_)
    # GITMAIL_WARM_IDLE: a server exits when idle. Started as the console script starts one,
    # but not behind an in-process command: on a loaded machine that command can outlast the
    # server's start and its idle seconds, and the server would be gone before it is looked for.
    idle = {**warm.env, "GITMAIL_WARM_IDLE": "2"}
    subprocess.run([SCRIPT_PY, "-c", "from gitmail.cli import launch; launch.start_server(*launch.paths())"],
                   env=idle, check=True, timeout=60)
    pid = wait_for(warm.server_pid, timeout=60)
    wait_for(lambda: not Path(f"/proc/{pid}").exists() or None, timeout=60)
    assert warm.server_pid() is None and not list(warm.dir.glob("*.sock"))
    # A socket directory open to others (or not ours) is never used: in-process, no server.
    other = tmp_path / "other-run"
    other.mkdir(mode=0o700)
    d = other / f"gitmail-cli-{os.getuid()}"
    d.mkdir()
    d.chmod(0o777)
    env = {**warm.env, "XDG_RUNTIME_DIR": str(other)}
    r = warm.cli("send", "alex", "unsafe dir", "--repo", max_, env=env)
    assert r.returncode == 0 and r.stderr == "", r
    time.sleep(1)
    assert list(d.iterdir()) == []
    assert launch.private_dir(str(other)) is None
    d.chmod(0o700)
    assert launch.private_dir(str(other)) == str(d)
    # The server itself refuses a socket outside a private directory.
    d.chmod(0o777)
    from gitmail.cli import warm as warm_server

    assert warm_server.serve(str(d / "x.sock")) == 1 and list(d.iterdir()) == []
    assert [m["body"] for m in inbox(org, "alex")] == ["unsafe dir"]


def test_warm_off_in_the_clones_config_runs_the_command_in_process(org: Org, warm: Warm) -> None:
    """git config gitmail.warm false while a server runs: its child finds it in the config the
    command opens and stops before the command; the client runs it itself, once."""
    pid = warm.up()
    max_ = org.clones["max"]
    git("config", "gitmail.warm", "false", cwd=max_)
    p = subprocess.Popen([GITMAIL, "send", "alex", "-", "--repo", str(max_)], env=warm.env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: "pipe" in Path(f"/proc/{p.pid}/wchan").read_text() or None)  # the client reads stdin
    assert not warm.children(pid)
    out, err = p.communicate("config says no\n", timeout=60)
    assert p.returncode == 0 and out.startswith("Sent to alex") and err == "", (out, err)
    assert [m["body"] for m in inbox(org, "alex")] == ["config says no\n"]


def test_the_in_process_commands_never_go_to_the_server(warm: Warm, tmp_path: Path) -> None:
    pid = warm.up()
    r = warm.cli("init", "--name", "solo", "--org", str(tmp_path / "o.git"), "--repo", str(tmp_path / "c"))
    assert r.returncode == 0, r
    r = warm.cli("--version")
    assert r.returncode == 0 and "gitmail" in r.stdout
    assert warm.server_pid() == pid and not warm.children(pid)


# -- workers: a child that served a send serves its session's next one -------------------


def worker_of(warm: Warm, server: int, timeout: float = 30.0) -> int:
    """The pid of the server's child that serves as a worker (holds a ``.wlock``): waited for."""
    def find() -> Optional[int]:
        for c in warm.children(server):
            try:
                fds = list(Path(f"/proc/{c}/fd").iterdir())
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(fd).endswith(".wlock"):
                        return c
                except OSError:
                    pass
        return None

    return wait_for(find, timeout=timeout)


def test_a_session_sends_again_through_its_worker_and_lets_go_of_the_clients_streams(org: Org, warm: Warm) -> None:
    pid = warm.up()
    max_ = str(org.clones["max"])
    r = warm.cli("send", "alex", "first", "--repo", max_)
    assert r.returncode == 0 and r.stdout.startswith("Sent to alex") and r.stderr == "", r
    w = worker_of(warm, pid)
    # The worker holds none of the client's pipes (capture_output above saw their end):
    # its standard streams are /dev/null between commands.
    assert [os.readlink(f"/proc/{w}/fd/{fd}") for fd in (0, 1, 2)] == ["/dev/null"] * 3
    assert os.readlink(f"/proc/{w}/cwd") == "/"  # nor the client's directory
    for body in ("second", "third"):
        r = warm.cli("send", "alex", body, "--repo", max_)
        assert r.returncode == 0 and r.stdout.startswith("Sent to alex (encrypted)") and r.stderr == "", r
        assert worker_of(warm, pid) == w and warm.children(pid) == [w]  # no new fork: the same process ran it
    # A reply (also reusable) and the body on stdin, through the same worker.
    r = warm.cli("send", "alex", "-", "--repo", max_, input="from stdin\n")
    assert r.returncode == 0 and warm.children(pid) == [w], r
    assert [m["body"] for m in inbox(org, "alex")] == ["first", "second", "third", "from stdin\n"]
    tip = git("rev-parse", "gitmail/mail/alex/max", cwd=org.url).stdout.strip()
    assert git("verify-commit", tip, cwd=org.clones["alex"], check=False).returncode == 0


def test_another_session_another_command_or_a_failure_is_not_served_by_a_worker(org: Org, warm: Warm) -> None:
    pid = warm.up()
    max_ = str(org.clones["max"])
    assert warm.cli("send", "alex", "one", "--repo", max_).returncode == 0
    w = worker_of(warm, pid)
    # Another session (one variable more in the environment): its own fresh child, then worker.
    other = {**warm.env, "SOMETHING_ELSE": "1"}
    assert warm.cli("send", "alex", "two", "--repo", max_, env=other).returncode == 0
    wait_for(lambda: len(warm.children(pid)) == 2 or None)
    assert w in warm.children(pid)
    # A command that is not reusable goes to the server and its child exits.
    assert warm.cli("list", "--repo", max_).returncode == 0
    wait_for(lambda: len(warm.children(pid)) == 2 or None)
    assert w in warm.children(pid)
    # A send that fails (an unknown recipient) ends the worker that ran it, with the same
    # line and status as in-process.
    bad = warm.cli("send", "nobody", "x", "--repo", max_)
    cold = warm.cli("send", "nobody", "x", "--repo", max_, env={**warm.env, "GITMAIL_WARM": "off"})
    assert bad.returncode != 0 and (bad.returncode, bad.stdout, bad.stderr) == (cold.returncode, cold.stdout, cold.stderr)
    wait_for(lambda: w not in warm.children(pid) or None)
    assert warm.cli("send", "alex", "three", "--repo", max_).returncode == 0
    assert worker_of(warm, pid) != w
    assert [m["body"] for m in inbox(org, "alex")] == ["one", "two", "three"]


def test_a_sessions_syncs_run_in_its_worker_unless_one_grew_too_big(org: Org, warm: Warm) -> None:
    """``sync`` is reusable: the worker that ran one runs the session's next (it keeps the
    verified directory it loaded), prints what a fresh child prints, and is let go when a
    command took its peak memory over ``GITMAIL_WARM_PEAK_MB``."""
    pid = warm.up()
    alex = str(org.clones["alex"])
    assert warm.cli("sync", "--repo", alex).returncode == 0
    w = worker_of(warm, pid)
    org.ok("max", "send", "alex", "one for the worker", "--plain")
    r = warm.cli("sync", "--repo", alex)
    cold = warm.cli("sync", "--repo", alex, env={**warm.env, "GITMAIL_WARM": "off"})
    assert r.returncode == 0 and r.stdout.startswith("1 new message\n") and "one for the worker" in r.stdout, r
    assert cold.returncode == 0 and cold.stdout == "0 new messages\n", cold
    assert worker_of(warm, pid) == w and warm.children(pid) == [w]  # the same process ran it
    # Another session whose bound is below what any process holds: its sync runs in a fresh
    # child, which then exits instead of becoming that session's worker (the first one stays).
    small = {**warm.env, "GITMAIL_WARM_PEAK_MB": "1"}
    org.ok("max", "send", "alex", "one more", "--plain")
    r = warm.cli("sync", "--repo", alex, env=small)
    assert r.returncode == 0 and r.stdout.startswith("1 new message\n"), r
    assert wait_for(lambda: warm.children(pid) == [w] or None)
    assert not [c for c in warm.children(pid) if c != w]


def test_a_worker_declines_a_request_of_another_session(org: Org, warm: Warm) -> None:
    """A request whose environment differs from the worker's session, sent to the worker's
    socket itself: no ack, nothing run; the worker exits and the client may ask the server."""
    pid = warm.up()
    max_ = str(org.clones["max"])
    assert warm.cli("send", "alex", "mine", "--repo", max_).returncode == 0
    w = worker_of(warm, pid)
    sock = wait_for(lambda: next(iter(warm.dir.glob("w*-0.wsock")), None))
    code = ("import sys; from gitmail.cli import launch; "
            "data = launch.pack(launch.request(['send', 'alex', 'not yours', '--repo', sys.argv[2]])); "
            "print(launch._ask(sys.argv[1], data))")
    r = subprocess.run([SCRIPT_PY, "-c", code, str(sock), max_], env={**warm.env, "INTRUDER": "1"},
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "('none', 0)", r
    wait_for(lambda: not Path(f"/proc/{w}").exists() or Path(f"/proc/{w}/stat").read_text().split()[2] == "Z" or None)
    assert [m["body"] for m in inbox(org, "alex")] == ["mine"]


def test_a_worker_reads_the_clones_config_afresh(org: Org, warm: Warm, tmp_path: Path) -> None:
    """The org moves (remote URL changed) between two sends of one session: the worker's next
    send goes to the new org; then gitmail.warm=false makes the client run the next itself."""
    pid = warm.up()
    max_ = org.clones["max"]
    assert warm.cli("send", "alex", "to the old org", "--repo", str(max_)).returncode == 0
    w = worker_of(warm, pid)
    moved = tmp_path / "moved.git"
    git("clone", "--quiet", "--mirror", str(org.url), str(moved))
    git("remote", "set-url", "origin", str(moved), cwd=max_)
    r = warm.cli("send", "alex", "to the new org", "--repo", str(max_))
    assert r.returncode == 0 and warm.children(pid) == [w], r
    log = git("log", "--format=%s", "gitmail/mail/alex/max", cwd=moved).stdout
    assert git("rev-list", "--count", "gitmail/mail/alex/max", cwd=moved).stdout.strip() == "2", log
    assert git("rev-list", "--count", "gitmail/mail/alex/max", cwd=org.url).stdout.strip() == "1"
    git("config", "gitmail.warm", "false", cwd=max_)
    r = warm.cli("send", "alex", "warm off", "--repo", str(max_))
    assert r.returncode == 0 and r.stderr == "", r
    wait_for(lambda: w not in warm.children(pid) or None)  # it said O and exited
    assert git("rev-list", "--count", "gitmail/mail/alex/max", cwd=moved).stdout.strip() == "3"


def busy_worker(org: Org, warm: Warm, first: str) -> tuple[int, str, int, "subprocess.Popen[str]"]:
    """A worker running a send that waits for its body on stdin, after sending ``first``:
    ``(server pid, max's clone, the worker's pid, the client)``."""
    pid = warm.up()
    max_ = str(org.clones["max"])
    assert warm.cli("send", "alex", first, "--repo", max_).returncode == 0
    w = worker_of(warm, pid)
    p = subprocess.Popen([GITMAIL, "send", "alex", "-", "--repo", max_], env=warm.env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert reading_stdin(warm, pid) == w
    return pid, max_, w, p


def test_a_worker_is_interrupted_like_a_child_and_retires_with_its_server(org: Org, warm: Warm) -> None:
    pid, max_, w, p = busy_worker(org, warm, "before")
    p.send_signal(signal.SIGINT)
    # Wait for the client before reading its output: communicate() would close its stdin at
    # once, and a worker reading that end of file before the forwarded SIGINT reaches it says
    # "empty message" first (seen once in a full run on a loaded machine).
    p.wait(timeout=60)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130 and err == "gitmail: interrupted\n", (p.returncode, err)
    wait_for(lambda: w not in warm.children(pid) or None)
    # gitmail changes under a worker: it greets nobody; the client asks the server, which
    # retires too, and the command runs in the client, once.
    assert warm.cli("send", "alex", "again", "--repo", max_).returncode == 0
    w = worker_of(warm, pid)
    f = Path(launch.__file__).with_name("terminal.py")
    st = f.stat()
    try:
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
        r = warm.cli("send", "alex", "after an upgrade", "--repo", max_)
        assert r.returncode == 0 and r.stderr == "", r
        wait_for(lambda: not Path(f"/proc/{pid}").exists() or None, timeout=20)
        wait_for(lambda: not Path(f"/proc/{w}").exists() or None, timeout=20)
    finally:
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert [m["body"] for m in inbox(org, "alex")] == ["before", "again", "after an upgrade"]


def test_a_busy_worker_is_passed_by_and_a_second_one_serves_the_session(org: Org, warm: Warm) -> None:
    """While a worker runs a command (its socket removed) the session's next command goes to
    the server; that child then serves the session as its second worker (slot 1)."""
    pid, max_, w, p = busy_worker(org, warm, "one")
    assert not list(warm.dir.glob("w*-0.wsock"))  # busy: no socket
    r = warm.cli("send", "alex", "two", "--repo", max_)
    assert r.returncode == 0, r
    out, err = p.communicate("three\n", timeout=60)
    assert p.returncode == 0 and err == "", err
    wait_for(lambda: len(list(warm.dir.glob("w*.wsock"))) == 2 or None)
    assert sorted(s.name.rsplit("-", 1)[1] for s in warm.dir.glob("w*.wsock")) == ["0.wsock", "1.wsock"]
    assert len(warm.children(pid)) == 2 and w in warm.children(pid)
    assert sorted(str(m["body"]) for m in inbox(org, "alex")) == ["one", "three\n", "two"]


def test_a_ctrl_c_reaching_an_idle_worker_ends_it_and_nothing_else(org: Org, warm: Warm) -> None:
    """The worker is a fork of the server: whatever ends it must never run the server's own
    clean-up in it (that would remove the server's socket)."""
    pid = warm.up()
    sock, _ = warm.paths()
    max_ = str(org.clones["max"])
    assert warm.cli("send", "alex", "one", "--repo", max_).returncode == 0
    w = worker_of(warm, pid)
    os.kill(w, signal.SIGINT)
    wait_for(lambda: w not in warm.children(pid) or None)
    assert Path(sock).exists() and warm.server_pid() == pid
    assert warm.cli("send", "alex", "two", "--repo", max_).returncode == 0
    assert worker_of(warm, pid) != w and warm.server_pid() == pid
    assert [m["body"] for m in inbox(org, "alex")] == ["one", "two"]
