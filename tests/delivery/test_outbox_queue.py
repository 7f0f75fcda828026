"""The outbox message by message (issue 12, items 1-2): no head-of-line blocking, reasons, retry, drop.

Real git daemon with the guard (tests/sync/conftest.py), real LFS server (tests/attachments/conftest.py).
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.attachments.conftest import LFSServer, closed_port_url, lfs_server, set_lfs_url, set_policy  # noqa: F401
from tests.conftest import Org, git, run
from tests.sync.conftest import NetOrg, guard_runtime, net  # noqa: F401

MAILBOX = "refs/heads/gitmail/mail/alex/max"


def server_subjects(bare: Path | str, ref: str = MAILBOX) -> list[str]:
    p = git("log", "--reverse", "--format=%s", ref, cwd=bare, check=False)
    return [ln for ln in p.stdout.splitlines() if ln]


def outbox_refs(clone: Path) -> str:
    return git("for-each-ref", "--format=%(refname)", "refs/gitmail/outbox/", cwd=clone).stdout


def _laptop(o: NetOrg) -> Path:
    """A second clone of max (the admin), to change the org policy while the first is cut off."""
    second = o.root / "max-laptop"
    r = run("init", "--name", "max", "--org", o.url, "--repo", str(second))
    assert r.code == 0, r.err
    return second


def _queue_big_then_small(o: NetOrg, tmp_path: Path) -> tuple[str, str]:
    """max queues a 4 KB attachment, then a text; the admin then lowers the attachment limit below it."""
    laptop = _laptop(o)
    f = tmp_path / "report.bin"
    f.write_bytes(b"x" * 4096)
    o.daemon.stop()
    big = json.loads(o.ok("max", "send", "alex", "with the report", "--attach", str(f), "--plain", "--json").out)
    small = json.loads(o.ok("max", "send", "alex", "just text", "--plain", "--json").out)
    assert big["queued"] is small["queued"] is True
    o.daemon.start()
    r = run("org", "attachment_limit=1024", "--repo", str(laptop))
    assert r.code == 0, r.err
    return big["id"], small["id"]


def test_outbox_refused_message_does_not_block_later_ones(net: NetOrg, tmp_path: Path) -> None:
    big, small = _queue_big_then_small(net, tmp_path)
    r = net.as_("max", "sync", "--json")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert server_subjects(net.bare) == ["just text"]
    assert out["delivered"] == [small]
    assert out["queued"] == []
    assert list(out["refused"]) == [big] and "attachment" in out["refused"][big]
    assert [(u["id"], u["kind"]) for u in out["undelivered"]] == [(big, "refused")]
    assert server_subjects(net.bare) == ["just text"]
    assert outbox_refs(net.clones["max"]) == ""
    # Kept, never destroyed: listed as undelivered, with the remote's reason.
    gone = json.loads(net.ok("max", "outbox", "--undelivered", "--json").out)["undelivered"]
    assert [(u["id"], u["kind"], u["mailboxes"]) for u in gone] == [(big, "refused", ["alex"])]
    assert "attachment" in gone[0]["reason"]
    # alex gets the text; verify is clean on both sides.
    net.ok("alex", "sync")
    assert [m["subject"] for m in json.loads(net.ok("alex", "list", "--json").out)["messages"]] == ["just text"]
    assert json.loads(net.ok("max", "verify", "--all", "--json").out)["ok"]
    # Retrying a refused message queues it again and it is refused again: exit 10, the reason, still kept.
    r = net.as_("max", "outbox", "retry", big[:10])
    assert r.code == 10 and "attachment" in r.err, (r.code, r.err)
    assert [u["id"] for u in json.loads(net.ok("max", "outbox", "--dropped", "--json").out)["undelivered"]] == [big]
    # Once the limit is raised again, retry delivers it, after the text.
    r = run("org", "attachment_limit=1000000", "--repo", str(net.root / "max-laptop"))
    assert r.code == 0, r.err
    net.ok("max", "sync")
    r = net.ok("max", "outbox", "retry", big[:10], "--json")
    assert json.loads(r.out)["delivered"] == [big]
    assert server_subjects(net.bare) == ["just text", "with the report"]
    assert json.loads(net.ok("max", "outbox", "--undelivered", "--json").out)["undelivered"] == []


def test_outbox_sync_says_why_each_message_is_queued(net: NetOrg) -> None:
    net.daemon.stop()
    sent = [json.loads(net.ok("max", "send", who, f"m{i}", "--json").out) for i, who in enumerate(["alex", "alex", "max"])]
    ids = [s["id"] for s in sent]
    assert all(s["outcome"] == "queued" and "cannot reach the org remote" in s["reason"] for s in sent)
    r = net.as_("max", "sync", "--json")
    assert r.code == 9 and "cannot reach the org remote" in r.err
    listing = json.loads(net.ok("max", "outbox", "--json").out)["queued"]
    assert [q["id"] for q in listing] == ids
    assert {q["kind"] for q in listing} == {"remote-unreachable"}
    assert all(str(net.url) in q["reason"] and q["since"] for q in listing)
    text = net.ok("max", "outbox").out
    assert text.count("remote-unreachable: cannot reach the org remote") == 3 and ids[0][:8] in text
    net.daemon.start()
    r = net.ok("max", "sync")
    assert "Delivered 3 queued messages" in r.out  # messages, not mailboxes (two mailboxes here)
    assert net.ok("max", "outbox").out.strip() == "Outbox empty: everything was delivered"


def test_outbox_drop_keeps_the_message_and_unblocks_the_rest(net: NetOrg) -> None:
    net.daemon.stop()
    first = json.loads(net.ok("max", "send", "alex", "oops, wrong text", "--plain", "--json").out)["id"]
    second = json.loads(net.ok("max", "send", "alex", "the right text", "--plain", "--json").out)["id"]
    r = net.as_("max", "outbox", "drop", first[:10])  # no --yes and no answer: nothing changes
    assert r.code == 2 and "not dropped" in r.err
    assert len(json.loads(net.ok("max", "outbox", "--json").out)["queued"]) == 2
    r = net.as_("max", "outbox", "drop", first[:10], stdin="y\n")
    assert r.code == 0 and "Dropped" in r.out, r.err
    r = net.as_("max", "outbox", "drop", "ffffffff", "--yes")
    assert r.code == 4 and r.err.startswith("gitmail: no queued message")
    assert [q["id"] for q in json.loads(net.ok("max", "outbox", "--json").out)["queued"]] == [second]
    gone = json.loads(net.ok("max", "outbox", "--undelivered", "--json").out)["undelivered"]
    assert [(u["id"], u["kind"]) for u in gone] == [(first, "dropped")]
    net.daemon.start()
    assert json.loads(net.ok("max", "sync", "--json").out)["delivered"] == [second]
    assert server_subjects(net.bare) == ["the right text"]
    net.ok("alex", "sync")
    assert json.loads(net.ok("alex", "verify", "--json").out)["ok"]


def test_outbox_lfs_unreachable_waits_without_blocking_others(org: Org, lfs_server: LFSServer,  # noqa: F811
                                                              tmp_path: Path) -> None:
    org.join("bob")
    set_policy(org, attachment_storage="lfs", encryption="off")
    dead = closed_port_url()
    set_lfs_url(org, dead)
    f = tmp_path / "data.bin"
    f.write_bytes(b"y" * 50_000)
    att = json.loads(org.ok("max", "send", "alex", "with data", "--attach", str(f), "--json").out)
    text = json.loads(org.ok("max", "send", "alex", "no attachment", "--json").out)
    other = json.loads(org.ok("max", "send", "bob", "to bob", "--json").out)
    assert text["delivered"] is True and other["delivered"] is True, (text, other)
    assert server_subjects(org.url) == ["no attachment"]
    assert att["outcome"] == "queued" and dead in att["reason"]
    assert text["outcome"] == other["outcome"] == "delivered"
    assert server_subjects(org.url) == ["no attachment"]
    assert server_subjects(org.url, "refs/heads/gitmail/mail/bob/max") == ["to bob"]
    q = json.loads(org.ok("max", "outbox", "--json").out)["queued"]
    assert [(x["id"], x["kind"]) for x in q] == [(att["id"], "lfs-unreachable")] and dead in q[0]["reason"]
    r = org.ok("max", "sync", "--json")
    synced = json.loads(r.out)
    assert synced["queued"] == [att["id"]] and synced["outbox"][0]["kind"] == "lfs-unreachable"
    set_lfs_url(org, lfs_server.url)
    r = org.ok("max", "outbox", "retry", "--json")
    assert json.loads(r.out)["delivered"] == [att["id"]]
    assert server_subjects(org.url) == ["no attachment", "with data"]
    org.ok("alex", "sync")
    assert json.loads(org.ok("alex", "verify", "--json").out)["ok"]


def test_a_remote_that_is_not_the_org_gets_no_mail(org: Org, tmp_path: Path) -> None:
    """``gitmail.remote`` pointing at another repository (a typo, an empty repo, another org):
    a sync took it for the org with this member's mail rewound, and signed and pushed their
    sent mail into it again ("delivered again"); a send said "Sent". Now the sync refuses in
    one line (exit 7) and pushes nothing, a send stays queued saying why, and once the remote
    is the org again the next sync delivers it, once."""
    import subprocess

    org.ok("max", "send", "alex", "before")
    org.ok("alex", "sync")
    clone = org.clones["max"]
    empty = tmp_path / "empty.git"
    subprocess.run(["git", "init", "-q", "--bare", str(empty)], check=True)
    git("remote", "set-url", "origin", str(empty), cwd=clone)
    try:
        r = org.as_("max", "sync")
        assert r.code == 7 and r.err.count("\n") == 1 and "holds no gitmail directory" in r.err, r
        q = json.loads(org.ok("max", "send", "alex", "while lost", "--json").out)
        assert q["queued"] is True and "holds no gitmail directory" in q["reason"], q
        assert git("for-each-ref", cwd=empty).stdout == ""
        other = tmp_path / "other.git"  # another org: a directory of its own, from its first commit
        assert run("init", "--name", "zed", "--org", str(other), "--repo", str(tmp_path / "zed")).code == 0
        before = git("for-each-ref", cwd=other).stdout
        git("remote", "set-url", "origin", str(other), cwd=clone)
        r = org.as_("max", "sync")
        assert r.code == 7 and "holds another org's directory" in r.err, r
        assert git("for-each-ref", cwd=other).stdout == before
    finally:
        git("remote", "set-url", "origin", org.url, cwd=clone)
    org.ok("max", "sync")
    org.ok("alex", "sync")
    subjects = [m["subject"] for m in json.loads(org.ok("alex", "list", "--json").out)["messages"]]
    assert sorted(subjects) == ["before", "while lost"], subjects


def test_a_send_right_after_the_remote_moved_looks_before_it_pushes(org: Org, tmp_path: Path) -> None:
    """``git remote set-url`` (or another ``gitmail.remote``, or a push URL) and then a send, no
    sync between: the remote-tracking refs still showed the org as last fetched from the old
    place, so the send pushed the mail into whatever the new URL held (here an empty repo:
    "Sent"). Now a send to a remote configured otherwise than when a fetch last found the org
    there fetches its directory first, from the push URL too when there is one: queued, saying
    why, nothing pushed; back at the org, the next send delivers all of it, once."""
    import subprocess

    org.ok("max", "send", "alex", "before")
    clone = org.clones["max"]
    empty = tmp_path / "empty.git"
    subprocess.run(["git", "init", "-q", "--bare", str(empty)], check=True)
    git("remote", "set-url", "origin", str(empty), cwd=clone)
    try:
        q = json.loads(org.ok("max", "send", "alex", "while moved", "--json").out)
        assert q["queued"] is True and "holds no gitmail directory" in q["reason"], q
        git("remote", "set-url", "origin", org.url, cwd=clone)
        git("remote", "set-url", "--push", "origin", str(empty), cwd=clone)  # fetch from the org, push elsewhere
        q = json.loads(org.ok("max", "send", "alex", "push url moved", "--json").out)
        assert q["queued"] is True and "the push URL of 'origin'" in q["reason"], q
        assert "holds no gitmail directory" in q["reason"], q
        assert git("for-each-ref", cwd=empty).stdout == ""
    finally:
        git("config", "--unset-all", "remote.origin.pushurl", cwd=clone)
        git("remote", "set-url", "origin", org.url, cwd=clone)
    r = json.loads(org.ok("max", "send", "alex", "back", "--json").out)
    assert r["queued"] is False, r
    org.ok("alex", "sync")
    subjects = [m["subject"] for m in json.loads(org.ok("alex", "list", "--json").out)["messages"]]
    assert sorted(subjects) == ["back", "before", "push url moved", "while moved"], subjects
    assert not any(name.endswith("push-check") for name in git("for-each-ref", cwd=clone).stdout.split())


def test_init_records_where_it_found_the_org(org: Org, tmp_path: Path) -> None:
    """``init`` fetched the org from its remote just now: it records so, and the first send
    pushes without fetching the directory again."""
    clone = tmp_path / "zed"
    assert run("init", "--name", "zed", "--org", org.url, "--repo", str(clone)).code == 0
    recorded = json.loads((clone / ".git" / "gitmail" / "org-remote.json").read_text())
    assert recorded == {"remote": "origin", "url": org.url, "pushurl": ""}


def test_options_before_the_subcommand_apply_to_it(org: Org) -> None:
    """`gitmail outbox --repo X retry` ignored --repo (the subcommand took its own default, the
    current folder): it retried, or dropped from, another clone's outbox. The group's options
    are the subcommand's defaults now."""
    from gitmail import git as gitmod
    from tests.conftest import run

    clone = org.clones["max"]
    url = gitmod.output(["config", "remote.origin.url"], clone)
    gitmod.run(["config", "remote.origin.url", str(clone.parent / "nowhere.git")], clone)
    assert json.loads(org.ok("max", "send", "alex", "queued", "--json").out)["queued"] is True
    gitmod.run(["config", "remote.origin.url", url], clone)
    r = run("outbox", "--repo", str(clone), "--json", "retry")
    assert r.code == 0 and json.loads(r.out)["delivered"], r
    assert json.loads(run("outbox", "--repo", str(clone), "--json").out)["queued"] == []
