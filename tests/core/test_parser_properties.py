"""Property tests (hypothesis) for the small parsers that had only example tests: the message
date (docs/protocol.md §4), a ``send --batch`` JSON Lines file, ``--payload``, and the guard's
``pre-receive`` update lines. Each either returns what its writer's form round-trips to, or
refuses with one line of the kind the brief asks for; none raises anything else.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitmail.api.batch import parse_jsonl
from gitmail.cli.commands.send import parse_payload
from gitmail.core.dates import parse_date
from gitmail.core.model import format_date
from gitmail.errors import UsageError
from gitmail.guard.check import parse_updates

UTC = timezone.utc


@settings(max_examples=400, deadline=None)
@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999),
                    timezones=st.just(UTC)))
def test_a_written_date_reads_back_to_itself(d: datetime) -> None:
    assert parse_date(format_date(d)) == d


def _near_dates() -> st.SearchStrategy[str]:
    """Strings in or near the date form: digits and separators in its places, some changed."""
    canonical = st.datetimes(timezones=st.just(UTC)).map(format_date)
    return st.one_of(canonical, st.tuples(canonical, st.integers(0, 26), st.sampled_from(
        list("0123456789-:.TZz +\n") + ["", "00", "\u0660", "\uff10"])).map(lambda t: t[0][:t[1]] + t[2] + t[0][t[1] + 1:]))


@settings(max_examples=600, deadline=None)
@given(st.one_of(_near_dates(), st.text(max_size=40)))
def test_any_string_is_a_date_only_in_the_written_form(s: str) -> None:
    d = parse_date(s)
    if d is not None:
        assert d.tzinfo is UTC and d.year >= 1970
        assert format_date(d) == s  # one form: nothing else reads as a date


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.lists(st.one_of(
    st.just(b'{"to": "max", "body": "hi"}'), st.just(b'{"to": ["max", "alex"], "priority": "urgent"}'),
    st.just(b"[1]"), st.just(b"{"), st.just(b"   "), st.just(b"\xff\xfe"), st.just(b'{"to": 5}'),
    st.just(b'{"to": "max", "x\\u001b[31m": 1}'), st.just(b'{"to": "max", "body": "\\ud800"}'),
    st.just(b"[" * 5000 + b"]" * 5000)), max_size=5).map(b"\n".join)))
def test_a_batch_file_is_lines_or_one_refusal(data: bytes) -> None:
    try:
        lines = parse_jsonl(data)
    except UsageError as e:
        assert e.message.startswith("line ") or e.message.startswith("the batch is empty"), e.message
        return
    numbers = [n for n, _ in lines]
    assert numbers == sorted(set(numbers)) and all(1 <= n <= data.count(b"\n") + 1 for n in numbers)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=60), st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5)),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3)).map(json.dumps),
    st.integers(1, 5000).map(lambda k: "[" * k + "]" * k)))
def test_a_payload_is_an_object_or_one_refusal(text: str) -> None:
    try:
        got = parse_payload(text)
    except UsageError as e:
        assert e.message.startswith("--payload"), e.message
        return
    assert isinstance(got, dict) and got == json.loads(text)


_hex = st.text("0123456789abcdef", min_size=40, max_size=40)
# A ref name as git may write one: no space, no control character (check-ref-format), but any
# other character, the Unicode line breaks U+0085, U+2028 and U+2029 included.
_ref = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters=" \x7f"
                             + "".join(map(chr, range(32)))) | st.sampled_from(["\u2028", "\u2029", "\x85"]),
               min_size=1, max_size=30)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.one_of(_hex, st.just("0" * 40)), st.one_of(_hex, st.just("0" * 40)), _ref), max_size=6))
def test_update_lines_read_back_as_git_wrote_them(updates: list[tuple[str, str, str]]) -> None:
    text = "".join(f"{o} {n} {r}\n" for o, n, r in updates)
    got = parse_updates(text)
    assert [(u.old or "0" * 40, u.new or "0" * 40, u.ref, u.malformed) for u in got] == \
        [(o, n, r, False) for o, n, r in updates]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_input_is_updates_or_lines_that_refuse_the_push(text: str) -> None:
    got = parse_updates(text)
    assert len(got) == len(text.split("\n")) - (text.split("\n")[-1] == "")
    for u in got:
        assert u.malformed or (u.ref and " " not in u.ref and "\n" not in u.ref)


@pytest.mark.parametrize("s", ["2026-11-30T17:00:00.000000Z", "1970-01-01T00:00:00.000000Z"])
def test_the_edges_of_the_date_form(s: str) -> None:
    assert parse_date(s) is not None and parse_date(s + "\n") is None and parse_date(s.replace("Z", "z")) is None
    assert parse_date("1969-12-31T23:59:59.999999Z") is None and parse_date("2026-02-30T00:00:00.000000Z") is None
