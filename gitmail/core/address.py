"""Addresses and their ref-safe form (docs/protocol.md, "Addresses").

An address is a member name (any Unicode text, spaces included), the
broadcast address ``*``, or a group address ``team:NAME``. Names are
NFC-normalised. The ref-safe form percent-encodes every UTF-8 byte outside
``[a-z0-9_-]`` as ``%XX`` (upper-case hex), so it is injective (collision-free),
stable, holds no character git forbids in a ref, and never differs from another
address only by letter case (safe on case-insensitive file systems).
"""

from __future__ import annotations

import functools
import unicodedata
from typing import TYPE_CHECKING, Optional

from gitmail.errors import AddressError

if TYPE_CHECKING:
    import regex

BROADCAST = "*"
GROUP_PREFIX = "team:"
MAX_NAME_BYTES = 100
# The ref-safe form (to_ref) of a name at most this long: it is a component of refs
# (refs/gitmail/outbox/<r>/<s>.lock) and of files named after a member (keys/<name>.pub,
# claude-notified-<name>.json), and a file system takes names of at most 255 bytes.
MAX_REF_NAME = 200

_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_-")


@functools.lru_cache(maxsize=4096)  # a pure function of the string, called per message and per field
def normalize(name: str) -> str:
    """NFC-normalise ``name`` and check it can be a member name.

    Raises :class:`AddressError` for empty or over-long names, control or
    format characters, leading/trailing white space, path separators and the
    reserved forms ``*``, ``.``, ``..`` and ``team:...``.
    """
    n = unicodedata.normalize("NFC", name)
    if not n:
        raise AddressError("a member name cannot be empty")
    try:
        size = len(n.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: bytes that were not UTF-8 (an argument, a variable)
        raise AddressError(f"member name {n.encode('utf-8', 'backslashreplace').decode()!r} is not valid UTF-8") from None
    if size > MAX_NAME_BYTES:
        raise AddressError(f"member name too long (over {MAX_NAME_BYTES} bytes): {n[:20]!r}...")
    if len(to_ref(n)) > MAX_REF_NAME:
        raise AddressError(f"member name too long for a ref: its ref-safe form is {len(to_ref(n))} characters, "
                           f"over {MAX_REF_NAME} (each byte outside a-z 0-9 _ - takes 3): {n[:20]!r}...")
    for ch in n:
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            raise AddressError(f"member name {n!r} contains a control character (U+{ord(ch):04X})")
    hidden = ignorable(n)
    if hidden is not None:  # "m\u034fax" is max to the eye, and to no look-alike check that keeps it
        raise AddressError(f"member name {n!r} contains an invisible character (U+{ord(hidden):04X})")
    if n != n.strip():
        raise AddressError(f"member name {n!r} has leading or trailing white space")
    if "/" in n or "\\" in n:
        raise AddressError(f"member name {n!r} contains a path separator")
    if n in (".", "..", BROADCAST) or n.startswith(GROUP_PREFIX):
        raise AddressError(f"member name {n!r} is reserved")
    if n.startswith("-"):
        raise AddressError(f"member name {n!r} cannot start with '-'")
    # ssh-keygen reads a principal as a pattern list: ',' separates patterns,
    # '*' and '?' are wildcards, a leading '!' negates, and a quoted principal
    # ends at the next '"' (no escapes). Such names could not be written to the
    # allowed-signers file literally, so they are not names (docs/protocol.md §2).
    bad = next((ch for ch in n if ch in _PATTERN_CHARS), None)
    if bad is not None:
        raise AddressError(f"member name {n!r} cannot contain {bad!r} (allowed-signers pattern syntax)")
    if n.startswith("!"):
        raise AddressError(f"member name {n!r} cannot start with '!' (allowed-signers negation)")
    return n


_PATTERN_CHARS = frozenset('",*?')


@functools.lru_cache(maxsize=1)
def ignorable_pattern() -> "regex.Pattern[str]":
    """Unicode's Default_Ignorable_Code_Point characters (UAX #44; the ``regex`` package's
    Unicode data): what a renderer shows as nothing (joiners, fillers, variation selectors,
    tag characters, U+034F) unless a font draws it. Compiled at first use (the ``regex``
    import costs some milliseconds, and ASCII text, the common case, never needs it)."""
    import regex

    return regex.compile(r"\p{Default_Ignorable_Code_Point}")


def ignorable(text: str) -> Optional[str]:
    """The first Default_Ignorable_Code_Point character of ``text`` (:func:`ignorable_pattern`),
    or None."""
    if text.isascii():
        return None
    m = ignorable_pattern().search(text)
    return None if m is None else m.group()


def principal(name: str) -> str:
    """The allowed-signers principal field for member ``name``: the name in double quotes.

    Raises :class:`AddressError` unless ``name`` is a valid, NFC-normalised name
    (:func:`normalize`), so that ssh-keygen reads the principal literally.
    """
    if normalize(name) != name:
        raise AddressError(f"member name {name!r} is not in normal form (NFC)")
    return f'"{name}"'


# -- confusable names (Unicode TR39, data from the confusable-homoglyphs package) --

# Script sets TR39 "highly restrictive" allows in one name besides a single script (Latin with CJK).
_CJK_SETS = (frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}), frozenset({"LATIN", "HAN", "HANGUL"}),
             frozenset({"LATIN", "HAN", "BOPOMOFO"}))


def scripts(name: str) -> frozenset[str]:
    """The Unicode scripts of ``name``'s letters (COMMON and INHERITED, e.g. digits,
    spaces, punctuation and combining marks, are left out)."""
    from confusable_homoglyphs import categories

    return frozenset(a for a in (categories.alias(ch) for ch in name) if a not in ("COMMON", "INHERITED"))


def is_mixed_script(name: str) -> bool:
    """True when ``name`` mixes scripts, as TR39 "highly restrictive" defines it (Latin and Han with
    Hiragana/Katakana, Hangul or Bopomofo count as one)."""
    s = scripts(name)
    return len(s) > 1 and not any(s <= allowed for allowed in _CJK_SETS)


def skeleton(name: str) -> str:
    """The confusable skeleton of ``name`` (TR39 section 4, with the confusable-homoglyphs data).

    NFKD (compatibility forms such as fullwidth letters fold to their plain
    letters, which the TR39 data leaves out), Default_Ignorable_Code_Point characters
    removed (:func:`ignorable`; TR39's skeleton does so since revision 28, so that
    ``m\u034fax`` is ``max``), then every character replaced by the least (by code
    points) character of its look-alike class (:func:`_prototypes`), then NFD. Two names
    with the same skeleton look alike.
    """
    protos = _prototypes()
    folded = unicodedata.normalize("NFKD", name)
    if not folded.isascii():  # TR39 (revision 28 on): Default_Ignorable_Code_Points are dropped first
        folded = ignorable_pattern().sub("", folded)
    return unicodedata.normalize("NFD", "".join(protos.get(ch, ch) for ch in folded))


@functools.lru_cache(maxsize=1)
def _prototypes() -> dict[str, str]:
    """Character -> the least (by code point) character of its look-alike class: the classes
    are the connected groups of the data's single-character homoglyph pairs (direction marks
    around a right-to-left homoglyph dropped), so that look-alike is transitive. Taking the
    least of a character and its direct homoglyphs alone was not: ``l`` went to ``1`` but
    ``I`` (whose only listed homoglyph is ``l``) stayed ``I``, so ``aIice`` registered beside
    ``alice``. (Joining each character with its NFKD fold as well would make ``f`` and ``s``
    one class, through the long s.) About 10 ms, once a process."""
    from confusable_homoglyphs import confusables

    parent: dict[str, str] = {}

    def find(x: str) -> str:
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    def join(x: str, y: str) -> None:
        a, b = find(x), find(y)
        if a != b:
            parent[max(a, b)] = min(a, b)

    for ch, alts in confusables.confusables_data.items():
        if len(ch) != 1:
            continue
        for h in alts:
            c = h["c"].replace("\u200e", "").replace("\u200f", "")
            if len(c) == 1:
                join(ch, c)
    return {ch: find(ch) for ch in parent}


_RESERVED_LOOKS = ("*", ".", "..")


def reserved_lookalike(name: str) -> Optional[str]:
    """The reserved address ``name`` looks like (docs/protocol.md §2: ``*``, ``.``, ``..``, or a
    group address ``team:...``), or None. :func:`normalize` refuses those forms exactly; a
    look-alike (``＊``, ``team：ops`` with a fullwidth colon) would be listed as the sender of
    broadcast or group mail."""
    sk = skeleton(name)
    for r in _RESERVED_LOOKS:
        if sk == skeleton(r):
            return r
    if sk.startswith(skeleton(GROUP_PREFIX)):
        return GROUP_PREFIX + "..."
    return None


def normalize_group(name: str) -> str:
    """Normalise a group address ``team:NAME`` (the prefix is added if missing)."""
    bare = name[len(GROUP_PREFIX):] if name.startswith(GROUP_PREFIX) else name
    return GROUP_PREFIX + normalize(bare)


def check_address(address: str) -> str:
    """``address`` itself when it is an address in normal form (``*``, ``team:NAME`` or a
    member name, each exactly as :func:`normalize` / :func:`normalize_group` give it).
    Raises :class:`AddressError`."""
    if address == BROADCAST:
        return address
    n = normalize_group(address) if address.startswith(GROUP_PREFIX) else normalize(address)
    if n != address:
        raise AddressError(f"address {address[:40]!r} is not in normal form (NFC)")
    return address


# Pure, a loop per byte, called for every mailbox path of every message and for every member when
# the directory moves: room for an org of 10,000 members and its mailboxes (about 8 MB at most).
@functools.lru_cache(maxsize=32768)
def to_ref(address: str) -> str:
    """The ref-safe form of an already-normalised address (one ref component)."""
    raw = address.encode("utf-8")
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in raw)


def from_ref(component: str) -> str:
    """Inverse of :func:`to_ref`: ``to_ref(from_ref(c)) == c`` exactly.

    Raises :class:`AddressError` on a malformed or non-canonical component
    (lower-case hex, an escaped safe byte such as ``%61``).
    """
    out = bytearray()
    i = 0
    data = component.encode("ascii", "strict") if component.isascii() else b""
    if not data and component:
        raise AddressError(f"not a ref-safe address: {component!r}")
    while i < len(data):
        c = data[i]
        if c == 0x25:  # '%'
            try:
                out.append(int(data[i + 1 : i + 3], 16))
            except ValueError:
                raise AddressError(f"not a ref-safe address: {component!r}") from None
            i += 3
        elif c in _SAFE:
            out.append(c)
            i += 1
        else:
            raise AddressError(f"not a ref-safe address: {component!r}")
    try:
        decoded = out.decode("utf-8")
    except UnicodeDecodeError:
        raise AddressError(f"not a ref-safe address: {component!r}") from None
    # Only the canonical form counts (``%61lice`` is not ``alice``): one address, one ref.
    if to_ref(decoded) != component:
        raise AddressError(f"not the canonical ref-safe form: {component!r} (that is {to_ref(decoded)!r})")
    return decoded
