"""Stuck outgoing mail is mentioned where agents look (issue 12, item 2): MCP check_mailbox, Claude hooks."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from mcp import Client, StdioServerParameters

from tests.conftest import git
from tests.sync.conftest import NetOrg, guard_runtime, net  # noqa: F401


def _hook(o: NetOrg, who: str, event: str) -> Any:
    r = o.as_(who, "hook", "claude", event)
    assert r.code == 0 and r.err == "", r.err
    return json.loads(r.out)["hookSpecificOutput"]["additionalContext"] if r.out.strip() else None


def test_outbox_stuck_mail_in_claude_hooks_and_mcp(net: NetOrg) -> None:
    net.daemon.stop()
    sent = json.loads(net.ok("max", "send", "alex", "stuck one", "--json").out)
    ctx = _hook(net, "max", "session-start")
    assert ctx is not None and "outgoing mail is stuck: 1 message max sent is still queued" in ctx
    assert sent["short_id"] in ctx and "remote-unreachable" in ctx and "gitmail outbox" in ctx
    assert _hook(net, "max", "prompt") is None  # told once
    net.ok("max", "send", "alex", "another")
    assert "2 messages max sent are still queued" in _hook(net, "max", "prompt")

    async def check() -> Any:
        params = StdioServerParameters(command=sys.executable,
                                       args=["-m", "gitmail", "mcp", "--as", "max", "--repo", str(net.clones["max"])],
                                       env=dict(os.environ), cwd=str(net.root))
        async with Client(params) as c:
            got = await c.call_tool("check_mailbox", {})
            return json.loads(got.content[0].text)  # type: ignore[union-attr]

    out = asyncio.run(check())
    assert "could not sync" in out["warning"]
    stuck = out["outgoing"]["queued"]
    assert [q["short_id"] for q in stuck][0] == sent["short_id"] and len(stuck) == 2
    assert stuck[0]["kind"] == "remote-unreachable" and "cannot reach the org remote" in stuck[0]["reason"]
    net.daemon.start()
    out = asyncio.run(check())
    assert out["outgoing"] is None and out["warning"] is None  # null, never a missing key (docs/json.md)
    assert git("for-each-ref", "refs/gitmail/outbox/", cwd=net.clones["max"]).stdout == ""
