"""``gitmail deinit``: gitmail taken out of a clone, and nothing of the user's touched (real git)."""

from __future__ import annotations

import json
from pathlib import Path

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
