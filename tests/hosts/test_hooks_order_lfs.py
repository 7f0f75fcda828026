"""#13: ``git lfs install`` and ``gitmail hooks install`` in either order leave both working,
with the real git-lfs: its four hooks (post-checkout, post-commit, post-merge, pre-push) do
their work and gitmail's new-mail notice still shows after ``git pull``."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from gitmail.hookscripts import hooks_dir, is_ours
from tests.attachments.conftest import needs_git_lfs
from tests.conftest import Org, git, run

pytestmark = needs_git_lfs

LFS_HOOKS = ("post-checkout", "post-commit", "post-merge", "pre-push")


def _code_commit(o: Org, who: str, text: str) -> None:
    clone = o.clones[who]
    (clone / "README").write_text(text)
    git("add", "README", cwd=clone)
    git("-c", "user.name=x", "-c", "user.email=x@y", "commit", "-qm", text, cwd=clone)
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=clone)


def _gitmail_install(clone: Path) -> None:
    r = run("hooks", "install", "--repo", str(clone))
    assert r.code == 0, r.err


def _lfs_install(clone: Path) -> None:
    p = git("lfs", "install", cwd=clone, check=False)
    assert p.returncode == 0 and "Hook already exists" not in p.stdout + p.stderr, p.stdout + p.stderr


@pytest.mark.parametrize("order", ["gitmail-then-lfs", "lfs-then-gitmail"])
def test_hooks_order_both_work(org: Org, order: str) -> None:
    org.ok("max", "org", "encryption=off")
    _code_commit(org, "max", "v1")
    clone = org.clones["alex"]
    git("lfs", "install", "--skip-repo")  # the one-time setup of a git-lfs user (its filters, globally)
    # A clone gitmail made fetches only the member's mail refs (docs/protocol.md §3); the
    # developer adds the code branch they work on, as they would in any narrow clone.
    git("config", "--add", "remote.origin.fetch", "+refs/heads/main:refs/remotes/origin/main", cwd=clone)
    git("fetch", "-q", "origin", cwd=clone)
    git("checkout", "-q", "-B", "main", "--track", "origin/main", cwd=clone)
    steps = [_gitmail_install, _lfs_install]
    for step in steps if order == "gitmail-then-lfs" else steps[::-1]:
        step(clone)
    for step in steps:  # and again, as an upgrade or a second setup would
        step(clone)
    d = hooks_dir(clone)
    assert all((d / h).is_file() for h in LFS_HOOKS)
    assert is_ours(d / "post-checkout") and is_ours(d / "post-merge")
    assert not list(d.glob("*.gitmail-chained"))  # git-lfs's part is not run twice

    # git-lfs's hooks work: post-commit and post-checkout make lockable files read-only,
    # pre-push uploads the LFS object to the remote's store.
    git("checkout", "-q", "-b", "side", cwd=clone)
    git("lfs", "track", "--lockable", "*.bin", cwd=clone)
    content = os.urandom(3000)
    (clone / "w.bin").write_bytes(content)
    git("add", ".gitattributes", "w.bin", cwd=clone)
    git("-c", "user.name=a", "-c", "user.email=a@b", "commit", "-qm", "lfs file", cwd=clone)
    assert stat.S_IMODE((clone / "w.bin").stat().st_mode) & 0o222 == 0  # post-commit
    git("checkout", "-q", "main", cwd=clone)
    git("checkout", "-q", "side", cwd=clone)
    assert stat.S_IMODE((clone / "w.bin").stat().st_mode) & 0o222 == 0  # post-checkout
    p = git("push", "-q", "origin", "side", cwd=clone, check=False)
    assert p.returncode == 0, p.stderr
    import hashlib

    oid = hashlib.sha256(content).hexdigest()
    assert (Path(org.url) / "lfs" / "objects" / oid[:2] / oid[2:4] / oid).read_bytes() == content  # pre-push

    # gitmail's notice still shows after a pull.
    git("checkout", "-q", "main", cwd=clone)
    org.ok("max", "send", "alex", "Hooks in either order")
    _code_commit(org, "max", "v2")
    p = git("pull", "--ff-only", cwd=clone, check=False)
    assert p.returncode == 0, p.stderr
    assert '📬 1 new message from max (just now): "Hooks in either order"' in p.stdout + p.stderr


def test_uninstall_gives_git_lfs_its_hooks_back(org: Org) -> None:
    clone = org.clones["alex"]
    _lfs_install(clone)
    _gitmail_install(clone)
    r = run("hooks", "uninstall", "--repo", str(clone))
    assert r.code == 0, r.err
    # Said as it is: git-lfs's part stays (it said "your previous hook is back" of a hook that
    # was git-lfs's, whether or not one had been there before).
    assert "post-checkout: removed (git-lfs's post-checkout hook stays: this repository uses git-lfs)" in r.out, r.out
    d = hooks_dir(clone)
    assert not is_ours(d / "post-checkout") and "git lfs post-checkout" in (d / "post-checkout").read_text()
    _lfs_install(clone)  # git-lfs recognises its own hooks again


@needs_git_lfs
def test_a_global_hooks_path_gets_no_lfs_hooks_of_gitmails_making(org: Org, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """core.hooksPath in the user's global config: gitmail learned git-lfs's hook text by running
    ``git lfs update`` in a scratch repository, which wrote git-lfs's four hooks into that shared
    folder (and uninstall left them: they ran in every repository). Now the scratch repository
    keeps them; install says the folder is shared; uninstall leaves the folder as it was."""
    from gitmail import hookscripts

    shared = tmp_path / "global-hooks"
    shared.mkdir()
    cfg = tmp_path / "global.gitconfig"
    cfg.write_text(f"[core]\n\thooksPath = {shared}\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(cfg))
    monkeypatch.setattr(hookscripts, "_LFS_CACHE", {})  # learned again, under this global config
    clone = org.clones["alex"]
    r = run("hooks", "install", "--repo", str(clone))
    assert r.code == 0 and "warning: core.hooksPath comes from file:" in r.err and "shared" in r.err, r
    assert sorted(p.name for p in shared.iterdir()) == ["post-checkout", "post-merge"]  # gitmail's two, no more
    assert run("hooks", "uninstall", "--repo", str(clone)).code == 0
    assert list(shared.iterdir()) == []


def test_without_git_lfs_set_up_a_checkout_never_needs_it(org: Org, tmp_path: Path) -> None:
    """git-lfs on the PATH but never set up, in a repository without LFS: gitmail's hooks began
    with git-lfs's part all the same, so a git without git-lfs on its PATH (an IDE's) failed
    every checkout. Now they do not; should the user set LFS up later, `git lfs install` says
    its hooks are taken and `gitmail hooks install` again merges both."""
    _code_commit(org, "max", "v1")
    clone = org.clones["alex"]
    git("config", "--add", "remote.origin.fetch", "+refs/heads/main:refs/remotes/origin/main", cwd=clone)
    git("fetch", "-q", "origin", cwd=clone)
    git("checkout", "-q", "-B", "main", "--track", "origin/main", cwd=clone)
    _gitmail_install(clone)
    d = hooks_dir(clone)
    assert "git lfs" not in (d / "post-checkout").read_text()
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("git", "sh", "cat", "cksum", "printf", "dirname"):  # a PATH with git but no git-lfs
        found = shutil.which(tool)
        if found:
            (bare / tool).symlink_to(found)
    env = {**os.environ, "PATH": str(bare)}
    p = subprocess.run(["git", "checkout", "-q", "-b", "side"], cwd=clone, env=env, capture_output=True, text=True)
    assert p.returncode == 0 and "git-lfs" not in p.stderr, p.stderr
    later = git("lfs", "install", cwd=clone, check=False)
    assert later.returncode != 0 and "Hook already exists" in later.stdout + later.stderr
    _gitmail_install(clone)  # now LFS is set up here: git-lfs's part heads gitmail's hooks
    _lfs_install(clone)
    assert all((d / h).is_file() for h in LFS_HOOKS) and is_ours(d / "post-checkout")
