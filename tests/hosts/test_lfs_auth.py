"""#13: LFS credentials as git-lfs does them, against a real server asking for basic auth in
front of ``git http-backend`` and an LFS server; the password comes from
``credential.helper=store`` and never appears in any output."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import pytest

from tests.attachments.conftest import needs_git_lfs, set_policy
from tests.conftest import Org, Result, git
from tests.hosts.conftest import PASSWORD, USER, AuthHost


def _no_password(*outputs: object) -> None:
    for o in outputs:
        text = f"{o.out}\n{o.err}" if isinstance(o, Result) else str(o)
        assert PASSWORD not in text


@needs_git_lfs
def test_https_basic_auth_send_read_and_stock_pull(
    auth_org: Org, auth_host: AuthHost, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    set_policy(auth_org, encryption="off")  # the stock client below compares the plain content
    f = tmp_path / "report.bin"
    f.write_bytes(os.urandom(200_000))
    oid = hashlib.sha256(f.read_bytes()).hexdigest()
    sent = auth_org.ok("max", "send", "alex", "over https", "--attach", str(f))
    assert sent.out.startswith("Sent"), sent.out
    assert auth_host.object_path(oid).read_bytes() == f.read_bytes()
    batch = [s for s in auth_host.seen if s.path.endswith("/info/lfs/objects/batch")]
    assert batch and not batch[0].authorized and batch[-1].authorized  # a 401, then git's credentials
    synced = auth_org.ok("alex", "sync")
    inbox = tmp_path / "inbox"
    read = auth_org.ok("alex", "read", "--save-dir", str(inbox))
    assert (inbox / "report.bin").read_bytes() == f.read_bytes()
    # The stock client, in the same HOME with the same helper, fetches the same object.
    c = tmp_path / "plain"
    git("clone", "-q", "--no-checkout", auth_host.url, str(c))
    git("lfs", "install", "--local", cwd=c)
    p = git("checkout", "-q", "-b", "look", "origin/gitmail/mail/alex/max", cwd=c, check=False)
    assert p.returncode == 0, p.stderr
    p = git("lfs", "pull", cwd=c, check=False)
    assert p.returncode == 0, p.stderr
    assert (c / "attachments" / "1-report.bin").read_bytes() == f.read_bytes()
    assert oid in git("lfs", "ls-files", "--long", cwd=c).stdout
    _no_password(sent, synced, read, p.stdout, p.stderr, capfd.readouterr())


def test_wrong_password_is_rejected_and_never_shown(auth_org: Org, auth_host: AuthHost, tmp_path: Path,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "a.bin"
    f.write_bytes(os.urandom(5_000))
    auth_org.ok("max", "send", "alex", "first", "--attach", str(f))
    auth_org.ok("alex", "sync")
    # alex's LFS URL now carries a wrong password in it: refused, and the URL is shown redacted.
    bad = auth_host.url.replace("http://", f"http://{USER}:{PASSWORD}-old@") + "/info/lfs"
    git("config", "lfs.url", bad, cwd=auth_org.clones["alex"])
    r = auth_org.as_("alex", "read", "--save-dir", str(tmp_path / "inbox"))
    assert r.code == 11
    assert "HTTP 401" in r.err and f"{USER}:***@127.0.0.1" in r.err
    _no_password(r, capfd.readouterr())


def test_no_credentials_says_so(auth_org: Org, auth_host: AuthHost, tmp_path: Path, isolated_env: Path) -> None:
    f = tmp_path / "b.bin"
    f.write_bytes(os.urandom(5_000))
    auth_org.ok("max", "send", "alex", "first", "--attach", str(f))
    auth_org.ok("alex", "sync")
    git("config", "--global", "--unset", "credential.helper")
    r = auth_org.as_("alex", "attachments", auth_org.ok("alex", "list", "--json").out.split('"id": "')[1][:12],
                     "--save-dir", str(tmp_path / "inbox"))
    assert r.code == 11
    assert f"the LFS server {auth_host.url}/info/lfs/objects/batch asks for credentials (HTTP 401)" in r.err


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def test_lfs_down_while_git_remote_is_up_names_the_lfs_server(auth_org: Org, tmp_path: Path) -> None:
    """Clear reasons: the git remote answers, the LFS server does not: say which, with the URL."""
    f = tmp_path / "c.bin"
    f.write_bytes(os.urandom(5_000))
    auth_org.ok("max", "send", "alex", "first", "--attach", str(f))
    auth_org.ok("alex", "sync")
    port = _closed_port()
    git("config", "lfs.url", f"http://{USER}:{PASSWORD}@127.0.0.1:{port}/lfs", cwd=auth_org.clones["alex"])
    r = auth_org.as_("alex", "read", "--save-dir", str(tmp_path / "inbox"))
    assert r.code == 11
    assert "first" in r.out  # the message itself is shown
    assert f"c.bin: the org's LFS server http://127.0.0.1:{port}/lfs/objects/batch cannot be reached: " \
           "Connection refused" in r.err
    _no_password(r)


def test_refused_credentials_are_rejected_from_the_helper(auth_org: Org, auth_host: AuthHost, tmp_path: Path,
                                                         isolated_env: Path) -> None:
    """git credential reject after a second 401: the helper forgets the stale password."""
    f = tmp_path / "d.bin"
    f.write_bytes(os.urandom(5_000))
    auth_org.ok("max", "send", "alex", "first", "--attach", str(f))
    auth_org.ok("alex", "sync")
    # A second entry for the LFS host only (store matches by host and path-less URL): a stale password.
    store = isolated_env / ".git-credentials"
    port = auth_host.base.rsplit(":", 1)[1]
    lfs_host = f"localhost:{port}"
    store.write_text(store.read_text() + f"http://{USER}:stale-{PASSWORD}@{lfs_host}\n")
    git("config", "lfs.url", f"http://{lfs_host}/org.git/info/lfs", cwd=auth_org.clones["alex"])
    r = auth_org.as_("alex", "read", "--save-dir", str(tmp_path / "inbox"))
    assert r.code == 11 and "refused the credentials git's credential helper gave (HTTP 401)" in r.err
    assert f"stale-{PASSWORD}" not in store.read_text()  # rejected: gone from the helper
    assert f"{USER}:{PASSWORD}@127.0.0.1" in store.read_text()  # the good one is kept
    _no_password(r)
