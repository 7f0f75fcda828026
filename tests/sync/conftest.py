"""Fixtures for the sync tests: a real ``git daemon`` and member clones talking to it."""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Optional

import pytest

from gitmail.guard import daemon as guard_daemon

from tests.conftest import Org
from tests.sync.daemon import GitDaemon


GUARD_IDLE = "60"  # seconds; the fixtures stop the daemons, this is the safety net


@pytest.fixture(autouse=True)
def guard_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private, short ``XDG_RUNTIME_DIR`` for the warm guard's sockets; every daemon in it is stopped after the test.

    Short because unix socket paths are limited to ~107 bytes (tmp_path is too long).
    """
    d = tempfile.mkdtemp(prefix="gmg-", dir="/tmp")
    monkeypatch.setenv("XDG_RUNTIME_DIR", d)
    monkeypatch.setenv("GITMAIL_GUARD_IDLE", GUARD_IDLE)
    monkeypatch.delenv("GITMAIL_GUARD_DAEMON", raising=False)
    try:
        yield Path(d)
    finally:
        for sock in glob.glob(os.path.join(d, "gitmail-guard-*", "*.sock")):
            guard_daemon.stop_socket(sock)
        shutil.rmtree(d, ignore_errors=True)


class NetOrg(Org):
    """An :class:`Org` whose bare repo is served by ``git daemon`` (``git://127.0.0.1:PORT/org.git``)."""

    def __init__(self, root: Path, daemon: GitDaemon, bare: Path) -> None:
        super().__init__(root)
        self.daemon = daemon
        self.bare = bare
        self.url = daemon.url(bare.name)


def _net_org(tmp_path: Path, guard: bool,
             seed: Optional[Callable[[NetOrg], list[str]]] = None) -> Iterator[NetOrg]:
    """max (admin) and alex joined to a served org; ``seed``, when given, first writes to the
    empty org and returns the extra arguments of max's ``gitmail init``."""
    srv = tmp_path / "srv"
    srv.mkdir()
    d = GitDaemon(srv)
    bare = d.create("org.git", guard=guard)
    d.start()
    try:
        o = NetOrg(tmp_path, d, bare)
        o.join("max", *(seed(o) if seed is not None else []))
        o.join("alex")
        o.ok("max", "sync")
        yield o
    finally:
        d.stop()
        guard_daemon.stop(bare)


@pytest.fixture
def net(tmp_path: Path) -> Iterator[NetOrg]:
    """max (admin) and alex, each in a clone of ``git://.../org.git``; the guard is installed."""
    yield from _net_org(tmp_path, guard=True)


@pytest.fixture
def unguarded(tmp_path: Path) -> Iterator[NetOrg]:
    """Like :func:`net`, on a server without the guard (a host that offers no server hooks)."""
    yield from _net_org(tmp_path, guard=False)
