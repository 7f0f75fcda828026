"""Issue #14 item 6, what a terminal user expects: local times with the zone shown (``--utc``),
``send`` opening the editor, ``thread`` with bodies, and acks (asked for; never unread mail)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import pytest

from gitmail.cli import main as cli_main
from gitmail.cli.render import long_time, short_time
from tests.conftest import Org, read_terminal


# -- times: the local zone shown, --utc, "5 min ago" when recent; --json exact UTC ---------------------


@pytest.fixture
def zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Switch this process's local time zone ($TZ); the old one is back after the test."""

    def use(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield use
    monkeypatch.undo()
    time.tzset()


NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=timezone.utc)
OLD = "2026-11-20T04:05:06.000000Z"


def test_times_are_local_with_the_zone_shown(zone: Callable[[str], None], monkeypatch: pytest.MonkeyPatch) -> None:
    zone("Asia/Kolkata")
    assert short_time(OLD, NOW) == "2026-11-20 09:35 IST"
    assert long_time(OLD, NOW) == "2026-11-20 09:35:06 +0530 (IST)"
    zone("America/New_York")
    assert short_time(OLD, NOW) == "2026-11-19 23:05 EST"
    assert long_time("2026-07-01T12:00:00.000000Z", NOW) == "2026-07-01 08:00:00 -0400 (EDT)"
    zone("Asia/Dubai")  # a zone without an abbreviation shows its offset
    assert short_time(OLD, NOW) == "2026-11-20 08:05 +0400" and long_time(OLD, NOW) == "2026-11-20 08:05:06 +0400"
    monkeypatch.setattr(cli_main, "UTC_TIMES", True)  # --utc
    assert short_time(OLD, NOW) == "2026-11-20 04:05 UTC" and long_time(OLD, NOW) == "2026-11-20 04:05:06 +0000 (UTC)"


def test_recent_times_are_ages() -> None:
    assert short_time("2026-11-29T11:59:30.000000Z", NOW) == "just now"
    assert short_time("2026-11-29T11:58:00.000000Z", NOW) == "2 min ago"
    assert short_time("2026-11-29T09:00:00.000000Z", NOW) == "3 h ago"
    assert long_time("2026-11-29T11:58:00.000000Z", NOW).endswith(", 2 min ago")
    assert short_time("2026-11-28T11:59:59.000000Z", NOW).startswith("2026-11-28 ")  # a day old: the date
    assert short_time("2026-11-29T12:05:00.000000Z", NOW).startswith("2026-11-29 ")  # a clock ahead: the date
    assert long_time("2026-11-29T10:00:00Z", NOW).endswith(", 2 h ago")  # the outbox's times (no microseconds)
    assert short_time("", NOW) == "?" and long_time("not a date", NOW) == "not a date"


def test_commands_show_local_times_and_utc_on_request(org: Org, zone: Callable[[str], None],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    zone("Asia/Kolkata")
    sent = json.loads(org.ok("max", "send", "alex", "hello", "--plain", "--json").out)
    org.ok("alex", "sync")
    when = datetime.fromisoformat(sent["date"].replace("Z", "+00:00"))
    local = when.astimezone().strftime("%Y-%m-%d %H:%M:%S +0530 (IST)")
    utc = when.strftime("%Y-%m-%d %H:%M:%S +0000 (UTC)")
    out = org.ok("alex", "read", "--no-mark").out
    assert f"Date: {local}, just now\n" in out or f"Date: {local}, 1 min ago\n" in out, out
    assert f"Date: {utc}, " in org.ok("alex", "read", "--no-mark", "--utc").out
    monkeypatch.setenv("GITMAIL_UTC", "1")
    assert f"Date: {utc}, " in org.ok("alex", "read", "--no-mark").out
    monkeypatch.delenv("GITMAIL_UTC")
    assert f"Date: {local}, " in org.ok("alex", "read", "--no-mark").out  # --utc lasts one command
    for args in (["list"], ["log"], ["thread", sent["short_id"], "--headers"], ["search", "hello"]):
        out = org.ok("alex", *args).out
        assert " just now " in out or " 1 min ago " in out, (args, out)
    # --json stays exact RFC 3339 UTC, whatever the zone or --utc.
    for extra in ([], ["--utc"]):
        assert json.loads(org.ok("alex", "list", "--json", *extra).out)["messages"][0]["date"] == sent["date"]


# -- acks: the recipient is told one is asked for; a receipt is never unread mail ------------------


def test_require_ack_is_announced_to_the_recipient_until_acked(org: Org) -> None:
    org.ok("max", "send", "alex", "please confirm", "--plain", "--require-ack")
    org.ok("max", "send", "alex", "just fyi", "--plain")
    org.ok("alex", "sync")
    lines = org.ok("alex", "list").out.splitlines()
    asked = [ln for ln in lines if "please confirm" in ln]
    plain = [ln for ln in lines if "just fyi" in ln]
    assert "[ack requested]" in asked[0] and "[ack requested]" not in plain[0], lines
    rows = {m["subject"]: m for m in json.loads(org.ok("alex", "list", "--json").out)["messages"]}
    assert rows["please confirm"]["ack_requested"] is True and rows["just fyi"]["ack_requested"] is False
    short = rows["please confirm"]["short_id"]
    out = org.ok("alex", "read", short).out
    assert f"Ack requested: the sender asks for a receipt. Run: gitmail ack {short[:8]}" in out
    assert "Ack requested" not in org.ok("alex", "read", rows["just fyi"]["short_id"]).out
    # The sender's own copy asks nothing of the sender.
    sent = json.loads(org.ok("max", "list", "--sent", "--json").out)["messages"]
    assert all(m["ack_requested"] is False for m in sent)
    org.ok("alex", "ack", short)
    assert "[ack requested]" not in org.ok("alex", "list").out
    assert json.loads(org.ok("alex", "read", short, "--json").out)["messages"][0]["ack_requested"] is False
    assert "Ack requested" not in org.ok("alex", "read", short).out


def test_acks_are_not_unread_mail(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    from gitmail import api
    from gitmail.claude import hooks as claude_hooks

    org.ok("max", "send", "alex", "please confirm", "--plain", "--require-ack")
    org.ok("alex", "sync")
    short = json.loads(org.ok("alex", "list", "--json").out)["messages"][0]["short_id"]
    org.ok("alex", "ack", short)
    org.ok("max", "sync")
    # The ack is in max's inbox, shown with its type, without the unread mark, and counted nowhere.
    r = org.ok("max", "list")
    assert r.out.splitlines()[0] == "0 unread, 1 in inbox", r.out
    ack_line = r.out.splitlines()[1]
    assert "[ack]" in ack_line and not ack_line.startswith("*"), ack_line
    listing = json.loads(org.ok("max", "list", "--json").out)
    assert listing["unread"] == 0 and listing["messages"][0]["type"] == "ack"
    assert json.loads(org.ok("max", "list", "--unread", "--json").out)["messages"] == []
    assert org.ok("max", "read").out.strip() == "No unread messages."
    assert api.unread_count(str(org.clones["max"])) == (0, 0)  # the notice and whoami count this
    res = api.mailbox(str(org.clones["max"]), unread_only=True)  # MCP check_mailbox
    assert (res.unread, res.messages) == (0, [])
    assert claude_hooks._unread(api.session(str(org.clones["max"]))) == []
    monkeypatch.setenv("GITMAIL_NOTICE", "always")
    assert "📬" not in org.ok("max", "whoami").err
    # Real mail still counts next to the ack.
    org.ok("alex", "send", "max", "a real question", "--plain")
    org.ok("max", "sync")
    assert org.ok("max", "list").out.splitlines()[0] == "1 unread, 2 in inbox"
    assert org.ok("max", "whoami").err.endswith("📬 1 unread message. Run: gitmail read\n")


# -- thread shows bodies -------------------------------------------------------------------------------


def test_thread_shows_bodies_decrypted_and_sanitised(org: Org) -> None:
    first = json.loads(org.ok("max", "send", "alex", "line one\nline \x1b[31mtwo", "--subject", "plan",
                              "--json").out)  # encrypted by default
    org.ok("alex", "sync")
    org.ok("alex", "reply", first["short_id"], "agreed\n\tindented")
    out = org.ok("alex", "thread", first["short_id"]).out
    blocks = out.split("\n\n")
    assert len(blocks) == 2, out
    assert "plan" in blocks[0].splitlines()[0]
    assert blocks[0].splitlines()[1:] == ["    line one", "    line \\x1b[31mtwo"], out  # decrypted, escaped
    assert blocks[1].splitlines()[1:] == ["    agreed", "    \tindented"], out
    # --headers: the one-line view, as before; read flags are not changed by either.
    heads = org.ok("alex", "thread", first["short_id"], "--headers").out.splitlines()
    assert len(heads) == 2 and heads[0].startswith("* ") and "line one" not in "\n".join(heads)
    assert json.loads(org.ok("alex", "list", "--json").out)["unread"] == 1


def test_thread_shows_a_placeholder_for_what_cannot_be_opened(org: Org, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    kp = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "pw0rd", "-f", str(kp)], check=True)
    monkeypatch.setenv("GITMAIL_PASSPHRASE", "pw0rd")
    org.join("lock", "--key", str(kp))
    sent = json.loads(org.ok("max", "send", "lock", "the secret body", "--subject", "locked", "--json").out)
    org.ok("lock", "sync")
    monkeypatch.setenv("GITMAIL_PASSPHRASE", "nope")
    r = org.ok("lock", "thread", sent["short_id"])
    assert "the secret body" not in r.out
    assert r.out.splitlines()[1].startswith("    (encrypted; not shown: ") and "passphrase" in r.out, r.out


# -- send / reply without a message open the editor on a terminal -------------------------------------


def _on_tty(*args: str) -> tuple[int, str]:
    """Run the CLI as a real process with a pseudo-terminal as stdin, stdout and stderr."""
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "gitmail.cli.main", *args], stdin=slave, stdout=slave,
                         stderr=slave, close_fds=True)
    os.close(slave)
    out = read_terminal(master)
    os.close(master)
    return p.wait(timeout=60), out.decode("utf-8", "replace").replace("\r\n", "\n")


def _editor(tmp_path: Path, name: str, writes: str | None) -> Path:
    """A GIT_EDITOR script that keeps a copy of the template it got, then writes ``writes`` (None:
    leaves the template as it is)."""
    script = tmp_path / name
    keep = tmp_path / f"{name}.template"
    body = "" if writes is None else f"printf '%s' '{writes}' > \"$1\"\n"
    script.write_text(f'#!/bin/sh\ncp "$1" "{keep}"\n{body}')
    script.chmod(0o755)
    return script


def test_send_without_a_message_opens_the_editor_on_a_terminal(org: Org, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    ed = _editor(tmp_path, "ed", "Lunch?\n\nAt noon, the usual place.\n# a comment line\n")
    monkeypatch.setenv("GIT_EDITOR", str(ed))
    code, out = _on_tty("send", "alex", "--repo", str(org.clones["max"]))
    assert code == 0 and "Sent to alex" in out, out
    template = (tmp_path / "ed.template").read_text()
    assert template.startswith("\n# Message to alex.\n") and "an empty message sends nothing" in template
    org.ok("alex", "sync")
    got = json.loads(org.ok("alex", "read", "--json").out)["messages"][0]
    assert got["subject"] == "Lunch?" and got["body"] == "At noon, the usual place.\n" and got["from"] == "max"
    assert not list(org.clones["max"].joinpath(".git", "gitmail").glob("*EDITMSG"))  # no clear text left behind
    # --subject keeps its subject; the whole text is the body. -e: every argument is a recipient.
    org.join("bob")
    code, out = _on_tty("send", "-e", "alex", "bob", "--subject", "Plan", "--repo", str(org.clones["max"]))
    assert code == 0 and "Sent to alex, bob" in out, out
    assert "# Subject: Plan\n" in (tmp_path / "ed.template").read_text()
    org.ok("bob", "sync")
    got = json.loads(org.ok("bob", "read", "--json").out)["messages"][0]
    assert got["subject"] == "Plan" and got["body"] == "Lunch?\n\nAt noon, the usual place.\n"


def test_an_empty_message_aborts_and_no_terminal_is_a_usage_error(org: Org, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_EDITOR", str(_editor(tmp_path, "noop", None)))
    code, out = _on_tty("send", "alex", "--repo", str(org.clones["max"]))
    assert code == 2 and out == "gitmail: aborting: the message is empty; nothing sent\n", out
    code, out = _on_tty("reply", "0000", "--repo", str(org.clones["max"]))  # the id is checked first
    assert code != 0 and "0000" in out and not (tmp_path / "noop.template").read_text().count("Reply")
    # No terminal: the usage error of a missing argument, and no editor.
    monkeypatch.setenv("GIT_EDITOR", str(_editor(tmp_path, "never", "should not be sent")))
    r = org.as_("max", "send", "alex")
    assert r.code == 2 and "Missing argument 'MESSAGE'" in r.err and not (tmp_path / "never.template").exists()
    r = org.as_("max", "send")
    assert r.code == 2 and "Missing argument 'TO...'" in r.err
    # A dumb terminal with no editor set: one clear line from git's own rule.
    for var in ("GIT_EDITOR", "VISUAL", "EDITOR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TERM", "dumb")
    code, out = _on_tty("send", "alex", "--repo", str(org.clones["max"]))
    assert code == 2 and out.startswith("gitmail: no editor to write the message in (Terminal is dumb"), out
    assert out.count("\n") == 1
    assert json.loads(org.ok("max", "list", "--sent", "--json").out)["messages"] == []  # nothing sent


def test_reply_without_a_message_opens_the_editor(org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = json.loads(org.ok("max", "send", "alex", "Shall we ship?", "--json").out)
    org.ok("alex", "sync")
    monkeypatch.setenv("GIT_EDITOR", str(_editor(tmp_path, "ed", "Yes, ship it.\n")))
    code, out = _on_tty("reply", first["short_id"], "--repo", str(org.clones["alex"]))
    assert code == 0 and "Replied to max" in out, out
    assert f"# Reply to {first['short_id']} from max: Shall we ship?" in (tmp_path / "ed.template").read_text()
    org.ok("max", "sync")
    got = json.loads(org.ok("max", "read", "--json").out)["messages"][0]
    assert got["body"] == "Yes, ship it.\n" and got["in_reply_to"] == first["id"]
    monkeypatch.setenv("GIT_EDITOR", str(_editor(tmp_path, "noop", None)))
    code, out = _on_tty("reply", first["short_id"], "--repo", str(org.clones["alex"]))
    assert code == 2 and out == "gitmail: aborting: the message is empty; nothing sent\n", out
    r = org.as_("alex", "reply", first["short_id"])
    assert r.code == 2 and "Missing argument 'MESSAGE'" in r.err
