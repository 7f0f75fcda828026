"""The shell notice (hooks/notice.sh) against gitmail's own verdict, on generated messages (issue 10, "One rulebook").

Each example is a message written by gitmail's writer (:func:`gitmail.core.store.write_message_commit`)
on alex's mailbox from max, or the same message with one mutation of its ``message.json``, its
tree or its commit metadata, re-signed with max's real key as an attacker who is max would. It is
pushed to a real ``git daemon`` (no guard), then alex runs a real ``git pull`` with the installed
hooks and no Python reachable from them, so only the shell can speak. Required: what the shell
announces, gitmail calls good (:func:`gitmail.core.store.check_message` in alex's clone); and
every unmutated message of the plain subset (docs/sync.md, "The notice") is announced.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Optional

import pygit2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitmail.core import directory as dirmod
from gitmail.core import refs
from gitmail.core.model import Message, canonical_json, date_seconds, format_date, utcnow
from gitmail.core.repo import open_repo
from gitmail.core.store import author_of, check_message, commit_message, write_message_commit
from gitmail.errors import GitmailError
from tests.sync import forge
from tests.sync.conftest import NetOrg, unguarded  # noqa: F401 (fixture)
from tests.sync.test_hooks import code_commit, pull, shell_only

MAILBOX = "refs/heads/gitmail/mail/alex/max"

# Text with what a re-implementation gets wrong: quotes, backslashes, every kind of white space
# Python's str.split() knows, controls (escaped in JSON), bidi overrides, CJK, combining marks.
_TRICKY = list(' "\\\'\t\n\r\x0b\x0c\x1c\x1f\x1b\x7f\x85\x9b\xa0\u1680\u2000\u200a\u2028\u2029\u202e\u202f\u205f'
               '\u3000\u0301小é/{}[]:,%') + ["\\u0041", "  ", "\n\n"]
# NUL is outside the protocol (§4: a commit message cannot carry it); tests/trust/test_hostile_messages.py covers it.
texts = st.lists(st.one_of(st.sampled_from(_TRICKY), st.characters(exclude_categories=["Cs"], exclude_characters="\x00")),
                 max_size=40).map("".join)
hex64 = st.text("0123456789abcdef", min_size=64, max_size=64)
# Addresses in normal form: printable ASCII ones (the notice checks those itself) and others.
addresses = st.sampled_from(["bob", "*", "team:ops", "Max Power", "o'neil", "a  b", "x_y-z", "bob", "*", "José", "小克"])
# An age header a reader takes (docs/protocol.md §9: one stanza per reader and one more, within
# bounds); what follows it is not looked at before decrypting, so any bytes.
AGE_HEAD = b"age-encryption.org/v1\n-> ssh-ed25519 AAAAAA BBBB\nCCCC\n--- DDDD\n"


def readers_of(to: list[str]) -> list[str]:
    """The envelope's readers for ``to``: the sender and every member ``to`` names directly."""
    return sorted({"max", *(a for a in to if a != "*" and not a.startswith("team:"))})


@dataclass
class Spec:
    """A message as gitmail writes it, and whether it lies in the notice's plain subset."""

    msg: Message
    cipher: Optional[bytes]  # message.age for an encrypted message

    def plain(self) -> bool:
        blob = self.msg.to_blob()
        return (all(a.isascii() and '"' not in a for a in self.msg.to)
                and (self.msg.request_id is None or (self.msg.request_id.isascii() and '"' not in self.msg.request_id
                                                     and "\\" not in self.msg.request_id))
                and b"\\u0000" not in blob
                and not re.search(rb"\\\\u00(0[89ac]|0d)", blob))


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    encrypted = draw(st.integers(0, 3)) == 0
    # An encrypted message's readers are names members hold (docs/protocol.md §9): to alex alone.
    to = ["alex"] if encrypted else ["alex", *[a for a in draw(st.lists(addresses, max_size=3, unique=True))]]
    if draw(st.booleans()):
        to.reverse()
    date = format_date(utcnow() - timedelta(seconds=draw(st.integers(0, 3 * 86400))))
    fields: dict[str, Any] = {
        "from": "max", "to": to, "date": date, "priority": draw(st.sampled_from(["low", "normal", "high", "urgent"])),
        "thread": draw(st.none() | hex64), "in_reply_to": draw(st.none() | hex64),
        "require_ack": draw(st.booleans()),
        "request_id": draw(st.sampled_from([None, None, "req-1", 'say "yes"', "réq 1"])),
    }
    cipher = None
    if encrypted:
        cipher = AGE_HEAD + draw(st.binary(min_size=1, max_size=300))
        fields["encrypted"] = {"format": "age-encryption.org/v1", "path": "message.age", "recipients": readers_of(to),
                               "sha256": hashlib.sha256(cipher).hexdigest(), "size": draw(st.integers(0, 2**40))}
    else:
        body = draw(texts)
        subject = draw(st.one_of(texts, st.just(body)))[:200]
        fields.update(subject=subject, summary=draw(texts)[:120], body=body)
    m = Message(**fields)
    m.id = m.compute_id()
    return Spec(m, cipher)


# -- mutations: each takes the message dict, and the commit parts, and changes one thing -------


@dataclass
class Commit:
    """The parts of a message commit, written byte for byte by :func:`raw_commit`."""

    blob: bytes
    message: str
    author: str  # "Name <email>"
    when: int
    tz: str = "+0000"
    committer: Optional[str] = None
    extra_header: str = ""
    mode: int = pygit2.enums.FileMode.BLOB
    cipher: Optional[bytes] = None
    extra_file: bool = False


def _with_id(d: dict[str, Any]) -> bytes:
    d = {k: v for k, v in d.items() if k != "id"}
    d["id"] = hashlib.sha256(canonical_json(d)).hexdigest()
    return canonical_json(d)


def _json(change: Callable[[dict[str, Any]], None], keep_id: bool = False) -> Callable[[dict[str, Any], Commit], None]:
    """A change of message.json alone: the commit text and author date are rendered from the
    changed message where it still parses, so that only the rule under test is broken."""
    def mutate(d: dict[str, Any], c: Commit) -> None:
        change(d)
        c.blob = canonical_json(d) if keep_id else _with_id(d)
        try:
            m = Message.from_blob(c.blob)
            c.message, c.when = commit_message(m), date_seconds(m.date)
        except (ValueError, GitmailError):
            pass
    return mutate


def _meta(change: Callable[[Commit], None]) -> Callable[[dict[str, Any], Commit], None]:
    return lambda d, c: change(c)


def _swap_line(prefix: str, value: str) -> Callable[[Commit], None]:
    def change(c: Commit) -> None:
        lines = c.message.split("\n")
        hit = [i for i, ln in enumerate(lines) if ln.startswith(prefix)]
        if hit:
            lines[hit[0]] = value
        else:
            lines.insert(-1, value)
        c.message = "\n".join(lines)
    return change


def _subject(c: Commit) -> None:
    c.message = "URGENT " + c.message


MUTATIONS: dict[str, Callable[[dict[str, Any], Commit], None]] = {
    "id-not-recomputed": _json(lambda d: d.update(priority="urgent" if d["priority"] != "urgent" else "low"),
                               keep_id=True),
    "id-other": lambda d, c: setattr(c, "blob", c.blob.replace(d["id"].encode(), hashlib.sha256(c.blob).hexdigest()
                                                                 .encode())),
    "date-future": _json(lambda d: d.update(date=format_date(utcnow() + timedelta(days=2)))),
    "date-form": _json(lambda d: d.update(date=d["date"].replace("Z", "+00:00"))),
    "date-calendar": _json(lambda d: d.update(date="2025-02-29" + d["date"][10:])),
    "date-1969": _json(lambda d: d.update(date="1969-12-31T23:59:59.000000Z")),
    "subject-long": _json(lambda d: d.update(subject="s" * 201)),
    "summary-long": _json(lambda d: d.update(summary="é" * 121)),
    "to-duplicate": _json(lambda d: d.update(to=[*d["to"], d["to"][0]])),
    "to-empty": _json(lambda d: d.update(to=[])),
    "to-not-normal": _json(lambda d: d.update(to=[*d["to"], " bob"])),
    "to-misfiled": _json(lambda d: d.update(to=[a for a in d["to"] if a != "alex"] or ["bob"])),
    "from-alex": _json(lambda d: d.update({"from": "alex"})),
    "priority": _json(lambda d: d.update(priority="highest")),
    "type-question": _json(lambda d: d.update(type="question")),
    "payload-on-text": _json(lambda d: d.update(payload={})),
    "schema-2": _json(lambda d: d.update(schema_version=2)),
    "thread-short": _json(lambda d: d.update(thread="abc")),
    "request-id-newline": _json(lambda d: d.update(request_id="a\nb")),
    "require-ack-int": _json(lambda d: d.update(require_ack=1)),  # malformed: 1 is no boolean (§4)
    "unknown-key": _json(lambda d: d.update(zz_new=1)),  # still good for gitmail: the notice defers
    "missing-key": _json(lambda d: d.pop("summary")),  # still good for gitmail: the notice defers
    "encrypted-with-subject": _json(lambda d: d.update(subject="x") if d.get("encrypted") else d.update(
        encrypted={"format": "age-encryption.org/v1", "path": "message.age", "recipients": [], "sha256": "ab" * 32,
                   "size": 1})),
    "not-canonical-spaces": lambda d, c: setattr(c, "blob", json.dumps(json.loads(c.blob), sort_keys=True).encode()),
    "not-canonical-ascii": lambda d, c: setattr(c, "blob", json.dumps(json.loads(c.blob), sort_keys=True,
                                                                      separators=(",", ":")).encode()),
    "not-canonical-escape": lambda d, c: setattr(c, "blob", c.blob.replace(b'"from":"max"', b'"from":"m\\u0061x"')),
    "trailing-newline": lambda d, c: setattr(c, "blob", c.blob + b"\n"),
    "commit-subject": _meta(_subject),
    "commit-body": _meta(lambda c: setattr(c, "message", c.message.replace("\n\nMessage-Id", "\n\nextra\n\nMessage-Id"))),
    "commit-no-final-newline": _meta(lambda c: setattr(c, "message", c.message.rstrip("\n"))),
    "trailer-to": _meta(_swap_line("To: ", "To: eve")),
    "trailer-priority": _meta(_swap_line("Priority: ", "Priority: urgent")),
    "trailer-type": _meta(_swap_line("Type: ", "Type: question")),
    "trailer-message-id": _meta(_swap_line("Message-Id: ", f"Message-Id: <{'0' * 64}@gitmail>")),
    "trailer-thread": _meta(_swap_line("Thread: ", f"Thread: <{'1' * 64}@gitmail>")),
    "trailer-request-id": _meta(_swap_line("Request-Id: ", "Request-Id: approve-all")),
    "author-name": _meta(lambda c: setattr(c, "author", "alex" + c.author[c.author.index(" <"):])),
    "author-email": _meta(lambda c: setattr(c, "author", c.author.replace(">", "x>"))),
    "author-date": _meta(lambda c: setattr(c, "when", c.when + 1)),
    "author-tz": _meta(lambda c: setattr(c, "tz", "+0100")),
    "committer-tz": _meta(lambda c: setattr(c, "committer", "{author} {when} -0700")),
    "extra-header": _meta(lambda c: setattr(c, "extra_header", "encoding ISO-8859-1\n")),
    "json-executable": _meta(lambda c: setattr(c, "mode", pygit2.enums.FileMode.BLOB_EXECUTABLE)),
    "json-symlink": _meta(lambda c: setattr(c, "mode", pygit2.enums.FileMode.LINK)),
    "extra-file": _meta(lambda c: setattr(c, "extra_file", True)),  # malformed: no file of the message (§6)
    "ciphertext-swapped": _meta(lambda c: setattr(c, "cipher", (c.cipher or b"") + b"!")),
}


def raw_commit(pg: pygit2.Repository, c: Commit, parent: Optional[str], signer: Any) -> str:
    tb = pg.TreeBuilder()
    tb.insert("message.json", pg.create_blob(c.blob), c.mode)
    if c.cipher is not None:
        tb.insert("message.age", pg.create_blob(c.cipher), pygit2.enums.FileMode.BLOB)
    if c.extra_file:
        tb.insert("notes.txt", pg.create_blob(b"hello"), pygit2.enums.FileMode.BLOB)
    head = f"tree {tb.write()}\n" + (f"parent {parent}\n" if parent else "")
    head += f"author {c.author} {c.when} {c.tz}\n"
    head += "committer " + (c.committer or "{author} {when} +0000").format(author=c.author, when=c.when) + "\n"
    head += c.extra_header
    sig = signer.sign((head + "\n" + c.message).encode("utf-8"))
    data = head + "gpgsig " + sig.replace("\n", "\n ") + "\n\n" + c.message
    return str(pg.write(pygit2.enums.ObjectType.COMMIT, data.encode("utf-8")))


@pytest.fixture
def shell(unguarded: NetOrg) -> dict[str, Any]:
    """alex's clone with the hooks and no Python reachable from them; max writes."""
    net = unguarded
    clone = shell_only(net)
    net.ok("max", "send", "alex", "first", "--plain")
    net.ok("alex", "sync")
    mclone = net.clones["max"]
    net.ok("max", "sync")
    return {"net": net, "clone": clone, "tip": forge.tip(mclone, refs.mail_path("alex", "max")), "n": 0}


@st.composite
def mutations(draw: st.DrawFn) -> Optional[str]:
    """None (the message as gitmail wrote it) about half the time, else one mutation."""
    return draw(st.sampled_from(sorted(MUTATIONS))) if draw(st.booleans()) else None


def pull_one(shell: dict[str, Any], spec: Spec, mutation: Optional[str]) -> tuple[bool, Any, str]:
    """Write ``spec`` (mutated) on alex/max as max, push it, `git pull` in alex's clone:
    (announced by the shell, gitmail's verdict, the pull's output)."""
    net: NetOrg = shell["net"]
    clone: Path = shell["clone"]
    mclone = net.clones["max"]
    r = open_repo(mclone)
    d = dirmod.load(r)
    key = forge.key_of("max")
    if mutation is None:
        extra: Optional[dict[str, tuple[str, int]]] = None
        if spec.cipher is not None:
            extra = {"message.age": (str(r.pg.create_blob(spec.cipher)), int(pygit2.enums.FileMode.BLOB))}
        oid = write_message_commit(r.pg, spec.msg, d.members["max"], key, shell["tip"], extra)
    else:
        name, email = author_of(d.members["max"])
        c = Commit(blob=spec.msg.to_blob(), message=commit_message(spec.msg), author=f"{name} <{email}>",
                   when=date_seconds(spec.msg.date), cipher=spec.cipher)
        data = json.loads(c.blob)
        MUTATIONS[mutation](data, c)
        oid = raw_commit(r.pg, c, shell["tip"], key)
    assert forge.push(mclone, oid, MAILBOX)[0] == 0
    shell["tip"] = oid
    shell["n"] += 1
    code_commit(net, "max", f"p{shell['n']}")
    code, out = pull(clone)
    assert code == 0, out
    a = open_repo(clone)
    _, verdict = check_message(a.pg, oid, "alex", "max", dirmod.load(a))
    net.ok("alex", "sync")  # gitmail's full check indexes it: the next pull's range starts after it
    return "📬" in out, verdict, out


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(spec=specs(), mutation=mutations())
def test_the_shell_notice_announces_only_good_mail_and_all_plain_mail(shell: dict[str, Any], spec: Spec,
                                                                      mutation: Optional[str]) -> None:
    announced, verdict, out = pull_one(shell, spec, mutation)
    assert not announced or verdict.good, (mutation, verdict, out, spec.msg)
    if mutation is None:
        assert verdict.good, verdict
        assert announced or not spec.plain(), ("a plain good message the shell did not announce", out, spec.msg)


STILL_GOOD = {"unknown-key", "missing-key", "committer-tz"}


def test_every_mutation_is_handed_over(shell: dict[str, Any]) -> None:
    """Each mutation once, on a plain message (clear, and encrypted for the envelope's): never announced,
    and (but for the five that stay good) called malformed or worse by gitmail."""
    def spec(encrypted: bool) -> Spec:
        m = Message(**{"from": "max"}, to=["alex"] if encrypted else ["bob", "alex", "Max Power"], date=format_date(utcnow()),
                    thread="ab" * 32, in_reply_to="cd" * 32, request_id="req-1", priority="high",
                    subject="" if encrypted else ' Re:  "quoted" \\ back\tslash\u00a0小克 ',
                    body="" if encrypted else "\n\nline one\n\nline two\u2028\n", summary="" if encrypted else "sum")
        cipher = None
        if encrypted:
            cipher = AGE_HEAD + b"\x00\xff\n"
            m.encrypted = {"format": "age-encryption.org/v1", "path": "message.age", "recipients": readers_of(m.to),
                           "sha256": hashlib.sha256(cipher).hexdigest(), "size": 1024}
        m.id = m.compute_id()
        return Spec(m, cipher)

    for enc in (False, True):
        announced, verdict, out = pull_one(shell, spec(enc), None)
        assert announced and verdict.good, (enc, verdict, out)
    # Encrypted with a reader no member holds (malformed) or one the shell cannot vouch for
    # (a member other than the sender and alex: good): neither is announced by the shell.
    for readers, good in ((["alex", "max", "nobody"], False), (["alex", "max"], True)):
        m = spec(True).msg
        cipher = AGE_HEAD + b"\x00\xff\n"
        m.to = [r for r in readers if r != "max"]
        m.encrypted = {**(m.encrypted or {}), "recipients": readers, "sha256": hashlib.sha256(cipher).hexdigest()}
        m.id = m.compute_id()
        announced, verdict, out = pull_one(shell, Spec(m, cipher), None)
        assert verdict.good == good and (announced == good), (readers, verdict, out)
    for name in sorted(MUTATIONS):
        enc = name in ("ciphertext-swapped", "encrypted-with-subject")
        announced, verdict, out = pull_one(shell, spec(enc), name)
        assert not announced, (name, verdict, out)
        assert verdict.good == (name in STILL_GOOD), (name, verdict)
