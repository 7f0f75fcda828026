"""MCP tools for agents: attachments both ways, filters, full-text search (the SDK's own client)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters

from tests.conftest import Org


def _params(org: Org, who: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable,
                                 args=["-m", "gitmail", "mcp", "--as", who, "--repo", str(org.clones[who])],
                                 env=dict(os.environ), cwd=str(org.root))


async def _call(org: Org, who: str, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    async with Client(_params(org, who)) as c:
        return [await c.call_tool(name, args) for name, args in calls]


def test_agents_send_and_save_attachments_filter_and_search(org: Org, tmp_path: Path) -> None:
    data = b"col\n" + os.urandom(3000).hex().encode()
    src = tmp_path / "results.csv"
    src.write_bytes(data)
    [sent] = asyncio.run(_call(org, "max", [("send_message", {
        "to": "alex", "subject": "results", "body": "the zeppelin numbers", "attachments": [str(src)],
        "priority": "urgent"})]))
    assert not sent.is_error and sent.structured_content["delivered"] is True
    org.ok("max", "send", "alex", "low priority note", "--priority", "low")
    dest = tmp_path / "inbox"
    check, urgent, first, search, bad_search, missing = asyncio.run(_call(org, "alex", [
        ("check_mailbox", {"urgent_first": True}),
        ("check_mailbox", {"priority": "urgent", "sync": False}),
        ("read_message", {"id": sent.structured_content["short_id"], "save_attachments_to": str(dest)}),
        ("search_messages", {"query": "zeppelin"}),
        ("search_messages", {"query": "x", "since": "yesterday"}),
        ("send_message", {"to": "max", "body": "x", "attachments": [str(tmp_path / "nope.csv")]}),
    ]))
    rows = check.structured_content["messages"]
    assert [r["priority"] for r in rows] == ["urgent", "low"]
    assert [r["subject"] for r in urgent.structured_content["messages"]] == ["results"]
    [saved] = first.structured_content["saved"]
    assert saved["error"] is None and Path(saved["saved_to"]).read_bytes() == data
    assert Path(saved["saved_to"]).parent == dest
    [hit] = search.structured_content["messages"]
    assert hit["subject"] == "results" and "**zeppelin**" in hit["snippet"]
    assert bad_search.is_error and "since" in bad_search.content[0].text
    assert missing.is_error and "nope.csv" in missing.content[0].text
