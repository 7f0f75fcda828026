"""Privacy on disk and in the ciphertext (issue 12, item 11): saved attachments are never
wider than 0600 (folders 0700); attachment ciphertext is padded, so it tells a size class,
not the exact size; messages written before padding stay readable (docs/protocol.md §9)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterator

import pytest

from gitmail.core import crypto
from tests.conftest import Org, git

MAIL = "refs/remotes/origin/gitmail/mail/alex/max"


@pytest.fixture
def umask022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def _cipher_sizes(org: Org) -> list[int]:
    clone = org.clones["max"]
    out = git("ls-tree", "-r", "-l", MAIL, "attachments", cwd=clone).stdout.splitlines()
    return [int(line.split()[3]) for line in out]


def _payload_sizes(org: Org) -> list[int]:
    """Sizes of the age payloads (after the header, whose stanzas, a random "grease" one
    included, vary in length): nonce and chunks, a function of the plaintext size only."""
    import subprocess

    clone = org.clones["max"]
    out = []
    for line in git("ls-tree", "-r", MAIL, "attachments", cwd=clone).stdout.splitlines():
        data = subprocess.run(["git", "cat-file", "blob", line.split()[2]], cwd=clone, capture_output=True,
                              check=True).stdout
        mac = data.index(b"\n--- ")
        out.append(len(data) - (data.index(b"\n", mac + 1) + 1))
    return out


@pytest.mark.parametrize("encrypt", ["--encrypt", "--plain"])
def test_privacy_saved_attachments_are_private(org: Org, tmp_path: Path, umask022: None, encrypt: str) -> None:
    f = tmp_path / "secret.txt"
    f.write_text("salary figures\n")
    org.ok("max", "send", "alex", "private", encrypt, "--attach", str(f))
    org.ok("alex", "sync")
    org.ok("alex", "read")
    inbox = Path(os.environ["HOME"]) / "gitmail" / "inbox" / "alex"
    saved = inbox / "secret.txt"
    assert saved.read_text() == "salary figures\n"
    assert _mode(saved) == 0o600
    assert _mode(inbox) == 0o700 and _mode(inbox.parent) == 0o700


def test_privacy_umask_narrows_further(org: Org, tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("x")
    org.ok("max", "send", "alex", "private", "--attach", str(f))
    org.ok("alex", "sync")
    old = os.umask(0o077)
    try:
        org.ok("alex", "read", "--save-dir", str(tmp_path / "new" / "deep"))
    finally:
        os.umask(old)
    assert _mode(tmp_path / "new" / "deep" / "a.txt") == 0o600
    assert _mode(tmp_path / "new" / "deep") == 0o700 and _mode(tmp_path / "new") == 0o700


def test_privacy_a_wide_default_inbox_is_tightened(org: Org, tmp_path: Path, umask022: None) -> None:
    inbox = Path(os.environ["HOME"]) / "gitmail" / "inbox" / "alex"
    inbox.mkdir(parents=True)
    os.chmod(inbox, 0o755)  # as versions before this one made it
    f = tmp_path / "a.txt"
    f.write_text("x")
    org.ok("max", "send", "alex", "private", "--attach", str(f))
    org.ok("alex", "sync")
    org.ok("alex", "read")
    assert _mode(inbox) == 0o700 and _mode(inbox / "a.txt") == 0o600


def test_privacy_ciphertext_hides_the_exact_size(org: Org, tmp_path: Path) -> None:
    """Two files of different sizes in one padding class give ciphertexts of the same
    size (the age header's base64 varies by a few bytes per reader: compare within it)."""
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(os.urandom(5000))
    b.write_bytes(os.urandom(5100))
    assert crypto.pad_size(5000) == crypto.pad_size(5100) == 5120
    org.ok("max", "send", "alex", "two", "--encrypt", "--attach", str(a), "--attach", str(b))
    pa, pb = _payload_sizes(org)
    assert pa == pb == 16 + 5120 + 16  # nonce, one chunk of 5 KiB padded plaintext, its tag
    org.ok("alex", "sync")
    inbox = tmp_path / "in"
    org.ok("alex", "read", "--save-dir", str(inbox))
    assert (inbox / "a.bin").read_bytes() == a.read_bytes() and (inbox / "b.bin").read_bytes() == b.read_bytes()


def test_privacy_unpadded_messages_stay_readable(org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A message from a writer before padding (the sealed size is the ciphertext's content size)."""
    f = tmp_path / "old.bin"
    f.write_bytes(os.urandom(3000))
    monkeypatch.setattr(crypto, "pad", lambda data: data)  # as gitmail wrote before padding
    org.ok("max", "send", "alex", "old", "--encrypt", "--attach", str(f))
    monkeypatch.undo()
    (size,) = _cipher_sizes(org)
    assert size < 3000 + 600  # really unpadded
    org.ok("alex", "sync")
    inbox = tmp_path / "in"
    org.ok("alex", "read", "--save-dir", str(inbox))
    assert (inbox / "old.bin").read_bytes() == f.read_bytes()


def test_privacy_padding_rules() -> None:
    for n in [0, 1, 1023, 1024, 1025, 2047, 2048, 5000, 65536, 10**6, 10 * 2**20 - 1, 10 * 2**20, 3 * 2**30 + 7]:
        p = crypto.pad_size(n)
        assert n <= p <= n + (n >> 4) + 1024, n
        assert crypto.pad_size(p) == p  # a padded size is its own class
    assert len({crypto.pad_size(n) for n in range(2**20 + 1, 2**21, 997)}) == 16  # 16 sizes per power of two
    data = b"abc"
    assert crypto.unpad(crypto.pad(data), 3) == data and crypto.unpad(data, 3) == data
    with pytest.raises(crypto.DecryptionError):
        crypto.unpad(data + b"\x01" + bytes(1020), 3)  # padding must be zeros
    with pytest.raises(crypto.DecryptionError):
        crypto.unpad(data + bytes(10), 3)  # neither padded nor exact


@pytest.mark.parametrize("readers", [1, 2, 5])
def test_privacy_sealed_max_bounds_real_ciphertext(tmp_path: Path, readers: int) -> None:
    """sealed_max (the guard's allowance, §13) is an upper bound of what age really produces."""
    from gitmail.core.signing import generate_key

    keys = [generate_key(tmp_path / f"k{i}").public_key for i in range(readers)]
    for n in [0, 1, 1024, 5000, 65535, 65537, 300_000, 2**20 + 3]:
        c = crypto.seal(crypto.pad(os.urandom(n)), keys)
        assert len(c) <= crypto.sealed_max(n, readers), (n, len(c))
        assert crypto.plain_min(len(c), readers) <= n
