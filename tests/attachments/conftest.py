"""Fixtures for attachments: a real LFS server on 127.0.0.1 (dulwich.lfs_server),
org policy changes, and a helper that writes a signed message commit directly
(to play a hostile sender). Nothing is mocked: real git, real HTTP, real git-lfs.
"""

from __future__ import annotations

import shutil
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

from tests.conftest import Org, git


@dataclass
class LFSServer:
    """A running dulwich LFS server: its base URL and the store directory it serves."""

    url: str
    store: Path

    def object_path(self, oid: str) -> Path:
        return self.store / "objects" / oid[:2] / oid[2:4] / oid


@pytest.fixture
def lfs_server(tmp_path: Path) -> Iterator[LFSServer]:
    """dulwich's LFS server on a free port of 127.0.0.1, stopped after the test."""
    from dulwich.lfs_server import run_lfs_server

    store = tmp_path / "lfs-server"
    server, url = run_lfs_server(host="127.0.0.1", port=0, lfs_dir=str(store))
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield LFSServer(url, store)
    finally:
        server.shutdown()
        server.server_close()
        t.join(5)


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


def set_policy(org: Org, **changes: Any) -> None:
    """Change the org policy as max (the admin) and let every member see it."""
    from gitmail import api
    from gitmail.core import admin
    from gitmail.core import directory as dirmod

    s = api.session(org.clones["max"])

    def mutate(d: dirmod.Directory) -> dirmod.Directory:
        d.policy = d.policy.model_copy(update=changes)
        return d

    admin.change(s.repo, s.signer, s.member, mutate, "Policy for attachments")
    for who in org.clones:
        org.ok(who, "sync")


def set_lfs_url(org: Org, url: str) -> None:
    for clone in org.clones.values():
        git("config", "lfs.url", url, cwd=clone)


@pytest.fixture
def lfs_org(org: Org, lfs_server: LFSServer) -> Org:
    """The org with attachment_storage = "lfs" and every clone pointing at the LFS server."""
    set_policy(org, attachment_storage="lfs")
    set_lfs_url(org, lfs_server.url)
    return org


def craft(
    org: Org, sender: str, recipient: str, attachments: list[dict[str, Any]], tree: dict[str, bytes],
    body: str = "crafted",
) -> str:
    """Write a genuinely signed message commit with any ``attachments`` entries and
    tree content and push it with plain git (a hostile sender bypassing gitmail's
    checks and uploads); return its Message-ID."""
    from gitmail import api
    from gitmail.core import refs, sync
    from gitmail.core.model import Attachment, Message, format_date, utcnow
    from gitmail.core.store import write_message_commit

    s = api.session(org.clones[sender])
    repo, pg = s.repo, s.repo.pg
    extra = {p: (str(pg.create_blob(data)), 0o100644) for p, data in tree.items()}
    msg = Message(**{"from": sender}, to=[recipient], date=format_date(utcnow()), subject="crafted", body=body,
                  attachments=[Attachment(**a) for a in attachments])
    msg.id = msg.compute_id()
    path = refs.mail_path(recipient, sender)
    sync.fetch(repo)
    parent = repo.ref_target(refs.tracking(path, repo.remote))
    oid = write_message_commit(pg, msg, s.member, s.signer, parent, extra)
    git("push", "-q", org.url, f"{oid}:{refs.head(path)}", cwd=org.clones[sender])  # plain git: no gitmail checks
    return msg.id


def files_under(p: Path) -> list[str]:
    """Every file (recursively, hidden ones too) under ``p``, relative, sorted."""
    if not p.exists():
        return []
    return sorted(str(f.relative_to(p)) for f in p.rglob("*") if f.is_file() or f.is_symlink())


def git_lfs() -> Optional[str]:
    return shutil.which("git-lfs")


needs_git_lfs = pytest.mark.skipif(
    git_lfs() is None, reason="the stock git-lfs client is not installed (apt-get install git-lfs; scripts/test does it)"
)


@pytest.fixture(autouse=True)
def plaintext_policy(request: pytest.FixtureRequest) -> None:
    """These tests check the plaintext storage format (tree paths and names, LFS
    pointers and layout, stock git-lfs reading the content), so the org sends in
    clear. Encrypted attachments (ciphertext in LFS) are tested in tests/private."""
    if "org" in request.fixturenames:
        set_policy(request.getfixturevalue("org"), encryption="off")
