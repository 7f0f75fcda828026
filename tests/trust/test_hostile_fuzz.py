"""Fuzzing the message reader and everything after it (issue 10, hole 10): no uncaught exception.

Generated message commits (valid messages bent field by field, random JSON,
broken serialisations, lying commit text and authors) are checked by
:func:`gitmail.core.store.check_message`, then indexed by the cache and shown by
every front-end that renders a row: ``--json`` rows, list lines, the Claude hooks'
context and the git hooks' notice. Bounded: a few hundred examples, no deadline
per example (git writes vary), the file well under a minute.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pygit2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitmail import api
from gitmail.api.views import row_json
from gitmail.claude.hooks import context, message_line
from gitmail.cli.render import row_line
from gitmail.core import directory as dirmod
from gitmail.core import refs
from gitmail.core.model import canonical_json, format_date, utcnow
from gitmail.core.repo import open_repo
from gitmail.core.store import MALFORMED, check_message, commit_message
from gitmail.core.model import Message
from gitmail.hooks import notice
from tests.conftest import Org
from tests.core.forge import key_of
from tests.trust.test_hostile_messages import author_line, raw_signed_commit, seconds

HOSTILE_STRINGS = ["", " ", "\ud800", "\x00", "\x1b[2K\r", "a\nb", "‮", "yesterday", "9999-12-31T23:59:59.999999Z",
                   "1969-12-31T23:59:59.000000Z", "2026-02-30T00:00:00.000000Z", "2026-01-01T00:00:00.000000Z\n",
                   "*", "team:", "team:x", "alex", "max", "-x", "a" * 300, "0" * 64, "%61lice"]
HOSTILE_INTS = [-(2**63) - 1, -1, 0, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 10**30]

scalars = st.one_of(
    st.none(), st.booleans(), st.sampled_from(HOSTILE_INTS), st.integers(),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(HOSTILE_STRINGS), st.text(max_size=20),
)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)

FIELDS = ["schema_version", "from", "to", "date", "subject", "summary", "body", "priority", "type", "payload",
          "request_id", "in_reply_to", "thread", "require_ack", "attachments", "encrypted", "id"]


def _base() -> dict[str, Any]:
    m = Message(**{"from": "max"}, to=["alex"], date=format_date(utcnow()), subject="hi", summary="hi", body="hi")
    return m.model_dump(by_alias=True, mode="json", exclude={"id"})


@st.composite
def message_bytes(draw: st.DrawFn) -> tuple[bytes, dict[str, Any]]:
    """``(message.json bytes, the dict they came from)``: mostly canonical, sometimes broken."""
    d = _base()
    for f in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)):
        if draw(st.booleans()):
            d.pop(f, None)
        else:
            d[f] = draw(json_values)
    for k, v in draw(st.dictionaries(st.text(max_size=6), json_values, max_size=2)).items():
        d[k] = v
    if draw(st.booleans()) or "id" not in d:
        try:
            d["id"] = hashlib.sha256(canonical_json({k: v for k, v in d.items() if k != "id"})).hexdigest()
        except (ValueError, TypeError):
            pass
    how = draw(st.sampled_from(["canonical", "canonical", "canonical", "pretty", "ascii", "mutate", "random"]))
    try:
        if how == "canonical":
            data = canonical_json(d)
        elif how == "pretty":
            data = json.dumps(d, indent=1).encode()
        elif how == "ascii":
            data = json.dumps(d, sort_keys=True, separators=(",", ":")).encode()
        elif how == "mutate":
            buf = bytearray(canonical_json(d))
            for _ in range(draw(st.integers(1, 4))):
                i = draw(st.integers(0, max(0, len(buf) - 1)))
                buf[i:i + 1] = draw(st.binary(min_size=0, max_size=3))
            data = bytes(buf)
        else:
            data = draw(st.binary(max_size=200))
    except (ValueError, TypeError):
        data = draw(st.binary(max_size=50))
    return data, d


@st.composite
def commits(draw: st.DrawFn) -> dict[str, Any]:
    data, d = draw(message_bytes())
    return {
        "data": data,
        "dict": d,
        "mode": draw(st.sampled_from([pygit2.enums.FileMode.BLOB] * 6 + [pygit2.enums.FileMode.BLOB_EXECUTABLE,
                                                                          pygit2.enums.FileMode.LINK])),
        "text": draw(st.sampled_from(["rendered", "rendered", "rendered", "other"])),
        "other_text": draw(st.text(max_size=30)),
        "author": draw(st.sampled_from(["entry", "entry", "entry", "alex <alex@gitmail.invalid>", "max <max",
                                        "\u00e9 <x@y>"])),
        "when": draw(st.sampled_from([None, None, 0, 2**40])),
    }


def _write(pg: pygit2.Repository, c: dict[str, Any], parent: str | None, entry: str, signer: Any) -> str:
    tb = pg.TreeBuilder()
    tb.insert("message.json", pg.create_blob(c["data"]), c["mode"])
    text = c["other_text"] + "\n"
    when = 1_700_000_000
    try:
        m = Message.from_blob(c["data"])
        if c["text"] == "rendered":
            text = commit_message(m)
        when = seconds(m.date)
    except Exception:  # any failure to render: the generated text stays
        pass
    author = entry if c["author"] == "entry" else c["author"]
    return raw_signed_commit(pg, str(tb.write()), parent, author, text, signer, c["when"] if c["when"] is not None else when)


def _entry(clone: Any) -> str:
    return author_line(dirmod.load(open_repo(clone)).members["max"])


def test_check_message_turns_every_generated_commit_into_a_verdict(org: Org) -> None:
    clone = org.clones["alex"]
    r = open_repo(clone)
    pg, d, signer, entry = r.pg, dirmod.load(r), key_of(org, "max"), _entry(clone)
    stats = {"good": 0, "bad": 0}

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(commits())
    def one(c: dict[str, Any]) -> None:
        oid = _write(pg, c, None, entry, signer)
        msg, check = check_message(pg, oid, "alex", "max", d)
        assert not check.detail.startswith("cannot be checked"), check.detail  # the catch-all never fires
        stats["good" if check.good else "bad"] += 1
        if check.good:
            assert msg is not None and hashlib.sha256(
                canonical_json({k: v for k, v in json.loads(c["data"]).items() if k != "id"})).hexdigest() == msg.id
        if check.status == MALFORMED and msg is None:
            assert check.detail

    one()
    assert stats["bad"] > 0


def test_cache_rendering_and_hooks_survive_generated_commits(org: Org) -> None:
    """Each generated commit lands on alex's inbox ref; ingest, list, read, render and notify."""
    alex = org.clones["alex"]
    r = open_repo(alex)
    pg, signer, entry = r.pg, key_of(org, "max"), _entry(alex)
    track = refs.tracking(refs.mail_path("alex", "max"), r.remote)
    shown: list[int] = []

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.lists(commits(), min_size=1, max_size=3))
    def batch(cs: list[dict[str, Any]]) -> None:
        parent = r.ref_target(track)
        for c in cs:
            parent = _write(pg, c, parent, entry, signer)
        assert parent is not None
        r.set_ref(track, parent, r.ref_target(track))
        box = api.mailbox(alex, as_="alex", all_=True, limit=10_000)
        for row in box.messages:
            json.dumps(row_json(row), ensure_ascii=False)
            row_line(row)
            message_line(row)
        if box.messages:
            context("alex", box.messages, new=True)
        notice(alex, as_="alex")
        shown.append(len(box.messages))
        api.read(alex, [box.messages[0].id], as_="alex")

    batch()
    assert shown and shown[-1] > 0
