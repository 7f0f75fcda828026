"""gitmail.notifyCommand: the member's command gets new mail as JSON on stdin, never as shell text."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Org, git


def _configure(org: Org, who: str, command: str) -> None:
    git("config", "gitmail.notifyCommand", command, cwd=org.clones[who])


def test_new_mail_reaches_the_command_as_json(org: Org, tmp_path: Path) -> None:
    out = tmp_path / "notified.json"
    _configure(org, "alex", f"cat > '{out}'")
    org.ok("alex", "sync")
    assert not out.exists()  # nothing new: not run
    org.ok("max", "send", "alex", "deploy at five", "--subject", "Deploy", "--priority", "urgent")
    org.ok("alex", "sync")
    data = json.loads(out.read_text())
    assert data["member"] == "alex"
    [m] = data["messages"]
    assert (m["from"], m["subject"], m["priority"], m["verified"], m["encrypted"]) == ("max", "Deploy", "urgent",
                                                                                        True, True)
    assert len(m["id"]) == 64 and m["short_id"] == m["id"][:8]


def test_message_text_is_never_shell(org: Org, tmp_path: Path) -> None:
    pwned = tmp_path / "pwned"
    seen = tmp_path / "seen"
    _configure(org, "alex", f"cat > '{seen}'")
    org.ok("max", "send", "alex", "x", "--subject", f"$(touch {pwned}) `touch {pwned}`; touch {pwned}")
    org.ok("alex", "sync")
    assert not pwned.exists()
    assert f"$(touch {pwned})" in json.loads(seen.read_text())["messages"][0]["subject"]


def test_a_failing_command_is_a_problem_not_a_failed_sync(org: Org) -> None:
    _configure(org, "alex", "echo boom >&2; exit 3")
    org.ok("max", "send", "alex", "hello")
    r = org.ok("alex", "sync", "--json")
    problems = json.loads(r.out)["problems"]
    assert problems == ["gitmail.notifyCommand exited with 3: boom"]
    assert len(json.loads(r.out)["new"]) == 1
