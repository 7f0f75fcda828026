"""gitmail's own local refs past a lock file a killed gitmail process left (gitmail.core.repo):
moved and deleted on a real repository; a lock on any other ref is left to git."""

from __future__ import annotations

from pathlib import Path

import pygit2
import pytest

from gitmail.core.repo import open_repo
from tests.conftest import git


def _repo(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "r"
    git("init", "-q", str(path), cwd=tmp_path)
    git("-c", "user.name=t", "-c", "user.email=t@x", "commit", "-q", "--allow-empty", "-m", "one", cwd=path)
    return path, git("rev-parse", "HEAD", cwd=path).stdout.strip()


def test_delete_ref_past_a_dead_process_lock(tmp_path: Path) -> None:
    path, head = _repo(tmp_path)
    name = "refs/gitmail/outbox/alex/max"
    git("update-ref", name, head, cwd=path)
    lock = path / ".git" / (name + ".lock")
    lock.write_text("")
    repo = open_repo(path)
    with repo.lock():
        repo.delete_ref(name)
    assert repo.ref_target(name) is None and not lock.exists()
    assert git("for-each-ref", name, cwd=path).stdout == ""


def test_delete_ref_leaves_other_refs_locks_to_git(tmp_path: Path) -> None:
    path, head = _repo(tmp_path)
    git("update-ref", "refs/heads/other", head, cwd=path)
    lock = path / ".git" / "refs" / "heads" / "other.lock"
    lock.write_text("")
    repo = open_repo(path)
    with repo.lock(), pytest.raises((OSError, pygit2.GitError), match="failed to lock"):
        repo.delete_ref("refs/heads/other")
    assert lock.exists() and repo.ref_target("refs/heads/other") == head


def test_set_ref_past_a_dead_process_lock(tmp_path: Path) -> None:
    path, head = _repo(tmp_path)
    name = "refs/gitmail/read/alex"
    lock = path / ".git" / (name + ".lock")
    lock.parent.mkdir(parents=True)
    lock.write_text("")
    repo = open_repo(path)
    with repo.lock():
        repo.set_ref(name, head, None)
    assert repo.ref_target(name) == head and not lock.exists()
