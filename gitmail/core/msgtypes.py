"""The built-in message types of docs/protocol.md §5 and how requests and responses pair up.

Light on purpose (no pydantic): the cache relates a response to the request it answers on every
listing (:func:`gitmail.core.cache.answers`), where loading the message model would cost more
than the listing. :mod:`gitmail.core.model` re-exports these names.
"""

from __future__ import annotations

PROTOCOL_TYPES: tuple[str, ...] = (
    "task_assign",
    "task_update",
    "handoff",
    "question",
    "answer",
    "shutdown_request",
    "shutdown_response",
    "plan_approval_request",
    "plan_approval_response",
    "ack",
)
# ``imported``: a message brought in from another archive by ``gitmail import`` (docs/protocol.md §5).
IMPORTED = "imported"
MESSAGE_TYPES: tuple[str, ...] = ("text", *PROTOCOL_TYPES, IMPORTED)
# Response types and the request type whose request_id they must echo.
RESPONSE_OF = {
    "shutdown_response": "shutdown_request",
    "plan_approval_response": "plan_approval_request",
    "answer": "question",
}
# Request types and the response type that answers each (the same pairs, the other way).
RESPONSE_FOR = {req: resp for resp, req in RESPONSE_OF.items()}
REQUEST_TYPES: tuple[str, ...] = tuple(RESPONSE_FOR)
