"""Bad input, each a test: one clear line, a non-zero exit, no traceback, nothing half-written."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitmail.core import lfs
from tests.attachments.conftest import LFSServer, craft, files_under, set_policy
from tests.conftest import Org, Result, git

ATTACHMENT_EXIT = 11


def _one_line_error(r: Result, code: int = ATTACHMENT_EXIT) -> str:
    assert r.code == code, (r.code, r.out, r.err)
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gitmail: "), r.err
    assert "Traceback" not in r.err + r.out
    return lines[0]


def _snapshot(org: Org, who: str) -> tuple[str, str, list[str], list[str]]:
    """Everything a send could write: the org's refs, the clone's refs, objects and LFS files."""
    clone = org.clones[who]
    objects = subprocess.run(["git", "count-objects", "-v"], cwd=clone, capture_output=True, text=True).stdout
    return (
        git("for-each-ref", cwd=org.url).stdout,
        git("for-each-ref", cwd=clone).stdout + objects,
        files_under(clone / ".git" / "lfs"),
        files_under(Path(org.url) / "lfs"),
    )


def _send_fails(org: Org, *files: str) -> str:
    before = _snapshot(org, "max")
    r = org.as_("max", "send", "alex", "with a bad file", *[x for f in files for x in ("--attach", f)])
    line = _one_line_error(r)
    assert _snapshot(org, "max") == before  # nothing written anywhere
    return line


@pytest.fixture
def lfs_policy(org: Org) -> Org:
    set_policy(org, attachment_storage="lfs", attachment_limit=100_000)
    return org


def test_missing_file(lfs_policy: Org, tmp_path: Path) -> None:
    ok = tmp_path / "ok.txt"
    ok.write_text("fine")
    line = _send_fails(lfs_policy, str(ok), str(tmp_path / "nope.csv"))
    assert line == f"gitmail: cannot attach {tmp_path / 'nope.csv'}: no such file"


def test_directory(lfs_policy: Org, tmp_path: Path) -> None:
    line = _send_fails(lfs_policy, str(tmp_path))
    assert "is a directory" in line


def test_unreadable_file(lfs_policy: Org, tmp_path: Path) -> None:
    f = tmp_path / "secret.txt"
    f.write_text("secret")
    f.chmod(0)
    try:
        if os.access(f, os.R_OK):  # root reads anything: chmod 000 proves nothing
            pytest.skip("running as root: a chmod 000 file stays readable, so unreadability cannot be set up")
        line = _send_fails(lfs_policy, str(f))
        assert "permission denied" in line
    finally:
        f.chmod(0o600)


def test_not_a_regular_file(lfs_policy: Org, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert "not a regular file" in _send_fails(lfs_policy, str(fifo))


def test_over_the_limit(lfs_policy: Org, tmp_path: Path) -> None:
    f = tmp_path / "big.bin"
    f.write_bytes(b"\0" * 100_001)
    line = _send_fails(lfs_policy, str(f))
    assert "over the org's limit of 97.7 KB per attachment" in line


def test_hostile_names_on_the_sending_side(org: Org, tmp_path: Path) -> None:
    d = tmp_path / "weird"
    d.mkdir()
    names = ["-rf", ".bashrc", "CON.txt", "a\x1b[31mred.txt", "line\nbreak.txt", "..."]
    for n in names:
        (d / n).write_text(n)
    args = [x for n in names for x in ("--attach", str(d / n))]
    import json

    r = json.loads(org.ok("max", "send", "alex", "weird names", *args, "--json").out)
    stored = [a["name"] for a in r["attachments"]]
    assert stored == ["rf", "bashrc", "_CON.txt", "a_[31mred.txt", "line_break.txt", "attachment"]
    assert [a["path"] for a in r["attachments"]][:2] == ["attachments/1-rf", "attachments/2-bashrc"]


def test_hostile_names_on_the_receiving_side(org: Org, tmp_path: Path) -> None:
    hostile = ["../../escape.sh", "/etc/passwd", "..\\..\\win.bat", "NUL", ".ssh/authorized_keys",
               "\x1b]0;pwned\x07title.txt", "-", "x" * 400 + ".txt"]
    atts, tree = [], {}
    for i, name in enumerate(hostile, 1):
        data = f"payload {i}".encode()
        atts.append({"name": name, "size": len(data), "oid": hashlib.sha256(data).hexdigest(),
                     "storage": "blob", "path": f"attachments/{i}-x", "media_type": "text/plain"})  # an escape here: malformed (§4)
        tree[f"attachments/{i}-x"] = data
    craft(org, "max", "alex", atts, tree)
    org.ok("alex", "sync")
    inbox = tmp_path / "a" / "b" / "inbox"
    r = org.ok("alex", "read", "--save-dir", str(inbox))
    assert "\x1b" not in r.out
    saved = files_under(inbox)
    assert saved == sorted(["escape.sh", "passwd", "win.bat", "_NUL", "authorized_keys", "_]0;pwned_title.txt",
                            "attachment", "x" * 196 + ".txt"])
    assert files_under(tmp_path / "a") == ["b/inbox/" + s for s in saved]  # nothing outside the folder
    assert not (tmp_path / "escape.sh").exists()


def test_forged_message_attachments_are_not_saved(org: Org, tmp_path: Path) -> None:
    from gitmail import api
    from gitmail.core import refs
    from gitmail.core.model import Attachment, Message, format_date, utcnow
    from gitmail.core.store import write_message_commit

    # max writes a message claiming to come from alex, onto alex's own outgoing mailbox for max.
    data = b"malware"
    s = api.session(org.clones["max"])
    msg = Message(**{"from": "alex"}, to=["max"], date=format_date(utcnow()), body="trust me",
                  attachments=[Attachment(name="run.sh", size=len(data), oid=hashlib.sha256(data).hexdigest(),
                                          storage="blob", path="attachments/1-run.sh")])
    msg.id = msg.compute_id()
    pg = s.repo.pg
    path = refs.mail_path("max", "alex")
    oid = write_message_commit(pg, msg, s.member, s.signer, None, {"attachments/1-run.sh": (str(pg.create_blob(data)), 0o100644)})
    git("push", "-q", org.url, f"{oid}:{refs.head(path)}", cwd=org.clones["max"])
    org.ok("max", "sync")
    inbox = tmp_path / "inbox"
    r = org.as_("max", "read", "--save-dir", str(inbox))
    assert "NOT saved" in r.out and "failed verification" in r.out
    assert r.code != 0 and "Traceback" not in r.err
    assert files_under(inbox) == []
    r = org.as_("max", "attachments", msg.id[:10], "--save-dir", str(inbox))
    assert _one_line_error(r, 7).endswith("its attachments are not saved")


def _send_lfs(org: Org, tmp_path: Path, size: int = 80_000) -> tuple[str, bytes]:
    import json

    content = os.urandom(size)
    f = tmp_path / "data.bin"
    f.write_bytes(content)
    r = json.loads(org.ok("max", "send", "alex", "data", "--attach", str(f), "--json").out)
    org.ok("alex", "sync")
    return r["short_id"], content


def test_pointer_whose_object_is_missing_on_the_server(lfs_org: Org, lfs_server: LFSServer, tmp_path: Path) -> None:
    short, content = _send_lfs(lfs_org, tmp_path)
    lfs_server.object_path(hashlib.sha256(content).hexdigest()).unlink()
    inbox = tmp_path / "inbox"
    r = lfs_org.as_("alex", "read", short, "--save-dir", str(inbox))
    line = _one_line_error(r)
    assert "missing from the org's store" in line and "data.bin" in line
    assert "NOT saved" in r.out
    assert files_under(inbox) == [] and not (lfs_org.clones["alex"] / ".git" / "lfs" / "objects").exists()
    r = lfs_org.as_("alex", "attachments", short, "--save-dir", str(inbox), "--json")
    assert "missing from the org's store" in _one_line_error(r)


def test_content_that_does_not_match_its_pointer(lfs_org: Org, lfs_server: LFSServer, tmp_path: Path) -> None:
    short, content = _send_lfs(lfs_org, tmp_path)
    obj = lfs_server.object_path(hashlib.sha256(content).hexdigest())
    obj.chmod(0o644)
    obj.write_bytes(os.urandom(len(content)))  # same size, other bytes: an altered store
    inbox = tmp_path / "inbox"
    line = _one_line_error(lfs_org.as_("alex", "attachments", short, "--save-dir", str(inbox)))
    assert "does not match its sha256" in line
    assert files_under(inbox) == []  # no partial file, no temp file
    assert files_under(lfs_org.clones["alex"] / ".git" / "lfs" / "objects") == []


def test_local_store_object_missing_or_altered(org: Org, tmp_path: Path) -> None:
    set_policy(org, attachment_storage="lfs")
    short, content = _send_lfs(org, tmp_path)
    oid = hashlib.sha256(content).hexdigest()
    obj = Path(org.url) / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
    obj.unlink()
    obj.write_bytes(content[:-1] + bytes([content[-1] ^ 1]))
    inbox = tmp_path / "inbox"
    assert "does not match its sha256" in _one_line_error(org.as_("alex", "read", "--save-dir", str(inbox)))
    obj.unlink()
    assert "missing from the org's store" in _one_line_error(
        org.as_("alex", "attachments", short, "--save-dir", str(inbox)))
    assert files_under(inbox) == []


def test_blob_that_does_not_match_message_json(org: Org, tmp_path: Path) -> None:
    mid = craft(org, "max", "alex", [{"name": "a.txt", "size": 5, "oid": hashlib.sha256(b"hello").hexdigest(),
                                      "storage": "blob", "path": "attachments/1-a.txt"}],
                {"attachments/1-a.txt": b"HELLO"})
    org.ok("alex", "sync")
    inbox = tmp_path / "inbox"
    line = _one_line_error(org.as_("alex", "attachments", mid[:10], "--save-dir", str(inbox)))
    assert "a.txt: content does not match its sha256" in line
    assert files_under(inbox) == []


def test_pointer_that_does_not_match_message_json(org: Org, tmp_path: Path) -> None:
    """A pointer to another object than its entry declares makes the message malformed where it
    comes in (docs/protocol.md §6, "The tree"), so ``attachments`` refuses it as any message that
    failed verification (exit 7), and fetches nothing."""
    oid = hashlib.sha256(b"x").hexdigest()
    ptr = f"version https://git-lfs.github.com/spec/v1\noid sha256:{'0' * 64}\nsize 1\n".encode()
    craft(org, "max", "alex", [{"name": "p.bin", "size": 1, "oid": oid, "storage": "lfs",
                                "path": "attachments/1-p.bin"}], {"attachments/1-p.bin": ptr})
    org.ok("alex", "sync")
    bad = json.loads(org.as_("alex", "verify", "--json").out)["bad"]
    assert [(b["status"], b["detail"]) for b in bad] == [
        ("malformed", "attachments/1-p.bin is not the LFS pointer its entry declares (oid and size)")]
    line = _one_line_error(org.as_("alex", "attachments", bad[0]["oid"][:10], "--save-dir", str(tmp_path / "in")), 7)
    assert "is corrupt" in line and not (tmp_path / "in").exists(), line


def test_hostile_oid_never_becomes_a_path(org: Org, tmp_path: Path) -> None:
    """An oid that is no sha256 makes the message malformed where it comes in (docs/protocol.md
    §4), so ``attachments`` refuses it as any message that failed verification (exit 7)."""
    craft(org, "max", "alex", [{"name": "p.bin", "size": 1, "oid": "../../../../etc/passwd", "storage": "lfs",
                                "path": "attachments/1-p.bin"}], {"attachments/1-p.bin": b"x"})
    org.ok("alex", "sync")
    bad = json.loads(org.as_("alex", "verify", "--json").out)["bad"]
    assert [(b["status"], b["detail"]) for b in bad] == [("malformed", "attachments.0.oid is not 64 lower-case hex digits")]
    line = _one_line_error(org.as_("alex", "attachments", bad[0]["oid"][:10], "--save-dir", str(tmp_path / "in")), 7)
    assert "is corrupt" in line and not (tmp_path / "in").exists(), line


def test_declared_size_over_the_limit_is_not_fetched(org: Org, tmp_path: Path) -> None:
    # A reader applies the widest limit the directory ever had (docs/protocol.md §13): the
    # declared size is over the default 10 MiB, which the history had before 1000.
    # An LFS entry, its pointer naming exactly what it declares (a blob of another size than its
    # entry declares is malformed where it comes in): nothing is asked of any LFS store.
    set_policy(org, attachment_limit=1000)
    oid = hashlib.sha256(b"y" * 2000).hexdigest()
    mid = craft(org, "max", "alex", [{"name": "huge.bin", "size": 11 * 2**20, "oid": oid,
                                      "storage": "lfs", "path": "attachments/1-huge.bin"}],
                {"attachments/1-huge.bin": lfs.format_pointer(oid, 11 * 2**20)})
    org.ok("alex", "sync")
    line = _one_line_error(org.as_("alex", "attachments", mid[:10], "--save-dir", str(tmp_path / "in")))
    assert "over the org's limit" in line and not (tmp_path / "in").exists()


def test_lfs_server_down_while_reading(lfs_org: Org, lfs_server: LFSServer, tmp_path: Path) -> None:
    from tests.attachments.conftest import closed_port_url

    short, _ = _send_lfs(lfs_org, tmp_path)
    git("config", "lfs.url", closed_port_url(), cwd=lfs_org.clones["alex"])
    inbox = tmp_path / "inbox"
    r = lfs_org.as_("alex", "read", short, "--save-dir", str(inbox))
    assert "cannot be reached" in _one_line_error(r)
    assert "Subject: data" in r.out and "NOT saved" in r.out  # the message itself is still shown
    assert files_under(inbox) == []
    git("config", "lfs.url", lfs_server.url, cwd=lfs_org.clones["alex"])
    lfs_org.ok("alex", "attachments", short, "--save-dir", str(inbox))
    assert files_under(inbox) == ["data.bin"]


def test_a_private_key_is_never_attached(org: Org, tmp_path: Path) -> None:
    """``send --attach`` of a private key (OpenSSH, PEM, OpenPGP, an age identity, PuTTY; alone
    or inside a text file): one line, exit 11, nothing queued or sent. A public key goes."""
    import subprocess

    keys = {}
    keys["ssh"] = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys["ssh"])], check=True)
    keys["pem"] = tmp_path / "id_rsa"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "1024", "-m", "PEM", "-N", "", "-f", str(keys["pem"])],
                   check=True)
    keys["age"] = tmp_path / "age.key"
    subprocess.run(["age-keygen", "-o", str(keys["age"])], check=True, capture_output=True)
    keys["pgp"] = tmp_path / "secret.asc"
    keys["pgp"].write_text("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF...\n-----END PGP PRIVATE KEY BLOCK-----\n")
    keys["putty"] = tmp_path / "key.ppk"
    keys["putty"].write_text("PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\n")
    keys["inside"] = tmp_path / "notes.md"
    keys["inside"].write_bytes(b"# deploy\r\n\r\n" + keys["pem"].read_bytes().replace(b"\n", b"\r\n"))
    # A cloud service account's key file: the PEM inside a JSON string (was attached).
    keys["account"] = tmp_path / "service-account.json"
    keys["account"].write_text(json.dumps({"type": "service_account", "private_key": keys["pem"].read_text()}))
    keys["yaml"] = tmp_path / "deploy.yaml"  # indented in a YAML block (was attached)
    keys["yaml"].write_text("key: |\n" + "".join("    " + ln + "\n" for ln in keys["pem"].read_text().splitlines()))
    words = {"ssh": "an OpenSSH private key", "pem": "a PEM private key", "age": "an age identity (a private key)",
             "pgp": "an OpenPGP private key", "putty": "a PuTTY private key", "inside": "a PEM private key",
             "account": "a PEM private key", "yaml": "a PEM private key"}
    before = git("for-each-ref", cwd=org.clones["max"]).stdout
    for kind, path in keys.items():
        r = org.as_("max", "send", "alex", "here", "--attach", str(path))
        line = _one_line_error(r, 11)
        assert f"cannot attach {path}: it holds {words[kind]}; gitmail does not send private keys" in line, (kind, line)
    assert git("for-each-ref", cwd=org.clones["max"]).stdout == before
    org.ok("max", "send", "alex", "my public key", "--attach", str(keys["ssh"]) + ".pub")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.binary(max_size=400))
def test_private_key_lines_are_found_wherever_a_line_begins(head: bytes, tail: bytes) -> None:
    """Property: a private key is found after any text ending in a line break (LF or CRLF),
    indented or not, and before anything; a PEM key or an age identity after any text at all
    (a JSON string: a service account's "private_key" was attached, as was a key indented in
    YAML; reported by a hostile sweep); text with no such start is never taken for a key."""
    from gitmail.core.attachments import private_key_kind

    for line in (b"-----BEGIN OPENSSH PRIVATE KEY-----", b"AGE-SECRET-KEY-1" + b"Q" * 58,
                 b"-----BEGIN ENCRYPTED PRIVATE KEY-----", b"PuTTY-User-Key-File-2: ssh-rsa"):
        for nl in (b"\n", b"\r\n", b"\n    ", b"\n\t"):
            assert private_key_kind(head + nl + line + tail) is not None
    for key in (b"-----BEGIN PRIVATE KEY-----", b"-----BEGIN OPENSSH PRIVATE KEY-----"):
        assert private_key_kind(head + b'{"private_key": "' + key + b"\\nMIIE...\\n" + tail) is not None
    if not head[-1:].isalnum() and not head.endswith(b"-"):
        assert private_key_kind(head + b"AGE-SECRET-KEY-1" + b"Q" * 58 + tail) is not None
    if not any(m in head for m in (b"PRIVATE KEY", b"AGE-SECRET-KEY-1", b"PuTTY-User-Key-File-")):
        assert private_key_kind(head) is None
