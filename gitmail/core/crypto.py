"""End-to-end encryption in the age format (age-encryption.org/v1), through pyrage.

A member's one ed25519 SSH key signs their commits and decrypts their mail:
their directory entry's ``encryption_key`` is an ``ssh-ed25519`` line used as
an age recipient (age's ``ssh-ed25519`` recipient type). Passphrase-protected
keys are unlocked in memory with ``cryptography`` and handed to pyrage as
bytes; nothing is written out. Stock ``age -d -i ~/.ssh/id_ed25519`` opens
what this module seals (docs/protocol.md, "Encryption").
"""

from __future__ import annotations

import functools

import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from gitmail.errors import DecryptionError, KeyError_, NotARecipientError

if TYPE_CHECKING:
    import pyrage

AGE_FORMAT = "age-encryption.org/v1"
MIN_BUCKET = 1024


def bucket(n: int) -> int:
    """``n`` rounded up to the next power of two, at least 1 KiB (sizes shown in clear)."""
    b = MIN_BUCKET
    while b < n:
        b *= 2
    return b


def pad_size(n: int) -> int:
    """The padded size of an ``n``-byte attachment before encryption (docs/protocol.md §9).

    At most 1 KiB: 1 KiB. Above: ``n`` rounded up to a multiple of
    ``max(1 KiB, 2**(bit_length(n) - 5))``, i.e. to one of 16 sizes per power
    of two. The waste is under ``1 KiB + n/16`` (a power-of-two bucket, as for
    the body, would waste up to ``n``), and the ciphertext then tells only
    which of those sizes, not the exact size.
    """
    if n <= MIN_BUCKET:
        return MIN_BUCKET
    g = max(MIN_BUCKET, 1 << (n.bit_length() - 5))
    return -(-n // g) * g


def age_overhead_max(n: int, readers: int) -> int:
    """An upper bound of what age adds to ``n`` plaintext bytes for ``readers`` ssh-ed25519
    recipients: the header (version line, one stanza of under 192 bytes per reader, MAC),
    the 16-byte nonce and a 16-byte tag per 64 KiB chunk."""
    return 256 + 192 * max(1, readers) + 16 * (n // 65536 + 2)


def sealed_max(n: int, readers: int) -> int:
    """The largest ciphertext an attachment of at most ``n`` bytes can have once padded
    (:func:`pad_size`) and sealed to ``readers``; monotone in ``n``."""
    p = n + (n >> 4) + MIN_BUCKET  # >= pad_size(n) for every n
    return p + age_overhead_max(p, readers)


def plain_min(cipher_size: int, readers: int) -> int:
    """The smallest plaintext size that may have produced a ciphertext of ``cipher_size``
    bytes: the least ``n`` with ``sealed_max(n, readers) >= cipher_size``. The guard,
    which sees only ciphertext, checks the attachment bounds against this."""
    lo, hi = 0, max(0, cipher_size)
    while lo < hi:
        mid = (lo + hi) // 2
        if sealed_max(mid, readers) >= cipher_size:
            hi = mid
        else:
            lo = mid + 1
    return lo


def pad(data: bytes) -> bytes:
    """``data`` followed by zero bytes up to :func:`pad_size`."""
    return data + bytes(pad_size(len(data)) - len(data))


def unpad(data: bytes, size: int) -> bytes:
    """The first ``size`` bytes of a decrypted attachment whose sealed size is ``size``.

    Accepts the padded form (``pad_size(size)`` bytes, the padding all zero) and the
    unpadded form of messages written before padding (exactly ``size`` bytes).
    Raises :class:`DecryptionError` for anything else.
    """
    if len(data) == size:
        return data
    if len(data) == pad_size(size) and not data[size:].strip(b"\0"):
        return data[:size]
    raise DecryptionError(f"decrypted attachment has {len(data)} bytes; the sealed size is {size}")


@functools.lru_cache(maxsize=4096)
def recipient(line: str) -> "pyrage.ssh.Recipient":
    """An age recipient from an ``ssh-ed25519 AAAA...`` line. Raises :class:`KeyError_`.
    Remembered per line (a recipient is immutable; a batch encrypts to the same few keys)."""
    import pyrage

    try:
        return pyrage.ssh.Recipient.from_str(line.strip())
    except Exception:
        raise KeyError_(f"not an ssh-ed25519 encryption key: {line[:30]}...") from None


def seal(plain: bytes, recipient_lines: Sequence[str]) -> bytes:
    """Encrypt ``plain`` to every recipient (binary age file)."""
    import pyrage

    return pyrage.encrypt(plain, [recipient(r) for r in recipient_lines])


def is_protected(key_path: Path) -> bool:
    """True when the private key file needs a passphrase (or cannot be read as a plain key)."""
    import pyrage

    try:
        pyrage.ssh.Identity.from_buffer(key_path.read_bytes())
        return False
    except (OSError, pyrage.IdentityError):
        return True


def identity(key_path: Path, passphrase: Optional[bytes] = None) -> "pyrage.ssh.Identity":
    """The age identity of an OpenSSH ed25519 private key file, unlocked in memory.

    ``passphrase`` defaults to ``$GITMAIL_PASSPHRASE``. Raises :class:`KeyError_`
    for a missing, unreadable, locked or wrongly unlocked key.
    """
    import pyrage
    from cryptography.hazmat.primitives import serialization

    try:
        data = key_path.read_bytes()
    except OSError as e:
        raise KeyError_(f"cannot read key {key_path}: {e.strerror}") from None
    try:
        return pyrage.ssh.Identity.from_buffer(data)
    except pyrage.IdentityError:
        pass  # encrypted (or not an SSH key): unlock with cryptography below
    if passphrase is None and os.environ.get("GITMAIL_PASSPHRASE"):
        passphrase = os.environ["GITMAIL_PASSPHRASE"].encode()
    if passphrase is None:
        raise KeyError_(f"key {key_path} is passphrase-protected: set GITMAIL_PASSPHRASE to read encrypted mail")
    try:
        key = serialization.load_ssh_private_key(data, password=passphrase)
    except (ValueError, TypeError):
        raise KeyError_(f"cannot unlock key {key_path}: wrong passphrase") from None
    clear = key.private_bytes(  # in memory only
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    try:
        return pyrage.ssh.Identity.from_buffer(clear)
    except pyrage.IdentityError as e:
        raise KeyError_(f"key {key_path} cannot decrypt age files: {_one_line(e)}") from None


HEADER_FIXED = 256  # bytes of an age header besides its stanzas: version line, MAC line, slack
STANZA_MAX = 192  # bytes one recipient stanza takes at most (an ssh-ed25519 one takes about 110)


def header_problem(cipher: bytes, readers: int) -> Optional[str]:
    """Why the age header of ``cipher`` is not one ``readers`` readers need, or None
    (docs/protocol.md §9, "Verification before decryption"): the version line
    ``age-encryption.org/v1``, at most ``readers + 1`` recipient stanzas (one per reader;
    age implementations add one "grease" stanza of a made-up type), and the header,
    through its ``---`` line, within ``HEADER_FIXED + STANZA_MAX * (readers + 1)`` bytes.
    Reads only that many bytes. An age decryptor's time grows with the square of the
    stanzas (rage: 1,600 stanzas, 21 s through ``pyrage.decrypt``): a hostile sender's
    header of 2,400 stanzas cost each reader 52 s of every sync, read and export."""
    most = readers + 1
    limit = HEADER_FIXED + STANZA_MAX * most
    head = cipher[:limit]
    if not head.startswith(b"age-encryption.org/v1\n"):
        return "not an age file (age-encryption.org/v1)"
    end = head.find(b"\n---")
    if end < 0:
        return f"an age header longer than {readers} readers need ({limit} bytes)"
    stanzas = head[:end].count(b"\n-> ")
    if stanzas > most:
        return f"an age header of {stanzas} recipient stanzas; {readers} readers need at most {most}"
    return None


def open_(cipher: bytes, identities: Sequence["pyrage.ssh.Identity"], recipients: Sequence[str],
          me: Optional[str] = None) -> bytes:
    """Decrypt with any of ``identities``; ``recipients``: the readers the envelope names;
    ``me``: whose identities they are, when known.

    Raises :class:`NotARecipientError` (``encrypted for alex, bob; you are not a
    recipient``, or, when ``me`` is listed, that the sender did not seal it to their key:
    a sender can list a reader and leave them out) when none matches, :class:`DecryptionError` when the ciphertext
    is damaged or its header is not one those readers need (:func:`header_problem`,
    checked before anything is decrypted).
    """
    import io

    import pyrage

    problem = header_problem(cipher, len(recipients))
    if problem is not None:
        raise DecryptionError(f"cannot decrypt: {problem}")
    out = io.BytesIO()
    try:
        # decrypt_io, not decrypt: the same rage decryptor reading the header from a stream,
        # 17 to 58 times faster on headers of 400 to 1,600 stanzas (measured), as fast on one.
        pyrage.decrypt_io(io.BytesIO(cipher), out, list(identities))
        return out.getvalue()
    except (pyrage.DecryptError, OSError) as e:  # decrypt_io says OSError for a damaged payload
        text = str(e).lower()
        if "no matching keys" in text or "no identity matched" in text:
            names = ", ".join(recipients[:10]) + (f" and {len(recipients) - 10} more" if len(recipients) > 10 else "")
            why = "you are listed as a reader, but the sender did not seal it to your key" \
                if me is not None and me in recipients else "you are not a recipient"
            raise NotARecipientError(f"encrypted for {names}; {why}") from None
        raise DecryptionError(f"cannot decrypt: the ciphertext is damaged ({_one_line(e)})") from None


def _one_line(e: BaseException) -> str:
    """pyrage's message on one line: some have two ("Unknown age format.\nHave you tried
    upgrading..."), and ours end up in one-line fields (``--json`` ``error``, hook lines)."""
    return " ".join(str(e).split())
