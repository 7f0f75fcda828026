"""Issue #10 hole 11: text other members wrote reaches the terminal only through the one sanitiser.

Every human-output command is fed the same hostile corpus (tests/output/corpus.py) from a
real org; nothing a terminal acts on may come out, every field shows as its visible escape,
and --json still carries the exact data.
"""

from __future__ import annotations

import json
from pathlib import Path

from gitmail.api.views import clean, clean_text, flat
from tests.conftest import Org, run
from tests.output.corpus import HOSTILE, UNSAFE, UNSAFE_LINE


def _send_corpus(org: Org, tmp_path: Path) -> list[dict]:
    sent = []
    for i, s in enumerate(HOSTILE):
        extra = ["--require-ack"] if i == 0 else []
        if i == 1:  # a hostile attachment file name too
            f = tmp_path / "\x1b]0;name\x07\u202egpj.exe"
            f.write_text("data")
            extra += ["--attach", str(f)]
        r = org.ok("max", "send", "alex", f"{s}\nsecond line\r\nthird\tcol", "--subject", s, "--plain", "--json",
                   *extra)
        sent.append(json.loads(r.out))
    return sent


def _lines_clean(out: str) -> None:
    assert not UNSAFE.search(out), repr(UNSAFE.search(out))
    assert "\t" not in out.replace("\n", "")  # one-line fields escape tabs as well


def test_every_listing_escapes_what_a_terminal_would_act_on(org: Org, tmp_path: Path) -> None:
    sent = _send_corpus(org, tmp_path)
    n = len(HOSTILE)
    sync = org.ok("alex", "sync").out
    _lines_clean(sync)
    assert sync.splitlines()[0] == f"{n} new messages" and len(sync.splitlines()) == n + 1
    lst = org.ok("alex", "list", "-n", "100").out
    _lines_clean(lst)
    assert len(lst.splitlines()) == n + 1  # one row per message: nothing started a line of its own
    for s in HOSTILE:
        assert clean(s) in lst, (s, lst)
    assert "\\x1b]0;pwned title\\x07 hi" in lst and "\\u202eevil\\u202c.exe" in lst
    log = org.ok("alex", "log", "-n", "100").out
    _lines_clean(log)
    for s in HOSTILE:
        assert clean(s) in log or clean(flat(s)) in log, (s, log)
    thread = org.ok("alex", "thread", sent[3]["short_id"], "--headers").out
    _lines_clean(thread)
    assert clean(HOSTILE[3]) in thread
    full = org.ok("alex", "thread", sent[3]["short_id"]).out  # bodies: lines and tabs kept, the rest escaped
    assert not UNSAFE.search(full), repr(UNSAFE.search(full))
    assert f"\n    {clean_text(HOSTILE[3])}\n    second line\n    third\tcol\n" in full, full
    waiting = org.ok("max", "list", "--awaiting-ack").out
    _lines_clean(waiting)
    assert waiting.startswith("1 sent message awaiting acknowledgement") and clean(HOSTILE[0]) in waiting
    # --json stays exact data (JSON escaping is enough there).
    rows = json.loads(org.ok("alex", "list", "-n", "100", "--json").out)["messages"]
    assert sorted(r["subject"] for r in rows) == sorted(HOSTILE)


def test_read_and_show_escape_subjects_bodies_and_file_names(org: Org, tmp_path: Path) -> None:
    sent = _send_corpus(org, tmp_path)
    org.ok("alex", "sync")
    for m, s in zip(sent, HOSTILE):
        out = org.ok("alex", "read", m["short_id"], "--no-save", "--no-mark").out
        assert not UNSAFE.search(out), (s, out)
        assert f"Subject: {clean(s)}\n" in out
        # The body keeps its lines and tabs; its other controls are escaped, CRLF is a line end.
        assert clean_text(f"{s}\nsecond line\r\nthird\tcol") in out
        assert "second line\nthird\tcol" in out
    att = org.ok("alex", "read", sent[1]["short_id"], "--no-mark", "--save-dir", str(tmp_path / "in")).out
    assert "Attachment: " in att and not UNSAFE_LINE.search(att.split("Attachment: ", 1)[1].rstrip("\n"))
    got = json.loads(org.ok("alex", "read", sent[0]["short_id"], "--no-mark", "--no-save", "--json").out)
    assert got["messages"][0]["body"] == f"{HOSTILE[0]}\nsecond line\r\nthird\tcol"  # exact data
    commits = {r["id"]: r["commit"] for r in json.loads(org.ok("alex", "list", "-n", "100", "--json").out)["messages"]}
    for m, s in zip(sent, HOSTILE):
        out = org.ok("alex", "show", commits[m["id"]]).out
        assert not UNSAFE.search(out), (s, out)
        assert f"Subject: {clean(s)}\n" in out


def test_payload_shown_by_read_is_escaped(org: Org) -> None:
    note = "\x1b]52;c;ZXZpbA==\x07\u202e \x9b2J"
    m = json.loads(org.ok("max", "send", "alex", "t", "--type", "task_update", "--plain", "--json", "--payload",
                          json.dumps({"task_id": "t1", "status": "blocked", "note": note})).out)
    org.ok("alex", "sync")
    out = org.ok("alex", "read", m["short_id"], "--no-mark").out
    assert not UNSAFE.search(out) and "\\u001b]52;c;ZXZpbA==\\u0007\\u202e \\x9b2J" in out, out


def test_hostile_directory_fields_are_refused_and_the_refusal_is_escaped(org: Org, tmp_path: Path) -> None:
    """A directory entry may not hold control or bidi characters (docs/protocol.md §8, entry
    grammar), so such an e-mail never reaches a listing; the refusal itself is printed escaped."""
    email = "eve\x1b]0;pwn\x07\u202e@example.org"
    r = run("init", "--name", "eve", "--email", email, "--org", org.url, "--repo", str(tmp_path / "eve"))
    assert r.code == 2 and not UNSAFE.search(r.err) and clean(email) in r.err, r  # refused before anything is made
    assert not (tmp_path / "eve").exists()
    org.ok("alex", "sync")
    names = [m["name"] for m in json.loads(org.ok("alex", "members", "--json").out)["members"]]
    assert "eve" not in names and not UNSAFE.search(org.ok("alex", "members").out)


def test_a_refusal_reason_from_the_server_is_escaped(org: Org) -> None:
    hook = Path(org.url) / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\nprintf 'denied \\033]0;pwned\\007 \\033[2J \\302\\233 \\342\\200\\256 here\\n' >&2\nexit 1\n")
    hook.chmod(0o755)
    r = org.as_("max", "send", "alex", "hi", "--plain")
    assert r.code == 10 and r.err.count("\n") == 1, r
    assert not UNSAFE.search(r.err) and "denied" in r.err, repr(r.err)
