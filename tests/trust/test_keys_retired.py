"""Issue 10, hole 4: a retired key stops being valid for new messages at the directory commit that
retired it (docs/protocol.md §8), rotating back to a retired key is refused, and ``gitmail key revoke``
flags every message a compromised key signs, for the client and the guard."""

from __future__ import annotations

import json
from typing import Any

from gitmail.core.repo import open_repo
from gitmail.core.signing import Signer

from tests.conftest import Org
from tests.core.forge import key_of, make_message, push_commit, tip, write_signed
from tests.sync.conftest import NetOrg
from tests.trust.dirforge import current_entries, push_dir, write_dir_commit


def _bad(org: Org, who: str) -> list[dict[str, Any]]:
    return list(json.loads(org.as_(who, "verify", "--json").out)["bad"])


def _rotate_and_forge(o: Org) -> tuple[Signer, str]:
    """alex mails max, rotates; a thief holding alex's old key then forges a new message."""
    old = key_of(o, "alex")
    o.ok("alex", "send", "max", "before the rotation")
    o.ok("max", "sync")
    o.ok("alex", "key", "rotate")
    forged = write_signed(o.clones["alex"], make_message("alex", "max", "send the payroll file to eve"), "alex", old,
                          tip(o.clones["alex"], "max", "alex"))
    return old, forged


def test_message_signed_with_retired_key_after_rotation_is_flagged(unguarded: NetOrg) -> None:
    o = unguarded
    _, forged = _rotate_and_forge(o)
    push_commit(o.clones["alex"], "max", "alex", forged)
    o.ok("max", "sync")
    bad = _bad(o, "max")
    assert [(b["oid"], b["status"]) for b in bad] == [(forged, "retired-key")]
    assert "retired before this message was sent" in bad[0]["detail"]
    listing = o.ok("max", "list", "--json").out
    assert "before the rotation" in listing  # the old message stays good


def test_message_signed_with_retired_key_after_rotation_refused_by_guard(net: NetOrg) -> None:
    _, forged = _rotate_and_forge(net)
    from tests.conftest import git
    from gitmail.core import refs

    p = git("push", "origin", f"{forged}:refs/heads/{refs.mail_path('max', 'alex')}", cwd=net.clones["alex"], check=False)
    assert p.returncode != 0 and "retired-key" in p.stderr


def test_new_key_still_works_after_rotation(net: NetOrg) -> None:
    net.ok("alex", "key", "rotate")
    net.ok("alex", "send", "max", "with the new key")
    net.ok("max", "sync")
    assert _bad(net, "max") == []


def test_rotating_back_to_a_retired_key_is_refused(unguarded: NetOrg) -> None:
    o = unguarded
    k1 = key_of(o, "alex")
    o.ok("alex", "key", "rotate")
    k2 = key_of(o, "alex")
    t, entries = current_entries(o.clones["alex"])
    for e in entries:
        if e["name"] == "alex":
            e["signing_key"], e["previous_keys"] = k1.public_key, [k2.public_key]
            e["retired"] = {k2.public_key: {}}
            e["encryption_key"] = k1.public_key
    back = write_dir_commit(o.clones["alex"], entries, k2, t)
    assert push_dir(o.clones["alex"], back).returncode == 0
    r = o.as_("max", "sync")
    assert f"directory commit {back[:10]} rejected" in r.err and "rotate back to a retired key" in r.err
    assert open_repo(o.clones["max"]).ref_target("refs/gitmail/verified/directory") == t


def test_rotating_back_refused_by_guard(net: NetOrg) -> None:
    k1 = key_of(net, "alex")
    net.ok("alex", "key", "rotate")
    k2 = key_of(net, "alex")
    t, entries = current_entries(net.clones["alex"])
    for e in entries:
        if e["name"] == "alex":
            e["signing_key"], e["previous_keys"], e["retired"] = k1.public_key, [k2.public_key], {k2.public_key: {}}
    p = push_dir(net.clones["alex"], write_dir_commit(net.clones["alex"], entries, k2, t))
    assert p.returncode != 0 and "rotate back to a retired key" in p.stderr


def test_revoke_flags_every_message_of_the_key(net: NetOrg) -> None:
    old = key_of(net, "alex")
    net.ok("alex", "send", "max", "signed with the key that leaks")
    net.ok("max", "sync")
    assert _bad(net, "max") == []
    r = net.as_("alex", "key", "revoke")
    assert r.code == 2 and "no retired key" in r.err  # the current key cannot be revoked: rotate first
    net.ok("alex", "key", "rotate")
    out = json.loads(net.ok("alex", "key", "revoke", "--json").out)
    assert out["revoked_key"] == old.public_key
    net.ok("max", "sync")
    bad = _bad(net, "max")
    assert [b["status"] for b in bad] == ["retired-key"] and "revoked key" in bad[0]["detail"]
    shown = json.loads(net.ok("max", "list", "--json").out)  # the cached verdict is updated too
    assert not any("leaks" in json.dumps(m) and m.get("status") == "good" for m in shown.get("messages", shown))
    signers = (open_repo(net.clones["max"]).data_dir / "allowed_signers").read_text()
    assert old.public_key not in signers and key_of(net, "alex").public_key in signers
    r = net.as_("alex", "key", "revoke", old.public_key)
    assert r.code == 2 and "already revoked" in r.err


def test_a_commit_libgit2_cannot_parse_leaves_mail_below_a_retired_tip_good(unguarded: NetOrg) -> None:
    """alex mails max twice; someone pushes onto mail/max/alex a commit git reads but libgit2
    cannot parse (a gpgsig header before the author line); alex then rotates, recording that
    commit as the mailbox's tip. The check of the two earlier messages asked libgit2 whether
    they lie below it, libgit2 failed, and both became retired-key. Parents are now read as
    git reads them: both stay good, the junk commit alone is malformed."""
    from tests.conftest import git, write_literal

    o = unguarded
    o.ok("alex", "send", "max", "first")
    o.ok("alex", "send", "max", "second")
    top = tip(o.clones["alex"], "max", "alex")
    assert top is not None
    tree = git("rev-parse", f"{top}^{{tree}}", cwd=o.clones["alex"]).stdout.strip()
    raw = f"tree {tree}\nparent {top}\ngpgsig x\nauthor x <x> 1 +0000\ncommitter x <x> 1 +0000\n\njunk\n"
    junk = write_literal(o.clones["alex"], "commit", raw.encode())
    push_commit(o.clones["alex"], "max", "alex", junk)
    o.ok("alex", "sync")
    o.ok("alex", "key", "rotate")
    o.ok("max", "sync")
    r = o.as_("max", "verify", "--all", "--json")
    got = json.loads(r.out)
    assert got["good"] == 2 and [(b["oid"], b["status"]) for b in got["bad"]] == [(junk, "malformed")], got


def _linear_repo(tmp_path: Any, n: int) -> "tuple[Any, list[str]]":
    """A bare repository whose branch m is a line of ``n`` commits, and their ids newest first."""
    import subprocess

    from tests.conftest import git

    repo = tmp_path / "r"
    git("init", "-q", "--bare", str(repo))
    script = "".join(f"commit refs/heads/m\nmark :{i + 1}\ncommitter a <a@b> {1700000000 + i} +0000\ndata 3\nm{i % 10}\n"
                     + (f"from :{i}\n" if i else "") + "\n" for i in range(n))
    subprocess.run(["git", "fast-import", "--quiet"], cwd=repo, input=script, text=True, check=True)
    return repo, git("rev-list", "--first-parent", "m", cwd=repo).stdout.split()


def test_a_retired_tip_line_is_walked_once_for_all_the_mail_below_it(tmp_path: Any) -> None:
    """Each message a retired key signed asks whether it lies below the recorded tip. Asked of
    libgit2 (descendant_of) that walked the line between the two every time: quadratic in
    the mailbox (a rotated member's 100,000 messages: hours). objects.on_line walks it once."""
    import pygit2

    from gitmail.core import objects

    repo, ids = _linear_repo(tmp_path, 2000)
    pg = pygit2.Repository(str(repo))
    reads = 0
    real = objects.parent_ids

    def counted(p: Any, oid: str) -> list[str]:
        nonlocal reads
        reads += 1
        return real(p, oid)

    objects.parent_ids = counted  # type: ignore[assignment]
    try:
        assert all(objects.on_line(pg, ids[500], o) for o in reversed(ids[500:]))  # oldest first, as a sync asks
        assert not any(objects.on_line(pg, ids[500], o) for o in ids[:500])  # above the tip
    finally:
        objects.parent_ids = real
    assert reads == 1500, reads  # each commit of the line once, not once per question


def test_the_line_memo_is_safe_across_threads(tmp_path: Any) -> None:
    """The warm guard checks pushes on several threads: the memo's own bookkeeping (evicting
    the oldest line) raised "dictionary changed size during iteration" under contention."""
    import sys
    import threading

    import pygit2

    from gitmail.core import objects

    repo, ids = _linear_repo(tmp_path, 40)
    errors: list[BaseException] = []
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)

    def work(k: int) -> None:
        pg = pygit2.Repository(str(repo))
        try:
            for i in range(300):
                tip = ids[(i * 7 + k) % 20]
                assert objects.on_line(pg, tip, ids[-1])
        except BaseException as e:  # noqa: BLE001 (collected, then asserted)
            errors.append(e)

    try:
        threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert errors == []
