"""Structured protocol messages: payload validation, request_id echo, `gitmail respond`."""

from __future__ import annotations

import json

from tests.conftest import Org, git


def _send(org: Org, who: str, *args: str) -> dict:
    return json.loads(org.ok(who, "send", *args, "--json").out)


def _read(org: Org, who: str, mid: str) -> dict:
    org.ok(who, "sync")
    return json.loads(org.ok(who, "read", mid, "--json").out)["messages"][0]


def test_shutdown_request_approve(org: Org) -> None:
    req = _send(org, "max", "alex", "Task complete, wrapping up", "--type", "shutdown_request",
                "--payload", '{"reason": "Task complete"}')
    assert req["type"] == "shutdown_request" and len(req["request_id"]) == 12
    got = _read(org, "alex", req["short_id"])
    assert got["payload"] == {"reason": "Task complete"} and got["request_id"] == req["request_id"]
    res = json.loads(org.ok("alex", "respond", req["short_id"], "--approve", "--reason", "all done", "--json").out)
    assert res["type"] == "shutdown_response" and res["request_id"] == req["request_id"]
    assert res["to"] == ["max"] and res["in_reply_to"] == req["id"]
    back = _read(org, "max", res["short_id"])
    assert back["payload"] == {"approve": True, "reason": "all done"} and back["request_id"] == req["request_id"]
    assert back["verified"] is True and back["thread"] == req["id"]


def test_plan_rejected_with_feedback_and_question_answered(org: Org) -> None:
    plan = _send(org, "alex", "max", "--type", "plan_approval_request", "--payload", '{"plan": "1. refactor"}',
                 "my plan")
    q = _send(org, "alex", "max", "which db?", "--type", "question", "--payload", '{"question": "Postgres or SQLite?"}')
    org.ok("max", "sync")
    r = json.loads(org.ok("max", "respond", plan["short_id"], "--reject", "--feedback", "add tests", "--json").out)
    assert r["type"] == "plan_approval_response" and r["payload"] == {"approve": False, "feedback": "add tests"}
    a = json.loads(org.ok("max", "respond", q["short_id"], "--answer", "SQLite", "--json").out)
    assert a["type"] == "answer" and a["payload"] == {"answer": "SQLite"} and a["request_id"] == q["request_id"]
    text = org.ok("alex", "sync").out
    assert "[answer]" in text and "[plan_approval_response]" in text


def test_respond_bad_input(org: Org) -> None:
    plain = _send(org, "max", "alex", "just text")
    q = _send(org, "max", "alex", "q", "--type", "question", "--payload", '{"question": "why?"}')
    sd = _send(org, "max", "alex", "stop", "--type", "shutdown_request")
    org.ok("alex", "sync")
    cases = [
        (["respond", plain["short_id"], "--approve"], "not a request"),
        (["respond", q["short_id"]], "needs --answer"),
        (["respond", q["short_id"], "--approve", "--answer", "x"], "not --approve"),
        (["respond", sd["short_id"]], "needs --approve or --reject"),
        (["respond", "deadbeef", "--approve"], "no message 'deadbeef'"),
    ]
    for args, why in cases:
        r = org.as_("alex", *args)
        assert r.code != 0 and why in r.err and r.err.count("\n") == 1, (args, r.err)
    mine = org.as_("max", "respond", sd["short_id"], "--approve")  # max sent it: not his to answer
    assert mine.code == 2 and "not in your inbox" in mine.err


def test_payload_validation_errors_write_nothing(org: Org) -> None:
    before = git("for-each-ref", cwd=org.url).stdout
    cases = [
        (["--type", "task_update", "--payload", '{"task_id": "t1", "status": "bogus"}'], "payload for task_update: status"),
        (["--type", "task_assign", "--payload", '{"title": "x"}'], "payload for task_assign: task_id: Field required"),
        (["--type", "shutdown_response", "--payload", '{"approve": "maybe"}', "--request-id", "x"], "approve"),
        (["--type", "task_assign", "--payload", "{not json"], "--payload is not valid JSON"),
        (["--type", "task_assign", "--payload", "[1]"], "must be a JSON object"),
        (["--type", "Nonsense"], "type 'Nonsense' is neither a built-in type nor an open type"),
        (["--payload", '{"a": 1}'], "a text message takes no --payload"),
    ]
    for extra, why in cases:
        r = org.as_("max", "send", "alex", "body", *extra)
        assert r.code == 2 and why in r.err and "Traceback" not in r.err, (extra, r.err)
    assert git("for-each-ref", cwd=org.url).stdout == before


def test_response_request_id_missing_or_wrong(org: Org) -> None:
    missing = org.as_("alex", "send", "max", "ok", "--type", "shutdown_response", "--payload", '{"approve": true}')
    assert missing.code == 2 and "needs the request_id of the shutdown_request" in missing.err
    wrong = org.as_("alex", "send", "max", "ok", "--type", "shutdown_response", "--payload", '{"approve": true}',
                    "--request-id", "abc-123")
    assert wrong.code == 2 and "unknown request_id 'abc-123'" in wrong.err
    # A real request_id, but of another request type, is still unknown for this response type.
    q = _send(org, "max", "alex", "q", "--type", "question", "--payload", '{"question": "?"}')
    org.ok("alex", "sync")
    cross = org.as_("alex", "send", "max", "ok", "--type", "shutdown_response", "--payload", '{"approve": true}',
                    "--request-id", q["request_id"])
    assert cross.code == 2 and "unknown request_id" in cross.err
    good = org.as_("alex", "send", "max", "SQLite", "--type", "answer", "--payload", '{"answer": "SQLite"}',
                   "--request-id", q["request_id"])
    assert good.code == 0, good.err
