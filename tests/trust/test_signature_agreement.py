"""gitmail and stock git judge every commit signature the same (docs/protocol.md §7, "What a
reader accepts").

An auditor trusts ``git verify-commit`` (git's split of the commit into signature and
payload, then OpenSSH's ``ssh-keygen -Y verify``); gitmail's client, guard and ``verify``
use :func:`gitmail.core.signing.signers`. Before this test, gitmail took the split from
libgit2 and read the SSHSIG more loosely than OpenSSH: a signature with bytes after any of
its three parts, CRLF armor, non-canonical base64, or a commit that also carried a signed
``gpgsig-sha256`` header was good to gitmail and bad to git. Each commit here is written
byte for byte (``git hash-object --literally``), then judged by both.
"""

from __future__ import annotations

import base64
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pygit2
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gitmail.core import signing
from gitmail.core.objects import load_commit
from gitmail.errors import VerificationError
from tests.conftest import write_literal

HEAD = b"author x <x@example.com> 1700000000 +0000\ncommitter x <x@example.com> 1700000000 +0000\n"
BODY = b"\nhello\n"
ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def git_good(repo: Path, allowed: Path, oid: str, principal: str) -> bool:
    """Stock ``git verify-commit``'s verdict on ``oid``, with the allowed-signers file ``allowed``:
    a good signature by ``principal``."""
    p = subprocess.run(["git", "-c", f"gpg.ssh.allowedSignersFile={allowed}", "verify-commit", oid], cwd=repo,
                       capture_output=True, text=True)
    return p.returncode == 0 and f'Good "git" signature for {principal}' in p.stderr


def gitmail_key(repo: Path, oid: str) -> "str | VerificationError | None":
    """gitmail's verdict on the signature of ``oid`` (:func:`gitmail.core.signing.signers`): the
    signer's key, or why not; None when libgit2 cannot parse the commit at all (then gitmail
    calls it malformed: never good)."""
    c = load_commit(pygit2.Repository(str(repo)), oid)
    return None if isinstance(c, str) else signing.signers([c], threads=False)[0]


class Judge:
    """A repository, a stock ``ssh-keygen`` ed25519 key and git's allowed-signers file for it."""

    def __init__(self, root: Path) -> None:
        self.repo = root / "repo"
        subprocess.run(["git", "init", "-q", str(self.repo)], check=True)
        key = root / "key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        self.signer = signing.load_key(key)
        self.allowed = root / "allowed_signers"
        self.allowed.write_text(f"x {self.signer.public_key}\n")
        self.tree_line = b"tree " + write_literal(self.repo, "tree", b"").encode() + b"\n"

    def write(self, raw: bytes) -> str:
        return write_literal(self.repo, "commit", raw)

    def git_good(self, oid: str) -> bool:
        return git_good(self.repo, self.allowed, oid, "x")

    def gitmail(self, oid: str) -> Optional[bool]:
        """gitmail's verdict on the signature: True good, False bad, None when libgit2 cannot
        parse the commit at all (:func:`gitmail_key`)."""
        key = gitmail_key(self.repo, oid)
        if key is None:
            return None
        if isinstance(key, str):
            assert key == self.signer.public_key
            return True
        return False


@pytest.fixture(scope="module")
def judge(tmp_path_factory: pytest.TempPathFactory) -> Judge:
    return Judge(tmp_path_factory.mktemp("signature-agreement"))


# -- building a signature and a commit, part by part ----------------------------------------


def _s(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


@dataclass
class Sig:
    """The parts of an SSHSIG blob (PROTOCOL.sshsig), each changeable."""

    version: int = 1
    key_type: bytes = b"ssh-ed25519"
    pub_extra: bytes = b""  # bytes after the key in the public key blob
    namespace: bytes = b"git"
    reserved: bytes = b""
    hash_alg: bytes = b"sha512"
    sig_type: bytes = b"ssh-ed25519"
    sig_extra: bytes = b""  # bytes after the signature in the signature blob
    tail: bytes = b""  # bytes after the signature string
    flip: Optional[int] = None  # a byte of the ed25519 signature changed

    def blob(self, judge: Judge, payload: bytes) -> bytes:
        raw_pub = signing.parse_public_key(judge.signer.public_key)
        raw_sig = judge.signer.sign_raw(signing._signed_data(payload, self.namespace, self.hash_alg))
        if self.flip is not None:
            i = self.flip % 64
            raw_sig = raw_sig[:i] + bytes([raw_sig[i] ^ 1]) + raw_sig[i + 1:]
        return (b"SSHSIG" + struct.pack(">I", self.version) + _s(_s(self.key_type) + _s(raw_pub) + self.pub_extra)
                + _s(self.namespace) + _s(self.reserved) + _s(self.hash_alg)
                + _s(_s(self.sig_type) + _s(raw_sig) + self.sig_extra) + self.tail)


@dataclass
class Armor:
    """How the blob is armored: OpenSSH's form unless changed."""

    width: int = 70
    spaces: list[tuple[int, bytes]] = field(default_factory=list)  # white space put into the base64
    slop: bool = False  # a padded base64 whose unused bits are not zero
    after_padding: bytes = b""
    before: bytes = b""
    after_end: bytes = b""
    crlf: bool = False
    final_lf: bool = False
    nul_last: bool = False

    def text(self, blob: bytes) -> bytes:
        b64 = base64.b64encode(blob)
        if self.slop and b64.endswith(b"="):
            i = b64.index(b"=") - 1
            b64 = b64[:i] + ALPHABET[(ALPHABET.index(b64[i:i + 1]) + 1) % 64:][:1] + b64[i + 1:]
        b64 += self.after_padding
        for pos, ch in sorted(self.spaces, reverse=True):
            p = pos % (len(b64) + 1)
            b64 = b64[:p] + ch + b64[p:]
        lines = [b64[i:i + self.width] for i in range(0, len(b64), self.width)]
        if self.nul_last:
            lines[-1] += b"\0"
        out = b"\n".join([self.before + signing.ARMOR_BEGIN.encode(), *lines, signing.ARMOR_END.encode()])
        out += self.after_end + (b"\n" if self.final_lf else b"")
        return out.replace(b"\n", b"\r\n") if self.crlf else out


@dataclass
class Layout:
    """Where the signature goes in the commit's headers."""

    sep: bytes = b" "  # between "gpgsig" and the value
    twice: bool = False  # the gpgsig header written twice
    other: Optional[bytes] = None  # an extra header beginning "gpgsig" (gpgsig-sha256 ...)
    other_first: bool = False  # ... before the gpgsig header
    other_signed: bool = False  # ... and inside what the key signed


def build(judge: Judge, sig: Sig, armor: Armor, layout: Layout) -> bytes:
    """The raw commit: tree, author, committer, the signature header(s), the message."""
    other = b""
    if layout.other is not None:
        other = b"gpgsig-sha256 " + layout.other.replace(b"\n", b"\n ") + b"\n"
    signed = judge.tree_line + HEAD + (other if layout.other_signed else b"") + BODY
    text = armor.text(sig.blob(judge, signed))
    header = b"gpgsig" + layout.sep + text.replace(b"\n", b"\n ") + b"\n"
    if layout.twice:
        header += header
    headers = other + header if layout.other_first else header + other
    return judge.tree_line + HEAD + headers + BODY


# -- the named cases: each divergence found, and what both must say -------------------------

CASES: dict[str, tuple[bool, Sig, Armor, Layout]] = {
    "as written": (True, Sig(), Armor(), Layout()),
    "bytes after the signature string": (False, Sig(tail=b"\0"), Armor(), Layout()),
    "bytes after the ed25519 signature": (False, Sig(sig_extra=b"\0"), Armor(), Layout()),
    "bytes after the public key": (False, Sig(pub_extra=b"\0"), Armor(), Layout()),
    "version 2": (False, Sig(version=2), Armor(), Layout()),
    "version 0": (True, Sig(version=0), Armor(), Layout()),
    "a reserved string": (True, Sig(reserved=b"x"), Armor(), Layout()),
    "sha256": (True, Sig(hash_alg=b"sha256"), Armor(), Layout()),
    "namespace file": (False, Sig(namespace=b"file"), Armor(), Layout()),
    "CRLF armor": (False, Sig(), Armor(crlf=True), Layout()),
    "non-canonical base64": (False, Sig(), Armor(slop=True), Layout()),
    "data after the padding": (False, Sig(), Armor(after_padding=b"QUFB"), Layout()),
    "a LF before the armor": (False, Sig(), Armor(before=b"\n"), Layout()),
    "text after the footer": (True, Sig(), Armor(after_end=b"xyz"), Layout()),
    "wrapped at 76": (True, Sig(), Armor(width=76), Layout()),
    "white space in the base64": (True, Sig(), Armor(spaces=[(5, b" "), (40, b"\t"), (80, b"\x0b")]), Layout()),
    "two spaces after gpgsig": (False, Sig(), Armor(), Layout(sep=b"  ")),
    "gpgsig twice": (True, Sig(), Armor(), Layout(twice=True)),
    "a gpgsig-sha256 header besides": (True, Sig(), Armor(), Layout(other=b"junk\nmore")),
    "a gpgsig-sha256 header first": (True, Sig(), Armor(), Layout(other=b"junk", other_first=True)),
    "a gpgsig-sha256 header inside what was signed": (False, Sig(), Armor(), Layout(other=b"junk", other_signed=True)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_gitmail_and_git_verify_commit_agree(judge: Judge, name: str) -> None:
    want, sig, armor, layout = CASES[name]
    oid = judge.write(build(judge, sig, armor, layout))
    assert judge.git_good(oid) is want, f"stock git's verdict changed for {name!r}"
    assert judge.gitmail(oid) is want


# -- and any mix of them ---------------------------------------------------------------------

# Single changes to the parts of a good signature; an example applies up to four of them,
# so that signatures git calls good are drawn as well as bad ones.
_FIXED: list[tuple[str, str, Any]] = [
    *(("sig", "version", v) for v in (0, 2)),
    *(("sig", "key_type", v) for v in (b"ssh-rsa", b"ssh-ed25519\0", b"ssh-ed25519\0x")),
    *(("sig", "namespace", v) for v in (b"file", b"git\0", b"gi", b"git\0\0")),
    *(("sig", "hash_alg", v) for v in (b"sha256", b"sha1", b"sha512\0", b"SHA512")),
    *(("sig", "sig_type", v) for v in (b"ssh-ed25519-cert-v01@openssh.com", b"ssh-rsa", b"ssh-ed25519\0")),
    ("armor", "slop", True),
    *(("armor", "after_padding", v) for v in (b"=", b"QUFB", b" ", b"\0")),
    *(("armor", "before", v) for v in (b"\n", b" ", b"x")),
    *(("armor", "after_end", v) for v in (b"xyz", b"\n", b"-----", b"\0")),
    ("armor", "crlf", True),
    ("armor", "final_lf", True),
    ("armor", "nul_last", True),
    *(("layout", "sep", v) for v in (b"  ", b"\t")),
    ("layout", "twice", True),
    *(("layout", "other", v) for v in (b"junk", b"junk\nmore", b"")),
    ("layout", "other_first", True),
    ("layout", "other_signed", True),
]
_bytes = st.binary(min_size=1, max_size=3)
_change = st.one_of(
    st.sampled_from(_FIXED),
    st.tuples(st.just("sig"), st.sampled_from(["pub_extra", "reserved", "sig_extra", "tail"]), _bytes),
    st.tuples(st.just("sig"), st.just("flip"), st.integers(0, 63)),
    st.tuples(st.just("armor"), st.just("width"), st.integers(1, 120)),
    st.tuples(st.just("armor"), st.just("spaces"), st.lists(
        st.tuples(st.integers(0, 400), st.sampled_from([b" ", b"\t", b"\r", b"\x0b", b"\x0c", b"\n"])),
        min_size=1, max_size=3)),
)


@st.composite
def _variants(draw: st.DrawFn) -> tuple[Sig, Armor, Layout]:
    parts: dict[str, Any] = {"sig": Sig(), "armor": Armor(), "layout": Layout()}
    for part, name, value in draw(st.lists(_change, max_size=4)):
        setattr(parts[part], name, value)
    return parts["sig"], parts["armor"], parts["layout"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(variant=_variants())
def test_any_signature_gitmail_calls_good_git_calls_good_and_the_reverse(
    judge: Judge, variant: tuple[Sig, Armor, Layout]
) -> None:
    sig, armor, layout = variant
    oid = judge.write(build(judge, sig, armor, layout))
    theirs, ours = judge.git_good(oid), judge.gitmail(oid)
    event(f"git {'good' if theirs else 'bad'}, gitmail {'unreadable' if ours is None else ours}")
    if ours is None:  # libgit2 cannot read the commit: gitmail calls it malformed
        return
    assert ours is theirs, (sig, armor, layout)


def test_the_split_is_gits_on_a_commit_gitmail_writes(judge: Judge) -> None:
    """The everyday case, byte for byte: the signature is the header's value with the one
    leading space of each continuation line removed, the payload the rest."""
    raw = build(judge, Sig(), Armor(), Layout())
    got_sig, payload = signing.commit_signature(raw)
    assert payload == judge.tree_line + HEAD + BODY
    assert got_sig is not None and got_sig.startswith(b"-----BEGIN SSH SIGNATURE-----\n")
    assert got_sig.endswith(b"-----END SSH SIGNATURE-----\n") and b"\n " not in got_sig
    assert signing.commit_signature(judge.tree_line + HEAD + BODY) == (None, judge.tree_line + HEAD + BODY)
    # "gpgsig" in the message is not a header
    assert signing.commit_signature(judge.tree_line + HEAD + b"\ngpgsig x\n") == (None, judge.tree_line + HEAD + b"\ngpgsig x\n")


def test_the_vectors_of_what_a_reader_accepts(tmp_path: Path) -> None:
    """docs/protocol.md §7's vectors: the split of ``clear-commit`` (§6), and that commit with a
    byte after its SSHSIG blob, bad to the code and to ``git verify-commit`` alike."""
    from tests.trust.test_vectors_messages import signer, vectors

    v = vectors()
    sig, payload = signing.commit_signature(v["clear-commit"])
    assert payload == v["clear-commit-payload"]
    assert sig is not None and signing.verify(sig, payload) == signer(1).public_key

    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"alice {signer(1).public_key}\n")
    for name, good in (("clear-commit", True), ("clear-commit-trailing-byte", False)):
        oid = write_literal(repo, "commit", v[name])
        assert git_good(repo, allowed, oid, "alice") is good, name
        key = gitmail_key(repo, oid)
        assert key is not None  # libgit2 parses it
        assert isinstance(key, str) is good, name
