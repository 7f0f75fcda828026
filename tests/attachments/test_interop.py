"""Interoperation with the stock git-lfs client, both ways, over HTTP and the local layout."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tests.attachments.conftest import LFSServer, craft, needs_git_lfs, set_policy
from tests.conftest import Org, git

pytestmark = needs_git_lfs


def _plain_repo(path: Path, lfs_url: str | None, remote: str) -> Path:
    git("init", "-q", "-b", "main", str(path))
    git("lfs", "install", "--local", cwd=path)
    git("config", "user.name", "Stock", cwd=path)
    git("config", "user.email", "stock@example.com", cwd=path)
    git("remote", "add", "origin", remote, cwd=path)
    if lfs_url:
        git("config", "lfs.url", lfs_url, cwd=path)
    return path


def _stock_upload(tmp_path: Path, lfs_url: str | None, remote: str, content: bytes) -> str:
    """Commit ``content`` as an LFS file with the stock client and ``git lfs push`` it; return its oid."""
    w = _plain_repo(tmp_path / "stock", lfs_url, remote)
    git("lfs", "track", "*.bin", cwd=w)
    (w / "payload.bin").write_bytes(content)
    git("add", ".gitattributes", "payload.bin", cwd=w)
    git("commit", "-q", "-m", "payload", cwd=w)
    p = git("lfs", "push", "origin", "main", cwd=w, check=False)
    assert p.returncode == 0, p.stderr
    return hashlib.sha256(content).hexdigest()


def test_stock_git_lfs_fetches_what_gitmail_uploaded(lfs_org: Org, lfs_server: LFSServer, tmp_path: Path) -> None:
    f = tmp_path / "model.bin"
    f.write_bytes(os.urandom(150_000))
    lfs_org.ok("max", "send", "alex", "weights", "--attach", str(f))
    # A plain clone with the stock client checks the mailbox branch out: the filter downloads the content.
    c = tmp_path / "plain"
    git("clone", "-q", "--no-checkout", lfs_org.url, str(c))
    git("lfs", "install", "--local", cwd=c)
    git("config", "lfs.url", lfs_server.url, cwd=c)
    p = git("checkout", "-q", "-b", "look", "origin/gitmail/mail/alex/max", cwd=c, check=False)
    assert p.returncode == 0, p.stderr
    p = git("lfs", "pull", cwd=c, check=False)
    assert p.returncode == 0, p.stderr
    assert (c / "attachments" / "1-model.bin").read_bytes() == f.read_bytes()
    ls = git("lfs", "ls-files", "--long", cwd=c).stdout
    assert hashlib.sha256(f.read_bytes()).hexdigest() in ls


def test_gitmail_fetches_what_stock_git_lfs_pushed_over_http(lfs_org: Org, lfs_server: LFSServer, tmp_path: Path) -> None:
    content = os.urandom(120_000)
    oid = _stock_upload(tmp_path, lfs_server.url, lfs_org.url, content)
    assert lfs_server.object_path(oid).exists()
    ptr = f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(content)}\n".encode()
    mid = craft(lfs_org, "max", "alex", [{"name": "payload.bin", "size": len(content), "oid": oid,
                                         "storage": "lfs", "path": "attachments/1-payload.bin"}],
                {"attachments/1-payload.bin": ptr})
    lfs_org.ok("alex", "sync")
    inbox = tmp_path / "inbox"
    lfs_org.ok("alex", "attachments", mid[:10], "--save-dir", str(inbox))
    assert (inbox / "payload.bin").read_bytes() == content


def test_local_layout_shared_with_stock_git_lfs(org: Org, tmp_path: Path) -> None:
    set_policy(org, attachment_storage="lfs")
    content = os.urandom(90_000)
    # The stock client pushes to the bare org repo as a local remote (no lfs.url): <org>/lfs/objects/...
    oid = _stock_upload(tmp_path, None, org.url, content)
    assert (Path(org.url) / "lfs" / "objects" / oid[:2] / oid[2:4] / oid).exists()
    src = tmp_path / "same.bin"
    src.write_bytes(content)
    org.ok("max", "send", "alex", "same content", "--attach", str(src))  # already there: not stored twice
    org.ok("alex", "sync")
    inbox = tmp_path / "inbox"
    org.ok("alex", "read", "--save-dir", str(inbox))
    assert (inbox / "same.bin").read_bytes() == content
    # ... and the stock client reads what gitmail stored locally.
    mine = tmp_path / "mine.bin"
    mine.write_bytes(os.urandom(50_000))
    org.ok("max", "send", "alex", "other", "--attach", str(mine))
    c = tmp_path / "plain"
    git("clone", "-q", "--no-checkout", org.url, str(c))
    git("lfs", "install", "--local", cwd=c)
    p = git("checkout", "-q", "-b", "look", "origin/gitmail/mail/alex/max", cwd=c, check=False)
    assert p.returncode == 0, p.stderr
    assert (c / "attachments" / "1-mine.bin").read_bytes() == mine.read_bytes()
