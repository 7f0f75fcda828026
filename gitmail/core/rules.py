"""What a reader checks in a message's content (docs/protocol.md §4, "What a reader checks").

One home for the content rules, shared by the writer (which refuses to write
what readers would call malformed), the client verifier and the guard
(:func:`gitmail.core.store.check_message`) and the decryption of sealed
content (:mod:`gitmail.core.private`).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from datetime import datetime, timedelta, timezone
from typing import Optional, Sequence

from pydantic import ValidationError

from gitmail.core.address import BROADCAST, GROUP_PREFIX, MAX_NAME_BYTES, check_address
from gitmail.core.model import (
    IMPORTED,
    MAX_RECIPIENTS,
    PAYLOAD_MODELS,
    REQUEST_TYPES,
    RESPONSE_OF,
    SCHEMA_VERSION,
    SUBJECT_LIMIT,
    SUMMARY_LIMIT,
    Envelope,
    Message,
    SealedAttachment,
    is_message_id,
    is_open_type,
    parse_date,
    trace_id_problem,
    type_problem,
)
from gitmail.errors import GitmailError

MAX_FUTURE = timedelta(days=1)  # how far past the verifier's clock a message date may lie
FUTURE_WORDS = "lies more than a day in the future"  # the one verdict that depends on when it is given
_FUTURE = re.compile(r"date (\S+) " + FUTURE_WORDS)


def clock() -> datetime:
    """The verifier's clock (UTC): the one source of "now" for the rules."""
    return datetime.now(timezone.utc)


def future_claim(detail: str) -> Optional[datetime]:
    """The date a "date ... lies more than a day in the future" verdict was given for, or
    None for any other verdict: such a verdict stands only until the verifier's clock comes
    within :data:`MAX_FUTURE` of it (a reader whose clock was behind, or mail sent near the
    edge), so a cache checks those messages again then (:func:`gitmail.core.cache.ingest`)."""
    m = _FUTURE.search(detail or "")
    return parse_date(m.group(1)) if m else None


REQUEST_ID_MAX = 64  # characters


def _control(s: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in s)


# Characters: no address is longer (a name is at most MAX_NAME_BYTES of UTF-8, a group "team:NAME").
CACHED_ADDRESS = len(GROUP_PREFIX) + MAX_NAME_BYTES


def _address_problem(a: str) -> Optional[str]:
    """Why ``a`` is not an address in normal form, or None. Verdicts of short strings are
    cached (the same few addresses recur in every message of a sync); a longer string, never
    an address, is checked afresh, so hostile megabyte-long "addresses" cannot fill the cache."""
    return _cached_address_problem(a) if len(a) <= CACHED_ADDRESS else _check_address(a)


def _check_address(a: str) -> Optional[str]:
    try:
        check_address(a)
    except GitmailError as e:
        return str(e)
    return None


_cached_address_problem = functools.lru_cache(maxsize=4096)(_check_address)


def content_problem(msg: Message, body_limit: int, now: Optional[datetime] = None) -> Optional[str]:
    """Why ``msg`` breaks the rules of docs/protocol.md §4 ("What a reader checks"), or None.

    The same function serves the client, the guard and `gitmail read`.
    ``body_limit`` is the org policy's (bytes of UTF-8); ``now`` defaults to the clock.
    """
    if msg.schema_version != SCHEMA_VERSION:
        return f"schema_version {msg.schema_version} is not supported (this reader knows {SCHEMA_VERSION})"
    if not is_message_id(msg.id):
        return "id is not 64 lower-case hex digits"
    p = _address_problem(msg.from_)
    if p or msg.from_.startswith("team:") or msg.from_ == "*":
        return f"from: {p or 'not a member name'}"
    if not msg.to:
        return "to: no recipient"
    if len(msg.to) > MAX_RECIPIENTS:
        return f"to: more than {MAX_RECIPIENTS} recipients"
    if len(set(msg.to)) != len(msg.to):
        return "to: a recipient is listed twice"
    for a in msg.to:
        p = _address_problem(a)
        if p:
            return f"to: {p}"
    d = parse_date(msg.date)
    if d is None:
        return f"date {msg.date[:40]!r} is not RFC 3339 UTC in the form 2026-11-22T02:05:58.123456Z (year 1970 or later)"
    if d > (now or clock()) + MAX_FUTURE:
        return f"date {msg.date} {FUTURE_WORDS}"
    if len(msg.subject) > SUBJECT_LIMIT:
        return f"subject over {SUBJECT_LIMIT} characters"
    if len(msg.summary) > SUMMARY_LIMIT:
        return f"summary over {SUMMARY_LIMIT} characters"
    if len(msg.body.encode("utf-8")) > body_limit:
        return f"body over the org's limit of {body_limit} bytes"
    p = _nul_problem(msg)
    if p:
        return p
    for field in ("thread", "in_reply_to"):
        v = getattr(msg, field)
        if v is not None and not is_message_id(v):
            return f"{field} is not a Message-ID"
    if msg.request_id is not None and not (0 < len(msg.request_id) <= REQUEST_ID_MAX and not _control(msg.request_id)):
        return f"request_id must be 1 to {REQUEST_ID_MAX} characters without control characters"
    p = trace_id_problem(msg.trace_id)
    if p:
        return p
    p = recipients_problem(msg.type, msg.to) or request_id_problem(msg.type, msg.request_id)
    if p:
        return p
    for i, att in enumerate(msg.attachments):
        if not is_message_id(att.oid):  # the same form: sha256, 64 lower-case hex digits
            return f"attachments.{i}.oid is not 64 lower-case hex digits"
        if not is_media_type(att.media_type):
            return f"attachments.{i}.media_type is not a media type (type/subtype, RFC 6838)"
    if msg.encrypted is not None:
        if msg.subject or msg.summary or msg.body or msg.payload is not None:
            return "encrypted message with subject, summary, body or payload in clear"
        try:
            env = Envelope.model_validate(msg.encrypted, strict=True)
        except ValueError as e:
            err = e.errors()[0] if isinstance(e, ValidationError) and e.errors() else None
            where = ".".join(str(x) for x in err["loc"]) if err else ""
            return f"encrypted{'.' + where if where else ''}: {err['msg'] if err else str(e).splitlines()[0]}"
        if not is_message_id(env.sha256):
            return "encrypted.sha256 is not 64 lower-case hex digits"
        return _readers_problem(msg.from_, env.recipients, msg.to)
    return payload_problem(msg.type, msg.payload)


def recipients_problem(type_: str, to: list[str]) -> Optional[str]:
    """Why a message of type ``type_`` cannot go to ``to`` (docs/protocol.md §5), or None: a
    built-in protocol type (not ``text``, not an open type) goes to members, never to ``*`` or
    a group; an ``imported`` message to exactly one member. The writer and every reader."""
    if type_ == "text" or is_open_type(type_):
        return None
    if any(a == BROADCAST or a.startswith(GROUP_PREFIX) for a in to):
        return f"a {type_} message cannot be broadcast (to * or a group): name its recipients"
    if type_ == IMPORTED and len(to) != 1:
        return "an imported message goes to one member's mailbox"
    return None


def request_id_problem(type_: str, request_id: Optional[str]) -> Optional[str]:
    """Why a request or a response (docs/protocol.md §5) has no ``request_id``, or None: a
    request gets one from its writer, and a response echoes its request's."""
    if request_id is None and (type_ in REQUEST_TYPES or type_ in RESPONSE_OF):
        return f"a {type_} message carries no request_id"
    return None


def _readers_problem(sender: str, readers: list[str], to: Sequence[str]) -> Optional[str]:
    """Why the envelope's ``recipients`` (the readers, §9) are not member names in normal form,
    each once, the sender and every member ``to`` names directly among them; or None. (Who a
    group or ``*`` stood for depends on the directory when the message was sent, which a
    later reader does not have; a member named in ``to`` needs no directory.)"""
    if len(set(readers)) != len(readers):
        return "encrypted.recipients: a reader is listed twice"
    for r in readers:
        p = _address_problem(r)
        if p or r == BROADCAST or r.startswith(GROUP_PREFIX):
            return f"encrypted.recipients: {p or 'not a member name'}"
    if sender not in readers:
        return "encrypted.recipients: the sender is not among the readers"
    left = [t for t in to if t != BROADCAST and not t.startswith(GROUP_PREFIX) and t not in readers]
    if left:
        return f"encrypted.recipients: {left[0]!r}, a recipient, is not among the readers"
    return None


def _nul_problem(msg: Message) -> Optional[str]:
    """A NUL (U+0000) in subject, summary or body: git cannot carry it in a commit message
    (§6 renders subject and body there), so such a message could never match its commit."""
    for field in ("subject", "summary", "body"):
        if "\x00" in getattr(msg, field):
            return f"{field} contains a NUL character (U+0000)"
    return None


def sealed_problem(opened: Message, attachments: Sequence[SealedAttachment], body_limit: int) -> Optional[str]:
    """Why the decrypted fields of an encrypted message break §4's rules (subject and summary
    limits, the body within ``body_limit`` bytes, payload shape for its type, the media types
    of its sealed ``attachments``), or None. The whole sealed content is also bounded by the
    clear envelope's ``size`` (:func:`gitmail.core.private.open_message`)."""
    if len(opened.body.encode("utf-8")) > body_limit:
        return f"body over the org's limit of {body_limit} bytes"
    if len(opened.subject) > SUBJECT_LIMIT:
        return f"subject over {SUBJECT_LIMIT} characters"
    if len(opened.summary) > SUMMARY_LIMIT:
        return f"summary over {SUMMARY_LIMIT} characters"
    types = [a.media_type for a in attachments] or [a.media_type for a in opened.attachments]
    for i, media_type in enumerate(types):
        if not is_media_type(media_type):
            return f"attachments.{i}.media_type is not a media type (type/subtype, RFC 6838)"
    return _nul_problem(opened) or payload_problem(opened.type, opened.payload)


# RFC 6838 §4.2: type-name "/" subtype-name, each a restricted-name (a letter or digit, then up to
# 126 of letters, digits and ! # $ & - ^ _ . +); no parameters, no white space. What the sender
# writes (mimetypes.guess_type, or application/octet-stream); a header value once exported.
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")


def is_media_type(value: str) -> bool:
    """Whether ``value`` is a media type ``type/subtype`` (:data:`_MEDIA_TYPE`, ASCII only)."""
    return value.isascii() and _MEDIA_TYPE.fullmatch(value) is not None


def payload_problem(type_: str, payload: object) -> Optional[str]:
    """Why ``payload`` is not a valid payload of message type ``type_`` (§5), or None.

    ``text``: null. A protocol type: valid for its model. An open type: null or
    any JSON object (its size and depth are bounded by those of ``message.json``, §4).
    """
    if type_ == "text":
        return None if payload is None else "a text message has a payload"
    problem = type_problem(type_)
    if problem:
        return problem
    model = PAYLOAD_MODELS.get(type_)
    if model is None:
        return None if payload is None or isinstance(payload, dict) else f"payload for {type_}: not a JSON object"
    try:
        model.model_validate(payload if payload is not None else {}, strict=True)  # §4: a reader converts nothing
    except ValueError as e:
        errs = getattr(e, "errors", None)
        if callable(errs):
            err = errs()[0]
            return f"payload for {type_}: {'.'.join(str(x) for x in err['loc']) or 'payload'}: {err['msg']}"
        return f"payload for {type_}: {str(e).splitlines()[0]}"
    return None
