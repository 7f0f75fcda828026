"""Exact outcomes of every command that sends (issue 12, item 3): delivered, queued (why), refused (exit 10).

Real git daemon and guard (tests/sync/conftest.py); a real HTTP server that asks for credentials.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import git
from tests.sync.conftest import NetOrg, guard_runtime, net, unguarded  # noqa: F401

MAILBOX = "refs/heads/gitmail/mail/alex/max"


def server_ids(bare: Path, ref: str = MAILBOX) -> list[str]:
    p = git("log", "--format=%(trailers:key=Message-Id,valueonly)", ref, cwd=bare, check=False)
    return [ln.strip().removeprefix("<").removesuffix("@gitmail>") for ln in p.stdout.splitlines() if ln.strip()]


# One process: ten CLI sends, each exit code and output recorded (the CLI's own main, in-process).
SENDER = r"""
import contextlib, io, json, sys
from gitmail.cli.main import main
out = []
for i in range(int(sys.argv[2])):
    o, e = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
        code = main(["send", "alex", f"{sys.argv[3]} {i}", "--plain", "--json", "--repo", sys.argv[1]])
    out.append({"code": code, "out": o.getvalue(), "err": e.getvalue()})
print(json.dumps(out))
"""


def test_outcomes_concurrent_sends_in_one_clone_report_what_happened(net: NetOrg) -> None:
    clone = str(net.clones["max"])
    procs = [subprocess.Popen([sys.executable, "-c", SENDER, clone, "10", f"p{k}"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for k in range(8)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()
        results += json.loads(out)
    bad = [r for r in results if r["code"] != 0]
    assert bad == [], (len(bad), bad[:3])
    assert [json.loads(r["out"])["outcome"] for r in results] == ["delivered"] * 80
    claimed = [json.loads(r["out"])["id"] for r in results]
    on_server = server_ids(net.bare)
    assert len(on_server) == len(set(on_server)) == 80
    assert sorted(claimed) == sorted(on_server)
    assert git("for-each-ref", "refs/gitmail/outbox/", cwd=clone).stdout == ""


@pytest.fixture
def refusing(unguarded: NetOrg) -> NetOrg:  # noqa: F811
    """The org repo with a site hook that refuses any push carrying a message that says "forbidden"."""
    hook = unguarded.bare / "hooks" / "pre-receive"
    hook.write_text(
        "#!/bin/sh\n"
        "while read old new ref; do\n"
        "  range=$new; [ \"$old\" = 0000000000000000000000000000000000000000 ] || range=$old..$new\n"
        "  if git log --format=%B $range -- | grep -q forbidden; then\n"
        "    echo \"site policy: that word is not allowed here\" >&2; exit 1\n"
        "  fi\n"
        "done\n"
    )
    hook.chmod(0o755)
    unguarded.ok("max", "org", "encryption=off")  # the hook reads the words: mail in clear
    unguarded.ok("alex", "sync")
    return unguarded


def test_outcomes_refused_reply_exits_10_with_the_reason(refusing: NetOrg) -> None:
    o = refusing
    m = json.loads(o.ok("max", "send", "alex", "please confirm", "--require-ack", "--plain", "--json").out)
    o.ok("alex", "sync")
    r = o.as_("alex", "reply", m["short_id"], "forbidden words")
    assert r.code == 10, (r.code, r.out, r.err)
    assert "site policy: that word is not allowed here" in r.err and "Replied" not in r.out
    r = o.as_("alex", "reply", m["short_id"], "forbidden again", "--json")
    assert r.code == 10 and json.loads(r.out)["outcome"] == "refused"
    assert "site policy" in json.loads(r.out)["reason"]
    # The refused replies are kept, and they hold nothing back: a fine reply goes.
    r = o.ok("alex", "reply", m["short_id"], "all good", "--json")
    assert json.loads(r.out)["outcome"] == "delivered"
    gone = json.loads(o.ok("alex", "outbox", "--undelivered", "--json").out)["undelivered"]
    assert len(gone) == 2 and {u["kind"] for u in gone} == {"refused"}
    # Delivered is delivered: the ack goes through and says so.
    a = json.loads(o.ok("alex", "ack", m["short_id"], "--json").out)["acks"][0]
    assert a["outcome"] == "delivered" and a["delivered"] is True


class _AuthWall(http.server.BaseHTTPRequestHandler):
    """A git HTTP remote that wants credentials nobody has."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="org"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def auth_wall() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AuthWall)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/org.git"
    finally:
        srv.shutdown()
        srv.server_close()


def test_outcomes_auth_failure_is_queued_with_its_reason_then_delivered_once(net: NetOrg, auth_wall: str) -> None:
    clone = net.clones["max"]
    git("remote", "set-url", "origin", auth_wall, cwd=clone)
    r = net.as_("max", "send", "alex", "behind a wall", "--plain", "--json")
    assert r.code == 0, (r.code, r.err)
    res = json.loads(r.out)
    assert res["outcome"] == "queued" and res["delivered"] is False and res["queued"] is True
    assert auth_wall in res["reason"] and "Username" in res["reason"], res["reason"]
    r = net.as_("max", "send", "alex", "second", "--plain")
    assert r.code == 0 and r.out.startswith("Queued (push failed;") and auth_wall in r.out, r.out
    q = json.loads(net.ok("max", "outbox", "--json").out)["queued"]
    assert [x["kind"] for x in q] == ["push-failed", "push-failed"]
    git("remote", "set-url", "origin", net.url, cwd=clone)
    assert len(json.loads(net.ok("max", "sync", "--json").out)["delivered"]) == 2
    assert len(server_ids(net.bare)) == 2
