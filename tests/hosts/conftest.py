"""Fixtures for hosts as teams run them, all on 127.0.0.1 and stopped after each test:

* :func:`auth_host`: an HTTP server that asks for basic auth in front of both
  ``git http-backend`` (the org repo) and an LFS server (dulwich's LFS request
  handler, under ``/org.git/info/lfs`` as forges put it); the member's
  credentials come from ``credential.helper=store``, as a user's would;
* :func:`attacker_lfs`: a plain LFS server that records every request it gets;
* :func:`hostile_lfs`: an LFS server that misbehaves on purpose (trickles bytes,
  sends a huge batch reply, or the wrong bytes).

Nothing is mocked: real git, real HTTP, real git-lfs.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote, urlsplit

import pytest

from tests.attachments.conftest import lfs_server  # noqa: F401  (the good LFS server, as a fixture here too)
from tests.conftest import Org, git

USER = "alice-http"
PASSWORD = "pw-Zq8s3cretXK"  # asserted absent from every output
TOKEN = "tok-Vb71remoteauth"  # what the ssh fixture's git-lfs-authenticate hands out (also never shown)


def _lfs_handler_base() -> Any:
    from dulwich.lfs_server import LFSRequestHandler

    return LFSRequestHandler


def _lfs_server_base() -> Any:
    from dulwich.lfs_server import LFSServer

    return LFSServer


@dataclass
class Seen:
    """One request a fixture server got: method, path, and whether it carried valid credentials."""

    method: str
    path: str
    authorized: bool


def _serve(server: Any) -> threading.Thread:
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    return t


def _stop(server: Any, t: threading.Thread) -> None:
    server.shutdown()
    server.server_close()
    t.join(5)


# -- an LFS server that records what it is asked ------------------------------------------


@dataclass
class RecordingLFS:
    url: str
    store: Path
    seen: list[Seen]


@pytest.fixture
def attacker_lfs(tmp_path: Path) -> Iterator[RecordingLFS]:
    """dulwich's LFS server (a working one: it would accept uploads) recording every request."""
    from dulwich.lfs import LFSStore

    base = _lfs_handler_base()

    class Handler(base):  # type: ignore[misc, valid-type]
        def _note(self) -> None:
            self.server.seen.append(Seen(self.command, self.path, False))

        def do_GET(self) -> None:
            self._note()
            super().do_GET()

        def do_POST(self) -> None:
            self._note()
            super().do_POST()

        def do_PUT(self) -> None:
            self._note()
            super().do_PUT()

    store = tmp_path / "attacker-lfs"
    server = _lfs_server_base()(("127.0.0.1", 0), LFSStore.create(str(store)))
    server.RequestHandlerClass = Handler
    server.seen = []
    t = _serve(server)
    try:
        yield RecordingLFS(f"http://127.0.0.1:{server.server_address[1]}", store, server.seen)
    finally:
        _stop(server, t)


# -- git http-backend and LFS behind basic auth --------------------------------------------


@dataclass
class AuthHost:
    """The running server: ``url`` of the org repo, the LFS ``store`` directory, requests ``seen``."""

    base: str
    root: Path
    store: Path
    seen: list[Seen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.base}/org.git"

    def object_path(self, oid: str) -> Path:
        return self.store / "objects" / oid[:2] / oid[2:4] / oid


def _auth_handler() -> Any:
    base = _lfs_handler_base()
    expected = {"Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(), f"RemoteAuth {TOKEN}"}
    lfs_prefix = "/org.git/info/lfs"

    class Handler(base):  # type: ignore[misc, valid-type]
        path: str
        server: Any

        def _authorized(self) -> bool:
            ok = self.headers.get("Authorization") in expected
            self.server.seen.append(Seen(self.command, self.path, ok))
            if not ok:
                body = b"authentication required\n"
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="gitmail-test"')
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True
            return ok

        def _route(self, lfs_method: Any) -> None:
            if not self._authorized():
                return
            path = urlsplit(self.path).path
            if path.startswith(lfs_prefix + "/objects"):
                self.path = self.path[len(lfs_prefix):]
                lfs_method(self)
            elif path.startswith("/objects/"):  # the hrefs of the LFS handler's batch replies
                lfs_method(self)
            else:
                self._cgi()

        def do_GET(self) -> None:
            self._route(base.do_GET)

        def do_POST(self) -> None:
            self._route(base.do_POST)

        def do_PUT(self) -> None:
            self._route(base.do_PUT)

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                parts = []
                while True:
                    n = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if n == 0:
                        self.rfile.readline()
                        break
                    parts.append(self.rfile.read(n))
                    self.rfile.readline()
                return b"".join(parts)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _cgi(self) -> None:
            """``git http-backend`` as a CGI program (git-http-backend(1))."""
            body = self._body()
            u = urlsplit(self.path)
            env = {
                "PATH": os.environ["PATH"], "HOME": str(self.server.root), "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_PROJECT_ROOT": str(self.server.root), "GIT_HTTP_EXPORT_ALL": "1",
                "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_PROTOCOL": "HTTP/1.1", "REQUEST_METHOD": self.command,
                "PATH_INFO": unquote(u.path), "QUERY_STRING": u.query, "REMOTE_USER": USER,
                "REMOTE_ADDR": "127.0.0.1", "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
            }
            for h in ("Content-Encoding", "Git-Protocol"):
                if self.headers.get(h):
                    env["HTTP_" + h.upper().replace("-", "_")] = self.headers[h]
            proc = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False)
            head, _, out = proc.stdout.partition(b"\r\n\r\n")
            status, headers = 200, []
            for line in head.decode("latin-1").split("\r\n"):
                k, _, v = line.partition(":")
                if k.lower() == "status":
                    status = int(v.strip().split()[0])
                elif k:
                    headers.append((k, v.strip()))
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def auth_host(tmp_path: Path, isolated_env: Path) -> Iterator[AuthHost]:
    """The org repo over HTTP with basic auth (git http-backend), its LFS server behind the same
    auth, and this HOME's ``credential.helper=store`` holding the password."""
    from dulwich.lfs import LFSStore

    root = tmp_path / "http-root"
    root.mkdir()
    git("init", "-q", "--bare", str(root / "org.git"))
    store = tmp_path / "http-lfs"
    server = _lfs_server_base()(("127.0.0.1", 0), LFSStore.create(str(store)))
    server.RequestHandlerClass = _auth_handler()
    server.seen = []
    server.root = root
    t = _serve(server)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    (isolated_env / ".git-credentials").write_text(f"http://{USER}:{PASSWORD}@127.0.0.1:{server.server_address[1]}\n")
    os.chmod(isolated_env / ".git-credentials", 0o600)
    git("config", "--global", "credential.helper", "store")
    try:
        yield AuthHost(base, root, store, server.seen)
    finally:
        _stop(server, t)


@pytest.fixture
def auth_org(tmp_path: Path, auth_host: AuthHost) -> Org:
    """max (admin) and alex in clones of the org repo on :func:`auth_host`; LFS storage, in clear."""
    from tests.attachments.conftest import set_policy

    o = Org(tmp_path)
    o.url = auth_host.url
    o.join("max")
    o.join("alex")
    o.ok("max", "sync")
    set_policy(o, attachment_storage="lfs")
    return o


# -- an LFS server that misbehaves ---------------------------------------------------------


@dataclass
class HostileLFS:
    url: str
    mode: dict[str, str]
    stop: threading.Event
    seen: list[Seen]


HUGE = 300 * 1024 * 1024  # bytes the huge batch reply offers (the client must stop long before)


def _hostile_handler() -> Any:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server: Any

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.server.seen.append(Seen(self.command, self.path, False))
            req = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            mode = self.server.mode["mode"]
            if mode == "huge":  # a batch reply that never ends (300 MB offered, no Content-Length)
                self.send_response(200)
                self.send_header("Content-Type", "application/vnd.git-lfs+json")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(b'{"objects": [')
                sent, chunk = 0, b" " * (256 * 1024)
                try:
                    while sent < HUGE and not self.server.stop.is_set():
                        self.wfile.write(chunk)
                        sent += len(chunk)
                except OSError:
                    pass
                self.close_connection = True
                return
            port = self.server.server_address[1]
            objs = [{"oid": o["oid"], "size": o["size"], "authenticated": True,
                     "actions": {"download": {"href": f"http://127.0.0.1:{port}/obj/{o['oid']}/{o['size']}"}}}
                    for o in req["objects"]]
            body = json.dumps({"transfer": "basic", "objects": objs}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.git-lfs+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self.server.seen.append(Seen(self.command, self.path, False))
            if self.server.mode["mode"] == "redirect":  # to where the object really is (mode["target"])
                oid = self.path.split("/")[2]
                self.send_response(302)
                self.send_header("Location", f"{self.server.mode['target']}/objects/{oid}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            size = int(self.path.rsplit("/", 1)[1])
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            mode = self.server.mode["mode"]
            if mode == "wrong":
                self.wfile.write(b"x" * size)
                return
            try:  # trickle: one byte every 0.5 s, until the client goes away
                for _ in range(size):
                    if self.server.stop.is_set():
                        break
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.5)
            except OSError:
                pass
            self.close_connection = True

    return Handler


@pytest.fixture
def hostile_lfs() -> Iterator[HostileLFS]:
    """An LFS server on 127.0.0.1 whose misbehaviour is ``mode["mode"]``: ``trickle`` (downloads
    send one byte every 0.5 s), ``huge`` (an endless batch reply), ``wrong`` (wrong bytes) or
    ``redirect`` (downloads answer 302 to ``mode["target"]``'s /objects/<oid>: not hostile)."""
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _hostile_handler())
    server.daemon_threads = True
    server.mode = {"mode": "trickle"}
    server.stop = threading.Event()
    server.seen = []
    t = _serve(server)
    try:
        yield HostileLFS(f"http://127.0.0.1:{server.server_address[1]}", server.mode, server.stop, server.seen)
    finally:
        server.stop.set()
        _stop(server, t)


# -- sshd with a git-shell style forced command and git-lfs-authenticate -------------------


@dataclass
class SSHHost:
    """sshd on 127.0.0.1:``port`` letting ``user`` in with one key, whose forced command runs
    git-upload-pack/receive-pack through ``git-shell`` and answers ``git-lfs-authenticate``
    with the :func:`auth_host` LFS URL and a ``RemoteAuth`` token; ``log``: its calls."""

    port: int
    user: str
    ssh_command: str
    log: Path

    def url(self, repo: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{repo}"


def _sshd_or_skip() -> str:
    import shutil

    sshd = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
    if sshd is None:
        pytest.skip("sshd is not installed (apt-get install openssh-server; scripts/test does it)")
    if shutil.which("ssh") is None or shutil.which("git-shell") is None and not os.path.exists(
            "/usr/bin/git-shell"):
        pytest.skip("ssh or git-shell is missing")
    if os.geteuid() != 0:
        pytest.skip("sshd needs root here (privilege separation); the tests run as a normal user")
    return sshd


@pytest.fixture
def ssh_host(tmp_path: Path, auth_host: AuthHost) -> Iterator[SSHHost]:
    import getpass
    import socket as socketmod

    sshd = _sshd_or_skip()
    d = tmp_path / "sshd"
    d.mkdir()
    os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "host_key")], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "client_key")], check=True)
    log = d / "lfs-authenticate.log"
    git_shell = "/usr/bin/git-shell" if os.path.exists("/usr/bin/git-shell") else "git-shell"
    dispatch = d / "dispatch.sh"
    dispatch.write_text(
        "#!/bin/sh\n"
        "# A git-shell account with a git-lfs-authenticate command, as a forge or gitolite runs it.\n"
        "set -f\n"
        'case "$SSH_ORIGINAL_COMMAND" in\n'
        f'  git-upload-pack\\ *|git-receive-pack\\ *) exec {git_shell} -c "$SSH_ORIGINAL_COMMAND" ;;\n'
        '  git-lfs-authenticate\\ *)\n'
        f'    echo "$SSH_ORIGINAL_COMMAND" >>"{log}"\n'
        '    set -- $SSH_ORIGINAL_COMMAND\n'
        '    case "$3" in download|upload) ;; *) echo "Invalid LFS operation: $3" >&2; exit 1 ;; esac\n'
        f'    printf \'{{"href": "{auth_host.url}/info/lfs", "header": {{"Authorization": "RemoteAuth {TOKEN}"}}, '
        '"expires_in": 3600}\\n\' ;;\n'
        '  *) echo "unsupported command: $SSH_ORIGINAL_COMMAND" >&2; exit 1 ;;\n'
        "esac\n"
    )
    dispatch.chmod(0o755)
    pub = (d / "client_key.pub").read_text().strip()
    (d / "authorized_keys").write_text(f'command="{dispatch}",no-pty,no-port-forwarding,no-agent-forwarding {pub}\n')
    s = socketmod.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    user = getpass.getuser()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nStrictModes no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n"
        f"UsePAM no\nAllowUsers {user}\nLogLevel ERROR\n"
    )
    proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(d / "sshd_config")], stdout=subprocess.DEVNULL,
                            stderr=open(d / "sshd.log", "wb"))
    try:
        for _ in range(100):
            try:
                socketmod.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.skip(f"sshd could not start here: {(d / 'sshd.log').read_text()[-300:]}")
                time.sleep(0.05)
        cmd = (f"ssh -F /dev/null -i {d / 'client_key'} -o IdentitiesOnly=yes -o BatchMode=yes "
               f"-o StrictHostKeyChecking=no -o UserKnownHostsFile={d / 'known_hosts'} -o LogLevel=ERROR")
        yield SSHHost(port, user, cmd, log)
    finally:
        proc.terminate()
        proc.wait(5)
