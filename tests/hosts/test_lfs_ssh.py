"""#13: a member on an SSH remote (sshd on a high port, a git-shell account with a
``git-lfs-authenticate`` command) and a member on an HTTPS-style remote with basic auth
exchange LFS attachments through one authenticating LFS server; the stock client fetches
the same objects over ssh; no password or token appears in any output."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.attachments.conftest import needs_git_lfs, set_policy
from tests.conftest import Org, Result, git
from tests.hosts.conftest import PASSWORD, TOKEN, AuthHost, SSHHost


def _clean(*outputs: object) -> None:
    for o in outputs:
        text = f"{o.out}\n{o.err}" if isinstance(o, Result) else str(o)
        assert PASSWORD not in text and TOKEN not in text


@needs_git_lfs
def test_ssh_and_https_members_exchange_lfs_attachments(
    auth_host: AuthHost, ssh_host: SSHHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GIT_SSH_COMMAND", ssh_host.ssh_command)
    o = Org(tmp_path)
    o.url = auth_host.url  # max: over HTTP with basic auth (credential.helper=store)
    o.join("max")
    o.url = ssh_host.url(auth_host.root / "org.git")  # alex: over ssh, the same repository
    o.join("alex")
    o.ok("max", "sync")
    set_policy(o, attachment_storage="lfs", encryption="off")
    outputs: list[object] = []

    f1 = tmp_path / "from-https.bin"
    f1.write_bytes(os.urandom(60_000))
    outputs.append(o.ok("max", "send", "alex", "from the https member", "--attach", str(f1)))
    outputs.append(o.ok("alex", "sync"))
    outputs.append(o.ok("alex", "read", "--save-dir", str(tmp_path / "alex-inbox")))
    assert (tmp_path / "alex-inbox" / "from-https.bin").read_bytes() == f1.read_bytes()
    calls = ssh_host.log.read_text()
    assert f"git-lfs-authenticate {str(auth_host.root / 'org.git').lstrip('/')} download" in calls

    f2 = tmp_path / "from-ssh.bin"
    f2.write_bytes(os.urandom(70_000))
    oid2 = hashlib.sha256(f2.read_bytes()).hexdigest()
    outputs.append(o.ok("alex", "send", "max", "from the ssh member", "--attach", str(f2)))
    assert " upload" in ssh_host.log.read_text()
    assert auth_host.object_path(oid2).read_bytes() == f2.read_bytes()
    assert any(s.authorized and s.path.endswith("/objects/batch") for s in auth_host.seen)
    outputs.append(o.ok("max", "sync"))
    outputs.append(o.ok("max", "read", "--save-dir", str(tmp_path / "max-inbox")))
    assert (tmp_path / "max-inbox" / "from-ssh.bin").read_bytes() == f2.read_bytes()

    # The stock client over ssh (git-lfs-authenticate) fetches the same object.
    c = tmp_path / "plain"
    p = git("clone", "-q", "--no-checkout", ssh_host.url(auth_host.root / "org.git"), str(c), check=False)
    assert p.returncode == 0, p.stderr
    git("lfs", "install", "--local", cwd=c)
    p = git("checkout", "-q", "-b", "look", "origin/gitmail/mail/max/alex", cwd=c, check=False)
    assert p.returncode == 0, p.stderr
    p = git("lfs", "pull", cwd=c, check=False)
    assert p.returncode == 0, p.stderr
    assert (c / "attachments" / "1-from-ssh.bin").read_bytes() == f2.read_bytes()
    _clean(*outputs, p.stdout, p.stderr, capfd.readouterr())
