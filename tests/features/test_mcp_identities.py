"""MCP ``agent_name``: several identities of one clone in one server (issue 14 item 5), and open
types and traces through MCP (item 4). The SDK's own stdio client drives ``python -m gitmail mcp``."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from mcp import Client, StdioServerParameters

from tests.conftest import Org, run


def _params(org: Org, *names: str) -> StdioServerParameters:
    args = ["-m", "gitmail", "mcp", "--repo", str(org.clones["alex"])]
    for n in names:
        args += ["--as", n]
    return StdioServerParameters(command=sys.executable, args=args, env=dict(os.environ), cwd=str(org.root))


def _text(r: Any) -> str:
    return "\n".join(c.text for c in r.content)


async def _calls(org: Org, names: tuple[str, ...], calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    async with Client(_params(org, *names)) as c:
        return [await c.call_tool(name, args) for name, args in calls]


def _run(org: Org, names: tuple[str, ...], calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    return asyncio.run(asyncio.wait_for(_calls(org, names, calls), 90))


def _two_in_one_clone(org: Org) -> None:
    """bob joins in alex's clone: one clone, two identities with their own keys."""
    r = run("init", "--name", "bob", "--repo", str(org.clones["alex"]))
    assert r.code == 0, r.err
    org.ok("max", "sync")
    org.ok("max", "send", "alex", "for alex", "--subject", "to-alex")
    org.ok("max", "send", "bob", "for bob", "--subject", "to-bob", "--type", "x-ping", "--payload", '{"n": 1}',
           "--trace-id", "tr_9")


def test_agent_name_chooses_among_the_identities_the_server_was_started_with(org: Org) -> None:
    _two_in_one_clone(org)
    res = _run(org, ("alex", "bob"), [
        ("list_members", {}),
        ("list_members", {"agent_name": "bob"}),
        ("check_mailbox", {}),
        ("check_mailbox", {"agent_name": "bob"}),
        ("check_mailbox", {"agent_name": "bob", "type": "x-ping", "sync": False}),
        ("check_mailbox", {"agent_name": "bob", "type": "text", "sync": False}),
        ("send_message", {"to": "max", "body": "bob here", "agent_name": "bob", "type": "status_update",
                          "payload": {"state": "green"}, "trace_id": "tr_9"}),
        ("trace", {"id": "tr_9", "agent_name": "bob"}),
        ("search_messages", {"query": "bob", "type": "x-ping", "agent_name": "bob"}),
        ("reply_message", {"id": "abcd", "body": "x", "agent_name": "carol"}),
        ("check_mailbox", {"agent_name": "carol"}),
        ("check_mailbox", {"agent_name": "max"}),
        ("trace", {"id": "tr_9"}),  # as alex: bob's trace is not in alex's mailboxes
        ("send_message", {"to": "max", "body": "x", "type": "Bad Type"}),
        ("send_message", {"to": "max", "body": "x", "trace_id": "tr\nx"}),
    ])
    (me_a, me_b, inbox_a, inbox_b, ping, text_b, sent, trace, hits, carol, carol2, max_, alex_trace, bad_type,
     bad_trace) = res
    assert me_a.structured_content["me"] == "alex" and me_a.structured_content["identities"] == ["alex", "bob"]
    assert me_b.structured_content["me"] == "bob"
    assert [m["subject"] for m in inbox_a.structured_content["messages"]] == ["to-alex"]
    assert [m["subject"] for m in inbox_b.structured_content["messages"]] == ["to-bob"]
    assert [m["type"] for m in ping.structured_content["messages"]] == ["x-ping"]
    assert text_b.structured_content["messages"] == []
    s = sent.structured_content
    assert not sent.is_error and s["from"] == "bob" and s["type"] == "status_update" and s["delivered"]
    t = trace.structured_content
    assert t["trace_id"] == "tr_9" and [m["subject"] for m in t["messages"]] == ["to-bob", "bob here"]
    assert [h["type"] for h in hits.structured_content["messages"]] == ["x-ping"]
    for r in (carol, carol2, max_):
        assert r.is_error and "is not an identity of this server; it acts as 'alex', 'bob'" in _text(r), _text(r)
        assert "Traceback" not in _text(r)
    assert alex_trace.is_error and "no message with trace id 'tr_9' in alex's mailbox" in _text(alex_trace)
    assert bad_type.is_error and "neither a built-in type nor an open type" in _text(bad_type)
    assert bad_trace.is_error and "trace_id must be 1 to 128" in _text(bad_trace)

    # What bob sent through the server is signed by bob, in the trace, for max too.
    org.ok("max", "sync")
    got = json.loads(org.ok("max", "trace", "tr_9", "--json").out)["messages"]
    assert [(m["from"], m["type"], m["verified"]) for m in got] == [("max", "x-ping", True),
                                                                   ("bob", "status_update", True)]


def test_agent_name_is_a_clear_error_on_a_single_identity_server(org: Org) -> None:
    _two_in_one_clone(org)
    ok, other, bad = _run(org, ("alex",), [
        ("check_mailbox", {"agent_name": "alex", "sync": False}),
        ("check_mailbox", {"agent_name": "bob"}),
        ("read_message", {"id": "abcd", "agent_name": "bob"}),
    ])
    assert not ok.is_error
    for r in (other, bad):
        assert r.is_error
        assert ("agent_name 'bob': this server acts only as 'alex'; to act as several members of this clone, "
                "start it with one --as per member") in _text(r), _text(r)


def test_the_server_refuses_to_start_for_a_stranger_or_a_name_given_twice(org: Org) -> None:
    r = run("mcp", "--as", "alex", "--as", "stranger", "--repo", str(org.clones["alex"]))
    assert r.code == 3 and "'stranger' is not a member" in r.err and r.err.count("\n") == 1
    r = run("mcp", "--as", "alex", "--as", "alex", "--repo", str(org.clones["alex"]))
    assert r.code == 2 and "given twice" in r.err and r.err.count("\n") == 1
