"""#12 item 6: the LFS endpoint comes only from the member's own git config and the org's
signed policy, never from a ``.lfsconfig`` in the work tree or in a commit (anyone with
push access to a code branch could write one)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tests.attachments.conftest import LFSServer, files_under, set_policy
from tests.conftest import Org, git
from tests.hosts.conftest import RecordingLFS


def _hostile_lfsconfig(clone: Path, url: str, remote: str) -> None:
    """Commit a .lfsconfig pointing every LFS key at ``url`` on a code branch, and leave it
    checked out (so it is both in the work tree and at HEAD)."""
    (clone / ".lfsconfig").write_text(
        f'[lfs]\n\turl = {url}\n\tpushurl = {url}\n[remote "{remote}"]\n\tlfsurl = {url}\n\tlfspushurl = {url}\n'
    )
    git("config", "user.name", "Mallory", cwd=clone)
    git("config", "user.email", "mallory@example.com", cwd=clone)
    git("checkout", "-q", "-b", "feature", cwd=clone)
    git("add", ".lfsconfig", cwd=clone)
    git("commit", "-q", "-m", "build: faster downloads", cwd=clone)


def test_lfsconfig_on_a_code_branch_is_ignored(org: Org, attacker_lfs: RecordingLFS, tmp_path: Path) -> None:
    set_policy(org, attachment_storage="lfs", encryption="off")
    for who in ("max", "alex"):
        clone = org.clones[who]
        remote = git("config", "gitmail.remote", cwd=clone).stdout.strip()
        _hostile_lfsconfig(clone, attacker_lfs.url, remote)
        assert git("config", "--blob", "HEAD:.lfsconfig", "lfs.url", cwd=clone).stdout.strip() == attacker_lfs.url
    f = tmp_path / "plan.bin"
    f.write_bytes(os.urandom(50_000))
    oid = hashlib.sha256(f.read_bytes()).hexdigest()
    r = org.ok("max", "send", "alex", "the plan", "--attach", str(f))
    assert r.out.startswith("Sent"), r.out
    org.ok("alex", "sync")
    inbox = tmp_path / "inbox"
    org.ok("alex", "read", "--save-dir", str(inbox))
    assert (inbox / "plan.bin").read_bytes() == f.read_bytes()
    # The object went to the org's own store (derived from the remote), never to the attacker.
    assert (Path(org.url) / "lfs" / "objects" / oid[:2] / oid[2:4] / oid).exists()
    assert attacker_lfs.seen == []
    assert files_under(attacker_lfs.store / "objects") == []


def test_the_members_own_git_config_still_decides(org: Org, attacker_lfs: RecordingLFS, tmp_path: Path) -> None:
    """The same server named in the member's own config (here: global) is used: trust, not blocking."""
    set_policy(org, attachment_storage="lfs", encryption="off")
    git("config", "--global", "lfs.url", attacker_lfs.url)
    f = tmp_path / "ok.bin"
    f.write_bytes(os.urandom(10_000))
    org.ok("max", "send", "alex", "via my own server", "--attach", str(f))
    assert any(s.path == "/objects/batch" for s in attacker_lfs.seen)


def test_the_org_policy_names_the_store(org: Org, lfs_server: LFSServer, tmp_path: Path) -> None:
    """An admin sets lfs_url in the signed policy: every member uses it (no git config needed)."""
    r = org.as_("max", "org", "lfs_url=ftp://elsewhere.example/lfs")
    assert r.code == 2 and "lfs_url" in r.err
    set_policy(org, attachment_storage="lfs", encryption="off")
    org.ok("max", "org", f"lfs_url={lfs_server.url}")
    org.ok("alex", "sync")
    f = tmp_path / "p.bin"
    f.write_bytes(os.urandom(20_000))
    oid = hashlib.sha256(f.read_bytes()).hexdigest()
    org.ok("max", "send", "alex", "via the org's server", "--attach", str(f))
    assert lfs_server.object_path(oid).read_bytes() == f.read_bytes()
    assert not (Path(org.url) / "lfs" / "objects" / oid[:2] / oid[2:4] / oid).exists()
    org.ok("alex", "sync")
    org.ok("alex", "read", "--save-dir", str(tmp_path / "inbox"))
    assert (tmp_path / "inbox" / "p.bin").read_bytes() == f.read_bytes()
