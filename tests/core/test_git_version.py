"""gitmail needs git 2.29 or later (negative refspecs, refspecs on stdin). An older git fails
with its own words ("invalid refspec"); gitmail then says which git it needs and which it
found. The version is asked only when git fails. No older git is installed here, so the
older version is set where gitmail keeps the one it read; every git command run is real.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitmail import git
from gitmail.errors import GitError, GitTooOldError


@pytest.mark.parametrize("line, want", [
    ("git version 2.39.5", (2, 39, 5)),
    ("git version 2.45.1.windows.1\n", (2, 45, 1)),
    ("git version 2.39.3 (Apple Git-146)", (2, 39, 3)),
    ("git version 2.29", (2, 29, 0)),
    ("git version x.y", None),
    ("hub version 2.14.2", None),
    ("", None),
])
def test_the_version_line_is_read(line: str, want: object) -> None:
    assert git.parse_version(line) == want


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_text_is_a_version_or_none(text: str) -> None:
    got = git.parse_version(text)
    assert got is None or (len(got) == 3 and all(isinstance(x, int) and x >= 0 for x in got))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 999_999), st.integers(0, 999_999), st.integers(0, 999_999))
def test_a_written_version_reads_back(a: int, b: int, c: int) -> None:
    assert git.parse_version(f"git version {a}.{b}.{c}") == (a, b, c)


def test_this_machines_git_is_read_and_new_enough() -> None:
    v = git.version()
    assert v is not None and v[:2] >= git.MIN_VERSION


def test_a_failure_under_an_older_git_says_which_git_is_needed(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "r"
    git.run(["init", "-q", str(repo)])
    monkeypatch.setattr(git, "_VERSION", [(2, 25, 1)])
    assert git.run(["rev-parse", "--git-dir"], repo).returncode == 0  # a working git is not asked
    with pytest.raises(GitTooOldError) as e:
        git.run(["rev-parse", "--verify", "-q", "refs/heads/nope"], repo)
    assert isinstance(e.value, GitError) and e.value.exit_code == 8
    assert str(e.value).startswith("gitmail needs git 2.29 or later; this is git 2.25.1 (git rev-parse --verify failed")
    monkeypatch.setattr(git, "_VERSION", [(2, 39, 5)])
    with pytest.raises(GitError) as e2:
        git.run(["rev-parse", "--verify", "-q", "refs/heads/nope"], repo)
    assert not isinstance(e2.value, GitTooOldError)


def test_a_push_read_after_it_failed_is_classified_the_same(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """``sync.push`` reads ``push --porcelain``'s output before it decides; it asks the same
    classifier as :func:`gitmail.git.run` (git.failure)."""
    repo = tmp_path / "r"
    git.run(["init", "-q", str(repo)])
    cmd = ["push", "--porcelain", str(tmp_path / "nowhere"), "HEAD:refs/heads/x"]
    proc = git.run(cmd, repo, check=False)
    assert proc.returncode != 0
    monkeypatch.setattr(git, "_VERSION", [(2, 25, 1)])
    assert isinstance(git.failure(["git", *cmd], proc, remote=True), GitTooOldError)
    monkeypatch.setattr(git, "_VERSION", [(2, 39, 5)])
    err = git.failure(["git", *cmd], proc, remote=True)
    assert isinstance(err, GitError) and not isinstance(err, GitTooOldError)
