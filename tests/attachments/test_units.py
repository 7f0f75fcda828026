"""Unit tests: name sanitising, pointers, endpoint discovery, never-overwrite saving."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitmail.core import attachments, lfs
from gitmail.core.attachments import NAME_MAX_BYTES, human_size, safe_name, write_new
from gitmail.core.repo import open_repo
from gitmail.errors import AttachmentError
from tests.conftest import clone_with_remote, git


@pytest.mark.parametrize(
    "raw, safe",
    [
        ("domain-research.csv", "domain-research.csv"),
        ("../../etc/passwd", "passwd"),
        ("/etc/passwd", "passwd"),
        ("C:\\Windows\\System32\\evil.dll", "evil.dll"),
        ("..", "attachment"),
        (".", "attachment"),
        ("", "attachment"),
        ("../", "attachment"),
        (".bashrc", "bashrc"),
        ("-rf", "rf"),
        ("--help.txt", "help.txt"),
        ("  . -x.txt", "x.txt"),
        ("CON", "_CON"),
        ("nul.txt", "_nul.txt"),
        ("com1.tar.gz", "_com1.tar.gz"),
        ("LPT9", "_LPT9"),
        ("console.txt", "console.txt"),
        ("a\x1b[31mred.txt", "a_[31mred.txt"),
        ("line\nbreak\r.txt", "line_break_.txt"),
        ("tab\there.txt", "tab_here.txt"),
        ("bell\x07\x00.txt", "bell__.txt"),
        ("invoice\u202egpj.exe", "invoice_gpj.exe"),
        ("zero\u200bwidth.txt", "zero_width.txt"),
        ('wild<>:"|?*.txt', "wild_______.txt"),
        ("trailing dots...", "trailing dots"),
        ("e\u0301te\u0301.txt", "\u00e9t\u00e9.txt"),
        ("no\u00a0break  spaces.txt", "no break spaces.txt"),
        ("rapport 2024.pdf", "rapport 2024.pdf"),
    ],
)
def test_safe_name(raw: str, safe: str) -> None:
    assert safe_name(raw) == safe
    assert safe_name(safe) == safe  # idempotent: the receiver re-sanitises the sender's result


def test_safe_name_over_long_keeps_extension_and_utf8() -> None:
    raw = "é" * 300 + ".csv"
    s = safe_name(raw)
    assert s.endswith(".csv") and len(s.encode("utf-8")) <= NAME_MAX_BYTES
    s.encode("utf-8").decode("utf-8")  # not cut inside a character
    assert safe_name(s) == s
    long_ext = "x." + "y" * 300
    assert len(safe_name(long_ext).encode()) <= NAME_MAX_BYTES


def test_human_size() -> None:
    assert human_size(0) == "0 B"
    assert human_size(4300) == "4.2 KB"
    assert human_size(10 * 1024 * 1024) == "10.0 MB"


def test_pointer_round_trip_and_strictness() -> None:
    oid = "a" * 64
    data = lfs.format_pointer(oid, 12)
    assert data == f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize 12\n".encode()
    assert lfs.parse_pointer(data) == (oid, 12)
    assert lfs.parse_pointer(b"hello") is None
    assert lfs.parse_pointer(data.replace(b"a" * 64, b"../" * 21 + b"a")) is None
    assert lfs.parse_pointer(data + b"x" * 2000) is None
    with pytest.raises(AttachmentError):
        lfs.object_path(Path("/tmp"), "../../etc/passwd")


def test_write_new_never_overwrites(tmp_path: Path) -> None:
    import hashlib

    d = tmp_path / "inbox"
    d.mkdir()
    (d / "data.csv").write_bytes(b"mine, keep me")
    new = b"theirs"
    oid = hashlib.sha256(new).hexdigest()
    p1 = write_new(d, "data.csv", new, oid)
    assert p1.name == "data (1).csv" and p1.read_bytes() == new
    assert (d / "data.csv").read_bytes() == b"mine, keep me"
    assert write_new(d, "data.csv", new, oid) == p1  # same content already there: reused
    (d / "link.txt").symlink_to(d / "data (1).csv")
    p2 = write_new(d, "link.txt", new, oid)  # a symlink is never reused nor followed
    assert p2.name == "link (1).txt"
    assert sorted(x.name for x in d.iterdir()) == ["data (1).csv", "data.csv", "link (1).txt", "link.txt"]


@pytest.mark.parametrize(
    "remote, expected",
    [
        ("https://git.example.com/org/mail", "https://git.example.com/org/mail.git/info/lfs"),
        ("https://git.example.com/org/mail.git", "https://git.example.com/org/mail.git/info/lfs"),
        ("git@git.example.com:org/mail.git", "https://git.example.com/org/mail.git/info/lfs"),
        ("ssh://git@git.example.com:2222/org/mail", "https://git.example.com/org/mail.git/info/lfs"),
    ],
)
def test_endpoint_derived_from_remote(tmp_path: Path, remote: str, expected: str) -> None:
    ep = lfs.discover(open_repo(clone_with_remote(tmp_path, remote)))
    assert ep.url == expected and ep.local is None and ep.source == "remote.origin.url"


def test_endpoint_local_remote_uses_the_stock_layout(tmp_path: Path) -> None:
    bare = tmp_path / "org.git"
    git("init", "-q", "--bare", str(bare))
    ep = lfs.discover(open_repo(clone_with_remote(tmp_path, str(bare))))
    assert ep.local == (bare / "lfs").resolve()
    work = tmp_path / "work"
    git("init", "-q", str(work))
    (tmp_path / "c2").mkdir()
    r2 = clone_with_remote(tmp_path / "c2", work.as_uri())
    assert lfs.discover(open_repo(r2)).local == (work / ".git" / "lfs").resolve()


def test_endpoint_precedence(tmp_path: Path) -> None:
    r = clone_with_remote(tmp_path, "https://git.example.com/org/mail")
    (r / ".lfsconfig").write_text("[lfs]\n\turl = https://from-lfsconfig.example/lfs\n")
    ep = lfs.discover(open_repo(r))  # .lfsconfig is never trusted (tests/hosts/test_lfs_trusted_config.py)
    assert ep.url == "https://git.example.com/org/mail.git/info/lfs" and ep.source == "remote.origin.url"
    git("config", "remote.origin.lfsurl", "https://from-remote.example/lfs", cwd=r)
    assert lfs.discover(open_repo(r)).url == "https://from-remote.example/lfs"
    git("config", "lfs.url", "http://127.0.0.1:9/", cwd=r)
    ep = lfs.discover(open_repo(r))
    assert ep.url == "http://127.0.0.1:9" and ep.source == "git config lfs.url"
    git("config", "lfs.url", str(tmp_path / "store" / "lfs"), cwd=r)
    assert lfs.discover(open_repo(r)).local == (tmp_path / "store" / "lfs").resolve()


def test_no_progress_bar_in_a_pipe() -> None:
    from gitmail.cli.commands.attachments import LazyBar, progress_for

    assert progress_for(False, False) is None  # pytest's stderr is not a terminal
    assert progress_for(True, False) is None and progress_for(False, True) is None
    bar = LazyBar()
    bar("x", 5, 10)  # under a second: nothing drawn
    assert bar.bar is None
    assert attachments.FALLBACK_NAME == "attachment"


def test_progress_bar_appears_only_after_the_delay(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from gitmail.cli.commands import attachments as cmd

    monkeypatch.setattr(cmd, "BAR_DELAY", 0.0)
    bar = cmd.LazyBar()
    for done in (0, 400, 800, 1000):
        bar("Uploading data.csv", done, 1000)
    assert bar.bar is None  # closed at the end
    assert "Uploading data.csv" in capsys.readouterr().err


def test_prepare_reads_only_what_the_file_has_even_with_a_huge_limit(tmp_path: Path) -> None:
    """A 64 GiB limit (plausible with LFS) must not make Python allocate 64 GiB per file."""
    from gitmail.core.attachments import prepare

    f = tmp_path / "small.txt"
    f.write_bytes(b"abc")
    (src,) = prepare([f], 64 * 2**30)
    assert src.data == b"abc" and src.size == 3
    g = tmp_path / "big.bin"
    g.write_bytes(b"x" * 5000)
    with pytest.raises(AttachmentError, match="over the org's limit"):
        prepare([g], 4096)
