"""A full disk or a read-only clone (issue 12, item 8): one line naming the cause, exit 13
(LocalStorageError, docs/protocol.md §15), nothing half-written, everything works again
once there is room. Real file systems: a small tmpfs filled up, and a read-only bind mount."""

from __future__ import annotations

import errno
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from gitmail.errors import GitError
from tests.conftest import Org, Result, git, run

STORAGE_EXIT = 13


def _mount(*args: str) -> None:
    r = subprocess.run(["mount", *args], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount here (needs root and mount rights): mount {' '.join(args)}: {r.stderr.strip()}")


def _umount(p: Path) -> None:
    subprocess.run(["umount", "-l", str(p)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 8 MiB tmpfs (skipped where mounting one is not allowed)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    _mount("-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk))
    try:
        yield disk
    finally:
        _umount(disk)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    # Unbuffered: a write the disk takes only part of leaves nothing in a buffer for close() to
    # fail on again (it did whenever the free space was no multiple of the write's size).
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as e:
            assert e.errno == errno.ENOSPC
    return filler


def _storage_error(r: Result, cause: str) -> str:
    assert r.code == STORAGE_EXIT, (r.code, r.out, r.err)
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gitmail: cannot ") and cause in lines[0], r.err
    assert "Traceback" not in r.err + r.out and "internal error" not in r.err
    return lines[0]


def _refs(p: Path | str) -> str:
    return git("for-each-ref", cwd=p).stdout


def test_disk_full_send_list_read_name_the_cause(small_disk: Path) -> None:
    org = Org(small_disk)
    org.join("max")
    org.join("alex")
    org.ok("max", "sync")
    org.ok("max", "send", "alex", "before the disk filled up")
    org.ok("alex", "sync")
    shutil.rmtree(org.clones["alex"] / ".git" / "gitmail" / "cache")  # derived data: list must rebuild it
    filler = _fill(small_disk)
    before = (_refs(org.url), _refs(org.clones["max"]), _refs(org.clones["alex"]))

    _storage_error(org.as_("max", "send", "alex", "x" * 5000), "no space left on the device")
    _storage_error(org.as_("alex", "list"), "no space left on the device")
    _storage_error(org.as_("alex", "read"), "no space left on the device")
    assert (_refs(org.url), _refs(org.clones["max"]), _refs(org.clones["alex"])) == before  # nothing half-way

    filler.unlink()
    org.ok("max", "send", "alex", "after")
    org.ok("alex", "sync")
    r = org.ok("alex", "read")
    assert "before the disk filled up" in r.out and "after" in r.out
    assert org.as_("alex", "verify", "--all").code == 0
    assert git("fsck", "--no-dangling", cwd=org.clones["max"]).returncode == 0


@pytest.fixture
def read_only_clone(org: Org, tmp_path: Path) -> Iterator[Path]:
    """alex's clone seen through a read-only bind mount (root ignores chmod; a mount does not)."""
    org.ok("max", "send", "alex", "hello")
    org.ok("alex", "sync")
    org.ok("max", "send", "alex", "second")
    # A real command's process closes its cache connection at exit (SQLite then folds the WAL
    # back and removes it). These ran in-process, and CPython's sqlite3.Connection sits in a
    # reference cycle with its statement cache, so only the cyclic collector closes it: when,
    # depends on what ran before. Collect now, as the exits would have.
    import gc

    gc.collect()
    ro = tmp_path / "ro"
    ro.mkdir()
    _mount("--bind", str(org.clones["alex"]), str(ro))
    try:
        _mount("-o", "remount,bind,ro", str(ro))
        yield ro
    finally:
        _umount(ro)


def test_disk_read_only_clone_names_the_cause(org: Org, read_only_clone: Path) -> None:
    ro = str(read_only_clone)
    before = _refs(ro)
    assert "hello" in run("list", "--repo", ro).out  # nothing to write: it still works
    _storage_error(run("read", "--repo", ro), "read-only")
    _storage_error(run("send", "max", "hi", "--repo", ro), "read-only")
    r = run("sync", "--repo", ro)
    assert r.code == 8 and "Read-only file system" in r.err and len(r.err.strip().splitlines()) == 1, r.err
    assert _refs(ro) == before


def test_disk_classification() -> None:
    from gitmail.errors import LocalStorageError, local_storage_error

    e = local_storage_error(OSError(errno.ENOSPC, "No space left on device", "/x/y"))
    assert isinstance(e, LocalStorageError) and e.message == "cannot write /x/y: no space left on the device"
    e = local_storage_error(OSError("failed to write out file: No space left on device"))  # as pygit2 says it
    assert e is not None and e.message == "cannot write to this clone: no space left on the device"
    e = local_storage_error(OSError(errno.EROFS, "Read-only file system", "/x"))
    assert e is not None and "read-only" in e.message
    assert local_storage_error(sqlite3.OperationalError("database or disk is full")) is not None
    e = local_storage_error(sqlite3.OperationalError("attempt to write a readonly database"))
    assert e is not None and "read-only" in e.message
    assert local_storage_error(sqlite3.OperationalError("no such table: msg")) is None  # a bug stays a bug
    assert local_storage_error(ValueError("x")) is None
    assert local_storage_error(OSError(errno.ECONNREFUSED, "refused")) is None
    g = GitError(["git", "fetch", "-q"], 128, b"", b"error: unable to write: No space left on device\nfatal: unpack-objects failed\n")
    assert g.message == "git fetch -q failed: error: unable to write: No space left on device"


def test_a_full_disk_still_lets_the_cache_be_read(small_disk: Path) -> None:
    """list, search and read --no-mark need nothing written when nothing new came in, but on
    a full disk they exited 13 (SQLite could not make the cache's WAL index), while on a
    read-only file system they worked. The cache is read as it stands on a full disk too."""
    import gc

    org = Org(small_disk)
    org.join("max")
    org.join("alex")
    org.ok("max", "sync")
    org.ok("max", "send", "alex", "before the disk filled up", "--plain")
    org.ok("alex", "sync")
    org.ok("alex", "search", "filled")
    gc.collect()  # the in-process commands' connections, closed as a real exit closes them
    filler = _fill(small_disk)
    try:
        r = org.as_("alex", "list")
        assert r.code == 0 and "before the disk filled up" in r.out, r
        assert org.as_("alex", "read", "--no-mark").code == 0
        assert "before the disk" in org.ok("alex", "search", "filled").out
    finally:
        filler.unlink()
