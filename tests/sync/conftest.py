"""Fixtures for the sync tests: a real ``git daemon`` and member clones talking to it."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import Org
from tests.sync.daemon import GitDaemon


class NetOrg(Org):
    """An :class:`Org` whose bare repo is served by ``git daemon`` (``git://127.0.0.1:PORT/org.git``)."""

    def __init__(self, root: Path, daemon: GitDaemon, bare: Path) -> None:
        super().__init__(root)
        self.daemon = daemon
        self.bare = bare
        self.url = daemon.url(bare.name)


def _net_org(tmp_path: Path, guard: bool) -> Iterator[NetOrg]:
    srv = tmp_path / "srv"
    srv.mkdir()
    d = GitDaemon(srv)
    bare = d.create("org.git", guard=guard)
    d.start()
    try:
        o = NetOrg(tmp_path, d, bare)
        o.join("max")
        o.join("alex")
        o.ok("max", "sync")
        yield o
    finally:
        d.stop()


@pytest.fixture
def net(tmp_path: Path) -> Iterator[NetOrg]:
    """max (admin) and alex, each in a clone of ``git://.../org.git``; the guard is installed."""
    yield from _net_org(tmp_path, guard=True)


@pytest.fixture
def unguarded(tmp_path: Path) -> Iterator[NetOrg]:
    """Like :func:`net`, on a server without the guard (a host that offers no server hooks)."""
    yield from _net_org(tmp_path, guard=False)
