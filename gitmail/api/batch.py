"""``gitmail send --batch``: many messages from JSON Lines, checked first, sent in one push.

Each line of the input is one JSON object, a :class:`BatchLine`; blank lines are
ignored. Every line is parsed and composed (:func:`gitmail.api.send.prepare`, the
one composer) before anything is written: the first bad line raises one error
naming its line number and nothing is sent. Then all messages go through the
bulk writer and one delivery round. Part of the library API (:mod:`gitmail.api`).
"""

from __future__ import annotations

import json
from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr, ValidationError

from gitmail.api.results import BatchItem, BatchReport
from gitmail.api.send import Draft, SendResult, send_batch
from gitmail.api.session import RepoLike
from gitmail.errors import UsageError


class BatchLine(BaseModel):
    """One line of a batch file: the fields of ``gitmail send``; unknown fields are an error."""

    model_config = ConfigDict(extra="forbid")

    to: Union[StrictStr, list[StrictStr]]
    """A member name, ``*`` or ``team:NAME``, or a list of them."""
    body: StrictStr = ""
    """The message text (may be empty for a protocol type)."""
    subject: Optional[StrictStr] = None
    """Default: the body's first line."""
    summary: Optional[StrictStr] = None
    """Default: the start of the body."""
    priority: StrictStr = "normal"
    """``low``, ``normal``, ``high`` or ``urgent``."""
    type: StrictStr = "text"
    """``text`` or a protocol type (docs/protocol.md §5)."""
    payload: Optional[dict[str, Any]] = None
    """The payload of a protocol type."""
    reply_to: Optional[StrictStr] = None
    """Message-ID (or a unique prefix) this one answers."""
    request_id: Optional[StrictStr] = None
    """The request_id a response echoes."""
    require_ack: StrictBool = False
    """Ask the recipients for a signed receipt."""
    trace_id: Optional[StrictStr] = None
    """The trace it belongs to (``gitmail trace``); a reply inherits its parent's when absent."""

    def draft(self) -> Draft:
        return Draft(to=[self.to] if isinstance(self.to, str) else list(self.to), body=self.body,
                     subject=self.subject, summary=self.summary, priority=self.priority, type=self.type,
                     payload=self.payload, reply_to=self.reply_to, request_id=self.request_id,
                     require_ack=self.require_ack, trace_id=self.trace_id)


class _Twice(ValueError):
    pass


def _once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys each come once: ``{"to": "alex", "to": "max"}`` went to max
    alone, without a word (json keeps the last)."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _Twice(f"key {k!r} given twice")
        out[k] = v
    return out


def parse_jsonl(data: bytes) -> list[tuple[int, BatchLine]]:
    """The non-blank lines of ``data`` with their 1-based line numbers. Raises
    :class:`UsageError` ``line N: ...`` for the first line that is not UTF-8, not a JSON
    object, or not a :class:`BatchLine` (unknown or mistyped field), and for no line at all."""
    out = []
    for n, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"), object_pairs_hook=_once)
        except UnicodeDecodeError:
            raise UsageError(f"line {n}: not UTF-8") from None
        except _Twice as e:
            raise UsageError(f"line {n}: {e}") from None
        except RecursionError:
            raise UsageError(f"line {n}: not JSON (nested too deeply)") from None
        except ValueError as e:
            why = getattr(e, "msg", None) or str(e).splitlines()[0]
            raise UsageError(f"line {n}: not JSON ({why})") from None
        if not isinstance(obj, dict):
            raise UsageError(f"line {n}: not a JSON object")
        try:
            out.append((n, BatchLine.model_validate(obj)))
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err["loc"]) or "line"
            raise UsageError(f"line {n}: {loc}: {err['msg']}") from None
    if not out:
        raise UsageError("the batch is empty: no message line")
    return out


def send_jsonl(repo: RepoLike, data: bytes, *, as_: Optional[str] = None,
               encrypt: Optional[bool] = None) -> BatchReport:
    """Send every message of a JSON Lines batch (:func:`parse_jsonl`) with
    :func:`gitmail.api.send.send_batch`: all checked first (errors ``line N: ...``, of the
    kind :func:`gitmail.api.send.send` raises; nothing written), one pack, one push."""
    lines = parse_jsonl(data)
    results = send_batch(repo, [bl.draft() for _, bl in lines], as_=as_, encrypt=encrypt,
                         labels=[f"line {n}" for n, _ in lines])
    return BatchReport(messages=[_item(n, r) for (n, _), r in zip(lines, results)])


def _item(n: int, r: SendResult) -> BatchItem:
    from gitmail.api.session import SHORT_ID

    m = r.message
    return BatchItem(line=n, id=m.id, short_id=m.id[:SHORT_ID], to=r.recipients, subject=m.subject, type=m.type,
                     request_id=m.request_id, encrypted=r.encrypted, outcome=r.outcome, reason=r.reason,
                     delivered=r.delivered, queued=r.queued, refused=r.refused, queued_in=r.queued_in, kind=r.kind)
