"""What every front-end shows of a message: short ids, ages, sender labels, the JSON row,
and the one sanitiser for text other members wrote.

The CLI, the MCP server, the git hooks' notice and the Claude Code hooks all
render messages through these, so a message looks the same everywhere
(docs/json.md is the JSON contract).

Text that came from another member (subjects, bodies, names, e-mail addresses,
file names, request ids, a remote's refusal) never reaches a terminal raw:
:func:`clean` (one-line fields) and :func:`clean_text` (bodies) turn every
character a terminal or a text renderer would act on into a visible escape
(docs/agents.md, "What front-ends show"). The shell notice (hooks/notice.sh,
``vis()``) applies the same rule; tests/output/test_sanitise_notice.py holds both
to one corpus. ``--json`` output and MCP results stay exact data: JSON
escaping is enough there.
"""

from __future__ import annotations

import functools
import json
import re
from datetime import datetime, timezone
from typing import Any, Optional, cast

from gitmail.api.session import SHORT_ID
from gitmail.core.cache import Row

SHORT = SHORT_ID  # hex digits of a Message-ID shown in listings
BAD_LABEL = {
    "unsigned": "UNSIGNED",
    "bad-signature": "FORGED",
    "unknown-sender": "FORGED",
    "wrong-signer": "FORGED",
    "malformed": "MALFORMED",
    "misfiled": "MISFILED",
}


# What a terminal or a text renderer acts on: C0 controls, DEL, C1 controls (U+0080-009F,
# e.g. U+009B is CSI), the bidi controls (embeddings and overrides U+202A-202E, isolates
# U+2066-2069, marks U+200E/200F and U+061C), the line and paragraph separators
# (U+2028/2029) and lone surrogates (which cannot even be encoded for output).
_BEYOND_C0 = "\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff"
_UNSAFE_LINE = re.compile(f"[\x00-\x1f{_BEYOND_C0}]")
_UNSAFE_TEXT = re.compile(f"[\x00-\x08\x0b-\x1f{_BEYOND_C0}]")  # newline and tab kept
# And, in text that is not ASCII, what a renderer shows as nothing: Unicode's
# Default_Ignorable_Code_Points (gitmail.core.address.ignorable_pattern), such as zero-width
# spaces, U+034F, Hangul fillers and the tag characters U+E0000-E007F, which spell out text a
# model reads and a person never sees. Kept, because ordinary text needs them and they hide
# nothing alone: the joiners U+200C/U+200D (emoji sequences, Persian and Indic words) and the
# variation selectors U+FE00-FE0F (the emoji form of a heart) and U+E0100-E01EF (ideographs).
_KEPT = "\u200c\u200d\ufe00-\ufe0f\U000e0100-\U000e01ef"
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def escape_char(c: str) -> str:
    """The visible form of one unsafe character: ``\\t``, ``\\n``, ``\\r``; ``\\xNN`` below
    U+0100 (``\\x1b`` for ESC, ``\\x9b`` for CSI); ``\\uNNNN`` above (``\\u202e``)."""
    if c in _NAMED:
        return _NAMED[c]
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}"


def clean(text: Any) -> str:
    """A one-line field another member wrote (subject, name, file name, id), safe to print.

    Every unsafe character (C0 controls including newline and tab, DEL, C1
    controls, bidi controls, U+2028/2029, surrogates, and the invisible
    Default_Ignorable_Code_Points but the joiners and variation selectors of
    :data:`_KEPT`) becomes its visible escape (:func:`escape_char`); everything
    else, backslashes included, is kept as it is. ``None`` and other values are
    shown with ``str``.
    """
    s = text if isinstance(text, str) else str(text)
    return (_UNSAFE_LINE if s.isascii() else _unsafe(True)).sub(lambda m: escape_char(m.group()), s)


ERROR_CHARS = 1000  # an error line names what it refuses; a megabyte-long id or path is cut here


def error_line(text: Any) -> str:
    """An error message as one safe line (:func:`clean`), cut to :data:`ERROR_CHARS` characters:
    errors quote what they were given, which may be a hostile or giant argument."""
    line = clean(text)
    more = len(line) - ERROR_CHARS
    return line if more <= 0 else line[:ERROR_CHARS] + f"... ({more} more characters)"


def clean_text(text: Any) -> str:
    """A multi-line text another member wrote (a body), safe to print.

    As :func:`clean`, but newlines and tabs stay (CRLF line ends become LF; a
    lone CR, which would let a line overwrite itself, is escaped).
    """
    s = text if isinstance(text, str) else str(text)
    pat = _UNSAFE_TEXT if s.isascii() else _unsafe(False)
    return pat.sub(lambda m: escape_char(m.group()), s.replace("\r\n", "\n"))


@functools.lru_cache(maxsize=2)
def _unsafe(line: bool) -> "re.Pattern[str]":
    """:data:`_UNSAFE_LINE` (``line``) or :data:`_UNSAFE_TEXT`, and the invisible characters
    but :data:`_KEPT`: for text that is not ASCII (compiled at first use)."""
    import regex

    from gitmail.core.address import ignorable_pattern

    c0 = "\x00-\x1f" if line else "\x00-\x08\x0b-\x1f"
    return cast("re.Pattern[str]", regex.compile(
        f"[{c0}{_BEYOND_C0}]|[{ignorable_pattern().pattern}--[{_KEPT}]]", regex.V1))


def flat(text: str) -> str:
    """``text`` on one line: runs of white space (as ``str.split`` sees it) become one space.

    The subject of a message commit is written this way (core/store.commit_message), so
    a subject shown from the commit (the shell notice) and from the message look alike.
    """
    return " ".join(text.split())


def quote(value: Any) -> str:
    """``value`` as a JSON literal with every unsafe character \\u-escaped: data for an agent.

    Valid JSON that decodes to exactly ``value``; no raw line break, control or
    bidi character, so it can never read as a line of its own.
    """
    s = json.dumps(value, ensure_ascii=False)
    if s.isascii():
        return _UNSAFE_LINE.sub(lambda m: f"\\u{ord(m.group()):04x}", s)
    # Lossless here, so every invisible character goes (the joiners and selectors too), as
    # JSON's \\u form of its UTF-16 code units.
    return _unsafe_json().sub(lambda m: json.dumps(m.group()).strip('"'), s)


@functools.lru_cache(maxsize=1)
def _unsafe_json() -> "re.Pattern[str]":
    import regex

    from gitmail.core.address import ignorable_pattern

    return cast("re.Pattern[str]", regex.compile(
        f"[\\x00-\\x1f{_BEYOND_C0}]|{ignorable_pattern().pattern}"))


def count(n: int, noun: str, plural: Optional[str] = None) -> str:
    """``1 message``, ``2 messages``, ``0 messages``; ``plural`` for nouns not made with ``s``
    (``count(2, "mailbox", "mailboxes")``). The last word of ``noun`` is the one inflected."""
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"


def ago(date: str, now: Optional[datetime] = None) -> str:
    """``2 min ago`` style age of an RFC 3339 UTC date."""
    from gitmail.core.dates import parse_date

    d = parse_date(date)
    if d is None:  # never raise: a bad date must not silence a listing or a hook
        return "?"
    try:
        secs = int(((now or datetime.now(timezone.utc)) - d).total_seconds())
    except (TypeError, OverflowError):  # never raise here either
        return "?"
    if secs < 60:
        return "just now"
    for unit, n in (("day", 86400), ("h", 3600), ("min", 60)):
        if secs >= n:
            v = secs // n
            return f"{v} {unit}{'s' if unit == 'day' and v > 1 else ''} ago"
    return "?"


def sender_label(row: Row) -> str:
    """The sender as shown: never a bare name for a message that failed verification."""
    if row.status == "good":
        return row.sender
    return f"{BAD_LABEL.get(row.status, row.status.upper())}? claims {row.sender}"


def is_unread(row: Row) -> bool:
    """Whether ``row`` counts as unread mail: an inbox copy not read yet, and not a verified
    ack (a receipt needs no attention; the rule of :data:`gitmail.core.cache.UNREAD`)."""
    return row.inbox and not row.read and not (row.type == "ack" and row.status == "good")


def row_json(row: Row) -> dict[str, Any]:
    """The message row as a JSON object (docs/json.md, ``MessageRow``)."""
    from gitmail.api.results import MessageRow

    return MessageRow.of(row).dump()


def payload_hint(row: Row, width: int = 60) -> str:
    """An open type's payload on one line for listings (``{"task":"t1",...}``), at most
    ``width`` characters, safe to print; empty for other types and for no payload."""
    if not row.hint:
        return ""
    text = clean(flat(row.hint))
    return text if len(text) <= width else text[: width - 1] + "…"


def payload_text(payload: Any) -> str:
    """A payload as ``read`` shows it: indented JSON, safe to print (:func:`clean_text`)."""
    return clean_text(json.dumps(payload, indent=2, ensure_ascii=False))


def imported_note(type_: str, payload: Any, signer: str) -> Optional[str]:
    """For an ``imported`` message (docs/protocol.md §5): ``Imported from X (mbox, dated D,
    Message-ID M); signed by <signer>, who imported it``, safe to print; None for other types.

    The original sender is a claim the importer copied, never a signature: the line
    says so, and every part of it is :func:`clean`-ed.
    """
    if type_ != "imported" or not isinstance(payload, dict):
        return None
    parts = [clean(payload.get("source", "?"))]
    if payload.get("date"):
        parts.append(f"dated {clean(payload['date'])}")
    if payload.get("message_id"):
        parts.append(f"Message-ID {clean(payload['message_id'])}")
    return (f"Imported from {clean(payload.get('sender', '?'))} ({', '.join(parts)}); "
            f"signed by {clean(signer)}, who imported it")


def snippet_text(snippet: str, start: str = "**", end: str = "**") -> str:
    """A search snippet (:class:`gitmail.api.search.SearchHit`) on one line, without control
    characters (it is text another member wrote), its matches wrapped in ``start``/``end``."""
    out = []
    for i, piece in enumerate(re.split("([\x02\x03])", flat(snippet))):
        out.append((start if piece == "\x02" else end) if i % 2 else clean(piece))
    return "".join(out)
