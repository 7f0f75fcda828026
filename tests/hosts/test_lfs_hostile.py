"""#12 item 7: hostile or broken LFS servers. Each transfer has one overall deadline
(git config gitmail.lfsTimeout), a batch reply is read only up to a bound, downloads
stream and are checked against the oid; the message stays readable and the file gets a
clear error. Each case finishes in seconds."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.attachments.conftest import LFSServer, files_under, set_lfs_url, set_policy
from tests.conftest import Org, git
from tests.hosts.conftest import HostileLFS


@pytest.fixture
def sent(org: Org, lfs_server: LFSServer, tmp_path: Path) -> Org:
    """max sent alex a message with a 40 KB LFS attachment (through a good server); alex has
    synced but not fetched it, and his clone now points at the hostile server."""
    set_policy(org, attachment_storage="lfs", encryption="off")
    set_lfs_url(org, lfs_server.url)
    f = tmp_path / "data.bin"
    f.write_bytes(os.urandom(40_000))
    org.ok("max", "send", "alex", "the body is still readable", "--attach", str(f))
    org.ok("alex", "sync")
    return org


def _read_against(org: Org, hostile: HostileLFS, mode: str, tmp_path: Path) -> tuple[float, str, str, int]:
    hostile.mode["mode"] = mode
    alex = org.clones["alex"]
    git("config", "lfs.url", hostile.url, cwd=alex)
    git("config", "gitmail.lfsTimeout", "2", cwd=alex)
    t0 = time.monotonic()
    r = org.as_("alex", "read", "--save-dir", str(tmp_path / "inbox"))
    return time.monotonic() - t0, r.out, r.err, r.code


def test_trickling_server_hits_the_deadline(sent: Org, hostile_lfs: HostileLFS, tmp_path: Path) -> None:
    took, out, err, code = _read_against(sent, hostile_lfs, "trickle", tmp_path)
    assert took < 10, took
    assert code == 11
    assert "the body is still readable" in out
    assert f"data.bin: the org's LFS server {hostile_lfs.url}/obj/" in err
    assert "did not finish within 2 s (git config gitmail.lfsTimeout)" in err
    assert files_under(tmp_path / "inbox") == []
    assert files_under(sent.clones["alex"] / ".git" / "lfs" / "tmp") == []  # the partial download is gone


def test_huge_batch_reply_is_not_read_whole(sent: Org, hostile_lfs: HostileLFS, tmp_path: Path) -> None:
    took, out, err, code = _read_against(sent, hostile_lfs, "huge", tmp_path)
    assert took < 10, took
    assert code == 11 and "the body is still readable" in out
    assert f"data.bin: the LFS server {hostile_lfs.url}/objects/batch sent a reply over 1048576 bytes" in err


def test_wrong_bytes_are_refused(sent: Org, hostile_lfs: HostileLFS, tmp_path: Path) -> None:
    took, out, err, code = _read_against(sent, hostile_lfs, "wrong", tmp_path)
    assert took < 10, took
    assert code == 11 and "the body is still readable" in out
    assert "does not match its sha256" in err
    assert files_under(tmp_path / "inbox") == []
    alex_lfs = sent.clones["alex"] / ".git" / "lfs"
    assert files_under(alex_lfs / "objects") == [] and files_under(alex_lfs / "tmp") == []


def test_bad_timeout_setting_is_one_clear_line(sent: Org, tmp_path: Path) -> None:
    git("config", "gitmail.lfsTimeout", "soon", cwd=sent.clones["alex"])
    r = sent.as_("alex", "read", "--save-dir", str(tmp_path / "inbox"))
    assert r.code == 2
    assert "git config gitmail.lfsTimeout is 'soon': expected seconds" in r.err
    assert "Traceback" not in r.err


def test_download_redirect_is_followed(sent: Org, hostile_lfs: HostileLFS, lfs_server: LFSServer,
                                       tmp_path: Path) -> None:
    """Storage behind an LFS API often answers a download with a redirect: followed, then verified."""
    hostile_lfs.mode["target"] = lfs_server.url
    took, out, err, code = _read_against(sent, hostile_lfs, "redirect", tmp_path)
    assert code == 0, err
    assert (tmp_path / "inbox" / "data.bin").stat().st_size == 40_000
    assert any(s.path.startswith("/obj/") for s in hostile_lfs.seen)
