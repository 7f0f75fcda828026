"""Sending and receiving attachments: git blobs, the local LFS layout, an LFS server."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

from tests.attachments.conftest import LFSServer, closed_port_url, files_under, set_lfs_url, set_policy
from tests.conftest import Org, git


def _file(tmp_path: Path, name: str, size: int, seed: bytes = b"x") -> Path:
    p = tmp_path / name
    block = hashlib.sha256(seed).digest()
    p.write_bytes((block * (size // len(block) + 1))[:size])
    return p


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _tree(clone: Path, rev: str) -> dict[str, str]:
    out = git("ls-tree", "-r", rev, cwd=clone).stdout
    return {line.split("\t")[1]: line.split()[2] for line in out.splitlines()}


def test_blob_storage_send_and_read(org: Org, tmp_path: Path) -> None:
    f = _file(tmp_path, "domain-research.csv", 4300)
    r = org.ok("max", "send", "alex", "CSV attached", "--attach", str(f))
    assert re.fullmatch(r"Sent to alex \(1 attachment, 4\.2 KB\) \[[0-9a-f]{8}\]\n", r.out)
    org.ok("alex", "sync")
    tree = _tree(org.clones["alex"], "origin/gitmail/mail/alex/max")
    assert set(tree) == {"message.json", "attachments/1-domain-research.csv"}
    blob = subprocess.run(["git", "cat-file", "blob", tree["attachments/1-domain-research.csv"]],
                          cwd=org.clones["alex"], capture_output=True, check=True).stdout
    assert blob == f.read_bytes()  # blob storage: the content itself is in the tree
    inbox = tmp_path / "inbox"
    items = json.loads(org.ok("alex", "read", "--save-dir", str(inbox), "--json").out)["messages"]
    (a,) = items[0]["attachments"]
    assert a["name"] == "domain-research.csv" and a["media_type"] == "text/csv" and a["storage"] == "blob"
    assert a["size"] == 4300 and a["oid"] == _sha(f) and a["error"] is None
    assert a["saved_to"] == str(inbox / "domain-research.csv")
    assert (inbox / "domain-research.csv").read_bytes() == f.read_bytes()
    # Reading again reuses the identical file instead of piling up copies.
    again = json.loads(org.ok("alex", "read", items[0]["short_id"], "--save-dir", str(inbox), "--json").out)
    assert again["messages"][0]["attachments"][0]["saved_to"] == a["saved_to"]
    assert files_under(inbox) == ["domain-research.csv"]


def test_default_inbox_folder_and_env(org: Org, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    f = _file(tmp_path, "notes.txt", 10)
    org.ok("max", "send", "alex", "see notes", "--attach", str(f))
    org.ok("alex", "sync")
    out = org.ok("alex", "read").out
    home_inbox = Path(os.environ["HOME"]) / "gitmail" / "inbox" / "alex"
    assert f"Attachment: notes.txt (10 B, text/plain) saved to {home_inbox / 'notes.txt'}" in out
    monkeypatch.setenv("GITMAIL_INBOX", str(tmp_path / "elsewhere"))
    r = json.loads(org.ok("alex", "read", "--json", "--no-mark", json.loads(
        org.ok("alex", "list", "--json").out)["messages"][0]["id"]).out)
    assert r["messages"][0]["attachments"][0]["saved_to"] == str(tmp_path / "elsewhere" / "notes.txt")


def test_identical_content_stored_once_for_every_recipient(org: Org, tmp_path: Path) -> None:
    org.join("bob")
    f = _file(tmp_path, "a.bin", 5000)
    g = tmp_path / "copy.bin"
    g.write_bytes(f.read_bytes())
    r = json.loads(org.ok("max", "send", "alex", "bob", "twice", "--attach", str(f), "--attach", str(g), "--json").out)
    assert [a["path"] for a in r["attachments"]] == ["attachments/1-a.bin", "attachments/2-copy.bin"]
    clone = org.clones["max"]
    blobs = set()
    for who in ("alex", "bob"):
        t = _tree(clone, f"origin/gitmail/mail/{who}/max")
        blobs |= {t["attachments/1-a.bin"], t["attachments/2-copy.bin"]}
    assert len(blobs) == 1


def test_local_lfs_store_is_the_embedded_default(org: Org, tmp_path: Path) -> None:
    set_policy(org, attachment_storage="lfs")
    f = _file(tmp_path, "report.pdf", 70_000)
    oid = _sha(f)
    r = json.loads(org.ok("max", "send", "alex", "report", "--attach", str(f), "--json").out)
    assert r["delivered"] and r["attachments"][0]["storage"] == "lfs"
    org_store = Path(org.url) / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
    assert org_store.read_bytes() == f.read_bytes()  # the stock client's layout for local remotes
    assert (org.clones["max"] / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid).exists()
    org.ok("alex", "sync")
    tree = _tree(org.clones["alex"], "origin/gitmail/mail/alex/max")
    pointer = git("cat-file", "blob", tree["attachments/1-report.pdf"], cwd=org.clones["alex"]).stdout
    assert pointer == f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize 70000\n"
    assert ".gitattributes" in tree
    alex_cache = org.clones["alex"] / ".git" / "lfs"
    assert not alex_cache.exists()  # listing never downloads
    inbox = tmp_path / "inbox"
    org.ok("alex", "read", "--save-dir", str(inbox))
    assert (inbox / "report.pdf").read_bytes() == f.read_bytes()
    assert (alex_cache / "objects" / oid[:2] / oid[2:4] / oid).exists()


def test_http_lfs_server_and_lazy_fetch(lfs_org: Org, lfs_server: LFSServer, tmp_path: Path) -> None:
    org = lfs_org
    org.join("bob")
    set_lfs_url(org, lfs_server.url)
    f = _file(tmp_path, "data.csv", 200_000)
    oid = _sha(f)
    before = files_under(lfs_server.store / "objects")
    org.ok("max", "send", "alex", "bob", "data", "--attach", str(f))
    assert lfs_server.object_path(oid).read_bytes() == f.read_bytes()
    assert len(files_under(lfs_server.store / "objects")) == len(before) + 1  # once for two recipients
    assert not (Path(org.url) / "lfs").exists()
    org.ok("alex", "sync")
    listing = json.loads(org.ok("alex", "list", "--json").out)
    assert listing["messages"][0]["attachments"] == 1
    assert not (org.clones["alex"] / ".git" / "lfs").exists()  # listing never downloads
    short = listing["messages"][0]["short_id"]
    inbox = tmp_path / "inbox"
    text = org.ok("alex", "read", short, "--save-dir", str(inbox)).out
    assert f"Attachment: data.csv (195.3 KB, text/csv) saved to {inbox / 'data.csv'}" in text
    assert (inbox / "data.csv").read_bytes() == f.read_bytes()
    # `gitmail attachments` fetches again; an existing different file is kept.
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.csv").write_text("not yours")
    r = json.loads(org.ok("alex", "attachments", short, "--save-dir", str(other), "--json").out)
    assert r["attachments"][0]["saved_to"] == str(other / "data (1).csv")
    assert (other / "data.csv").read_text() == "not yours"
    assert (other / "data (1).csv").read_bytes() == f.read_bytes()


def test_unreachable_lfs_server_queues_then_delivers(org: Org, lfs_server: LFSServer, tmp_path: Path) -> None:
    set_policy(org, attachment_storage="lfs")
    set_lfs_url(org, closed_port_url())
    f = _file(tmp_path, "big.bin", 300_000)
    oid = _sha(f)
    r = org.ok("max", "send", "alex", "later", "--attach", str(f))
    assert r.out.startswith("Queued")
    assert (org.clones["max"] / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid).exists()
    heads = git("for-each-ref", "refs/heads/gitmail/mail/", cwd=org.url).stdout
    assert "alex/max" not in heads  # the pointer never lands before its content
    set_lfs_url(org, lfs_server.url)
    org.ok("max", "sync")
    assert lfs_server.object_path(oid).exists()
    org.ok("alex", "sync")
    inbox = tmp_path / "inbox"
    org.ok("alex", "read", "--save-dir", str(inbox))
    assert (inbox / "big.bin").read_bytes() == f.read_bytes()


def test_attachments_only_message_and_no_save(org: Org, tmp_path: Path) -> None:
    f = _file(tmp_path, "only.txt", 3)
    org.ok("max", "send", "alex", "", "--attach", str(f))
    org.ok("alex", "sync")
    out = org.ok("alex", "read", "--no-save").out
    assert "Attachment: only.txt (3 B, text/plain)" in out and "saved" not in out
    assert "Attached: only.txt" in out
