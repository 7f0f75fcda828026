"""gitmail import: mbox, Maildir and team-chat archives in as signed, idempotent imported messages."""

from __future__ import annotations

import json
import mailbox
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Org, git
from tests.sync import forge
from tests.sync.conftest import NetOrg, guard_runtime, net  # noqa: F401 - fixtures: git daemon + guard


def _ids(org: Org, name: str) -> list[str]:
    rows = json.loads(org.ok(name, "list", "--json", "--limit", "1000").out)["messages"]
    return [m["id"] for m in rows if m["type"] == "imported"]


def _imported(org: Org, name: str) -> list[dict[str, Any]]:
    """Every imported message of ``name``'s inbox, as ``read --json`` shows it."""
    ids = _ids(org, name)
    if not ids:
        return []
    msgs: list[dict[str, Any]] = json.loads(org.ok(name, "read", *ids, "--no-mark", "--json").out)["messages"]
    return msgs


def _read_text(org: Org, name: str) -> str:
    return org.ok(name, "read", *_ids(org, name), "--no-mark").out


def _import(org: Org, name: str, *args: str) -> dict[str, Any]:
    r: dict[str, Any] = json.loads(org.ok(name, "import", *args, "--json").out)
    return r


def test_round_trip_export_import_keeps_sender_date_message_id(org: Org, tmp_path: Path) -> None:
    org.ok("max", "send", "alex", "pick your top 3\nsecond line", "--subject", "Domain research")
    org.ok("alex", "sync")
    first = json.loads(org.ok("alex", "list", "--json").out)["messages"][0]
    org.ok("max", "send", "alex", "and one more", "--subject", "Follow-up")
    org.ok("alex", "sync")
    box = tmp_path / "alex.mbox"
    org.ok("alex", "export", "--mbox", str(box))
    originals = {str(m["Subject"]): m for m in mailbox.mbox(str(box))}
    rows = {m["subject"]: m for m in json.loads(org.ok("alex", "list", "--json").out)["messages"]}

    r = _import(org, "alex", "--mbox", str(box))
    assert r["source"] == "mbox" and len(r["added"]) == 2 and r["already"] == 0 and r["skipped"] == []
    assert r["mailbox"] == "gitmail/mail/alex/alex" and r["outcome"] == "delivered"
    got = {m["subject"]: m for m in _imported(org, "alex")}
    assert set(got) == {"Domain research", "Follow-up"}
    for subject, m in got.items():
        p = m["payload"]
        assert m["from"] == "alex" and m["verified"] and m["status"] == "good"  # signed by the importer
        assert p["source"] == "mbox" and "max" in p["sender"] and "alex" in " ".join(p["to"])
        assert p["message_id"] == str(originals[subject]["Message-ID"]) == f"<{rows[subject]['id']}@gitmail>"
        assert p["date"][:19] == rows[subject]["date"][:19]  # mbox dates carry whole seconds
    assert got["Domain research"]["body"].startswith("pick your top 3\nsecond line")
    assert first["id"] in got["Domain research"]["payload"]["message_id"]
    # Shown as imported, never as a message signed by max.
    text = _read_text(org, "alex")
    assert "Imported from max" in text and "signed by alex, who imported it" in text
    assert "From: max" not in text.replace("From: max <", "")
    # Idempotent: the same archive again adds nothing, and the mailbox is unchanged.
    tip = git("rev-parse", "origin/gitmail/mail/alex/alex", cwd=org.clones["alex"]).stdout
    again = _import(org, "alex", "--mbox", str(box))
    assert again["added"] == [] and again["already"] == 2 and again["outcome"] is None
    org.ok("alex", "sync")
    assert git("rev-parse", "origin/gitmail/mail/alex/alex", cwd=org.clones["alex"]).stdout == tip
    # Verification (the client's, from scratch) calls every message good.
    v = org.ok("alex", "verify")
    assert v.code == 0
    # What an import saw is remembered per tip; without that memo, or with one whose tip is
    # not on the mailbox (a lie), the mailbox itself is read again: still nothing added.
    memo = org.clones["alex"] / ".git" / "gitmail" / "imported"
    [f] = list(memo.iterdir())
    assert json.loads(f.read_text())["tip"] == tip.strip()
    f.unlink()
    assert _import(org, "alex", "--mbox", str(box))["already"] == 2
    f.write_text(json.dumps({"tip": "0" * 40, "keys": []}))
    assert _import(org, "alex", "--mbox", str(box))["already"] == 2


def test_maildir_import_to_another_member_is_idempotent_in_clear(org: Org, tmp_path: Path) -> None:
    md = mailbox.Maildir(str(tmp_path / "Maildir"), create=True)
    for i in range(3):
        e = EmailMessage()
        e["From"] = f"Ann Other <ann{i}@example.com>"
        e["To"] = "team@example.com"
        e["Subject"] = f"old thread {i}"
        e["Date"] = f"Mon, 0{i + 1} Jun 2020 10:00:00 +0200"
        e["Message-ID"] = f"<m{i}@example.com>"
        e.set_content(f"body {i}")
        md.add(e)
    md.close()
    r = _import(org, "max", "--maildir", str(tmp_path / "Maildir"), "--to", "alex", "--plain")
    assert len(r["added"]) == 3 and r["mailbox"] == "gitmail/mail/alex/max"
    org.ok("alex", "sync")
    got = sorted(_imported(org, "alex"), key=lambda m: m["payload"]["date"])
    assert [m["payload"]["date"] for m in got] == [f"2020-06-0{i + 1}T08:00:00.000000Z" for i in range(3)]
    assert [m["from"] for m in got] == ["max"] * 3 and not any(m["encrypted"] for m in got)
    assert got[0]["payload"]["sender"] == "Ann Other <ann0@example.com>" and got[0]["body"] == "body 0\n"
    # In-run order is the original order: oldest first on the chain.
    log = git("log", "--format=%s", "origin/gitmail/mail/alex/max", cwd=org.clones["alex"]).stdout.splitlines()
    assert log == ["old thread 2", "old thread 1", "old thread 0"]
    assert _import(org, "max", "--maildir", str(tmp_path / "Maildir"), "--to", "alex")["already"] == 3


def _team(tmp_path: Path, lines: dict[str, list[str]]) -> Path:
    team = tmp_path / "teams" / "demo"
    (team / "inboxes").mkdir(parents=True)
    for agent, ls in lines.items():
        (team / "inboxes" / f"{agent}.jsonl").write_text("\n".join(ls) + "\n")
    return team


def _env(**kw: Any) -> str:
    base = {"id": "msg_1", "type": "task_assign", "from": "lead", "to": "dev", "schema_version": 1,
            "created_at": "2026-01-02T03:04:05Z", "payload": {"subject": "Implement API",
                                                               "details": "Add POST /v1/profile"}}
    base.update(kw)
    return json.dumps(base)


def test_team_chat_import_and_hostile_lines(org: Org, tmp_path: Path) -> None:
    team = _team(tmp_path, {
        "dev": [
            _env(task_id="task_001", trace_id="tr_001", priority="high"),
            "",
            "not json {",
            _env(id="msg_2", type="task_update", **{"from": "dev\x1b[31m", "to": ["lead"]},
                 payload={"status": "blocked", "note": "Need schema decision"}, created_at=1767323045),
            json.dumps({"id": "x"}),
            _env(id="msg_3", schema_version=2),
            "[1, 2]",
        ],
        "lead": [_env(id="msg_2", type="task_update", payload={"note": "dup of dev's copy"})],  # same id: once
    })
    (team / "inboxes" / "qa.jsonl").write_bytes(b'{"id": "\xff"}\n')
    r = org.as_("alex", "import", "--team-chat", str(team))
    assert r.code == 0, r.err
    skipped = [ln for ln in r.err.splitlines() if ln.startswith("gitmail: skipped")]
    assert skipped == [
        "gitmail: skipped inboxes/dev.jsonl line 3: not JSON (Expecting value)",
        "gitmail: skipped inboxes/dev.jsonl line 5: not a team-chat envelope: no type, from, to, payload, created_at",
        "gitmail: skipped inboxes/dev.jsonl line 6: schema_version 2 is not supported (1 is)",
        "gitmail: skipped inboxes/dev.jsonl line 7: not a JSON object",
        "gitmail: skipped inboxes/qa.jsonl line 1: not UTF-8",
    ]
    assert "Imported 2 messages into gitmail/mail/alex/alex (1 already imported, 5 skipped)" in r.out
    got = {m["payload"]["message_id"]: m for m in _imported(org, "alex")}
    one, two = got["msg_1"], got["msg_2"]
    assert one["subject"] == "Implement API" and one["priority"] == "high"
    assert one["body"].startswith("Add POST /v1/profile") and '"subject": "Implement API"' in one["body"]
    assert one["payload"] == {"source": "team-chat", "sender": "lead", "to": ["dev"],
                              "date": "2026-01-02T03:04:05.000000Z", "message_id": "msg_1",
                              "original_type": "task_assign", "trace_id": "tr_001", "task_id": "task_001"}
    assert two["payload"]["sender"] == "dev\\x1b[31m"  # escaped visibly, never raw
    assert two["payload"]["date"] == "2026-01-02T03:04:05.000000Z" and two["body"].startswith("Need schema")
    assert json.loads(org.ok("alex", "import", "--team-chat", str(team), "--json").out)["added"] == []


def test_bad_input_writes_nothing(org: Org, tmp_path: Path) -> None:
    assert org.as_("alex", "import").code == 2
    r = org.as_("alex", "import", "--mbox", str(tmp_path / "a"), "--maildir", str(tmp_path))
    assert r.code == 2 and r.err.startswith("gitmail: give exactly one")
    r = org.as_("alex", "import", "--mbox", str(tmp_path / "missing"))
    assert r.code == 2 and "not an mbox file" in r.err and "Traceback" not in r.err
    r = org.as_("alex", "import", "--maildir", str(tmp_path))
    assert r.code == 2 and "not a Maildir" in r.err
    r = org.as_("alex", "import", "--team-chat", str(tmp_path))
    assert r.code == 2 and "not a team-chat folder" in r.err
    (tmp_path / "m").write_text("From x\n\nhi\n")
    r = org.as_("alex", "import", "--mbox", str(tmp_path / "m"), "--to", "nobody")
    assert r.code == 4
    r = org.as_("alex", "import", "--mbox", str(tmp_path / "m"), "--to", "*")
    assert r.code == 2 and "one member" in r.err
    assert git("for-each-ref", "refs/gitmail/outbox", cwd=org.clones["alex"]).stdout == ""


HOSTILE = [
    # escape sequences and an encoded newline in headers
    b"From: =?utf-8?q?Eve=0AInjected=3A_yes?= <eve@example.com>\nSubject: \x1b]0;pwned\x07 hi\n"
    b"Message-ID: <h1@x>\nDate: Tue, 1 Jan 2030 00:00:00 +0000\n\nbody one\n",
    # no Date, no Message-ID, an unknown charset, 8-bit bytes that are not UTF-8
    b"From: a@b\nSubject: =?x-unknown?b?AAAA?=\nContent-Type: text/plain; charset=x-unknown\n\n\xff\xfe caf\xe9\n",
    # a huge header and a broken date
    b"From: big@example.com\nSubject: " + b"S" * 100_000 + b"\nDate: not a date\nMessage-ID: <h3@x>\n\nbody\n",
    # a date before 1970 and a bidi override in the sender
    b"From: \xe2\x80\xaeevil@example.com\nDate: Mon, 1 Jan 1900 00:00:00 +0000\nMessage-ID: <h4@x>\n\nold\n",
]


def test_hostile_mbox_is_sanitised_never_a_traceback(org: Org, tmp_path: Path) -> None:
    box = tmp_path / "hostile.mbox"
    box.write_bytes(b"".join(b"From MAILER-DAEMON Thu Jan  1 00:00:00 1970\n" + m + b"\n" for m in HOSTILE))
    big = b"From: x@y\nMessage-ID: <huge@x>\n\n" + b"a" * (1024 * 1024 + 10) + b"\n"
    box.write_bytes(box.read_bytes() + b"From MAILER-DAEMON Thu Jan  1 00:00:00 1970\n" + big)
    r = org.as_("alex", "import", "--mbox", str(box), "--json")
    assert r.code == 0, r.err
    res = json.loads(r.out)
    assert len(res["added"]) == 4
    assert [s["where"] for s in res["skipped"]] == ["message 5"]
    assert "limit" in res["skipped"][0]["reason"]
    got = {m["payload"]["message_id"]: m for m in _imported(org, "alex")}
    first = got["<h1@x>"]
    assert "\n" not in first["payload"]["sender"] and first["payload"]["sender"].startswith("Eve Injected: yes")
    assert "\x1b" not in first["subject"] and first["subject"].startswith("\\x1b]0;pwned\\x07")
    assert first["payload"]["date"] == "2030-01-01T00:00:00.000000Z"  # a claim: kept, not trusted
    nodate = [m for k, m in got.items() if k.startswith("sha256:")]
    assert len(nodate) == 1 and nodate[0]["payload"]["date"] is None and "caf" in nodate[0]["body"]
    assert len(got["<h3@x>"]["subject"]) <= 200 and got["<h3@x>"]["payload"]["date"] is None
    assert got["<h4@x>"]["payload"]["date"] is None and got["<h4@x>"]["payload"]["sender"].startswith("\\u202e")
    text = _read_text(org, "alex")
    assert "\x1b" not in text and "\u202e" not in text
    again = json.loads(org.ok("alex", "import", "--mbox", str(box), "--json").out)
    assert again["added"] == [] and again["already"] == 4


def test_through_the_guard_an_import_never_claims_the_original_sender(net: NetOrg, tmp_path: Path) -> None:
    """max imports mail that claims to be from alex into alex's mailbox: the guard accepts it as max's,
    alex's client verifies it as max's, and shows alex only as the original's claim."""
    box = tmp_path / "claims.mbox"
    e = EmailMessage()
    e["From"] = "alex <alex@gitmail.invalid>"
    e["To"] = "max@example.com"
    e["Subject"] = "I, alex, approve"
    e["Message-ID"] = "<claim@x>"
    e["Date"] = "Wed, 04 Feb 2026 05:06:07 +0000"
    e.set_content("signed: alex")
    mb = mailbox.mbox(str(box))
    mb.add(e)
    mb.close()
    r = json.loads(net.ok("max", "import", "--mbox", str(box), "--to", "alex", "--json").out)
    assert r["outcome"] == "delivered" and len(r["added"]) == 1  # the guard let it through
    net.ok("alex", "sync")
    [m] = _imported(net, "alex")
    assert m["from"] == "max" and m["verified"] and m["payload"]["sender"] == "alex <alex@gitmail.invalid>"
    text = _read_text(net, "alex")
    assert "From: max\n" in text and "Imported from alex <alex@gitmail.invalid> (mbox, dated 2026-02-04T05:06:07" in text
    assert "signed by max, who imported it" in text
    assert net.ok("alex", "verify").code == 0
    # send --batch through the guard: one push, every message delivered.
    batch = "".join(json.dumps({"to": "alex", "body": f"batch {i}"}) + "\n" for i in range(5))
    out = json.loads(net.ok("max", "send", "--batch", "-", "--json", stdin=batch).out)
    assert [m["outcome"] for m in out["messages"]] == ["delivered"] * 5


def test_guard_refuses_an_imported_payload_that_breaks_the_rules(net: NetOrg) -> None:
    from gitmail.core import bulk
    from gitmail.core import directory as dirmod
    from gitmail.core.model import Message, format_date, utcnow
    from gitmail.core.repo import open_repo

    clone = net.clones["max"]
    r = open_repo(clone)
    m = Message(**{"from": "max"}, to=["alex"], date=format_date(utcnow()), subject="x", type="imported",
                payload={"source": "mbox", "sender": "alex\nInjected: yes", "message_id": "<x>"})
    blob = m.seal()
    pack = bulk.PackWriter()
    parent = forge.tip(clone, "gitmail/mail/alex/max")
    oid = bulk.message_commit(pack, m, dirmod.load(r).members["max"], forge.key_of("max"),
                              bytes.fromhex(parent) if parent else None, 0, blob)
    pack.finish(r)
    code, out = forge.push(clone, oid.hex(), "refs/heads/gitmail/mail/alex/max")
    assert code != 0 and "gitmail guard: push refused" in out and "control characters" in out, out


def test_the_cycle_collector_is_paused_only_while_composing(org: Org, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """An import pauses Python's cycle collector while it composes and writes (a tenth of its
    CPU went to walking the growing heap) and gives it back as it found it, as the caller had it."""
    import gc

    import importlib

    from gitmail.api import imports

    sendmod = importlib.import_module("gitmail.api.send")  # the module (gitmail.api.send is also a function)

    box = mailbox.mbox(str(tmp_path / "a.mbox"))
    for i in range(3):
        e = EmailMessage()
        e["From"], e["Subject"], e["Message-ID"] = "a@example.com", f"s {i}", f"<gc-{i}@x>"
        e.set_content(f"body {i}")
        box.add(e)
    box.close()
    seen: list[bool] = []
    real = sendmod.prepare

    def prepare(*a: Any, **kw: Any) -> Any:
        seen.append(gc.isenabled())
        return real(*a, **kw)

    monkeypatch.setattr(sendmod, "prepare", prepare)
    try:
        assert gc.isenabled()
        res = imports.import_archive(org.clones["max"], mbox=tmp_path / "a.mbox")
        assert len(res.added) == 3 and seen == [False] * 3 and gc.isenabled()
        gc.disable()
        seen.clear()
        imports.import_archive(org.clones["alex"], mbox=tmp_path / "a.mbox")
        assert seen == [False] * 3 and not gc.isenabled()  # the caller's choice is kept
    finally:
        gc.enable()


def _big_mbox(path: Path, n: int, hostile: dict[int, str]) -> Path:
    """``n`` messages; those numbered in ``hostile`` get that body (e.g. one over the body limit)."""
    box = mailbox.mbox(str(path))
    for i in range(n):
        e = EmailMessage()
        e["From"], e["To"] = f"P{i % 7} <p{i % 7}@example.com>", "team@example.com"
        e["Subject"], e["Message-ID"] = f"report {i}", f"<big-{i}@example.com>"
        e["Date"] = f"Mon, {1 + i % 28:02d} Jun 2025 {i % 24:02d}:{i % 60:02d}:00 +0000"
        e.set_content(hostile.get(i, f"report {i}\n"))
        box.add(e)
    box.close()
    return path


def test_forked_workers_import_exactly_what_one_process_imports(org: Org, tmp_path: Path) -> None:
    """An archive of at least PARALLEL_MIN entries is parsed, composed and encrypted by forked
    workers while this process signs and writes: the mailbox it leaves (messages, order,
    payloads, what is skipped and why) is the one a single process leaves, encrypted and
    verified, and a second import adds nothing."""
    from gitmail.api import imports
    from gitmail.core import workers

    n = imports.PARALLEL_MIN + 3 * imports.CHUNK + 7  # several chunks, the last one short
    over = "x" * (1024 * 1024 + 10)  # over the org's body limit (1 MiB): skipped, in either mode
    box = _big_mbox(tmp_path / "big.mbox", n, {5: over, imports.PARALLEL_MIN + 1: over})
    assert workers.can_fork(), "this test needs two cores and no other thread"
    pools: list[object] = []
    real_pool = workers.pool

    def counting_pool(*a: Any) -> Any:
        pools.append(a)
        return real_pool(*a)

    workers.pool = counting_pool  # type: ignore[assignment]
    try:
        forked = imports.import_archive(org.clones["alex"], mbox=box)
    finally:
        workers.pool = real_pool
    assert len(pools) == 1  # the forked path ran
    real_min = imports.PARALLEL_MIN
    imports.PARALLEL_MIN = n + 1
    try:
        single = imports.import_archive(org.clones["max"], mbox=box)
    finally:
        imports.PARALLEL_MIN = real_min
    assert forked.outcome == single.outcome == "delivered"
    assert len(forked.added) == len(single.added) == n - 2
    assert forked.skipped == single.skipped and [s.where for s in forked.skipped] == [
        "message 6", f"message {imports.PARALLEL_MIN + 2}"]
    assert all("limit" in s.reason for s in forked.skipped)

    def shown(name: str, path: str) -> list[tuple[str, str, dict[str, Any]]]:
        """(subject, body, payload) of every imported message, in the mailbox's chain order."""
        org.ok(name, "sync")
        rows = json.loads(org.ok(name, "list", "--json", "--limit", "100000").out)["messages"]
        ids = [m["id"] for m in rows if m["type"] == "imported"]
        got = {m["id"]: m for m in json.loads(org.ok(name, "read", *ids, "--no-mark", "--json").out)["messages"]}
        assert len(got) == n - 2
        assert all(m["verified"] and m["status"] == "good" and m["encrypted"] for m in got.values())
        chain = git("log", "--reverse", "--format=%(trailers:key=Message-Id,valueonly)", f"origin/{path}",
                    cwd=org.clones[name]).stdout.split()
        return [(got[i]["subject"], got[i]["body"], got[i]["payload"])
                for i in (c.strip("<>").split("@")[0] for c in chain)]

    alex, max_ = shown("alex", forked.mailbox), shown("max", single.mailbox)
    assert [p for _, _, p in alex] == [p for _, _, p in max_]  # same messages, same order
    assert [(s, b) for s, b, _ in alex] == [(s, b) for s, b, _ in max_]
    dates = [p["date"] for _, _, p in alex]
    assert dates == sorted(dates)  # oldest first, as the archive's dates say
    again = imports.import_archive(org.clones["alex"], mbox=box)
    assert again.added == [] and again.already == n - 2


def test_a_failing_stream_writes_nothing(org: Org) -> None:
    """write_prepared(mailbox=...) reads its messages while it writes; when the producer fails
    half-way, no object, pack or ref is left and nothing is delivered."""
    from gitmail.api.send import Draft, prepare, write_prepared
    from gitmail.api.session import session

    clone = org.clones["alex"]
    s = session(clone, None)
    before = git("for-each-ref", cwd=clone).stdout
    packs = sorted((clone / ".git" / "objects" / "pack").glob("*"))

    def stream() -> Any:
        for i in range(3):
            yield prepare(s, Draft(to=["alex"], body=f"m {i}"), None)
        raise RuntimeError("the producer broke")

    with pytest.raises(RuntimeError):
        write_prepared(s, stream(), mailbox="gitmail/mail/alex/alex")
    assert git("for-each-ref", cwd=clone).stdout == before
    assert sorted((clone / ".git" / "objects" / "pack").glob("*")) == packs


def test_an_error_comes_back_from_a_worker_with_its_message_and_exit_code() -> None:
    from gitmail.api.send import portable as _portable
    from gitmail.errors import GitError, UsageError

    u = UsageError("body over the limit")
    assert _portable(u) is u
    g = _portable(GitError(["git", "push", "origin"], 1, b"", b"fatal: no space left on device\n"))
    assert type(g).__name__ == "GitmailError" and g.exit_code == 8 and "no space left" in str(g)


def test_a_maildir_imports_regular_files_only(org: Org, tmp_path: Path) -> None:
    """A Maildir someone sent the user, holding a symbolic link to the member's own signing key
    (and to any file), a FIFO and a link to /dev/zero: the import turned the linked files into
    messages (with --to, into another member's mailbox), hung on the FIFO and ran out of memory on
    /dev/zero. Now each is skipped, saying so; the real message is imported."""
    import os

    from gitmail.core.repo import open_repo

    md = mailbox.Maildir(str(tmp_path / "Maildir"), create=True)
    e = EmailMessage()
    e["From"] = "Ann Other <ann@example.com>"
    e["Subject"] = "the real one"
    e["Message-ID"] = "<real@example.com>"
    e.set_content("hello")
    md.add(e)
    md.close()
    cur = tmp_path / "Maildir" / "cur"
    key = open_repo(org.clones["max"]).key_path("max")
    os.symlink(key, cur / "1700000002.3.host:2,S")
    os.symlink("/dev/zero", cur / "1700000003.4.host:2,S")
    os.mkfifo(cur / "1700000004.5.host:2,S")
    r = _import(org, "max", "--maildir", str(tmp_path / "Maildir"))
    assert len(r["added"]) == 1, r
    skipped = {s["where"]: s["reason"] for s in r["skipped"]}
    assert set(skipped) == {"1700000002.3.host", "1700000003.4.host", "1700000004.5.host"}, skipped
    assert all(w == "not a regular file (a link, a pipe or a device); not read" for w in skipped.values())
    bodies = json.dumps(_imported(org, "max"))
    assert "PRIVATE KEY" not in bodies and "the real one" in bodies


def test_a_message_over_the_read_limit_is_skipped_before_it_is_parsed(org: Org, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """One line of 100 MB in an mbox took 1.2 GB to parse before the body limit skipped it (2 GB
    lines: more memory than the machine has). Now a message over the read limit is skipped
    unread past it (the limit made small here)."""
    from gitmail.api import archives

    monkeypatch.setattr(archives, "MESSAGE_READ_LIMIT", 4096)
    box = tmp_path / "big.mbox"
    box.write_bytes(b"From a@b Mon Jun  1 10:00:00 2020\nSubject: big\n\n" + b"A" * 10_000 + b"\n\n"
                    b"From a@b Mon Jun  1 10:00:00 2020\nSubject: small\nMessage-ID: <s@x>\n\nhi\n")
    r = _import(org, "max", "--mbox", str(box))
    assert len(r["added"]) == 1 and [s["reason"] for s in r["skipped"]] == ["message over 4096 bytes; not read further"], r


def test_a_second_copy_in_one_archive_is_not_called_already_imported(org: Org, tmp_path: Path) -> None:
    """Two messages of one mbox with one Message-ID, on a first import: the second was reported
    as "1 already imported", as if an earlier import had brought it. Now it is a skipped entry
    saying why; a second import of the archive calls both already imported."""
    box = tmp_path / "dup.mbox"
    box.write_text("From a@b Mon Jun  1 10:00:00 2020\nSubject: one\nMessage-ID: <same@x>\n\nfirst\n\n"
                   "From a@b Mon Jun  1 11:00:00 2020\nSubject: two\nMessage-ID: <same@x>\n\nsecond\n")
    r = _import(org, "max", "--mbox", str(box))
    assert len(r["added"]) == 1 and r["already"] == 0, r
    assert r["skipped"] == [{"where": "message 2", "reason": "the same Message-ID as an earlier message of this "
                                                              "archive (that one is imported)"}], r
    again = _import(org, "max", "--mbox", str(box))
    assert again["added"] == [] and again["already"] == 2 and again["skipped"] == [], again


def test_parts_nested_past_the_depth_read_are_named_not_dropped(org: Org, tmp_path: Path) -> None:
    """A message whose text sits 150 multipart levels down came out with an empty body and no
    word of why. Now the body says what was left out."""
    inner = "Content-Type: text/plain\n\nthe text\n"
    for i in range(150):
        inner = f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n{inner}--b{i}--\n'
    box = tmp_path / "deep.mbox"
    box.write_text("From a@b Mon Jun  1 10:00:00 2020\nSubject: deep\nMessage-ID: <deep@x>\n" + inner)
    r = _import(org, "max", "--mbox", str(box))
    assert len(r["added"]) == 1, r
    [m] = [m for m in _imported(org, "max") if m["subject"] == "deep"]
    assert "[not imported: parts nested deeper than 100 levels]" in m["body"], m["body"][:300]


def _two(tmp_path: Path) -> Path:
    box = tmp_path / "a.mbox"
    box.write_text("From a@b Mon Jun  1 10:00:00 2020\nSubject: one\nMessage-ID: <m1@ex>\n\nfirst\n\n"
                   "From a@b Mon Jun  1 11:00:00 2020\nSubject: two\nMessage-ID: <m2@ex>\n\nsecond\n")
    return box


@pytest.mark.parametrize("packing", [False, True])
def test_an_archive_imported_from_another_clone_is_not_imported_again(net: NetOrg, tmp_path: Path,  # noqa: F811
                                                                      packing: bool) -> None:
    """alex imports an archive into their own mailbox and into max's, then (packing on) packs
    their inbox; a second clone of alex imports the same archive. It held no copy of max's
    pair (never written from there) and read its own packed pair from the packed entry, while
    import looked only at refs it had: both were imported a second time, the guard taking
    them. Now the second clone fetches the pair, or reads the packed entry: already imported."""
    from tests.conftest import run

    box = _two(tmp_path)
    if packing:
        net.ok("max", "org", "packing=true")
        net.ok("alex", "sync")
    for to in ("alex", "max"):
        assert len(_import(net, "alex", "--mbox", str(box), "--to", to, "--plain")["added"]) == 2
    net.ok("alex", "sync")
    if packing:
        assert "alex" in json.loads(net.ok("alex", "pack", "--json").out)["packed"]
    second = tmp_path / "alex-2"
    assert run("init", "--name", "alex", "--org", net.url, "--repo", str(second)).code == 0
    net.clones["alex-2"] = second
    net.ok("alex-2", "sync")
    for to in ("alex", "max"):
        again = _import(net, "alex-2", "--mbox", str(box), "--to", to, "--plain")
        assert again["added"] == [] and again["already"] == 2, (to, again)
    net.ok("max", "sync")
    assert len(_ids(net, "max")) == 2


def test_plain_under_required_encryption_is_an_error_not_an_empty_success(org: Org, tmp_path: Path) -> None:
    """send --plain under encryption=required exits 2; import --plain said 'Imported 0 messages
    (2 skipped)' and exited 0, each entry skipped for the same reason. Now one line, exit 2,
    nothing written."""
    org.ok("max", "org", "encryption=required")
    before = git("for-each-ref", cwd=org.clones["max"]).stdout
    r = org.as_("max", "import", "--mbox", str(_two(tmp_path)), "--plain")
    assert r.code == 2 and r.err == "gitmail: the org requires encryption: --plain is not allowed\n", r
    assert git("for-each-ref", cwd=org.clones["max"]).stdout == before
    assert len(_import(org, "max", "--mbox", str(_two(tmp_path)))["added"]) == 2  # encrypted: fine


def test_unknown_original_fields_are_absent_not_null(org: Org, tmp_path: Path) -> None:
    """docs/protocol.md §5: original_type, trace_id and task_id are absent when unknown; the
    writer stored them as null (the pydantic dump put them back)."""
    _import(org, "max", "--mbox", str(_two(tmp_path)), "--plain")
    blob = git("show", "refs/gitmail/outbox/gitmail/mail/max/max:message.json", cwd=org.clones["max"],
               check=False)
    if blob.returncode != 0:
        blob = git("show", "refs/heads/gitmail/mail/max/max:message.json", cwd=org.url)
    payload = json.loads(blob.stdout)["payload"]
    assert payload["source"] == "mbox" and not {"original_type", "trace_id", "task_id"} & set(payload), payload


def test_a_team_chat_inbox_that_is_a_link_is_not_read(org: Org, tmp_path: Path) -> None:
    """An archive's inboxes/dev.jsonl linking to a file elsewhere (another team's inbox, any
    JSONL file of the user's) was read and imported, with --to delivered to a colleague.
    Skipped now, as a Maildir's links are."""
    team = _team(tmp_path, {"lead": [_env(id="msg_1")]})
    elsewhere = tmp_path / "elsewhere.jsonl"
    elsewhere.write_text(_env(id="msg_secret", payload={"subject": "PRIVATE", "details": "outside the archive"}) + "\n")
    (team / "inboxes" / "dev.jsonl").symlink_to(elsewhere)
    r = org.as_("alex", "import", "--team-chat", str(team))
    assert r.code == 0 and "gitmail: skipped inboxes/dev.jsonl: not a regular file" in r.err, r.err
    assert [m["payload"]["message_id"] for m in _imported(org, "alex")] == ["msg_1"]


def test_what_is_not_an_archive_is_refused_and_old_dates_are_unknown(org: Org, tmp_path: Path) -> None:
    """`import --mbox` of a file that is not an mbox said "Imported 0 messages" (exit 0); an
    empty path was read as the current folder; a Date in year 0001 was stored as 2000 (the
    stdlib's two-digit-year rule). Refused with one line (exit 2), and null before 1970."""
    eml = tmp_path / "one.eml"
    eml.write_text("Subject: hi\n\nbody\n")
    r = org.as_("alex", "import", "--mbox", str(eml))
    assert r.code == 2 and "does not begin with a 'From ' line" in r.err and r.err.count("\n") == 1, r
    for opt in ("--mbox", "--maildir", "--team-chat"):
        r = org.as_("alex", "import", opt, "")
        assert r.code == 2 and "give a" in r.err, (opt, r)
    box = tmp_path / "old.mbox"
    box.write_text("From a@b Mon Jan  1 00:00:00 2001\nFrom: a@b\nSubject: ancient\n"
                   "Date: Mon, 01 Jan 0001 00:00:00 +0100\nMessage-ID: <old@x>\n\nbody\n")
    org.ok("alex", "import", "--mbox", str(box))
    [got] = _imported(org, "alex")
    assert got["payload"].get("date") is None, got["payload"]


def test_two_long_message_ids_sharing_their_start_are_two_messages(org: Org, tmp_path: Path) -> None:
    """Message-IDs were cut to 998 characters before the duplicate check: two messages whose
    ids share that much were one (the second skipped as a copy). A longer id is kept as
    sha256:<hex> of the whole of it."""
    stem = "x" * 1200
    box = tmp_path / "long.mbox"
    box.write_text("".join(f"From a@b Mon Jan  1 00:00:00 2024\nFrom: a@b\nSubject: s{i}\n"
                           f"Message-ID: <{stem}{i}@x>\n\nbody {i}\n\n" for i in range(2)))
    r = org.ok("alex", "import", "--mbox", str(box))
    assert "Imported 2 messages" in r.out, r.out
    ids = sorted(m["payload"]["message_id"] for m in _imported(org, "alex"))
    assert all(i.startswith("sha256:") for i in ids) and len(set(ids)) == 2, ids
    assert "Imported 0 messages" in org.ok("alex", "import", "--mbox", str(box)).out  # and again: none
