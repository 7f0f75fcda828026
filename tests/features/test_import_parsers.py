"""Property tests of the import parsers: any bytes in, a sanitised record or one-line skip out, never an exception."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitmail.api.archives import Original, Skip, from_email_bytes, from_team_chat_line
from gitmail.core.model import IMPORTED, SUBJECT_LIMIT, Message, format_date, utcnow
from gitmail.core.rules import content_problem, payload_problem

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HEADERS = ["From", "To", "Cc", "Subject", "Date", "Message-ID", "Content-Type", "Content-Transfer-Encoding"]
# Header values from hostile pieces: encoded words, controls, bidi, 8-bit bytes, odd dates.
PIECES = st.sampled_from([b"=?utf-8?q?a=0Ab?=", b"=?x-bad?b?////?=", b"\x1b[2J", b"\xe2\x80\xae", b"\xff\xfe",
                          b"<", b">", b"@", b",", b"\"", b"(", b";", b" ", b"\t", b"\r", b"x", b"text/plain",
                          b"charset=x-unknown", b"base64", b"Mon, 1 Jan 1900 00:00:00 +0000", b"9999",
                          b"multipart/mixed; boundary=b", b"--b", b"\n "])


@st.composite
def emails(draw: st.DrawFn) -> bytes:
    heads = draw(st.lists(st.tuples(st.sampled_from(HEADERS), st.lists(PIECES | st.binary(max_size=20), max_size=8)),
                          max_size=8))
    body = draw(st.binary(max_size=200))
    return b"".join(k.encode() + b": " + b"".join(v) + b"\n" for k, v in heads) + b"\n" + body


def _well_formed(o: Original) -> None:
    """What the importer writes from a record passes the readers' rules (docs/protocol.md §4, §5)."""
    assert payload_problem(IMPORTED, o.payload()) is None
    msg = Message(from_="alex", to=["alex"], date=format_date(utcnow()), subject=o.subject[:SUBJECT_LIMIT],
                  body=o.body, type=IMPORTED, payload=o.payload())
    msg.seal()
    assert content_problem(msg, 10 * 1024 * 1024) is None
    assert "\n" not in o.subject and "\n" not in o.sender and "\x1b" not in o.sender + o.subject


@SETTINGS
@given(emails())
def test_email_parser_never_raises_and_yields_valid_payloads(raw: bytes) -> None:
    got = from_email_bytes(raw, "mbox", "message 1")
    if isinstance(got, Skip):
        assert got.reason and "\n" not in got.reason
    else:
        _well_formed(got)


@SETTINGS
@given(st.binary(max_size=300))
def test_email_parser_takes_any_bytes(raw: bytes) -> None:
    got = from_email_bytes(raw, "maildir", "k")
    assert isinstance(got, (Original, Skip))
    if isinstance(got, Original):
        _well_formed(got)


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                           lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
                           max_leaves=10)


@st.composite
def envelopes(draw: st.DrawFn) -> bytes:
    env = {k: draw(JSON_VALUES) for k in draw(st.sets(st.sampled_from(
        ["id", "type", "from", "to", "payload", "created_at", "schema_version", "task_id", "trace_id", "priority"])))}
    for k in ("id", "type", "from"):
        if k in env and draw(st.booleans()):
            env[k] = draw(st.text(min_size=1, max_size=30))
    if "created_at" in env and draw(st.booleans()):
        env["created_at"] = draw(st.sampled_from(["2026-01-02T03:04:05Z", "1900-01-01T00:00:00", "0", "junk"]))
    return json.dumps(env).encode()


@SETTINGS
@given(envelopes() | st.binary(max_size=100))
def test_team_chat_parser_never_raises(line: bytes) -> None:
    got = from_team_chat_line(line, "inboxes/a.jsonl line 1")
    if isinstance(got, Original):
        _well_formed(got)
    elif isinstance(got, Skip):
        assert got.reason and "\n" not in got.reason
    else:
        assert not line.strip()


def test_deeply_nested_mime_is_read_or_skipped_in_one_line() -> None:
    depth = 300
    raw = b"From: a@b\nMessage-ID: <deep@x>\n"
    for i in range(depth):
        raw += b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (i, i)
    raw += b"Content-Type: text/plain\n\ninnermost\n"
    got = from_email_bytes(raw, "mbox", "message 1")
    if isinstance(got, Skip):
        assert "\n" not in got.reason
    else:
        _well_formed(got)
        assert "innermost" not in got.body  # below the 100 levels read


@SETTINGS
@given(emails())
def test_attachment_names_are_the_standard_librarys(raw: bytes) -> None:
    """_filename skips parsing parameters where get_filename can find none: on any input it
    answers exactly as the standard library does."""
    from email.parser import BytesParser

    from gitmail.api.archives import _filename, _leaves

    for part in _leaves(BytesParser().parsebytes(raw)):
        assert _filename(part) == part.get_filename()


def test_attachments_named_only_by_content_type_are_listed() -> None:
    """A part named by Content-Type's ``name`` (plain or RFC 2231), without Content-Disposition,
    is an attachment left out and named in the note, as before the fast path."""
    raw = (b"From: a@b\nMessage-ID: <named@x>\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=z\n\n"
           b"--z\nContent-Type: text/plain\n\nthe text\n"
           b"--z\nContent-Type: application/pdf; NAME=\"report.pdf\"\n\n%PDF\n"
           b"--z\nContent-Type: image/png; name*=utf-8''%C3%A9t%C3%A9.png\n\nPNG\n--z--\n")
    got = from_email_bytes(raw, "mbox", "message 1")
    assert isinstance(got, Original)
    assert got.body.startswith("the text")
    assert "[not imported: 2 attachments: report.pdf, été.png]" in got.body
