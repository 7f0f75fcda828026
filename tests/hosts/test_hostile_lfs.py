"""A hostile (or broken) LFS server: what its batch replies may do to a reader and a sender.

A real HTTP server on 127.0.0.1 answers the batch API the way an attacker would; the org
stores attachments in LFS (docs/attachments.md). Each reply must end as one clear error line
for the attachment, never an internal error: the message itself is still shown, and a send
keeps its message (queued or refused, never lost).
"""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.attachments.conftest import LFSServer, lfs_org, lfs_server, set_lfs_url  # noqa: F401  (fixtures)
from tests.conftest import Org, git


class Hostile:
    """A batch API whose reply ``reply(oid, size, operation)`` gives (a status and a body), and a
    plain host that answers every other request 401 asking for Basic credentials."""

    def __init__(self) -> None:
        self.reply: Callable[[str, int, str], tuple[int, bytes]] = lambda oid, size, op: (500, b"")
        self.seen: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def _send(self, status: int, body: bytes, extra: dict[str, str] = {}) -> None:  # noqa: B006
                self.send_response(status)
                for k, v in {"Content-Length": str(len(body)), **extra}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                outer.seen.append(f"POST {self.path}")
                obj = req["objects"][0]
                status, body = outer.reply(obj["oid"], obj["size"], req["operation"])
                self._send(status, body, {"Content-Type": "application/vnd.git-lfs+json"})

            def do_GET(self) -> None:
                outer.seen.append(f"GET {self.path}")
                self._send(401, b"who are you\n", {"WWW-Authenticate": 'Basic realm="elsewhere"'})

            do_PUT = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def __enter__(self) -> "Hostile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    with Hostile() as h:
        yield h


def _action(href: str, header: Any = None) -> Callable[[str, int, str], tuple[int, bytes]]:
    def reply(oid: str, size: int, op: str) -> tuple[int, bytes]:
        act = {"href": href, **({"header": header} if header is not None else {})}
        verb = "download" if op == "download" else "upload"
        return 200, json.dumps({"objects": [{"oid": oid, "size": size, "actions": {verb: act}}]}).encode()
    return reply


DEEP = (200, b'{"objects":' + b"[" * 100_000 + b"]" * 100_000 + b"}")


def _cases(h: Hostile) -> dict[str, Callable[[str, int, str], tuple[int, bytes]]]:
    return {
        "nested": lambda oid, size, op: DEEP,
        "nested error body": lambda oid, size, op: (403, DEEP[1]),
        "header with a line break": _action(h.url + "/obj", {"X-A": "v\r\nX-Injected: 1"}),
        "header name not a token": _action(h.url + "/obj", {"Bad Name:": "v"}),
        "header value not Latin-1": _action(h.url + "/obj", {"X-A": "\u2603"}),
    }


def test_a_hostile_batch_reply_costs_one_attachment_not_the_inbox(lfs_org: Org, lfs_server: LFSServer,  # noqa: F811
                                                                 hostile: Hostile, tmp_path: Path) -> None:
    """A batch reply nested 100,000 deep, or an action header http.client cannot send (CR LF, a
    name that is no token, a value that is no Latin-1): ``read`` printed nothing at all and
    exited 70 (every unread message unread), ``sync`` exited 70. Now ``read`` shows the
    message and says why its attachment was not saved (exit 11), and ``read`` of the other
    message works."""
    f = tmp_path / "data.bin"
    f.write_bytes(os.urandom(2000))
    org = lfs_org
    org.ok("max", "send", "alex", "with a file", "--subject", "file", "--attach", str(f))
    org.ok("max", "send", "alex", "plain words", "--subject", "words")
    org.ok("alex", "sync")
    set_lfs_url(org, hostile.url)
    for why, reply in _cases(hostile).items():
        hostile.reply = reply
        shutil_rm(org.clones["alex"] / ".git" / "lfs")  # nothing cached: the store is asked
        r = org.as_("alex", "read", "--no-mark", "--save-dir", str(tmp_path / "in"))
        assert r.code == 11, (why, r)
        assert "internal error" not in r.err and "Traceback" not in r.err, (why, r.err)
        assert "Subject: file" in r.out and "Subject: words" in r.out, (why, r.out)
        assert r.err.count("\n") == 1 and "LFS server" in r.err, (why, r.err)


def test_a_hostile_upload_reply_is_one_clear_refusal(lfs_org: Org, hostile: Hostile, tmp_path: Path) -> None:  # noqa: F811
    """The same replies to a sender's upload: the send exited 70 ("internal error"). Now each is
    the LFS server's fault in one line, exit 11, nothing queued and nothing sent (a refusal, as
    for a file that cannot be attached; a store that cannot be reached queues instead), and the
    same send goes once the store behaves."""
    f = tmp_path / "data.bin"
    f.write_bytes(os.urandom(2000))
    org = lfs_org
    good_url = git("config", "lfs.url", cwd=org.clones["max"]).stdout.strip()
    set_lfs_url(org, hostile.url)
    for why, reply in _cases(hostile).items():
        hostile.reply = reply
        r = org.as_("max", "send", "alex", "a file", "--subject", why, "--attach", str(f))
        assert r.code == 11 and r.err.count("\n") == 1 and "LFS server" in r.err, (why, r)
        assert "internal error" not in r.err and "Traceback" not in r.err, (why, r.err)
        assert json.loads(org.ok("max", "outbox", "--json").out)["queued"] == [], why
    set_lfs_url(org, good_url)
    org.ok("max", "send", "alex", "a file", "--subject", "once it behaves", "--attach", str(f))
    org.ok("alex", "sync")
    subjects = [m["subject"] for m in json.loads(org.ok("alex", "list", "--json").out)["messages"]]
    assert subjects == ["once it behaves"], subjects


def test_credentials_are_asked_only_for_the_batch_apis_host(lfs_org: Org, lfs_server: LFSServer,  # noqa: F811
                                                           hostile: Hostile, tmp_path: Path) -> None:
    """A batch reply whose download URL is another host that answers 401: gitmail ran ``git
    credential fill`` for it (a desktop askpass prompt, or the user's helper, then the typed
    password sent there). Now no credential helper is asked for a host the user did not name."""
    f = tmp_path / "data.bin"
    f.write_bytes(os.urandom(2000))
    org = lfs_org
    org.ok("max", "send", "alex", "with a file", "--subject", "file", "--attach", str(f))
    org.ok("alex", "sync")
    log = tmp_path / "asked.log"
    helper = tmp_path / "helper.sh"
    helper.write_text(f"#!/bin/sh\ncat >> {log}\necho username=victim\necho password=typed-password\n")
    helper.chmod(0o755)
    git("config", "credential.helper", str(helper), cwd=org.clones["alex"])
    with Hostile() as other:  # the "other host": every GET there answers 401
        hostile.reply = _action(other.url + "/obj")
        set_lfs_url(org, hostile.url)
        shutil_rm(org.clones["alex"] / ".git" / "lfs")
        r = org.as_("alex", "read", "--no-mark", "--save-dir", str(tmp_path / "in"))
        assert r.code == 11 and "gitmail gives none there" in r.err, r
        assert not log.exists() or f"host=127.0.0.1:{other.server.server_address[1]}" not in log.read_text()
        assert other.seen and all(s.startswith("GET") for s in other.seen)


def test_an_https_endpoint_never_follows_a_plain_http_href() -> None:
    """An https batch API whose reply gives a plain http URL: content and the action's header
    would cross the network in clear where the user configured TLS. Refused, one line."""
    from gitmail.core import lfs
    from gitmail.errors import AttachmentError

    acts = {"download": {"href": "http://127.0.0.1:9/obj", "header": {"Authorization": "RemoteAuth x"}}}
    assert lfs._action(acts, "download", "ab" * 32, "https://lfs.example")[0] == "http://127.0.0.1:9/obj"
    with pytest.raises(AttachmentError, match="not https"):
        lfs._action(acts, "download", "ab" * 32, "https://lfs.example", https=True)


def shutil_rm(p: Path) -> None:
    import shutil

    shutil.rmtree(p, ignore_errors=True)
