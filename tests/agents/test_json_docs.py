"""docs/json.md stays true: every field an example shows is still in the command's real output."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.agents.jsondoc import MARKER, collect, key_paths

DOC = Path(__file__).resolve().parents[2] / "docs" / "json.md"


def _documented() -> dict[str, object]:
    text = DOC.read_text().split(MARKER, 1)[1]
    out: dict[str, object] = {}
    for m in re.finditer(r"### `([^`]+)`\n.*?```json\n(.*?)\n```", text, re.S):
        out[m.group(1)] = json.loads(m.group(2))
    return out


def test_every_documented_field_still_exists(tmp_path: Path) -> None:
    documented = _documented()
    (tmp_path / "scenario").mkdir()
    actual = {ex.title: ex.output for ex in collect(tmp_path / "scenario")}
    required = {"init", "send", "list", "read", "mark", "archive", "reply", "thread", "members", "whoami", "verify",
                "log", "sync", "group create", "group list", "respond", "ack", "list --awaiting-ack",
                "hook claude session-start", "hook claude prompt", "hook claude install"}
    assert required <= set(documented), required - set(documented)
    for title, shown in documented.items():
        assert title in actual, f"docs/json.md shows {title!r}, which the scenario no longer produces"
        missing = key_paths(shown) - key_paths(actual[title])
        assert not missing, f"{title}: fields documented but gone: {sorted(missing)}"
