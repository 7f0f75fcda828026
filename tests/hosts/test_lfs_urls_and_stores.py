"""What an LFS server (or the storage behind it) can send back, and what a store can hold:
URLs Python cannot read, redirects that step down from https or carry an action's
credential to another host, a damaged object in the embedded store; and where the
files of a message are saved (docs/attachments.md)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import ssl
from pathlib import Path
from typing import Iterator

import pytest

from tests.attachments.conftest import closed_port_url, lfs_org, lfs_server, set_lfs_url, set_policy  # noqa: F401
from tests.conftest import Org
from tests.hosts.redirect_server import Srv, self_signed
from tests.hosts.test_hostile_lfs import _action, hostile, shutil_rm  # noqa: F401 (fixture)

BAD_URLS = {"port out of range": "http://127.0.0.1:99999/obj", "port not a number": "http://127.0.0.1:8x/obj",
            "broken IPv6 host": "http://[::1/obj"}


def _sent(org: Org, tmp_path: Path, subject: str = "file") -> bytes:
    data = os.urandom(3000)
    f = tmp_path / "data.bin"
    f.write_bytes(data)
    org.ok("max", "send", "alex", "with a file", "--subject", subject, "--attach", str(f))
    org.ok("alex", "sync")
    return data


@pytest.mark.parametrize("why", list(BAD_URLS))
def test_an_href_python_cannot_read_costs_that_attachment_only(lfs_org: Org, hostile: object, tmp_path: Path,
                                                               why: str) -> None:
    """`read` exited 70 (ValueError: Port out of range) and showed no message at all; now the
    attachment is refused in one line (exit 11) and the body is shown."""
    org = lfs_org
    _sent(org, tmp_path)
    set_lfs_url(org, hostile.url)  # type: ignore[attr-defined]
    hostile.reply = _action(BAD_URLS[why])  # type: ignore[attr-defined]
    shutil_rm(org.clones["alex"] / ".git" / "lfs")
    r = org.as_("alex", "read", "--no-mark", "--save-dir", str(tmp_path / "in"))
    assert r.code == 11 and "internal error" not in r.err and "a URL gitmail cannot use" in r.err, r
    assert "with a file" in r.out


def test_a_queued_upload_with_an_unreadable_href_never_blocks_other_mail(lfs_org: Org, hostile: object,
                                                                          tmp_path: Path) -> None:
    """An LFS message queued while the store was down, then a store whose reply is unreadable:
    every later send and sync exited 70 and a plain message stayed queued behind it."""
    org = lfs_org
    f = tmp_path / "data.bin"
    f.write_bytes(os.urandom(2000))
    set_lfs_url(org, closed_port_url())
    org.ok("max", "send", "alex", "a file", "--subject", "with file", "--attach", str(f))
    set_lfs_url(org, hostile.url)  # type: ignore[attr-defined]
    hostile.reply = _action(BAD_URLS["port out of range"])  # type: ignore[attr-defined]
    plain = org.as_("max", "send", "alex", "plain words", "--subject", "plain")
    assert plain.code == 0 and "internal error" not in plain.err, plain
    assert org.as_("max", "sync").code != 70
    org.ok("alex", "sync")
    assert "plain" in [m["subject"] for m in json.loads(org.ok("alex", "list", "--json").out)["messages"]]


@pytest.fixture
def tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ssl.SSLContext]:
    cert, key = self_signed(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    monkeypatch.setenv("GIT_SSL_CAINFO", cert)
    yield ctx


def test_a_download_is_never_redirected_from_https_to_plain_http(lfs_org: Org, tmp_path: Path,
                                                                 tls: ssl.SSLContext) -> None:
    """The https batch API's download answered 302 to http on another port: gitmail followed,
    and the action's X-Storage-Token went along in clear. Now refused in one line."""
    data = _sent(lfs_org, tmp_path)
    oid = hashlib.sha256(data).hexdigest()
    api, plain = Srv(tls), Srv()
    try:
        plain.content["/obj/" + oid] = data
        api.target = plain.base + "/obj/" + oid
        api.action_header = {"X-Storage-Token": "secret-token-123"}
        set_lfs_url(lfs_org, api.base)
        shutil_rm(lfs_org.clones["alex"] / ".git" / "lfs")
        r = lfs_org.as_("alex", "read", "--no-mark", "--save-dir", str(tmp_path / "in"))
        assert r.code == 11 and "redirected from https to http; not followed" in r.err, r
        assert plain.seen == []
    finally:
        api.close()
        plain.close()


def test_an_upload_is_never_redirected_from_https_to_plain_http(lfs_org: Org, tmp_path: Path,
                                                                tls: ssl.SSLContext) -> None:
    api, plain = Srv(tls), Srv()
    try:
        api.target = lambda oid: plain.base + "/store/" + oid
        api.action_header = {"X-Upload-Token": "upl-secret"}
        set_lfs_url(lfs_org, api.base)
        f = tmp_path / "secret.txt"
        f.write_bytes(b"confidential " * 100)
        r = lfs_org.as_("max", "send", "alex", "x", "--subject", "s", "--attach", str(f))
        assert r.code == 11 and "redirected from https to http; not followed" in r.err, r
        assert plain.seen == []
    finally:
        api.close()
        plain.close()


def test_an_action_header_is_not_sent_on_to_another_origin(lfs_org: Org, tmp_path: Path) -> None:
    """An action's header is a credential (docs/attachments.md): on a redirect to another host
    or port only the content's own headers go on (Authorization alone was dropped before)."""
    set_policy(lfs_org, encryption="off")  # the object served below is the file itself
    data = _sent(lfs_org, tmp_path)
    oid = hashlib.sha256(data).hexdigest()
    api, other = Srv(), Srv()
    try:
        other.content["/obj/" + oid] = data
        api.target = other.base + "/obj/" + oid
        api.action_header = {"X-Storage-Token": "secret-token-123", "Authorization": "Bearer action-cred"}
        set_lfs_url(lfs_org, api.base)
        shutil_rm(lfs_org.clones["alex"] / ".git" / "lfs")
        lfs_org.ok("alex", "read", "--no-mark", "--save-dir", str(tmp_path / "in"))
        sent = [{k.lower() for k in h} for _, _, h in other.seen]
        assert sent and all(not ({"x-storage-token", "authorization"} & h) for h in sent), other.seen
        assert (tmp_path / "in" / "data.bin").read_bytes() == data
    finally:
        api.close()
        other.close()


def test_a_damaged_object_in_the_embedded_store_never_stays_in_the_readers_cache(org: Org, tmp_path: Path) -> None:
    """A store object of the right size and wrong bytes was hard-linked into the reader's cache
    unverified; after the store was repaired the attachment still failed for good (the cache
    copy has the right size, and the size was all that was asked)."""
    set_policy(org, attachment_storage="lfs", encryption="off")
    data = os.urandom(5000)
    oid = hashlib.sha256(data).hexdigest()
    f = tmp_path / "d.bin"
    f.write_bytes(data)
    org.ok("max", "send", "alex", "file", "--subject", "f", "--attach", str(f))
    org.ok("alex", "sync")
    store = Path(org.url) / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
    os.unlink(store)
    store.write_bytes(b"\0" * len(data))  # damaged (a new inode: the sender's copy is untouched)
    r = org.as_("alex", "read", "--save-dir", str(tmp_path / "in1"))
    assert r.code == 11 and "does not match its sha256" in r.err, r
    os.unlink(store)
    store.write_bytes(data)  # repaired
    mid = json.loads(org.ok("alex", "list", "--all", "--json").out)["messages"][0]["id"]
    org.ok("alex", "attachments", mid[:8], "--save-dir", str(tmp_path / "in2"))
    assert (tmp_path / "in2" / "d.bin").read_bytes() == data


def test_the_mcp_message_folder_is_one_this_call_made(org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """read_message saves into <folder>/<short id>; the sender knows the id in advance and, in a
    folder others can write to, planted it as a symlink to a stand-in for ~/.ssh: the file
    named authorized_keys landed there. Then ``<id>-1`` to ``<id>-99`` were tried, and with
    those planted too (empty folders) the planted ``<id>`` link itself was used: the file
    landed in .ssh again, and the result named the link's path (relative, where the result
    documents an absolute path). Now a folder this call made, with a name nobody can plant."""
    from mcp.types import CallToolResult

    from gitmail.mcp.server import build_server

    set_policy(org, encryption="off")
    f = tmp_path / "authorized_keys"
    f.write_text("ssh-ed25519 AAAA...attacker\n")
    mid = json.loads(org.ok("max", "send", "alex", "keys, see attached", "--attach", str(f), "--json").out)["id"]
    shared = tmp_path / "shared"
    shared.mkdir()
    ssh = tmp_path / "victim-home" / ".ssh"
    ssh.mkdir(parents=True)
    os.symlink(ssh, shared / mid[:8])
    for n in range(1, 100):
        (shared / f"{mid[:8]}-{n}").mkdir()
    org.ok("alex", "sync")
    srv = build_server(org.clones["alex"], "alex")
    monkeypatch.chdir(tmp_path)  # the folder as an agent names it: relative to the server's working folder
    got = asyncio.run(srv.call_tool("read_message", {"id": mid[:10], "save_attachments_to": "shared"}))
    assert isinstance(got, CallToolResult) and got.structured_content is not None
    saved = got.structured_content["attachments"][0]["saved_to"]
    assert os.listdir(ssh) == []
    assert Path(saved).is_absolute() and Path(saved).parent.parent == shared, saved
    assert Path(saved).parent.name.startswith(f"{mid[:8]}-") and not Path(saved).parent.is_symlink()
    assert Path(saved).read_text() == "ssh-ed25519 AAAA...attacker\n"
    assert all(not any((shared / f"{mid[:8]}-{n}").iterdir()) for n in range(1, 100))


def test_the_mcp_save_folder_empty_or_unwritable(org: Org, tmp_path: Path) -> None:
    """``save_attachments_to: ""`` saved straight into the default inbox folder, not into a
    folder of the message's own; now refused in one line. A folder that cannot be written
    gives each attachment its reason, nothing written, and is never taken for one of ours."""
    from mcp.types import CallToolResult

    from gitmail.mcp.server import build_server

    set_policy(org, encryption="off")
    f = tmp_path / "notes.txt"
    f.write_text("notes\n")
    mid = json.loads(org.ok("max", "send", "alex", "see attached", "--attach", str(f), "--json").out)["id"]
    org.ok("alex", "sync")
    srv = build_server(org.clones["alex"], "alex")
    with pytest.raises(Exception, match="give a folder"):
        asyncio.run(srv.call_tool("read_message", {"id": mid[:10], "save_attachments_to": " "}))
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        got = asyncio.run(srv.call_tool("read_message", {"id": mid[:10], "save_attachments_to": str(locked)}))
        assert isinstance(got, CallToolResult) and got.structured_content is not None
        [a] = got.structured_content["attachments"]
        if os.geteuid() != 0:  # root writes anywhere: then the folder is made and used
            assert a["saved_to"] is None and "no folder of its own" in a["error"], a
            assert os.listdir(locked) == []
        else:
            assert Path(a["saved_to"]).parent.parent == locked
    finally:
        locked.chmod(0o700)


def test_a_device_name_with_a_long_extension_is_bounded_and_stable() -> None:
    from gitmail.core.attachments import safe_name

    s = safe_name("CON." + "x" * 300)
    assert len(s.encode()) <= 200 and safe_name(s) == s and s.startswith("_CON")
