"""Issue 13: ``gitmail init`` sets a local gpg.ssh.allowedSignersFile; the user's own (global) allowed
signers must keep working in that clone, so a teammate's signed code commit still verifies."""

from __future__ import annotations

from pathlib import Path

from gitmail.core.signing import generate_key

from tests.conftest import Org, git


def test_teammates_signed_code_commit_still_verifies_after_init(tmp_path: Path, isolated_env: Path) -> None:
    teammate = generate_key(tmp_path / "teammate")
    ssh = isolated_env / ".ssh"
    ssh.mkdir()
    (ssh / "allowed_signers").write_text(f"teammate@example.com {teammate.public_key}\n")
    git("config", "--global", "gpg.ssh.allowedSignersFile", "~/.ssh/allowed_signers")
    org = Org(tmp_path)
    clone = org.join("max")
    git("-c", "user.name=Teammate", "-c", "user.email=teammate@example.com", "-c", "gpg.format=ssh",
        "-c", f"user.signingkey={tmp_path / 'teammate'}", "commit", "-q", "-S", "--allow-empty", "-m", "code", cwd=clone)
    v = git("verify-commit", "HEAD", cwd=clone, check=False)
    assert v.returncode == 0 and 'Good "git" signature for teammate@example.com' in v.stderr, v.stderr
    d = git("verify-commit", "refs/gitmail/verified/directory", cwd=clone, check=False)  # and gitmail's own signers
    assert d.returncode == 0 and 'Good "git" signature for max' in d.stderr, d.stderr
    # The user's lines follow gitmail's; a later directory change keeps them.
    org.join("alex")
    org.ok("max", "sync")
    assert git("verify-commit", "HEAD", cwd=clone, check=False).returncode == 0


def test_no_global_signers_file_gives_exactly_the_directory(tmp_path: Path) -> None:
    from gitmail.core import directory
    from gitmail.core.repo import open_repo

    org = Org(tmp_path)
    org.join("max")
    r = open_repo(org.clones["max"])
    assert (r.data_dir / "allowed_signers").read_text() == directory.load(r).allowed_signers()
