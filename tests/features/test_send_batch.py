"""gitmail send --batch FILE.jsonl: every line checked first, one push, an outcome per message;
send_batch composes with the same composer as send."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gitmail import api
from gitmail.errors import UsageError
from tests.conftest import Org, git


def _lines(*objs: Any) -> str:
    return "".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs)


def test_batch_file_and_stdin_deliver_with_per_message_outcomes(org: Org, tmp_path: Path) -> None:
    f = tmp_path / "batch.jsonl"
    f.write_text(_lines({"to": "alex", "body": "first", "priority": "high"},
                        "",
                        {"to": ["alex", "max"], "body": "to both", "subject": "Both"},
                        {"to": "alex", "body": "", "type": "question", "payload": {"question": "ready?"}}))
    r = json.loads(org.ok("max", "send", "--batch", str(f), "--json").out)
    msgs = r["messages"]
    assert [m["line"] for m in msgs] == [1, 3, 4]
    assert all(m["outcome"] == "delivered" and m["delivered"] and not m["queued"] for m in msgs)
    assert msgs[1]["to"] == ["alex", "max"] and msgs[1]["subject"] == "Both"
    assert msgs[2]["type"] == "question" and msgs[2]["request_id"]
    org.ok("alex", "sync")
    rows = json.loads(org.ok("alex", "list", "--json").out)["messages"]
    assert sorted(m["subject"] for m in rows) == ["Both", "first", "question question=ready? context="]
    assert all(m["verified"] for m in rows) and {m["id"] for m in rows} == {m["id"] for m in msgs}
    out = org.ok("max", "send", "--batch", "-", stdin=_lines({"to": "alex", "body": "from stdin"})).out
    assert out.startswith("Sent to alex") and out.count("\n") == 1


def test_a_bad_line_names_its_number_and_nothing_is_sent(org: Org, tmp_path: Path) -> None:
    good = {"to": "alex", "body": "fine"}
    cases = [
        (_lines(good, good, "{not json"), 2, "line 3: not JSON"),
        (_lines(good, {"to": "alex", "body": "x", "colour": "red"}), 2, "line 2: colour: Extra inputs"),
        (_lines(good, {"to": "alex", "body": 5}), 2, "line 2: body: Input should be a valid string"),
        (_lines(good, "", {"to": "nobody", "body": "x"}), 4, "line 3: "),
        (_lines({"to": "alex", "body": "x", "priority": "asap"}), 2, "line 1: unknown priority"),
        (_lines(good, {"to": "alex", "body": "   "}), 2, "line 2: empty message"),
        (_lines(good, {"to": "alex", "body": "x", "type": "answer", "payload": {"answer": "y"}}), 2,
         "line 2: a answer needs the request_id"),
        ("\n\n", 2, "the batch is empty"),
        (_lines([1, 2]), 2, "line 1: not a JSON object"),
    ]
    for text, code, err in cases:
        r = org.as_("max", "send", "--batch", "-", stdin=text)
        assert r.code == code and r.err.startswith(f"gitmail: {err}"), (text, r.code, r.err)
        assert "Traceback" not in r.err
    assert git("for-each-ref", "refs/gitmail/outbox", cwd=org.clones["max"]).stdout == ""
    org.ok("alex", "sync")
    assert json.loads(org.ok("alex", "list", "--json").out)["total"] == 0
    r = org.as_("max", "send", "alex", "--batch", "-", stdin=_lines(good))
    assert r.code == 2 and "--batch takes no TO" in r.err
    assert org.as_("max", "send", "--batch", str(tmp_path / "missing")).code == 2
    assert org.as_("max", "send", "alex").code == 2  # no message and no --batch


def test_send_batch_composes_as_send_does(org: Org) -> None:
    """One composer (#11): subject and summary defaults and truncation, payload checks, request ids."""
    long_line = "# " + "word " * 40
    single = api.send(org.clones["max"], ["alex"], long_line, encrypt=False).message
    [batched] = api.send_batch(org.clones["max"], [api.Draft(to=["alex"], body=long_line)], encrypt=False)
    assert (batched.message.subject, batched.message.summary) == (single.subject, single.summary)
    [q] = api.send_batch(org.clones["max"], [api.Draft(to=["alex"], body="", type="question",
                                                       payload={"question": "ready?"})], encrypt=False)
    assert q.message.request_id and q.message.payload == {"question": "ready?", "context": ""}
    for bad, why in ((api.Draft(to=["alex"], body="x", type="question", payload={}), "payload for question"),
                     (api.Draft(to=["*"], body="x", type="question", payload={"question": "q"}), "cannot be broadcast")):
        try:
            api.send_batch(org.clones["max"], [api.Draft(to=["alex"], body="ok"), bad])
        except UsageError as e:
            assert str(e).startswith("message 2: ") and why in str(e)
        else:
            raise AssertionError("accepted")


def test_batch_to_a_newcomer_not_yet_seen_is_encrypted_as_send_is(org: Org) -> None:
    """#16: max's clone has not seen sam's registration; send and send --batch both fetch the
    directory to resolve sam and must both take the encryption decision on that directory."""
    org.join("sam")
    org.join("kim")
    one = json.loads(org.ok("max", "send", "sam", "single", "--json").out)
    assert one["encrypted"] is True
    r = json.loads(org.ok("max", "send", "--batch", "-", "--json",
                          stdin=_lines({"to": "alex", "body": "known"}, {"to": "kim", "body": "batched"})).out)
    assert [m["encrypted"] for m in r["messages"]] == [True, True]
    org.join("lee")
    [lib] = api.send_batch(org.clones["max"], [api.Draft(to=["lee"], body="library")])
    assert lib.encrypted
    for name, body in (("kim", "batched"), ("lee", "library")):
        org.ok(name, "sync")
        [row] = json.loads(org.ok(name, "list", "--json").out)["messages"]
        assert row["encrypted"] is True and row["verified"]
        [got] = json.loads(org.ok(name, "read", row["id"], "--json").out)["messages"]
        assert got["body"] == body and got["error"] is None, got


def test_a_big_batch_is_composed_on_every_core_as_one_process_composes_it(org: Org) -> None:
    """At least PARALLEL_MIN drafts go to forked workers; the messages delivered are those of
    the in-process path, in order, and a bad draft among them still stops the whole batch with
    its label, nothing written."""
    import importlib

    from gitmail.core import workers

    send_mod = importlib.import_module("gitmail.api.send")
    n = send_mod.PARALLEL_MIN + send_mod.CHUNK + 3
    assert workers.can_fork(), "this test needs two cores and no other thread"
    drafts = [api.Draft(to=["alex"], body=f"batch {i}", subject=f"b{i}") for i in range(n)]
    bad = list(drafts)
    bad[send_mod.PARALLEL_MIN + 5] = api.Draft(to=["alex"], body="")
    before = git("for-each-ref", cwd=org.clones["max"]).stdout
    with pytest.raises(UsageError, match=f"^message {send_mod.PARALLEL_MIN + 6}: empty message$"):
        api.send_batch(org.clones["max"], bad)
    assert git("for-each-ref", cwd=org.clones["max"]).stdout == before
    forked = api.send_batch(org.clones["max"], drafts)
    assert [r.outcome for r in forked] == ["delivered"] * n
    assert [r.message.subject for r in forked] == [f"b{i}" for i in range(n)]
    org.ok("alex", "sync")
    rows = json.loads(org.ok("alex", "list", "--json", "--limit", str(2 * n)).out)["messages"]
    assert len(rows) == n and all(m["verified"] and m["encrypted"] for m in rows)
    chain = git("log", "--reverse", "--format=%(trailers:key=Message-Id,valueonly)",
                "origin/gitmail/mail/alex/max", cwd=org.clones["alex"]).stdout.split()
    assert [c.strip("<>").split("@")[0] for c in chain] == [r.stored.id for r in forked if r.stored]


def test_a_batch_never_writes_a_message_json_readers_refuse(org: Org, tmp_path: Path) -> None:
    """With the org's body limit raised past 16 MiB, a body that fits the limit still makes a
    message.json over the 16 MiB readers parse. `send` refused it; `send --batch` and
    `import` wrote it, and the recipient saw an unreadable message. Now every writer refuses."""
    import mailbox
    from email.message import EmailMessage

    org.ok("max", "org", "body_limit=33554432")
    org.ok("alex", "sync")
    body = "x" * (17 * 1024 * 1024)
    one = org.as_("max", "send", "alex", body, "--plain")
    assert one.code == 2 and one.err == "gitmail: cannot send this message: message.json over 16777216 bytes\n"
    before = git("for-each-ref", cwd=org.clones["max"]).stdout
    batch = org.as_("max", "send", "--batch", "-", "--plain", stdin=_lines({"to": "alex", "body": body}))
    assert batch.code == 2 and batch.err == "gitmail: line 1: cannot send this message: message.json over 16777216 bytes\n"
    assert git("for-each-ref", cwd=org.clones["max"]).stdout == before
    box = mailbox.mbox(str(tmp_path / "big.mbox"))
    for i, text in enumerate(["small one\n", body]):
        e = EmailMessage()
        e["From"], e["Subject"], e["Message-ID"] = "a@example.com", f"s {i}", f"<big-body-{i}@x>"
        e.set_content(text)
        box.add(e)
    box.close()
    res = json.loads(org.ok("alex", "import", "--mbox", str(tmp_path / "big.mbox"), "--plain", "--json").out)
    assert len(res["added"]) == 1 and [s["where"] for s in res["skipped"]] == ["message 2"]
    assert "message.json over 16777216 bytes" in res["skipped"][0]["reason"]
    org.ok("alex", "sync")
    rows = json.loads(org.ok("alex", "list", "--json").out)["messages"]
    assert [m["status"] for m in rows] == ["good"]


def test_a_big_batch_judges_outcomes_exactly_as_one_message_is_judged(org: Org) -> None:
    """A big batch lists each mailbox's undelivered records once (Judge ``many``) instead of
    looking each message up; both must give every message the same outcome and reason."""
    from gitmail.api.send import Judge
    from gitmail.core import refs, sync

    res = api.send_batch(org.clones["max"], [api.Draft(to=["alex"], body=f"m{i}") for i in range(6)],
                         deliver=False)
    s = api.session(org.clones["max"])
    path = refs.mail_path("alex", "max")
    ids = [r.stored.id for r in res if r.stored]
    other = refs.mail_path("max", "max")  # a record on another mailbox, same Message-ID: not this one's
    oid = s.repo.ref_target(refs.outbox(path))
    assert oid and len(ids) == 6
    for mid in ids[::2]:
        s.repo.set_ref(sync.undelivered_ref(path, mid), oid, None)
    s.repo.set_ref(sync.undelivered_ref(other, ids[1]), oid, None)
    s.repo.set_ref(sync.undelivered_ref(path + "i", ids[3]), oid, None)  # mail/alex/maxi: a name that extends max's
    delivery = sync.deliver(s.repo, s.signer, s.me)
    one = [Judge(s.repo, delivery)(mid, [path]) for mid in ids]
    many = Judge(s.repo, delivery, many=True)
    assert [many(mid, [path]) for mid in ids] == one
    assert [o[0] for o in one] == ["refused", "delivered"] * 3
