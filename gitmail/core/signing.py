"""SSH signatures in git's own format (OpenSSH PROTOCOL.sshsig), made and checked in-process.

A commit signature is an armored SSHSIG blob (namespace ``git``, hash ``sha512``)
in the commit's ``gpgsig`` header, exactly what ``git commit -S`` writes with
``gpg.format=ssh``; stock ``git verify-commit`` accepts it. Only ed25519 keys
are supported (docs/protocol.md, "Signatures"). A signature is read exactly as
``git verify-commit`` reads it (:func:`commit_signature`, :func:`dearmor`,
:func:`verify`; docs/protocol.md §7, "What a reader accepts"): gitmail and an
auditor's git never judge one commit differently.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from gitmail.errors import KeyError_, VerificationError

if TYPE_CHECKING:
    import pygit2

NAMESPACE = b"git"
MAGIC = b"SSHSIG"
ARMOR_BEGIN = "-----BEGIN SSH SIGNATURE-----"
ARMOR_END = "-----END SSH SIGNATURE-----"
KEY_TYPE = b"ssh-ed25519"


def _string(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def _read_string(buf: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 4 > len(buf):
        raise ValueError("truncated")
    (n,) = struct.unpack_from(">I", buf, pos)
    end = pos + 4 + n
    if end > len(buf):
        raise ValueError("truncated")
    return buf[pos + 4 : end], end


def _signed_data(message: bytes, namespace: bytes, hash_alg: bytes) -> bytes:
    h = hashlib.sha512(message) if hash_alg == b"sha512" else hashlib.sha256(message)
    return _signed_prefix(namespace, hash_alg) + _string(h.digest())


@functools.lru_cache(maxsize=16)
def _signed_prefix(namespace: bytes, hash_alg: bytes) -> bytes:
    """What the signed data holds before the message's hash (PROTOCOL.sshsig): the same for
    every signature of one namespace and hash (checked by the million in a first sync)."""
    return MAGIC + _string(namespace) + _string(b"") + _string(hash_alg)


# Pure, and a mailbox's signatures come from a handful of keys.
@functools.lru_cache(maxsize=4096)
def public_key_line(raw: bytes) -> str:
    """OpenSSH one-line form (``ssh-ed25519 AAAA...``) of a raw 32-byte ed25519 key."""
    blob = _string(KEY_TYPE) + _string(raw)
    return "ssh-ed25519 " + base64.b64encode(blob).decode()


def parse_public_key(line: str) -> bytes:
    """Raw 32-byte key from ``ssh-ed25519 AAAA... [comment]``. Raises :class:`KeyError_`."""
    parts = line.strip().split()
    if len(parts) < 2 or parts[0] != "ssh-ed25519":
        raise KeyError_("not an ssh-ed25519 public key (gitmail signs with ed25519 keys only)")
    try:
        blob = base64.b64decode(parts[1], validate=True)
        kt, pos = _read_string(blob, 0)
        raw, _ = _read_string(blob, pos)
    except ValueError:
        raise KeyError_("malformed ssh-ed25519 public key") from None
    if kt != KEY_TYPE or len(raw) != 32:
        raise KeyError_("malformed ssh-ed25519 public key")
    return raw


def normalize_public_key(line: str) -> str:
    """``ssh-ed25519 <base64>`` without a comment, the form stored in the directory."""
    return public_key_line(parse_public_key(line))


def check_stored_key(line: object) -> str:
    """``line`` if it is a key exactly in the stored form (docs/protocol.md §8), else raise.

    The stored form is ``ssh-ed25519``, one space, and the standard base64 (with
    padding) of the key blob: no comment, no other white space, nothing else.
    Raises :class:`KeyError_`.
    """
    if not isinstance(line, str) or not line.isascii() or not line.startswith("ssh-ed25519 "):
        raise KeyError_(f"not a key in the stored form (ssh-ed25519 <base64>): {str(line)[:40]!r}")
    if normalize_public_key(line) != line:
        raise KeyError_(f"not a key in the stored form (ssh-ed25519 <base64>): {line[:40]!r}")
    return line


# Pure; a long-lived process (a warm worker, the MCP server) computes it again for every member
# whenever the directory moves (the shell notice's inbox-refs): 8 µs each, 0.08 s at 10,000.
@functools.lru_cache(maxsize=32768)
def fingerprint(line: str) -> str:
    """``SHA256:<base64, no padding>`` of the key blob, as ``ssh-keygen -l`` prints it.
    Raises :class:`KeyError_` (never cached)."""
    blob = _string(KEY_TYPE) + _string(parse_public_key(line))
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


@dataclass
class Signer:
    """Something that can make ed25519 signatures for one public key.

    ``sign_raw(data) -> 64-byte signature``; the key may live in memory (from a
    key file) or in ssh-agent.
    """

    public_key: str
    sign_raw: Callable[[bytes], bytes]
    source: str = ""

    def sign(self, message: bytes, namespace: bytes = NAMESPACE) -> str:
        """Armored SSHSIG over ``message`` (no trailing newline), as git stores it."""
        sig = self.sign_raw(_signed_data(message, namespace, b"sha512"))
        blob = (
            self._prefix(namespace)
            + _string(b"sha512")
            + _string(_string(KEY_TYPE) + _string(sig))
        )
        b64 = base64.b64encode(blob).decode()
        lines = [b64[i : i + 70] for i in range(0, len(b64), 70)]
        return "\n".join([ARMOR_BEGIN, *lines, ARMOR_END])

    def _prefix(self, namespace: bytes) -> bytes:
        """Magic, version, public key, namespace and reserved: the same for every signature."""
        cached = self.__dict__.get("_prefix_cache")
        if cached is None or cached[0] != namespace:
            raw_pub = parse_public_key(self.public_key)
            head = (
                MAGIC
                + struct.pack(">I", 1)
                + _string(_string(KEY_TYPE) + _string(raw_pub))
                + _string(namespace)
                + _string(b"")
            )
            cached = (namespace, head)
            self.__dict__["_prefix_cache"] = cached
        return cached[1]


# OpenSSH's armor as ssh-keygen reads it (sshsig.c, sshsig_dearmor): the header line with its
# LF at the very start, the footer after an LF.
_HEADER = ARMOR_BEGIN.encode() + b"\n"
_FOOTER = b"\n" + ARMOR_END.encode()
_B64_SPACE = b" \t\n\v\f\r"  # what OpenSSH's base64 decoder skips (C isspace)


def dearmor(armored: bytes) -> bytes:
    """The SSHSIG blob of an armored signature, read as OpenSSH's ``ssh-keygen -Y verify`` (what
    ``git verify-commit`` runs) reads it (docs/protocol.md §7, "What a reader accepts"):
    ``-----BEGIN SSH SIGNATURE-----`` and LF at the very start; the base64 up to the first LF
    followed by ``-----END SSH SIGNATURE-----``, whatever follows that ignored; white space
    in the base64 skipped; the base64 canonical (padded, its unused bits zero, nothing after
    the padding); a NUL byte only as its last byte. Raises :class:`VerificationError`."""
    if not armored.startswith(_HEADER):
        raise VerificationError("not an SSH signature")
    rest = armored[len(_HEADER):]
    end = rest.find(_FOOTER)
    if end < 0:
        raise VerificationError("not an SSH signature")
    try:
        compact = _c_string(rest[:end]).translate(None, _B64_SPACE)
        blob = base64.b64decode(compact, validate=True)
    except ValueError:
        raise VerificationError("malformed SSH signature") from None
    if base64.b64encode(blob) != compact:
        raise VerificationError("malformed SSH signature")
    return blob


def _cstring(buf: bytes, pos: int) -> tuple[bytes, int]:
    """An SSH string that OpenSSH reads as a C string (``sshbuf_get_cstring``, :func:`_c_string`)."""
    value, pos = _read_string(buf, pos)
    return _c_string(value), pos


def _c_string(value: bytes) -> bytes:
    """``value`` as OpenSSH takes bytes for a C string (``sshbuf_get_cstring``,
    ``sshbuf_dup_string``): a NUL byte only as the last byte, and then not part of it.
    Raises ``ValueError``."""
    nul = value.find(b"\0")
    if nul < 0:
        return value
    if nul != len(value) - 1:
        raise ValueError("NUL in a string")
    return value[:-1]


def verify(armored: bytes | str, message: bytes, namespace: bytes = NAMESPACE) -> str:
    """Check an armored SSHSIG over ``message``; return the signer's public key line.

    Accepts exactly what OpenSSH's ``ssh-keygen -Y verify`` accepts from an ed25519 key
    (sshsig.c and ssh-ed25519.c; docs/protocol.md §7, "What a reader accepts"), so that
    gitmail and ``git verify-commit`` never disagree on a signature: the armor as
    :func:`dearmor` reads it; then magic ``SSHSIG``, a version of at most 1, the public key
    (``ssh-ed25519`` and 32 bytes, nothing after), the namespace, a reserved string (any
    content), the hash (``sha512`` or ``sha256``) and the signature (``ssh-ed25519`` and its
    bytes, nothing after), nothing after it. The one difference is the ed25519 check
    itself, libsodium's (:func:`ed25519_valid`). The caller decides whether that key belongs
    to whom it should: this only proves the signature was made by the embedded key over
    these bytes. Raises :class:`VerificationError` for a malformed, wrong-namespace,
    non-ed25519 or invalid signature.
    """
    blob = dearmor(armored.encode("utf-8", "surrogateescape") if isinstance(armored, str) else armored)
    try:
        if blob[:6] != MAGIC or struct.unpack_from(">I", blob, 6)[0] > 1:
            raise ValueError("bad magic or version")
        pub, pos = _read_string(blob, 10)
        ns, pos = _cstring(blob, pos)
        _reserved, pos = _read_string(blob, pos)
        hash_alg, pos = _cstring(blob, pos)
        sigblob, pos = _read_string(blob, pos)
        if pos != len(blob):
            raise ValueError("trailing data")
        kt, p2 = _cstring(pub, 0)
        raw_pub, p2 = _read_string(pub, p2)
        st, p3 = _cstring(sigblob, 0)
        raw_sig, p3 = _read_string(sigblob, p3)
        if kt == KEY_TYPE and (p2 != len(pub) or p3 != len(sigblob)):
            raise ValueError("trailing data")
    except (ValueError, struct.error):
        raise VerificationError("malformed SSH signature") from None
    if ns != namespace:
        raise VerificationError(f"signature namespace is {ns.decode(errors='replace')!r}, not 'git'")
    if kt != KEY_TYPE or st != KEY_TYPE or len(raw_pub) != 32:
        raise VerificationError("signature is not ed25519")
    if hash_alg not in (b"sha512", b"sha256"):
        raise VerificationError("unsupported signature hash")
    if not ed25519_valid(raw_pub, raw_sig, _signed_data(message, namespace, hash_alg)):
        raise VerificationError("bad signature")
    return public_key_line(raw_pub)


def ed25519_valid(raw_pub: bytes, raw_sig: bytes, data: bytes) -> bool:
    """Whether ``raw_sig`` (64 bytes) is ``raw_pub``'s (32 bytes) ed25519 signature of ``data``.

    libsodium (PyNaCl), about twice as fast as OpenSSL through ``cryptography``
    here (bench/bench_scale.py). It accepts a subset of what OpenSSL accepts:
    it also refuses small-order public keys and ``R`` points, which no honest
    key produces (docs/protocol.md, "Signatures").
    """
    from nacl.bindings import crypto_sign_open
    from nacl.exceptions import BadSignatureError

    if len(raw_pub) != 32 or len(raw_sig) != 64:
        return False
    try:
        crypto_sign_open(raw_sig + data, raw_pub)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


# -- keys ---------------------------------------------------------------------


def public_path(path: Path) -> Path:
    """Where the public half of the key file ``path`` is: ``path`` with ``.pub`` added, as
    ssh-keygen names it."""
    return path.with_name(path.name + ".pub")


def generate_key(path: Path, comment: str = "") -> Signer:
    """Create a new ed25519 key at ``path`` (OpenSSH format, mode 0600) and ``path.pub``.

    Raises :class:`KeyError_` if ``path`` exists.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if path.exists():
        raise KeyError_(f"key file already exists: {path}")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    line = public_key_line(raw)
    public_path(path).write_text(f"{line} {comment}".rstrip() + "\n")
    return Signer(line, key.sign, str(path))


MAX_KEY_FILE = 64 * 1024  # bytes: an OpenSSH ed25519 key file (private or .pub) is under 1 KiB


def load_key(path: Path, passphrase: Optional[bytes] = None) -> Signer:
    """Load a signer from a key file.

    ``path`` may be an OpenSSH ed25519 private key (passphrase-protected keys are
    unlocked in memory with ``passphrase``, default ``$GITMAIL_PASSPHRASE``) or a
    public key (``.pub``) whose private half is held by ssh-agent. An encrypted
    private key with no passphrase also falls back to ssh-agent.
    Raises :class:`KeyError_` for a missing, unreadable, malformed, non-ed25519
    or locked key.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        with open(path, "rb") as f:
            data = f.read(MAX_KEY_FILE + 1)  # bounded: --key /dev/zero read until memory ran out
    except FileNotFoundError:
        raise KeyError_(f"key file not found: {path}") from None
    except OSError as e:
        raise KeyError_(f"cannot read key file {path}: {e.strerror}") from None
    if len(data) > MAX_KEY_FILE:
        raise KeyError_(f"key file {path} is over {MAX_KEY_FILE} bytes: not an OpenSSH ed25519 key")
    if data.lstrip().startswith(b"ssh-"):
        return agent_signer(data.decode("ascii", "replace"), str(path))
    if passphrase is None and os.environ.get("GITMAIL_PASSPHRASE"):
        passphrase = os.environ["GITMAIL_PASSPHRASE"].encode()
    try:
        key = serialization.load_ssh_private_key(data, password=None)
    except TypeError:  # encrypted: unlock in memory with the passphrase, or use ssh-agent
        key = _unlock(path, data, passphrase)
    except ValueError as e:
        raise KeyError_(f"cannot load key {path}: not an OpenSSH private key ({e})") from None
    if isinstance(key, Signer):
        return key
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyError_(f"key {path} is not ed25519 (gitmail signs with ed25519 keys only)")
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return Signer(public_key_line(raw), key.sign, str(path))


def _unlock(path: Path, data: bytes, passphrase: Optional[bytes]) -> Any:
    """Decrypt a passphrase-protected private key in memory (or fall back to ssh-agent)."""
    from cryptography.hazmat.primitives import serialization

    if passphrase is None:
        pub = public_path(path)
        if pub.exists() and os.environ.get("SSH_AUTH_SOCK"):
            return agent_signer(pub.read_text(), str(path))
        raise KeyError_(
            f"key {path} is passphrase-protected: set GITMAIL_PASSPHRASE or add it to ssh-agent"
        )
    try:
        return serialization.load_ssh_private_key(data, password=passphrase)
    except (ValueError, TypeError):
        raise KeyError_(f"cannot load key {path}: wrong passphrase") from None


def agent_signer(public_line: str, source: str = "ssh-agent") -> Signer:
    """A signer for ``public_line`` whose private key is held by ssh-agent ($SSH_AUTH_SOCK).

    Uses paramiko's agent client. Raises :class:`KeyError_` when no agent is
    running or it does not hold the key.
    """
    raw = parse_public_key(public_line)
    want = _string(KEY_TYPE) + _string(raw)
    if not os.environ.get("SSH_AUTH_SOCK"):
        raise KeyError_(f"no private key for {source} and no ssh-agent running (SSH_AUTH_SOCK unset)")
    try:
        from paramiko.agent import Agent
    except ImportError:  # pragma: no cover - paramiko is a dependency
        raise KeyError_("ssh-agent signing needs the paramiko package") from None
    agent = Agent()
    for k in agent.get_keys():
        if k.asbytes() == want:
            akey = k

            def sign_raw(data: bytes) -> bytes:
                sigblob = bytes(akey.sign_ssh_data(data))
                kt, pos = _read_string(sigblob, 0)
                sig, _ = _read_string(sigblob, pos)
                return sig

            return Signer(public_key_line(raw), sign_raw, f"ssh-agent:{source}")
    raise KeyError_(f"ssh-agent does not hold the key {source}")


def commit_signature(raw: bytes) -> tuple[Optional[bytes], bytes]:
    """``(signature, signed payload)`` of the raw commit object ``raw`` (its bytes, without
    the ``commit <size>`` prefix), split exactly as git splits it for ``git verify-commit``
    (commit.c, ``parse_buffer_signed_by_header``, for a SHA-1 repository; docs/protocol.md §7,
    "What a reader accepts"): each header line ``gpgsig <value>`` and the continuation lines
    (a leading space) after it go to the signature, the value and each continuation without
    its first byte, every line with its LF; a header line that only begins ``gpgsig`` (such
    as ``gpgsig-sha256``) and its continuations are left out of both; everything else,
    from the blank line on whole, is the payload. The signature is None when there is no
    ``gpgsig`` line. Not libgit2's ``git_commit_extract_signature``, whose split differs from
    git's for a hostile commit (a second ``gpgsig`` line, a ``gpgsig-sha256`` line), so that
    gitmail and an auditor's git never judge one commit differently."""
    # The header lines are those before the first blank line; from it on, all is payload.
    if raw.startswith(b"gpgsig"):
        at = 0
    else:
        at = raw.find(b"\ngpgsig") + 1  # 0: none
        if at == 0:
            return None, raw
    end = raw.find(b"\n\n")
    head_end = len(raw) if end < 0 else end + 1
    if at >= head_end or raw[:1] == b"\n":  # only in the message: no header
        return None, raw
    head = raw[:head_end]
    sig: list[bytes] = []
    payload: list[bytes] = []
    done = 0
    # Each block: a header line beginning "gpgsig" and the continuation lines after it. git's
    # state machine (a continuation belongs to the block above it; any other line ends it)
    # comes to exactly these blocks.
    while at >= 0:
        m = _SIG_BLOCK.match(head, at)
        assert m is not None  # at is the start of a line beginning "gpgsig"
        payload.append(head[done:at])
        block = m.group()
        if block.startswith(b"gpgsig "):
            sig.append(block[7:].replace(b"\n ", b"\n"))  # one leading space off each continuation
        done = m.end()
        at = head.find(b"\ngpgsig", done - 1)
        if at >= 0:
            at += 1
    payload.append(raw[done:])
    return (b"".join(sig) if sig else None), b"".join(payload)


_SIG_BLOCK = re.compile(rb"gpgsig[^\n]*(?:\n|\Z)(?: [^\n]*(?:\n|\Z))*")


def signer_of(commit: "pygit2.Commit", raw: Optional[bytes] = None) -> str:
    """The public key line that signed ``commit`` (:func:`commit_signature`, :func:`verify`);
    ``raw``: its bytes, when the caller has read them. Raises :class:`VerificationError`."""
    sig, payload = commit_signature(commit.read_raw() if raw is None else raw)
    if sig is None:
        raise VerificationError("unsigned")
    return verify(sig, payload)


def signers(commits: list["pygit2.Commit"], threads: bool = True,
            raws: Optional[list[bytes]] = None) -> list["str | VerificationError"]:
    """:func:`signer_of` for many commits, each a key line or the error; with ``threads``, the
    signature checks run on every core. ``raws``: the commits' raw bytes, when the caller has
    read them.

    pygit2 reads stay on the calling thread; only the ed25519 checks (which
    release the GIL in part) go to a thread pool. A process that is itself one of a
    pool of one worker per core passes ``threads=False``: more threads than cores
    only contend for the GIL.
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    signed = [commit_signature(r) for r in (raws if raws is not None else (c.read_raw() for c in commits))]

    def one(item: tuple[Optional[bytes], bytes]) -> "str | VerificationError":
        sig, payload = item
        if sig is None:
            return VerificationError("unsigned")
        try:
            return verify(sig, payload)
        except VerificationError as e:
            return e

    workers = os.cpu_count() or 1
    if not threads or workers < 2 or len(signed) < 64:
        return [one(x) for x in signed]
    # One slice per core: a future per signature would cost more than the check.
    step = -(-len(signed) // workers)
    slices = [signed[i : i + step] for i in range(0, len(signed), step)]
    with ThreadPoolExecutor(workers) as pool:
        return [r for part in pool.map(lambda sl: [one(x) for x in sl], slices) for r in part]
