"""Issue #14 item 6 (part): the unread notice on every interactive command, and plural forms."""

from __future__ import annotations

import re
import tokenize
from pathlib import Path

import pytest

from tests.conftest import Org

ROOT = Path(__file__).resolve().parents[2]


def test_unread_notice_after_every_interactive_command(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITMAIL_NOTICE", "always")  # as on a terminal
    org.ok("max", "send", "alex", "one", "--plain")
    org.ok("alex", "sync")
    one = "📬 1 unread message. Run: gitmail read\n"
    for args in (["list"], ["sync"], ["whoami"], ["group", "list"], ["members"], ["log"], ["verify"]):
        r = org.ok("alex", *args)
        assert r.err.endswith(one), (args, r.err)
    org.ok("max", "send", "alex", "two", "--plain", "--priority", "urgent")
    r = org.ok("alex", "sync")
    assert r.err.endswith("📬 2 unread messages (1 urgent). Run: gitmail read\n"), r.err
    for quiet in (["--json"], ["--quiet"]):
        assert "📬" not in org.ok("alex", "list", *quiet).err
    assert "📬" not in org.ok("alex", "hooks", "install").err  # git's hooks speak for themselves


def test_counts_are_plural_forms(org: Org) -> None:
    assert org.ok("alex", "sync").out.splitlines()[0] == "0 new messages"
    org.ok("max", "send", "alex", "one", "--plain")
    assert org.ok("alex", "sync").out.splitlines()[0] == "1 new message"
    for i in range(2):
        org.ok("max", "send", "alex", f"more {i}", "--plain", "--require-ack")
    assert org.ok("alex", "sync").out.splitlines()[0] == "2 new messages"
    assert org.ok("max", "list", "--awaiting-ack").out.startswith("2 sent messages awaiting acknowledgement")
    out = org.ok("alex", "verify", "--all").out
    assert out.startswith("3 messages in 1 mailbox: 3 good, 0 bad; 0 history problems"), out


def _texts(p: Path) -> list[str]:
    """The string literals of a Python file; the printing lines of a shell script."""
    if p.suffix != ".py":
        return [ln for ln in p.read_text(errors="replace").splitlines() if "printf" in ln or "echo" in ln]
    with p.open("rb") as f:
        return [t.string for t in tokenize.tokenize(f.readline) if t.type == tokenize.STRING]


def test_no_output_says_s_in_parentheses() -> None:
    pattern = re.compile(r"[a-z]\((s|es)\)")
    files = [p for base in ("gitmail", "hooks") for p in (ROOT / base).rglob("*")
             if p.is_file() and (p.suffix in (".py", ".sh") or p.parent.name == "hooks" and not p.suffix)]
    hits = [f"{p.relative_to(ROOT)}: {t.strip()[:80]}" for p in files for t in _texts(p)
            if pattern.search(t.replace("http(s)", ""))]
    assert not hits, hits
