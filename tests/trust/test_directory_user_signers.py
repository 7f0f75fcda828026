"""Issue 13: ``gitmail init`` sets a local gpg.ssh.allowedSignersFile; the user's own (global) allowed
signers must keep working in that clone, so a teammate's signed code commit still verifies."""

from __future__ import annotations

from pathlib import Path

from gitmail.core.signing import generate_key

from tests.conftest import Org, git


def _global_signers(home: Path, text: str) -> None:
    """The user's own allowed signers, named by their global git config as ~/.ssh/allowed_signers."""
    ssh = home / ".ssh"
    ssh.mkdir()
    (ssh / "allowed_signers").write_text(text)
    git("config", "--global", "gpg.ssh.allowedSignersFile", "~/.ssh/allowed_signers")


def test_teammates_signed_code_commit_still_verifies_after_init(tmp_path: Path, isolated_env: Path) -> None:
    teammate = generate_key(tmp_path / "teammate")
    _global_signers(isolated_env, f"teammate@example.com {teammate.public_key}\n")
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


def _signed_code_commit(clone: Path, key: Path, email: str) -> str:
    git("-c", "user.name=Someone", "-c", f"user.email={email}", "-c", "gpg.format=ssh", "-c", f"user.signingkey={key}",
        "commit", "-q", "-S", "--allow-empty", "-m", "code", cwd=clone)
    return git("rev-parse", "HEAD", cwd=clone).stdout.strip()


def test_a_member_named_like_a_trusted_principal_cannot_sign_as_them(tmp_path: Path, isolated_env: Path) -> None:
    """The user trusts boss@team.example's key (their global allowed signers). A member who
    registers as 'boss@team.example' signed a code commit with their gitmail key, and in every
    gitmail clone git said: Good "git" signature for boss@team.example. The user's
    principals win now: that member gets no line in gitmail's file."""
    boss = generate_key(tmp_path / "boss")
    _global_signers(isolated_env, f"boss@team.example {boss.public_key}\n*@partner.example {boss.public_key}\n")
    org = Org(tmp_path)
    clone = org.join("max")
    for name in ("boss@team.example", "eve@partner.example"):
        org.join(name)
    org.ok("max", "sync")
    from gitmail.core.repo import open_repo

    for name in ("boss@team.example", "eve@partner.example"):
        mallory = open_repo(org.clones[name]).key_path(name)
        oid = _signed_code_commit(clone, mallory, name)
        v = git("verify-commit", oid, cwd=clone, check=False)
        assert v.returncode != 0 and "No principal matched" in v.stderr and f"signature for {name}" not in v.stderr, \
            (name, v.stderr)
    assert git("verify-commit", _signed_code_commit(clone, tmp_path / "boss", "boss@team.example"), cwd=clone,
               check=False).returncode == 0  # the real boss still verifies


def test_a_relative_project_signers_file_survives_a_sync_from_a_subfolder(tmp_path: Path) -> None:
    """A project's own `gpg.ssh.allowedSignersFile .gitsigners` (relative: git reads it from the
    top of the work tree) was opened from gitmail's current folder: a sync run in a subfolder
    rewrote gitmail's file without the project's lines, and its signed commits stopped verifying."""
    dev = generate_key(tmp_path / "dev")
    org = Org(tmp_path)
    clone = org.join("max")
    (clone / ".gitsigners").write_text(f"dev@team.example {dev.public_key}\n")
    git("config", "gpg.ssh.allowedSignersFile", ".gitsigners", cwd=clone)
    sub = clone / "sub"
    sub.mkdir()
    from tests.conftest import run

    assert run("init", "--name", "max", "--org", org.url, "--repo", str(sub)).code == 0  # from a subfolder
    oid = _signed_code_commit(clone, tmp_path / "dev", "dev@team.example")
    org.join("alex")  # the directory moves: gitmail's file is written again
    assert run("sync", "--repo", str(sub)).code == 0
    v = git("verify-commit", oid, cwd=sub, check=False)
    assert v.returncode == 0 and 'Good "git" signature for dev@team.example' in v.stderr, v.stderr


def test_a_signers_file_from_an_included_config_is_kept(tmp_path: Path, isolated_env: Path) -> None:
    """A work identity set in a file the global config includes for this folder (includeIf
    gitdir): gitmail's fallback asked `git config --global` without includes, so the user's
    signers vanished right after init."""
    dev = generate_key(tmp_path / "dev")
    (isolated_env / "work.gitconfig").write_text(f"[gpg \"ssh\"]\n\tallowedSignersFile = {tmp_path / 'work-signers'}\n")
    (tmp_path / "work-signers").write_text(f"dev@team.example {dev.public_key}\n")
    git("config", "--global", f"includeIf.gitdir:{tmp_path}/.path", str(isolated_env / "work.gitconfig"))
    org = Org(tmp_path)
    clone = org.join("max")
    oid = _signed_code_commit(clone, tmp_path / "dev", "dev@team.example")
    v = git("verify-commit", oid, cwd=clone, check=False)
    assert v.returncode == 0 and 'Good "git" signature for dev@team.example' in v.stderr, v.stderr


def test_a_look_alike_of_a_trusted_principal_gets_no_line(tmp_path: Path, isolated_env: Path) -> None:
    """The user trusts lisa@team.example; a member named Iisa@team.example (capital i) kept its
    line in gitmail's file, so git showed its code commits as signed by a name the user
    reads as lisa's. A literal principal covers its look-alikes."""
    from gitmail.core.repo import open_repo

    lisa = generate_key(tmp_path / "lisa")
    _global_signers(isolated_env, f"lisa@team.example {lisa.public_key}\n")
    org = Org(tmp_path)
    clone = org.join("max")
    org.join("Iisa@team.example")
    org.ok("max", "sync")
    assert "Iisa@team.example" not in (open_repo(clone).data_dir / "allowed_signers").read_text()
    oid = _signed_code_commit(clone, open_repo(org.clones["Iisa@team.example"]).key_path("Iisa@team.example"),
                              "Iisa@team.example")
    v = git("verify-commit", oid, cwd=clone, check=False)
    assert v.returncode != 0 and "No principal matched" in v.stderr, v.stderr
