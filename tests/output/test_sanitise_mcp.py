"""MCP (issue #10 hole 11, issue #13): through the SDK's own stdio client, hostile text arrives as
exact data in structured results (JSON escaping is the quoting), and serverInfo names gitmail's
version."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from mcp import Client, StdioServerParameters

import gitmail
from tests.conftest import Org
from tests.output.corpus import HOSTILE


async def _session(org: Org) -> dict[str, Any]:
    params = StdioServerParameters(command=sys.executable,
                                   args=["-m", "gitmail", "mcp", "--as", "alex", "--repo", str(org.clones["alex"])],
                                   env=dict(os.environ), cwd=str(org.root))
    out: dict[str, Any] = {}
    async with Client(params) as c:
        info = c.server_info
        out["info"] = (info.name, info.version) if info is not None else None
        out["check"] = await c.call_tool("check_mailbox", {"limit": 100})
        first = out["check"].structured_content["messages"][0]
        out["read"] = await c.call_tool("read_message", {"id": first["id"]})
    return out


def test_mcp_returns_hostile_text_as_exact_data_and_its_version(org: Org) -> None:
    for s in HOSTILE:
        org.ok("max", "send", "alex", f"{s}\nline two", "--subject", s, "--plain")
    out = asyncio.run(_session(org))
    assert out["info"] == ("gitmail", gitmail.__version__)
    msgs = out["check"].structured_content["messages"]
    assert sorted(m["subject"] for m in msgs) == sorted(HOSTILE)
    for c in out["check"].content:  # the text form is JSON: no raw control character
        assert "\x1b" not in c.text and "\r" not in c.text and "\x07" not in c.text
        json.loads(c.text)
    read = out["read"].structured_content
    assert read["body"] in {f"{s}\nline two" for s in HOSTILE} and read["from"] == "max"
