"""gitmail.notifyCommand: the member's command gets new mail as JSON on stdin, never as shell text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
    org.ok("max", "send", "alex", f"x; touch {pwned}", "--subject", f"$(touch {pwned}) `touch {pwned}`")
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


def test_the_command_gets_each_page_before_the_next_is_read(org: Org, tmp_path: Path) -> None:
    """The new messages reach the command a page at a time (issue 16 item 2: a first sync of a
    million messages never builds one list of them), and the bytes are one JSON object, the same
    as one dump of the whole payload."""
    import time
    from typing import Iterator

    from gitmail import api
    from gitmail.api import notify
    from gitmail.api.results import NotifyPayload
    from gitmail.core.cache import Row

    for i in range(5):
        org.ok("max", "send", "alex", f"m {i}", "--subject", f"ß {i}")
    s = api.session(org.clones["alex"])
    rows = list(api.sync(s.repo).new)
    out = tmp_path / "notified.json"
    _configure(org, "alex", f"cat > '{out}'")
    s = api.session(org.clones["alex"])
    asked: list[int] = []

    def pages() -> Iterator[list[Row]]:
        for k in range(0, 5, 2):
            if k:  # the command has what was handed over so far before the next page is read
                deadline = time.monotonic() + 20
                while rows[k - 1].id not in (out.read_text() if out.exists() else ""):
                    assert time.monotonic() < deadline, f"page {k // 2} not written before page {k // 2 + 1} was read"
                    time.sleep(0.02)
            asked.append(k)
            yield rows[k:k + 2]

    import threading

    threads = threading.active_count()
    assert notify.run(s, pages()) is None
    assert threading.active_count() == threads  # no timer left: a worker pool forks only when single-threaded
    assert asked == [0, 2, 4]
    whole = NotifyPayload.model_validate({"member": "alex", "messages": [notify.entry(r).dump() for r in rows]})
    assert out.read_bytes() == json.dumps(whole.dump(), ensure_ascii=False).encode("utf-8")
    assert b"".join(notify.payload_chunks("alex", [[], []])) == b'{"member": "alex", "messages": []}'
    assert notify.run(s, iter([])) is None and notify.run(s, [[]]) is None  # nothing arrived: not run


def test_a_command_that_never_reads_is_stopped_after_the_timeout(org: Org, monkeypatch: Any) -> None:
    """A command that does not read its stdin (a pipe fills up) or never exits cannot hang the sync."""
    from gitmail.api import notify

    monkeypatch.setattr(notify, "TIMEOUT", 1.0)
    _configure(org, "alex", "sleep 30")
    org.ok("max", "send", "alex", "x" * 100_000)
    r = org.ok("alex", "sync", "--json")
    assert json.loads(r.out)["problems"] == ["gitmail.notifyCommand did not finish within 1 s"]


def _documented_commands() -> list[str]:
    """The notifyCommand examples of docs/json.md and README.md, as `git config` would store them."""
    import re
    import shlex

    root = Path(__file__).resolve().parents[2]
    text = (root / "docs" / "json.md").read_text() + (root / "README.md").read_text()
    out = []
    for m in re.finditer(r"git config gitmail\.notifyCommand \\?\s*((?:'[^']*'|\"[^\"]*\"|[^\s#])+)", text):
        out.append(shlex.split(m.group(1))[0])
    return out


def test_the_documented_commands_never_announce_a_forgery_as_its_claimed_sender(org: Org, tmp_path: Path) -> None:
    """The examples printed `from` whatever `verified` said: a message eve signed claiming to be
    alex (no guard) was announced as "alex: (encrypted)". Each example, run as gitmail runs it
    (sh -c, the JSON on stdin; notify-send and curl stood in for), says UNVERIFIED for it."""
    import os
    import shutil
    import subprocess

    if shutil.which("jq") is None:
        raise AssertionError("jq is needed (scripts/test installs it)")
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    said = tmp_path / "said"
    for tool in ("notify-send", "curl"):
        (bin_ / tool).write_text(f'#!/bin/sh\nfor a; do printf "%s\\n" "$a"; done >>"{said}"\ncat >>"{said}"\n')
        (bin_ / tool).chmod(0o755)
    page = {"messages": [{"from": "alex", "subject": None, "verified": False},
                         {"from": "max", "subject": "lunch?", "verified": True}]}
    commands = _documented_commands()
    assert len(commands) == 3, commands
    for cmd in commands:
        said.write_text("")
        env = {**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}", "SLACK_WEBHOOK_URL": "http://127.0.0.1:9/x"}
        p = subprocess.run(["sh", "-c", cmd], input=json.dumps(page), text=True, env=env, capture_output=True)
        assert p.returncode == 0, (cmd, p.stderr)
        out = said.read_text()
        assert "UNVERIFIED" in out and "alex:" not in out, (cmd, out)
