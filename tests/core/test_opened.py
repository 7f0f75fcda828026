"""What a long-lived process remembers of an opened clone (gitmail.core.repo.open_repo): the
git config it read, until any file git reads it from changes, per git-related environment.
The MCP server and the warm CLI's workers open the same clone for every command."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gitmail.core.repo import open_repo
from tests.conftest import git


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    c = tmp_path / "clone"
    git("init", "--quiet", str(c))
    git("config", "gitmail.colour", "red", cwd=c)
    return c


def test_a_change_to_the_local_config_is_seen_even_with_the_same_size_and_time(clone: Path) -> None:
    assert open_repo(clone).config["gitmail.colour"] == "red"
    cfg = clone / ".git" / "config"
    before = cfg.stat()
    git("config", "gitmail.colour", "tan", cwd=clone)  # same size; git renames a new file over it
    os.utime(cfg, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert cfg.stat().st_size == before.st_size and cfg.stat().st_mtime_ns == before.st_mtime_ns
    assert open_repo(clone).config["gitmail.colour"] == "tan"


def test_an_included_file_and_the_global_file_are_watched(clone: Path, tmp_path: Path) -> None:
    extra = tmp_path / "extra.cfg"
    git("config", "--file", str(extra), "remote.origin.url", "/srv/old.git")
    git("config", "include.path", str(extra), cwd=clone)
    assert open_repo(clone).config["remote.origin.url"] == "/srv/old.git"
    git("config", "--file", str(extra), "remote.origin.url", "/srv/new.git")
    assert open_repo(clone).config["remote.origin.url"] == "/srv/new.git"
    git("config", "--global", "gitmail.shape", "round")  # HOME is the test's own (conftest)
    assert open_repo(clone).config["gitmail.shape"] == "round"


def test_the_git_environment_is_part_of_what_is_remembered(clone: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert open_repo(clone).config["gitmail.colour"] == "red"
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "gitmail.colour")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "blue")
    assert open_repo(clone).config["gitmail.colour"] == "blue"
    monkeypatch.delenv("GIT_CONFIG_COUNT")
    assert open_repo(clone).config["gitmail.colour"] == "red"


def test_a_removed_clone_is_not_remembered(clone: Path) -> None:
    from gitmail.errors import NotARepoError
    import shutil

    open_repo(clone)
    shutil.rmtree(clone / ".git")
    with pytest.raises(NotARepoError):
        open_repo(clone)
