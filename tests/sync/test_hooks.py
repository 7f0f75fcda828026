"""Client hooks: a new-mail notice after git pull / checkout, chaining, core.hooksPath, never failing git."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import git, run
from tests.sync.conftest import NetOrg

ID = re.compile(r"Run: gitmail read ([0-9a-f]{8})$")


def code_commit(o: NetOrg, who: str, text: str) -> None:
    """A commit on ``main`` pushed with plain git (the code the org repo also carries)."""
    clone = o.clones[who]
    (clone / "README").write_text(text)
    git("add", "README", cwd=clone)
    git("-c", "user.name=x", "-c", "user.email=x@y", "commit", "-qm", text, cwd=clone)
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=clone)


def tracking_main(o: NetOrg, who: str) -> Path:
    clone = o.clones[who]
    git("fetch", "-q", "origin", cwd=clone)
    git("checkout", "-q", "-B", "main", "--track", "origin/main", cwd=clone)
    return clone


def pull(clone: Path) -> "tuple[int, str]":
    p = git("pull", "--ff-only", cwd=clone, check=False)
    return p.returncode, p.stdout + p.stderr


def test_git_pull_prints_a_notice_of_new_mail(net: NetOrg) -> None:
    code_commit(net, "max", "v1")
    clone = tracking_main(net, "alex")
    r = run("hooks", "install", "--repo", str(clone))
    assert r.code == 0 and "post-merge: installed" in r.out and "post-checkout: installed" in r.out, r.err
    sent = net.ok("max", "send", "alex", "Domain research is done. Pick your top 3?", "--json").out
    code_commit(net, "max", "v2")
    code, out = pull(clone)
    assert code == 0, out
    line = next(ln for ln in out.splitlines() if ln.startswith("📬"))
    assert line.startswith('📬 1 new message from max (just now): "Domain research is done. Pick your top 3?"'), line
    m = ID.search(line)
    assert m and m.group(1) in sent
    # Shown once: the next pull with nothing new for alex says nothing.
    code_commit(net, "max", "v3")
    code, out = pull(clone)
    assert code == 0 and "📬" not in out
    # More mail: the hook's shell fast path notices that gitmail refs moved.
    net.ok("max", "send", "alex", "second one")
    code_commit(net, "max", "v4")
    code, out = pull(clone)
    assert code == 0 and '📬 1 new message from max (just now): "second one"' in out, out
    # The message is still unread and verified for gitmail itself.
    assert json.loads(net.ok("alex", "list", "--json").out)["unread"] == 2


def test_checkout_notice_and_several_messages(net: NetOrg) -> None:
    code_commit(net, "max", "v1")
    clone = tracking_main(net, "alex")
    net.ok("alex", "hooks", "install")
    net.join("bob")
    net.ok("max", "send", "alex", "one")
    net.ok("bob", "send", "alex", "two")
    git("fetch", "-q", "origin", cwd=clone)  # plain fetch brings the mail (refspec set by init)
    p = git("checkout", "-b", "topic", cwd=clone, check=False)
    assert p.returncode == 0
    out = p.stdout + p.stderr
    assert "📬 2 new messages from " in out and "max" in out and "bob" in out and "Run: gitmail read" in out
    # A file checkout (flag 0) stays quiet.
    p = git("checkout", "--", "README", cwd=clone, check=False)
    assert p.returncode == 0 and "📬" not in p.stdout + p.stderr


def test_install_respects_hookspath_chains_and_uninstall_restores(net: NetOrg, tmp_path: Path) -> None:
    code_commit(net, "max", "v1")
    clone = tracking_main(net, "alex")
    hooks = tmp_path / "my-hooks"
    hooks.mkdir()
    git("config", "core.hooksPath", str(hooks), cwd=clone)
    mine = hooks / "post-merge"
    mine.write_text("#!/bin/sh\necho my own post-merge ran\nexit 3\n")
    mine.chmod(0o755)
    r = run("hooks", "install", "--repo", str(clone))
    assert r.code == 0 and "your previous hook runs first" in r.out, r.out
    assert (hooks / "post-merge.gitmail-chained").exists() and (hooks / "post-checkout").exists()
    assert not (clone / ".git" / "hooks" / "post-merge").exists()
    assert run("hooks", "install", "--repo", str(clone)).code == 0  # idempotent
    net.ok("max", "send", "alex", "hi")
    code_commit(net, "max", "v2")
    code, out = pull(clone)
    assert code == 0  # post-merge cannot change git pull's status
    assert "my own post-merge ran" in out and "📬 1 new message from max" in out
    r = run("hooks", "uninstall", "--repo", str(clone))
    assert r.code == 0 and "post-merge: removed (your previous hook is back)" in r.out
    assert "post-checkout: removed" in r.out
    assert mine.read_text().startswith("#!/bin/sh\necho my own") and not (hooks / "post-checkout").exists()
    assert not (hooks / "post-merge.gitmail-chained").exists()
    r = run("hooks", "uninstall", "--repo", str(clone))
    assert "post-merge: left alone (not gitmail's)" in r.out and "post-checkout: not installed" in r.out


def test_hooks_never_fail_git(net: NetOrg, tmp_path: Path) -> None:
    code_commit(net, "max", "v1")
    clone = tracking_main(net, "alex")
    net.ok("alex", "hooks", "install")
    net.ok("max", "send", "alex", "hi")
    # A broken cache and no identity: the hook keeps quiet, git succeeds.
    for f in (clone / ".git" / "gitmail" / "cache").glob("*.sqlite3*"):
        f.write_bytes(b"garbage")
    git("config", "--unset", "gitmail.user", cwd=clone)
    code_commit(net, "max", "v2")
    code, out = pull(clone)
    assert code == 0 and "📬" not in out and "Traceback" not in out, out
    # A plain repo with the hooks but no gitmail at all.
    plain = tmp_path / "plain"
    git("clone", "-q", net.url, str(plain))
    assert run("hooks", "install", "--repo", str(plain)).code == 0
    p = git("checkout", "-b", "x", cwd=plain, check=False)
    assert p.returncode == 0 and p.stderr.strip() == "Switched to a new branch 'x'"


def test_hooks_install_outside_a_repo(tmp_path: Path) -> None:
    r = run("hooks", "install", "--repo", str(tmp_path))
    assert r.code == 3 and r.err.startswith("gitmail: not a git repository") and r.err.count("\n") == 1
