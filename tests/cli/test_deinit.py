"""``gitmail deinit``: gitmail taken out of a clone, and nothing of the user's touched (real git)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

from tests.conftest import Org, git, run


def _local_config(clone: Path) -> list[str]:
    return git("config", "--local", "--list", cwd=clone).stdout.splitlines()


def _refs(clone: Path) -> str:
    return git("for-each-ref", cwd=clone).stdout


def test_deinit_puts_a_project_clone_back_as_it_was(org: Org, tmp_path: Path) -> None:
    """A project's clone with its own remote, signers file, hook and commits: after init, hooks
    install, a send, a read and a sync, deinit leaves exactly the config, refs and hooks it had."""
    clone = tmp_path / "project"
    git("init", "-q", str(clone))
    git("remote", "add", "origin", org.url, cwd=clone)
    signers = tmp_path / "my_signers"
    signers.write_text("")
    git("config", "gpg.ssh.allowedSignersFile", str(signers), cwd=clone)
    git("config", "user.name", "Dana", cwd=clone)
    (clone / "README").write_text("the project\n")
    git("add", "README", cwd=clone)
    git("-c", "user.email=d@x", "commit", "-q", "-m", "first", cwd=clone)
    hook = clone / ".git" / "hooks" / "post-merge"
    hook.write_text("#!/bin/sh\necho mine\n")
    hook.chmod(0o755)
    config, refs_before = _local_config(clone), _refs(clone)

    assert run("init", "--name", "dana", "--repo", str(clone)).code == 0
    assert run("hooks", "install", "--repo", str(clone)).code == 0
    org.ok("max", "sync")
    org.ok("max", "send", "dana", "welcome")
    assert run("sync", "--repo", str(clone)).code == 0
    assert run("read", "--repo", str(clone)).code == 0
    assert run("send", "max", "thanks", "--repo", str(clone)).code == 0
    assert _local_config(clone) != config and (clone / ".git" / "gitmail").is_dir()

    r = run("deinit", "--json", "--repo", str(clone))
    assert r.code == 0, r.err
    res = json.loads(r.out)
    assert res["repo"] == str(clone) and res["dropped_queued"] == 0 and res["removed"], res
    assert _local_config(clone) == config
    assert _refs(clone) == refs_before
    assert hook.read_text() == "#!/bin/sh\necho mine\n" and not (clone / ".git" / "hooks" / "post-checkout").exists()
    assert not (clone / ".git" / "gitmail").exists()
    assert any("the remote 'origin'" in k for k in res["kept"]) and any("key of dana" in k for k in res["kept"])
    # Idempotent, and nothing made again.
    again = run("deinit", "--repo", str(clone))
    assert again.code == 0 and "Nothing of gitmail's" in again.out and not (clone / ".git" / "gitmail").exists()
    # init brings it back: the same member and key, the mail still on the org.
    r = run("init", "--name", "dana", "--repo", str(clone))
    assert r.code == 0 and "Already registered" in r.out, r.out
    assert run("sync", "--repo", str(clone)).code == 0
    rows = json.loads(run("list", "--all", "--json", "--repo", str(clone)).out)["messages"]
    assert [m["body"] if "body" in m else m["subject"] for m in rows] == ["welcome"]


def test_deinit_refuses_while_mail_is_queued_unless_forced(org: Org) -> None:
    clone = org.clones["alex"]
    git("remote", "set-url", "origin", str(org.root / "gone.git"), cwd=clone)
    org.ok("alex", "send", "max", "stuck")
    before = _local_config(clone), _refs(clone)
    r = org.as_("alex", "deinit")
    assert r.code == 2 and r.err.count("\n") == 1 and "still queued" in r.err and "--force" in r.err, r.err
    assert (_local_config(clone), _refs(clone)) == before
    r = org.as_("alex", "deinit", "--force", "--json")
    assert r.code == 0 and json.loads(r.out)["dropped_queued"] == 1, r
    assert not git("for-each-ref", "refs/gitmail/", cwd=clone).stdout
    assert not [ln for ln in _local_config(clone) if ln.startswith("gitmail.")]


def test_a_remote_init_added_goes_with_it(org: Org) -> None:
    """A clone init made (--org, no remote before): its remote fetched only gitmail's refs."""
    clone = org.clones["max"]
    r = org.as_("max", "deinit")
    assert r.code == 0 and "removed the remote 'origin'" in r.out, r.out
    assert git("remote", cwd=clone).stdout == "" and _refs(clone) == ""
    assert _local_config(clone) == [ln for ln in _local_config(clone) if ln.split("=")[0].startswith("core.")]


def test_a_remote_holding_anything_of_the_user_s_is_kept(org: Org) -> None:
    """A hostile sweep: after init added `origin`, the user gave it a push URL and made a branch
    track it; deinit removed the remote, and git took the push URL and the upstream with it."""
    clone = org.clones["alex"]
    git("config", "remote.origin.pushurl", "/elsewhere/mine.git", cwd=clone)
    git("config", "branch.main.remote", "origin", cwd=clone)
    git("config", "branch.main.merge", "refs/heads/main", cwd=clone)
    r = org.as_("alex", "deinit", "--json")
    assert r.code == 0, r.err
    res = json.loads(r.out)
    assert any("the remote 'origin'" in k and "without a fetch refspec" in k for k in res["kept"]), res
    assert git("config", "remote.origin.pushurl", cwd=clone).stdout.strip() == "/elsewhere/mine.git"
    assert git("config", "branch.main.remote", cwd=clone).stdout.strip() == "origin"
    assert res["kept"][-1] == "the way back: gitmail init --name alex", res["kept"]


def test_the_way_back_names_the_org_when_the_remote_went(org: Org) -> None:
    """Plain 'gitmail init --name alex' in a clone without its remote starts a new org: the last
    line gives the org's URL, and following it brings alex's clone and mail back."""
    org.ok("max", "send", "alex", "before leaving")
    clone = org.clones["alex"]
    r = org.as_("alex", "deinit")
    way = r.out.splitlines()[-1]
    assert r.code == 0 and way == f"  kept the way back: gitmail init --name alex --org {org.url}", r.out
    assert run(*way.split(": ", 1)[1].split()[1:], "--repo", str(clone)).code == 0
    org.ok("alex", "sync")
    assert [m["subject"] for m in json.loads(org.ok("alex", "list", "--json").out)["messages"]] == ["before leaving"]


def test_a_file_where_the_data_folder_belongs_is_removed_too(org: Org) -> None:
    clone = org.clones["alex"]
    import shutil

    shutil.rmtree(clone / ".git" / "gitmail")
    (clone / ".git" / "gitmail").write_text("x")
    r = org.as_("alex", "deinit")
    assert r.code == 0 and not (clone / ".git" / "gitmail").exists(), (r.code, r.err)
    again = org.as_("alex", "deinit")
    assert again.code == 0 and "Nothing of gitmail's" in again.out


def test_hooks_in_a_shared_hooks_folder_are_left_for_the_other_repositories(
        org: Org, tmp_path: Path, monkeypatch: "pytest.MonkeyPatch") -> None:
    shared = tmp_path / "shared-hooks"
    shared.mkdir()
    glob_cfg = tmp_path / "gitconfig"
    glob_cfg.write_text(f"[core]\n\thooksPath = {shared}\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(glob_cfg))
    org.ok("alex", "hooks", "install")
    org.ok("max", "hooks", "install")
    r = org.as_("alex", "deinit", "--json")
    assert r.code == 0, r.err
    assert sorted(p.name for p in shared.iterdir()) == ["post-checkout", "post-merge"]
    assert any("shared" in k and "hooks uninstall" in k for k in json.loads(r.out)["kept"]), r.out
