"""The fast reader of canonical message blobs (``model._canonical_fast``, issue 16 item 4) against
the strict one it stands in for: whenever the fast one answers, the strict one gives the same
object; the fast one never accepts what the strict one refuses."""

from __future__ import annotations

import json
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitmail.core import model
from gitmail.core.model import MAX_INT, canonical_json, parse_canonical
from gitmail.errors import CorruptMessageError

# JSON values with the awkward parts: integers at and beyond the 64-bit bounds, floats, control
# characters, non-ASCII and astral text, surrogate-range code points, deep nesting.
_ints = st.one_of(st.integers(-10, 10), st.sampled_from([MAX_INT, MAX_INT + 1, -MAX_INT - 1, -MAX_INT - 2,
                                                            2**64 - 1, 2**64, 10**30]),
                  st.integers(-(2**70), 2**70))
_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12) | st.sampled_from(
    ["", "id", "a\u2028b", "\x00", "\x7f", "é", "\U0001f600", "\\", '"', "\u00e9\u0301"])
_scalars = st.one_of(st.none(), st.booleans(), _ints, st.floats(allow_nan=False, allow_infinity=False), _text)
_json = st.recursive(_scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(_text, kids, max_size=4),
                     max_leaves=40)
_objects = st.dictionaries(_text, _json, max_size=6)


def _strict(data: bytes) -> Optional[dict[str, Any]]:
    """The strict path alone (the fast one switched off): the parsed object, or None if refused."""
    real = model._canonical_fast
    try:
        model._canonical_fast = lambda data: None
        return parse_canonical(data)
    except CorruptMessageError:
        return None
    finally:
        model._canonical_fast = real


def _agrees(data: bytes) -> None:
    fast = model._canonical_fast(data)
    if fast is not None:
        strict = _strict(data)
        assert strict is not None, data
        assert fast == strict and canonical_json(fast) == data
        assert [type(v) for v in fast.values()] == [type(v) for v in strict.values()]
    # and parse_canonical as a whole decides as the strict path does
    strict = _strict(data)
    try:
        got: Optional[dict[str, Any]] = parse_canonical(data)
    except CorruptMessageError:
        got = None
    assert got == strict


def _variants(obj: Any) -> list[bytes]:
    """The canonical bytes of ``obj`` and near-misses: other spellings of the same value."""
    out = [json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"),
           json.dumps(obj, sort_keys=True, separators=(",", ":")).encode(),  # \\u escapes
           json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"),  # unsorted
           json.dumps(obj, sort_keys=True, ensure_ascii=False).encode("utf-8", "surrogatepass")]  # spaces
    try:
        out.append(canonical_json(obj))
    except (TypeError, ValueError, UnicodeError):
        pass
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_objects)
def test_fast_reader_agrees_with_the_strict_one(obj: dict[str, Any]) -> None:
    for data in _variants(obj):
        _agrees(data)


@settings(max_examples=300, deadline=None)
@given(_objects, st.data())
def test_fast_reader_agrees_on_altered_bytes(obj: dict[str, Any], data: st.DataObject) -> None:
    blob = bytearray(canonical_json(obj))
    for _ in range(data.draw(st.integers(1, 3))):
        if not blob:
            break
        i = data.draw(st.integers(0, len(blob) - 1))
        op = data.draw(st.sampled_from(["flip", "drop", "dup", "insert"]))
        if op == "flip":
            blob[i] ^= data.draw(st.integers(1, 255))
        elif op == "drop":
            del blob[i]
        elif op == "dup":
            blob[i:i] = blob[i:i + 1]
        else:
            blob[i:i] = data.draw(st.sampled_from([b",", b"1", b"\\u0000", b"\xed\xa0\x80", b".5", b"e1", b" ",
                                                    b'"id":"x",', b"[", b"{"]))
    _agrees(bytes(blob))


@pytest.mark.parametrize("data", [
    b'{"a":1,"a":2}',  # duplicate key: orjson keeps the last, the bytes differ from its dump
    b'{"a":9223372036854775808}', b'{"a":-9223372036854775809}', b'{"a":18446744073709551615}',
    b'{"a":18446744073709551616}', b'{"a":1.0}', b'{"a":1e-7}', b'{"a":1e400}', b'{"a":NaN}',
    b'{"a":"\\ud800"}', b'{"a":"\xed\xa0\x80"}', b'{"a":"\\u00e9"}', b'\xef\xbb\xbf{}', b'{} ', b'[]', b'"x"',
    b'{"a":' + b"[" * 40 + b"]" * 40 + b"}", b'{"a":' + b"[" * 31 + b"]" * 31 + b"}", b'{"a":"\x01"}',
    b'{"a":9223372036854775807,"b":-9223372036854775808}', b'{"b":1,"a":2}',
])
def test_fast_reader_on_known_edges(data: bytes) -> None:
    _agrees(data)
    if data in (b'{"a":1,"a":2}', b'{"a":9223372036854775808}', b'{"a":18446744073709551615}', b'{"a":1.0}'):
        assert model._canonical_fast(data) is None  # the strict path decides these


_BASE = model.Message(**{"from": "alex"}, to=["max"], date="2026-11-22T02:05:58.123456Z", subject="s", body="b")
# Floats whose shortest form Python and orjson spell differently (1e-07 / 1e-7, 1e+16 / 1e16).
_floats = st.sampled_from([1e-07, 1e16, -2.5e-300, 1.5e300, 0.1]) | st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["x-extra", "zz", "_", "\u00e9t\u00e9"]), _json | _floats, min_size=1, max_size=3))
def test_message_id_input_is_the_stored_content_on_either_path(extra: dict[str, Any]) -> None:
    """``Message.from_blob`` dumps the Message-ID input with orjson alone when the fast reader
    answered (no float anywhere) and with the float-aware dump otherwise: either way it is the
    §4 canonical JSON of the stored object without ``id`` (here with unknown fields of any JSON
    value, floats and wide integers included, which a reader keeps and hashes)."""
    import hashlib

    stored = {**json.loads(_BASE.to_blob()), **extra}
    stored.pop("id", None)
    content = json.dumps(stored, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
    want = hashlib.sha256(content).hexdigest()
    try:
        got = model.Message.from_blob(canonical_json({**stored, "id": want}))
    except (CorruptMessageError, ValueError, UnicodeError):  # beyond 64 bits, too deep: refused on read
        return
    assert got.stored_id() == want
