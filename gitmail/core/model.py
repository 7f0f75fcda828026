"""The one definition of every gitmail format (docs/protocol.md, "The message").

Each format is a pydantic model. Unknown fields are preserved (``extra="allow"``)
so that a newer writer's fields survive a round trip through an older reader,
and they are covered by the Message-ID.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import datetime, timezone
from typing import Any, ClassVar, Literal, Optional, get_args

import orjson
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from gitmail.core.dates import date_seconds, parse_date  # noqa: F401 (one home, pydantic-free)
# The built-in message types (docs/protocol.md §5) live in a module without pydantic: the cache
# relates responses to requests on every listing. Re-exported here.
from gitmail.core.msgtypes import (IMPORTED, MESSAGE_TYPES, PROTOCOL_TYPES, REQUEST_TYPES,  # noqa: F401
                                   RESPONSE_FOR, RESPONSE_OF)
from gitmail.core.objects import MAX_BLOB_READ
from gitmail.errors import CorruptMessageError, UsageError

SCHEMA_VERSION = 1
BODY_LIMIT = 1024 * 1024  # bytes of UTF-8; docs/protocol.md "Limits"
SUBJECT_LIMIT = 200  # characters
SUMMARY_LIMIT = 120  # characters
MAX_RECIPIENTS = 1000
MAX_DEPTH = 32  # nesting of arrays and objects in message.json; docs/protocol.md §4
MAX_INT = 2**63 - 1  # every JSON integer lies in [-2^63, 2^63 - 1]
MAX_BLOB = MAX_BLOB_READ  # bytes of message.json a reader parses at most (and reads at most: objects.py)

Priority = Literal["low", "normal", "high", "urgent"]  # the one list of priorities, lowest first
PRIORITIES: tuple[str, ...] = get_args(Priority)
PRIORITY_RANK = {p: i for i, p in enumerate(reversed(PRIORITIES))}  # 0 = most urgent (sorting)

# Open types (docs/protocol.md §5, "Open types"): any other name of this form carries any JSON
# object (or null) as its payload. ``x-`` names are never given a model by a later version.
OPEN_TYPE = re.compile(r"[a-z][a-z0-9_-]{0,63}")
# A trace id (``--trace-id``, docs/protocol.md §4): 1 to 128 ASCII letters, digits, ``._:-``.
TRACE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
TRACE_ID_MAX = 128

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def type_problem(type_: object) -> Optional[str]:
    """Why ``type_`` is not a message type (docs/protocol.md §5), or None: ``text``, a protocol
    type, or an open type (a lower-case ASCII letter, then up to 63 of ``a-z 0-9 _ -``)."""
    if not isinstance(type_, str):
        return "type is not a string"
    if type_ in MESSAGE_TYPES or OPEN_TYPE.fullmatch(type_):
        return None
    return (f"type {type_[:40]!r} is neither a built-in type nor an open type "
            "(a lower-case letter, then up to 63 of a-z, 0-9, '_', '-')")


def is_open_type(type_: str) -> bool:
    """True for an open type: a valid type name that is not built in (§5)."""
    return type_ not in MESSAGE_TYPES and bool(OPEN_TYPE.fullmatch(type_))


def trace_id_problem(trace_id: object) -> Optional[str]:
    """Why ``trace_id`` is not a valid trace id (§4), or None (null is valid: no trace)."""
    if trace_id is None:
        return None
    if not isinstance(trace_id, str) or not TRACE_ID.fullmatch(trace_id):
        return (f"trace_id must be 1 to {TRACE_ID_MAX} ASCII letters, digits, '.', '_', ':' or '-', "
                "starting with a letter or digit")
    return None


def utcnow() -> datetime:
    """Current time, UTC, microsecond precision."""
    return datetime.now(timezone.utc)


def format_date(d: datetime) -> str:
    """RFC 3339 UTC with microseconds and a ``Z`` suffix (the canonical form)."""
    u = d.astimezone(timezone.utc)
    if u.year >= 1000:  # the same text as strftime below, five times faster (once per message written)
        return u.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    return u.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # %Y does not pad a year below 1000; isoformat does


class Attachment(BaseModel):
    """One attached file. ``oid`` is the sha256 of the content (hex), as in an LFS pointer."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    name: str
    size: int = Field(ge=0, le=MAX_INT)
    media_type: str = "application/octet-stream"
    oid: str
    storage: Literal["lfs", "blob"] = "blob"
    path: str = ""  # path of the pointer or blob in the message commit's tree


class Message(BaseModel):
    """A gitmail message, schema version 1. Stored as ``message.json`` (canonical JSON).

    ``id`` is the Message-ID: the sha256 (hex) of the canonical JSON of every
    other field, so it survives re-parenting of the commit that carries it.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True, defer_build=True)

    schema_version: int = SCHEMA_VERSION
    id: str = ""
    from_: str = Field(alias="from")
    to: list[str]
    date: str  # RFC 3339 UTC, see format_date
    subject: str = ""
    summary: str = ""
    body: str = ""
    priority: Priority = "normal"
    type: str = "text"
    payload: Optional[dict[str, Any]] = None
    request_id: Optional[str] = None
    in_reply_to: Optional[str] = None
    thread: Optional[str] = None
    require_ack: bool = False
    attachments: list[Attachment] = Field(default_factory=list)
    # Groups messages of one piece of work across threads and mailboxes (docs/protocol.md §4).
    # Stored only when set: a message without one has no ``trace_id`` key (so the Message-IDs
    # and bytes of mail written before the field existed are unchanged).
    trace_id: Optional[str] = None
    # End-to-end encryption (docs/protocol.md, "Encryption"): when set, subject,
    # summary, body and payload are empty, attachments carry ciphertext, and the
    # content is in the tree's ``message.age``; see :class:`Envelope`.
    encrypted: Optional[dict[str, Any]] = None
    # sha256 of the stored message.json without its "id" member (set by from_blob).
    _stored_id: Optional[str] = PrivateAttr(default=None)

    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        problem = type_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    def content_dict(self) -> dict[str, Any]:
        """Every field but ``id``, by alias, as stored (the Message-ID input); ``trace_id``
        only when set."""
        d = self.model_dump(by_alias=True, exclude={"id"}, mode="json")
        if d.get("trace_id") is None:
            d.pop("trace_id", None)
        return d

    def compute_id(self) -> str:
        """The Message-ID: sha256 hex of the canonical JSON of :meth:`content_dict`."""
        return hashlib.sha256(canonical_json(self.content_dict(), self._may_float())).hexdigest()

    def _may_float(self) -> bool:
        """Only free-form parts (payload, envelope, unknown fields) can hold floats,
        which change the JSON form; the typed fields never do."""
        return (_has_float(self.payload) or _has_float(self.encrypted) or _has_float(self.model_extra)
                or any(_has_float(a.model_extra) for a in self.attachments))

    def seal(self) -> bytes:
        """Set ``id`` from the content and return the canonical blob (one serialisation)."""
        d = self.content_dict()
        floats = self._may_float()
        self.id = hashlib.sha256(canonical_json(d, floats)).hexdigest()
        d["id"] = self.id
        return canonical_json(d, floats)

    def to_blob(self) -> bytes:
        """Canonical JSON bytes with ``id`` first-class (what goes in the tree)."""
        d = self.content_dict()
        d["id"] = self.id
        return canonical_json(d, self._may_float())

    @property
    def thread_id(self) -> str:
        """The thread this message belongs to: its root's Message-ID."""
        return self.thread or self.id

    def stored_id(self) -> str:
        """The Message-ID the stored bytes stand for (docs/protocol.md §4): sha256 of the
        canonical JSON of the stored object without ``id``; for a message not read
        from a blob, :meth:`compute_id`."""
        return self._stored_id or self.compute_id()

    @classmethod
    def from_blob(cls, data: bytes) -> "Message":
        """Parse a ``message.json`` blob (canonical JSON, §4). Raises :class:`CorruptMessageError`.

        The Message-ID input is taken from the stored object itself, so optional
        keys a writer left out and fields a newer writer added stay covered as stored.
        """
        # When the fast reader answered, the object holds no float: the Message-ID input below
        # is dumped by orjson alone.
        raw, no_float = _parse_canonical(data)
        try:
            _require_keys(raw)
            # strict: a JSON value of another type is refused, never coerced (true is no 1, "5" no 5)
            msg = cls.model_validate(raw, strict=True)
        except (ValueError, ValidationError) as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            if isinstance(e, ValidationError) and e.errors():
                err = e.errors()[0]
                first = f"{'.'.join(str(x) for x in err['loc']) or 'message'}: {err['msg']}"
            raise CorruptMessageError(f"corrupt message blob: {first}") from None
        content = {k: v for k, v in raw.items() if k != "id"}
        msg._stored_id = hashlib.sha256(canonical_json(content, may_float=not no_float)).hexdigest()
        return msg


# The keys a stored message cannot do without (docs/protocol.md §4, "Optional keys"): every other
# key a writer may leave out, and a reader reads it as its default; ``schema_version`` is never
# guessed at.
REQUIRED_KEYS = frozenset({"schema_version", "id", "from", "to", "date"})


def _require_keys(raw: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the first key of :data:`REQUIRED_KEYS` that ``raw`` lacks."""
    missing = sorted(REQUIRED_KEYS - raw.keys())
    if missing:
        raise ValueError(f"{missing[0]}: a required key is missing")


class Envelope(BaseModel):
    """The ``encrypted`` field of an encrypted message (in clear, signed)."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    format: Literal["age-encryption.org/v1"] = "age-encryption.org/v1"
    path: Literal["message.age"] = "message.age"  # docs/protocol.md §9: the one place of the ciphertext
    sha256: str  # of the ciphertext blob at ``path``
    recipients: list[str]  # member names whose keys can open it (the sender included)
    size: int = Field(ge=0, le=MAX_INT)  # plaintext size rounded up to a bucket (bytes)


class SealedAttachment(BaseModel):
    """What the ciphertext says about one attachment (the clear entry has no name)."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    name: str
    media_type: str
    size: int = Field(ge=0, le=MAX_INT)
    sha256: str  # of the plaintext
    cipher_oid: str  # the clear entry's oid: binds this content to this message


class Sealed(BaseModel):
    """The plaintext inside ``message.age``: canonical JSON, padded with spaces to a bucket."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, defer_build=True)

    schema_version: int = SCHEMA_VERSION
    from_: str = Field(alias="from")
    to: list[str]
    subject: str = ""
    summary: str = ""
    body: str = ""
    payload: Optional[dict[str, Any]] = None
    attachments: list[SealedAttachment] = Field(default_factory=list)

    @classmethod
    def from_plaintext(cls, data: bytes) -> "Sealed":
        """The sealed content from its bytes, padding removed: canonical JSON within the bounds
        of ``message.json`` (docs/protocol.md §4: nesting, 64-bit integers, no NaN, the
        canonical form; :func:`parse_canonical`), then the model, strictly typed. Raises
        :class:`CorruptMessageError` or ``ValueError``."""
        raw, _ = _parse_canonical(data)
        return cls.model_validate(raw, strict=True)


def canonical_json(obj: Any, may_float: bool = True) -> bytes:
    """Sorted keys, no insignificant white space, UTF-8 (not ASCII-escaped).

    orjson produces exactly the bytes of ``json.dumps(obj, sort_keys=True,
    separators=(",", ":"), ensure_ascii=False)`` for JSON data, fourteen times
    faster. The standard library takes what orjson writes differently (floats:
    Python writes ``1e-07``, orjson ``1e-7``) or refuses (integers beyond 64 bits).
    """
    if not (may_float and _has_float(obj)):
        try:
            return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
        except (TypeError, orjson.JSONEncodeError):
            pass
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def parse_canonical(data: bytes) -> dict[str, Any]:
    """Parse a stored JSON object that must be in canonical form (docs/protocol.md §4).

    Refused (:class:`CorruptMessageError`, one line): more than :data:`MAX_BLOB`
    bytes, invalid UTF-8 or JSON, not an object, ``NaN``/``Infinity``, nesting
    deeper than :data:`MAX_DEPTH`, an integer outside 64-bit signed, a string
    with a lone surrogate, duplicate keys, and any byte sequence other than
    :func:`canonical_json` of the parsed value.
    """
    return _parse_canonical(data)[0]


def _parse_canonical(data: bytes) -> tuple[dict[str, Any], bool]:
    """:func:`parse_canonical`, and whether the fast reader answered (:func:`_canonical_fast`:
    then the object holds no float, so its canonical dump needs no float-aware writer)."""
    def refuse(why: str) -> CorruptMessageError:
        return CorruptMessageError(f"corrupt message blob: {why}")

    if len(data) > MAX_BLOB:
        raise refuse(f"over {MAX_BLOB} bytes")
    fast = _canonical_fast(data)
    if fast is not None:
        return fast, True
    if data.count(b"[") + data.count(b"{") > MAX_DEPTH and _depth_over(data, MAX_DEPTH):
        raise refuse(f"nested deeper than {MAX_DEPTH} levels")

    try:
        raw = strict_json(data)
    except ValueError as e:
        raise refuse(str(e)) from None
    if not isinstance(raw, dict):
        raise refuse("not a JSON object")
    try:
        _check_values(raw)
        again = canonical_json(raw)
    except (ValueError, UnicodeError) as e:
        raise refuse(str(e).splitlines()[0] if str(e) else "not canonical") from None
    if again != data:
        raise refuse("not in canonical form (docs/protocol.md §4)")
    return raw, False


def _canonical_fast(data: bytes) -> Optional[dict[str, Any]]:
    """What :func:`parse_canonical` returns for ``data``, or None when this cannot tell (then the
    strict path decides). A speed-up for the common blob, one C parse and one C dump instead of the
    strict reader's walk (issue 16 item 4): it answers only for an object that nests at most
    :data:`MAX_DEPTH` deep, holds no float and no integer outside 64-bit signed, and whose
    :func:`canonical_json` is ``data`` itself; for anything else (refused, floats, ...) it says
    nothing. ``tests/core/test_canonical_fast.py`` keeps it equal to the strict path."""
    if data.count(b"[") + data.count(b"{") > MAX_DEPTH:
        return None
    try:
        # orjson refuses what the strict reader refuses here: invalid UTF-8, lone surrogates,
        # NaN/Infinity; an integer beyond 64 bits comes back as a float (sent to the strict path).
        raw = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if type(raw) is not dict or _has_float_or_wide(raw):
        return None
    try:
        again = orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return None
    return raw if again == data else None


def _has_float_or_wide(obj: Any) -> bool:
    """Whether a float, or an integer outside 64-bit signed, lies anywhere in ``obj`` (parsed JSON:
    dicts, lists, str, int, bool, None, float). Iterative."""
    stack = [obj]
    while stack:
        o = stack.pop()
        t = type(o)
        if t is str or o is None or t is bool:
            continue
        if t is dict:
            stack.extend(o.values())
        elif t is list:
            stack.extend(o)
        elif t is int:
            if not -MAX_INT - 1 <= o <= MAX_INT:
                return True
        else:
            return True  # a float (or anything else): the strict path decides
    return False


def strict_json(data: bytes, floats: bool = True) -> Any:
    """``data`` (UTF-8 JSON text) parsed strictly: no ``NaN``/``Infinity``, integers of at most 20
    characters (so a hostile 10-million-digit number is refused before it is converted), and
    with ``floats=False`` no fractions or exponents either. The caller bounds size and nesting
    first (:func:`_depth_over`). Raises ``ValueError`` with a one-line reason. The one strict
    JSON reader of message blobs and of the shared state log."""

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    def bounded_int(text: str) -> int:
        if len(text) > 20:
            raise ValueError("integer out of range")
        return int(text)

    extra: dict[str, Any] = {} if floats else {"parse_float": no_constant}
    try:
        return json.loads(data.decode("utf-8"), parse_constant=no_constant, parse_int=bounded_int, **extra)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise ValueError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None


def _depth_over(data: bytes, limit: int) -> bool:
    """True when arrays/objects in the JSON text ``data`` nest deeper than ``limit``
    (a linear scan that skips strings; it never recurses)."""
    depth = 0
    in_str = esc = False
    for b in data:
        if in_str:
            if esc:
                esc = False
            elif b == 0x5C:
                esc = True
            elif b == 0x22:
                in_str = False
        elif b == 0x22:
            in_str = True
        elif b in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        elif b in (0x5D, 0x7D):
            depth -= 1
    return False


def _check_values(obj: Any) -> None:
    """Raise ValueError for an integer outside 64-bit signed, a float that is NaN or infinite
    (no JSON number: a writer turned it into null without a word) or a string holding a lone
    surrogate."""
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, float):
            if not math.isfinite(o):
                raise ValueError(f"{o!r} is not a JSON number")
            continue
        if isinstance(o, bool) or o is None:
            continue
        if isinstance(o, int):
            if not -MAX_INT - 1 <= o <= MAX_INT:
                raise ValueError("integer out of range")
        elif isinstance(o, str):
            o.encode("utf-8")  # UnicodeEncodeError (a ValueError) for a lone surrogate
        elif isinstance(o, dict):
            for k, v in o.items():
                k.encode("utf-8")
                stack.append(v)
        elif isinstance(o, list):
            stack.extend(o)


def _nesting(obj: Any) -> int:
    """How deep arrays and objects nest in ``obj`` (an object holding nothing nested: 1);
    iterative, so a hostile depth cannot exhaust the stack."""
    deepest = 0
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, dict):
            deepest = max(deepest, d)
            stack.extend((v, d + 1) for v in o.values())
        elif isinstance(o, list):
            deepest = max(deepest, d)
            stack.extend((v, d + 1) for v in o)
    return deepest


def _has_float(obj: Any) -> bool:
    """Whether a float lies anywhere in ``obj`` (dicts and lists walked; iterative, and
    exact types first: it runs several times for every message written or read)."""
    stack = [obj]
    while stack:
        o = stack.pop()
        t = type(o)
        if t is str or t is int or t is bool or o is None:
            continue
        if t is dict:
            stack.extend(o.values())
        elif t is list:
            stack.extend(o)
        elif isinstance(o, float):
            return True
        elif isinstance(o, dict):
            stack.extend(o.values())
        elif isinstance(o, list):
            stack.extend(o)
    return False


def is_message_id(s: str) -> bool:
    """True for a full 64-hex Message-ID."""
    return bool(_HEX64.match(s))


# -- structured protocol payloads (docs/protocol.md, "Protocol messages") -----


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow", defer_build=True)


class TaskAssign(_Payload):
    task_id: str
    title: str
    details: str = ""
    acceptance_criteria: list[str] = Field(default_factory=list)


class TaskUpdate(_Payload):
    task_id: str
    status: Literal["pending", "in_progress", "blocked", "completed", "failed", "cancelled"]
    note: str = ""


class Handoff(_Payload):
    task_id: Optional[str] = None
    summary: str
    next_steps: list[str] = Field(default_factory=list)


class Question(_Payload):
    question: str
    context: str = ""


class Answer(_Payload):
    answer: str


class ShutdownRequest(_Payload):
    reason: str = ""


class ShutdownResponse(_Payload):
    approve: bool
    reason: str = ""


class PlanApprovalRequest(_Payload):
    plan: str


class PlanApprovalResponse(_Payload):
    approve: bool
    feedback: str = ""


class Ack(_Payload):
    pass


IMPORT_SOURCES: tuple[str, ...] = ("mbox", "maildir", "team-chat")
IMPORT_TEXT_LIMIT = 998  # characters of an original header kept (RFC 5322's line limit)
IMPORT_MAX_TO = 100  # original recipients kept


class Imported(_Payload):
    """What an imported message says about its original (docs/protocol.md §5, "Imported messages").

    The importing member signs the message; these fields are the original's
    claims, never verified: ``sender`` and ``to`` as written in the archive,
    ``date`` its date as RFC 3339 UTC (null when missing or unreadable),
    ``message_id`` its Message-ID (or ``sha256:<hex>`` of its bytes when it had
    none): with ``source`` the key that makes imports idempotent.
    """

    source: Literal["mbox", "maildir", "team-chat"]
    sender: str = Field(max_length=IMPORT_TEXT_LIMIT)
    to: list[str] = Field(default_factory=list, max_length=IMPORT_MAX_TO)
    date: Optional[str] = None
    message_id: str = Field(min_length=1, max_length=IMPORT_TEXT_LIMIT)
    original_type: Optional[str] = Field(default=None, max_length=IMPORT_TEXT_LIMIT)
    trace_id: Optional[str] = Field(default=None, max_length=IMPORT_TEXT_LIMIT)
    task_id: Optional[str] = Field(default=None, max_length=IMPORT_TEXT_LIMIT)
    # Keys written only when known (docs/protocol.md §5: "absent when unknown"); a reader also
    # takes null, which gitmail wrote for them before 2026-12-01.
    OMIT_WHEN_NONE: ClassVar[tuple[str, ...]] = ("original_type", "trace_id", "task_id")

    @field_validator("sender", "message_id", "original_type", "trace_id", "task_id")
    @classmethod
    def _one_line(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and _CONTROL.search(v):
            raise ValueError("control characters are not allowed")
        return v

    @field_validator("to")
    @classmethod
    def _short_lines(cls, v: list[str]) -> list[str]:
        for a in v:
            if len(a) > IMPORT_TEXT_LIMIT or _CONTROL.search(a):
                raise ValueError(f"each entry is one line of at most {IMPORT_TEXT_LIMIT} characters")
        return v

    @field_validator("date")
    @classmethod
    def _rfc3339(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and parse_date(v) is None:
            raise ValueError("not RFC 3339 UTC (2026-11-22T02:05:58.123456Z)")
        return v


# C0 and C1 controls, line/paragraph separators, bidi controls: never in a one-line import field.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")


PAYLOAD_MODELS: dict[str, type[_Payload]] = {
    "task_assign": TaskAssign,
    "task_update": TaskUpdate,
    "handoff": Handoff,
    "question": Question,
    "answer": Answer,
    "shutdown_request": ShutdownRequest,
    "shutdown_response": ShutdownResponse,
    "plan_approval_request": PlanApprovalRequest,
    "plan_approval_response": PlanApprovalResponse,
    "ack": Ack,
    IMPORTED: Imported,
}


def validate_payload(type_: str, payload: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """Validate ``payload`` against the model of ``type_``; return it normalised.

    An open type (§5) takes any JSON object, or None, as it is. Raises
    :class:`UsageError` with the first validation problem in one line.
    """
    if type_ == "text":
        if payload is not None:
            raise UsageError("a text message takes no --payload (use --type for a protocol message)")
        return None
    problem = type_problem(type_)
    if problem:
        raise UsageError(f"{problem}; built in: {', '.join(MESSAGE_TYPES)}")
    if payload is not None:
        if not isinstance(payload, dict):
            raise UsageError(f"payload for {type_} must be a JSON object")
        if _nesting(payload) > MAX_DEPTH - 1:  # message.json itself is the first level
            raise UsageError(f"payload for {type_}: nested deeper than {MAX_DEPTH} levels in message.json")
        try:
            _check_values(payload)
        except ValueError as e:
            raise UsageError(f"payload for {type_}: {str(e).splitlines()[0]}") from None
    model = PAYLOAD_MODELS.get(type_)
    if model is None:
        return payload
    try:
        out = model.model_validate(payload or {}, strict=True).model_dump(mode="json")  # §4: nothing converted
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "payload"
        raise UsageError(f"payload for {type_}: {loc}: {err['msg']}") from None
    for k in getattr(model, "OMIT_WHEN_NONE", ()):
        if out.get(k) is None:
            out.pop(k, None)
    return out


# -- directory ----------------------------------------------------------------


class Member(BaseModel):
    """A member entry, stored at ``members/<ref-safe name>.json`` on the directory ref."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    schema_version: int = SCHEMA_VERSION
    name: str
    display_name: str = ""
    email: str
    signing_key: str  # "ssh-ed25519 AAAA..." (OpenSSH public key, no comment)
    previous_keys: list[str] = Field(default_factory=list)
    encryption_key: Optional[str] = None
    role: Literal["admin", "member"] = "member"
    kind: Literal["human", "agent"] = "human"
    # Compromised keys (``gitmail key revoke``): still the member's (a key is never
    # reused), never valid: every message they sign is flagged (docs/protocol.md §8).
    revoked_keys: list[str] = Field(default_factory=list)
    # For each key in ``previous_keys``: the tips of the member's sent mailboxes
    # (``gitmail/mail/<recipient>/<member>``) when the key was retired; a message
    # signed by that key is good only at or below that tip (docs/protocol.md §8).
    retired: dict[str, dict[str, str]] = Field(default_factory=dict)

    def all_keys(self) -> list[str]:
        """The keys whose signatures name this member: current first, then retired (not revoked)."""
        return [self.signing_key, *self.previous_keys]

    def owned_keys(self) -> list[str]:
        """Every key this entry holds: current, retired and revoked."""
        return [self.signing_key, *self.previous_keys, *self.revoked_keys]

    def stored(self) -> dict[str, Any]:
        """The entry as stored (``members/<name>.json``): the key-history fields only when set."""
        empty = {k for k in ("revoked_keys", "retired") if not getattr(self, k)}
        return self.model_dump(mode="json", exclude=empty)


class Group(BaseModel):
    """A group, stored at ``groups/<ref-safe name>.json``; addressed as ``team:NAME``."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    schema_version: int = SCHEMA_VERSION
    name: str
    members: list[str]


# Bounds of the org settings (docs/protocol.md "Limits"): a value outside them is refused by
# ``gitmail org`` and makes a directory commit malformed (so no clone or guard ever acts on it).
BODY_LIMIT_MAX = 64 * 1024 * 1024
ATTACHMENT_LIMIT_MAX = 4 * 1024 * 1024 * 1024
ATTACHMENT_COUNT_MAX = 1000
ATTACHMENT_TOTAL_MAX = 16 * 1024 * 1024 * 1024


class OrgPolicy(BaseModel):
    """Org-wide settings, stored at ``org.json`` on the directory ref (docs/protocol.md §8, §13).

    Sizes are bytes. ``attachment_limit``: per attachment; ``attachment_count_limit``:
    attachments per message; ``attachment_total_limit``: their sum per message (never
    effectively below ``attachment_limit``). Each is at least 1 and at most the ``*_MAX``
    above; pydantic raises ``ValidationError`` otherwise.
    """

    model_config = ConfigDict(extra="allow", defer_build=True)

    schema_version: int = SCHEMA_VERSION
    body_limit: int = Field(default=BODY_LIMIT, ge=1, le=BODY_LIMIT_MAX)
    attachment_limit: int = Field(default=10 * 1024 * 1024, ge=1, le=ATTACHMENT_LIMIT_MAX)
    attachment_count_limit: int = Field(default=20, ge=1, le=ATTACHMENT_COUNT_MAX)
    attachment_total_limit: int = Field(default=50 * 1024 * 1024, ge=1, le=ATTACHMENT_TOTAL_MAX)
    attachment_storage: Literal["lfs", "blob"] = "blob"
    encryption: Literal["required", "default", "off"] = "default"
    # Names mixing scripts (Latin with Cyrillic, ...) are refused unless this is set
    # (docs/protocol.md §2, "Confusable names").
    allow_mixed_script: bool = False
    # The org's LFS store, when it is not the one derived from the remote (docs/attachments.md);
    # a member's own git config (lfs.url, remote.<name>.lfsurl) still comes first.
    lfs_url: Optional[str] = Field(default=None, pattern=r"^https?://[^\s]+$", max_length=2048)
    # How the directory's tree is laid out (docs/protocol.md §8, "Layouts"): 1 flat (orgs made
    # before it existed; a missing field), 2 fan-out (new orgs). Only ever raised, by an admin.
    directory_layout: int = Field(default=1, ge=1, le=2)
    # Members may pack their inbox refs away (docs/protocol.md §3, "Packed mailboxes"): set
    # once every member's gitmail reads packed refs (an older one would see a packed pair as
    # deleted). Only ever switched on, by an admin.
    packing: bool = False


# -- read / archive state -----------------------------------------------------


class MailboxState(BaseModel):
    """Flags of one mailbox ref as sorted, merged ranges of ordinals (1-based)."""

    model_config = ConfigDict(defer_build=True)  # built on first use, not by every import (a send)

    read: list[tuple[int, int]] = Field(default_factory=list)
    archived: list[tuple[int, int]] = Field(default_factory=list)


class State(BaseModel):
    """A member's local read/archive state: the blob at ``refs/gitmail/state/<member>``."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    schema_version: int = SCHEMA_VERSION
    mailboxes: dict[str, MailboxState] = Field(default_factory=dict)
