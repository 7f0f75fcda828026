"""#13: the LFS endpoint derived as git-lfs derives it, and URLs never shown with a password."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitmail import git as gitmod
from gitmail.core import lfs
from gitmail.core.repo import open_repo
from tests.conftest import clone_with_remote, git


@pytest.mark.parametrize(
    "remote, url, ssh",
    [
        # git-lfs keeps a git:// remote's host and port (lfsapi endpointFromGitUrl)
        ("git://git.example.com:9418/org/mail", "https://git.example.com:9418/org/mail.git/info/lfs", None),
        ("git://git.example.com/org/mail.git", "https://git.example.com/org/mail.git/info/lfs", None),
        ("https://u:pw@git.example.com/org/mail", "https://u:pw@git.example.com/org/mail.git/info/lfs", None),
        ("git@git.example.com:org/mail.git", "https://git.example.com/org/mail.git/info/lfs",
         ("git@git.example.com", None, "org/mail.git")),
        ("ssh://git@git.example.com:2222/org/mail", "https://git.example.com/org/mail.git/info/lfs",
         ("git@git.example.com", "2222", "org/mail")),
        ("[git.example.com:2222]:org/mail.git", "https://git.example.com/org/mail.git/info/lfs",
         ("git.example.com", "2222", "org/mail.git")),
    ],
)
def test_endpoint_derivation_as_git_lfs(tmp_path: Path, remote: str, url: str, ssh: object) -> None:
    ep = lfs.discover(open_repo(clone_with_remote(tmp_path, remote)))
    assert (ep.url, ep.ssh, ep.local) == (url, ssh, None)


def test_gitprotocol_and_insteadof(tmp_path: Path) -> None:
    r = clone_with_remote(tmp_path, "git://git.example.com:8080/org/mail")
    git("config", "lfs.gitprotocol", "http", cwd=r)
    assert lfs.discover(open_repo(r)).url == "http://git.example.com:8080/org/mail.git/info/lfs"
    git("config", "url.https://mirror.example/.insteadOf", "git://git.example.com:8080/", cwd=r)
    assert lfs.discover(open_repo(r)).url == "https://mirror.example/org/mail.git/info/lfs"


def test_push_urls_only_for_uploads(tmp_path: Path) -> None:
    r = clone_with_remote(tmp_path, "https://git.example.com/org/mail")
    git("config", "lfs.url", "https://read.example/lfs", cwd=r)
    git("config", "lfs.pushurl", "https://write.example/lfs", cwd=r)
    assert lfs.discover(open_repo(r), "download").url == "https://read.example/lfs"
    assert lfs.discover(open_repo(r), "upload").url == "https://write.example/lfs"


def test_org_policy_url_after_own_config(tmp_path: Path) -> None:
    r = clone_with_remote(tmp_path, "https://git.example.com/org/mail")
    ep = lfs.discover(open_repo(r), policy_url="https://org-lfs.example/store")
    assert ep.url == "https://org-lfs.example/store" and ep.source == "the org policy's lfs_url"
    git("config", "remote.origin.lfsurl", "https://mine.example/lfs", cwd=r)
    assert lfs.discover(open_repo(r), policy_url="https://org-lfs.example/store").url == "https://mine.example/lfs"


def test_redact() -> None:
    assert gitmod.redact("https://alice:s3cret@host/x?token=abc") == "https://alice:***@host/x?***"
    assert gitmod.redact("failed: http://a:b@h:1/p and ssh://git@h/x") == "failed: http://a:***@h:1/p and ssh://git@h/x"
    ep = lfs.Endpoint("https://u:pw@h/x.git/info/lfs", None, "test")
    assert ep.shown == "https://u:***@h/x.git/info/lfs"
    # The authority ends at "#" or "?" (RFC 3986): a hostile href hiding another host behind one
    # was shown as the real server with a made-up password ("http://127.0.0.1:***@127.0.0.1:18401").
    assert gitmod.redact("http://127.0.0.1:18402#@127.0.0.1:18401/obj") == "http://127.0.0.1:18402#@127.0.0.1:18401/obj"
    assert gitmod.redact("http://127.0.0.1:18402?@127.0.0.1:18401/obj") == "http://127.0.0.1:18402?***"


def test_pointer_parse_is_strict() -> None:
    oid = "a" * 64
    ptr = lfs.format_pointer(oid, 12)
    assert ptr == f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize 12\n".encode()
    assert lfs.parse_pointer(ptr) == (oid, 12)
    assert lfs.parse_pointer(ptr.replace(b"size 12", b"size -1")) is None
    assert lfs.parse_pointer(ptr.replace(b"\n", b"\r\n")) is None
    unsorted = f"version https://git-lfs.github.com/spec/v1\nsize 12\noid sha256:{oid}\n".encode()
    assert lfs.parse_pointer(unsorted) is None
    # An extension line makes the stored object a transformed file (git-lfs would smudge it
    # through the extension): gitmail reads only the form it writes.
    ext = f"version https://git-lfs.github.com/spec/v1\next-0-foo sha256:{'b' * 64}\noid sha256:{oid}\nsize 12\n"
    assert lfs.parse_pointer(ext.encode()) is None
