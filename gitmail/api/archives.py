"""Reading archives for ``gitmail import``: mbox, Maildir and team-chat (docs/protocol.md §5,
"Imported messages").

Archives are hostile input. mbox and Maildir are read with the standard
library's :mod:`mailbox` and :mod:`email` (never by hand); every header is
decoded, made one line, its control characters escaped visibly
(:func:`gitmail.api.views.clean`) and cut to a bound. Each reader yields one
:class:`Original` per message, or a :class:`Skip` saying where and why it
cannot be read; none raises for what an archive holds. Part of the library
API (:mod:`gitmail.api`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional, Union

from gitmail.errors import UsageError

if TYPE_CHECKING:
    from email.message import Message

SOURCES = ("mbox", "maildir", "team-chat")
TEAM_CHAT_LINE_LIMIT = 16 * 1024 * 1024  # bytes of one team-chat envelope line read at most
# Bytes of one mbox or Maildir message read at most. Parsing a message costs about ten times its
# size (a 250 MB line took 2.9 GB); what is imported is at most the body limit of text and the
# attachments' names, so a bigger message is skipped, saying so, before it is parsed.
MESSAGE_READ_LIMIT = 64 * 1024 * 1024
# team-chat payload fields taken as the body, in this order (the first string found).
TEAM_CHAT_TEXT = ("body", "message", "text", "details", "note", "summary", "question", "answer", "reason")


@dataclass
class Original:
    """One message read from an archive, its text already sanitised (see the module doc)."""

    source: str
    where: str  # position in the archive, for messages: ``message 3``, ``inboxes/dev.jsonl line 4``
    sender: str
    to: list[str]
    date: Optional[str]  # RFC 3339 UTC, or None
    message_id: str
    subject: str
    body: str
    priority: str = "normal"
    original_type: Optional[str] = None
    trace_id: Optional[str] = None
    task_id: Optional[str] = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.message_id)

    def payload(self) -> dict[str, Any]:
        """The ``imported`` payload (docs/protocol.md §5)."""
        d: dict[str, Any] = {"source": self.source, "sender": self.sender, "to": self.to, "date": self.date,
                             "message_id": self.message_id}
        for k in ("original_type", "trace_id", "task_id"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        return d


@dataclass
class Entry:
    """One archive entry as read, not yet parsed: a whole RFC 5322 message (mbox, Maildir) or
    one JSONL line (team-chat), and where it is in the archive."""

    raw: bytes
    where: str


@dataclass
class Skip:
    """An archive entry not imported: where it is and why (one line each)."""

    where: str
    reason: str


def _line(text: Any, limit: int) -> str:
    """One header's text: decoded, on one line, unsafe characters escaped, at most ``limit`` characters."""
    from gitmail.api.views import clean, flat

    return clean(flat(_valid(str(text))))[:limit]


def _message_id(value: Any) -> str:
    """The original's Message-ID as stored (the key that makes imports idempotent, §5): one
    line; one over :data:`IMPORT_TEXT_LIMIT` characters as ``sha256:<hex>`` of the whole of it.
    Cut short, two different ids sharing their first 998 characters were one message: the
    second was skipped as a copy, and later counted as already imported."""
    from gitmail.core.model import IMPORT_TEXT_LIMIT

    text = _line(value, 10 * IMPORT_TEXT_LIMIT + 1).strip()
    if len(text) <= IMPORT_TEXT_LIMIT:
        return text
    return "sha256:" + hashlib.sha256(_valid(str(value)).encode("utf-8")).hexdigest()


def _valid(text: str) -> str:
    """``text`` with lone surrogates (undecodable bytes) replaced, so it can be stored as UTF-8,
    and NUL as U+FFFD (a commit message cannot carry it: docs/protocol.md §4)."""
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")


def _utc(d: datetime) -> Optional[str]:
    """RFC 3339 UTC of an original date (naive means UTC), or None before 1970 or out of range."""
    from gitmail.core.model import format_date

    try:
        if d.tzinfo is None:
            d = d.replace(tzinfo=timezone.utc)
        out = format_date(d)
    except (ValueError, OverflowError):
        return None
    return out if d.astimezone(timezone.utc).year >= 1970 else None


def _decoded(raw: str) -> str:
    """Header text with its RFC 2047 encoded words decoded (as written when they cannot be)."""
    if "=?" not in raw:
        return raw
    from email.header import decode_header, make_header

    try:
        return str(make_header(decode_header(raw)))
    except Exception:  # noqa: BLE001 - unknown charsets, broken encoded words, stray 8-bit bytes
        return raw


def _headers(m: "Message") -> dict[str, list[str]]:
    """Every header as written, by lower-case name; 8-bit bytes read as UTF-8 (RFC 6532), bad ones replaced."""
    out: dict[str, list[str]] = {}
    for k, v in m.raw_items():
        v = str(v)
        if not v.isascii():
            try:
                v = v.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            except UnicodeError:
                v = _valid(v)
        out.setdefault(k.lower(), []).append(v)
    return out


def _header(h: dict[str, list[str]], name: str) -> str:
    """A header's decoded text ('' when absent; the first when repeated)."""
    vs = h.get(name)
    return _decoded(vs[0]) if vs else ""


def _addresses(h: dict[str, list[str]]) -> list[str]:
    from email.utils import getaddresses

    from gitmail.core.model import IMPORT_MAX_TO, IMPORT_TEXT_LIMIT

    out = []
    for name, addr in getaddresses(h.get("to", []) + h.get("cc", [])):  # split first: a decoded name may hold a comma
        name = _decoded(name)
        text = f"{name} <{addr}>" if name and addr else (addr or name)
        if text:
            out.append(_line(text, IMPORT_TEXT_LIMIT))
        if len(out) == IMPORT_MAX_TO:
            break
    return out


def _text_of(part: "Message") -> str:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return data.decode(charset, "replace")
    except (LookupError, ValueError):  # an unknown or unusable charset: UTF-8, bad bytes replaced
        return data.decode("utf-8", "replace")


MAX_PART_DEPTH = 100  # levels of multipart nesting read (a hostile message may nest more)


def _leaves(m: "Message", cut: Optional[list[bool]] = None) -> Iterator["Message"]:
    """The non-multipart parts of ``m``, depth first in document order (``Message.walk`` without
    the containers), never deeper than :data:`MAX_PART_DEPTH` levels of nesting; ``cut[0]`` is
    set when parts below that were left out."""
    stack: list[tuple["Message", int]] = [(m, 0)]
    while stack:
        part, depth = stack.pop()
        if not part.is_multipart():
            yield part
        elif depth < MAX_PART_DEPTH:
            kids = part.get_payload()
            if isinstance(kids, list):
                stack.extend((k, depth + 1) for k in reversed(kids) if not isinstance(k, str))
        elif cut is not None:
            cut[0] = True


def _filename(part: "Message") -> Optional[str]:
    """``part.get_filename()``, which reads Content-Disposition's ``filename`` parameter, else
    Content-Type's ``name``: without either header word there is none, and parsing the
    parameters is a third of reading a one-part message."""
    disposition = part.get("content-disposition")
    if disposition is None and "name" not in str(part.get("content-type", "")).lower():
        return None
    return part.get_filename()


def _body(m: "Message") -> str:
    """The text of the message: its first plain-text part (else its first HTML part), and a note
    naming the attachments that were left out (an import carries text only)."""
    plain = html = None
    names = []
    cut = [False]
    for part in _leaves(m, cut):
        filename = _filename(part)
        ctype = part.get_content_type()
        if filename or part.get_content_disposition() == "attachment":
            names.append(filename or ctype)
        elif plain is None and ctype == "text/plain":
            plain = part
        elif html is None and ctype == "text/html":
            html = part
        else:
            names.append(ctype)
    chosen = plain if plain is not None else html
    text = _text_of(chosen) if chosen is not None else ""
    if names:
        from gitmail.api.views import count

        text += f"\n\n[not imported: {count(len(names), 'attachment')}: " + ", ".join(
            _line(_decoded(n), 200) for n in names) + "]"
    if cut[0]:  # said, not dropped silently (a message nested deeper came out empty, with no word)
        text += f"\n\n[not imported: parts nested deeper than {MAX_PART_DEPTH} levels]"
    return _valid(text)


def from_email_bytes(raw: bytes, source: str, where: str) -> Union[Original, Skip]:
    """One RFC 5322 message (``raw`` bytes, as in an mbox or a Maildir file) as an :class:`Original`,
    or a :class:`Skip` saying why it cannot be imported. Never raises.

    Parsed with the standard library's :mod:`email` (the ``compat32`` policy: lenient, and
    ten times faster than ``policy.default``, whose header objects are not needed here).
    """
    from email.parser import BytesParser
    from email.utils import parsedate_to_datetime

    from gitmail.core.model import IMPORT_TEXT_LIMIT, SUBJECT_LIMIT

    try:
        m = BytesParser().parsebytes(raw)
        h = _headers(m)
        date = None
        d = _header(h, "date")
        if d:
            try:
                date = _utc(parsedate_to_datetime(d))
            except (TypeError, ValueError, IndexError, OverflowError):
                date = None
            year = re.search(r"\b(\d{4})\b", d)
            if date is not None and year is not None and int(year.group(1)) < 1970:
                date = None  # §5: before 1970 is unknown (the stdlib reads year 0001 as 2001, a two-digit year)
        mid = _message_id(_header(h, "message-id"))
        if not mid:
            mid = "sha256:" + hashlib.sha256(raw).hexdigest()
        return Original(source=source, where=where, sender=_line(_header(h, "from"), IMPORT_TEXT_LIMIT) or "(unknown)",
                        to=_addresses(h), date=date, message_id=mid,
                        subject=_line(_header(h, "subject"), SUBJECT_LIMIT), body=_body(m))
    except Exception as e:  # noqa: BLE001 - hostile input: one line, never a traceback
        return Skip(where, f"unreadable message ({type(e).__name__}: {_line(e, 200)})")


def raw_mbox(path: Path) -> Iterator[Union[Entry, Skip]]:
    """The messages of an mbox file as raw bytes, in file order (``message N``, 1-based). Raises
    :class:`UsageError` when ``path`` is not a readable file."""
    import mailbox

    if not path.is_file():
        raise UsageError(f"{path}: not an mbox file")
    with open(path, "rb") as head:
        first = head.read(5)
    if first and first != b"From ":  # an mbox begins with its first message's From line
        raise UsageError(f"{path}: not an mbox file (it does not begin with a 'From ' line); nothing imported")
    box = mailbox.mbox(path, create=False)
    try:
        for n, key in enumerate(box.iterkeys(), start=1):
            f = box.get_file(key)
            try:
                raw = f.read(MESSAGE_READ_LIMIT + 1)
            finally:
                f.close()
            yield _bounded(raw, f"message {n}")
    finally:
        box.close()


_NOT_REGULAR = "not a regular file (a link, a pipe or a device); not read"


def _bounded(raw: bytes, where: str) -> Union[Entry, Skip]:
    """``raw`` as an :class:`Entry`, or a :class:`Skip` when it is over :data:`MESSAGE_READ_LIMIT`
    (read one byte past it to tell)."""
    if len(raw) > MESSAGE_READ_LIMIT:
        return Skip(where, f"message over {MESSAGE_READ_LIMIT} bytes; not read further")
    return Entry(raw, where)


def raw_maildir(path: Path) -> Iterator[Union[Entry, Skip]]:
    """The messages of a Maildir (``new`` and ``cur``) as raw bytes, by key. Raises
    :class:`UsageError` when ``path`` is not a Maildir."""
    import mailbox

    if not all((path / sub).is_dir() for sub in ("cur", "new")):
        raise UsageError(f"{path}: not a Maildir (no cur/ and new/ folders)")
    import os
    import stat

    from gitmail.api.views import clean

    # The files of new/ and cur/ as Python's mailbox.Maildir names them (the key: the name up to
    # its ":2,FLAGS" info; dot files skipped), listed here because a message is opened only when
    # it is a regular file: the mailbox module follows a symbolic link (to ~/.ssh/id_ed25519, or
    # any file the user can read, which the import then turned into mail) and opens a pipe or a
    # device (a FIFO hung the import; /dev/zero took all memory).
    files = sorted((e.name.split(mailbox.Maildir.colon, 1)[0], e) for sub in ("new", "cur")
                   for e in os.scandir(path / sub) if not e.name.startswith("."))
    for key, e in files:
        where = clean(key)
        if not e.is_file(follow_symlinks=False):
            yield Skip(where, _NOT_REGULAR)
            continue
        try:
            fd = os.open(e.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as err:
            yield Skip(where, f"unreadable file ({err.strerror})")
            continue
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced between the listing and the open
                yield Skip(where, _NOT_REGULAR)
                continue
            try:
                raw = f.read(MESSAGE_READ_LIMIT + 1)
            except OSError as err:
                yield Skip(where, f"unreadable file ({err.strerror})")
                continue
        yield _bounded(raw, where)


def read_mbox(path: Path) -> Iterator[Union[Original, Skip]]:
    """The messages of an mbox file, in file order (``message N``, 1-based). Raises :class:`UsageError`
    when ``path`` is not a readable file."""
    return parse_all("mbox", raw_mbox(path))


def read_maildir(path: Path) -> Iterator[Union[Original, Skip]]:
    """The messages of a Maildir (``new`` and ``cur``), by key. Raises :class:`UsageError` when
    ``path`` is not a Maildir."""
    return parse_all("maildir", raw_maildir(path))


def _team_chat_date(v: Any) -> Optional[str]:
    """``created_at``: ISO 8601 text (``Z`` or an offset; none means UTC) or seconds since the epoch."""
    try:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return _utc(datetime.fromtimestamp(v, timezone.utc))
        if isinstance(v, str):
            return _utc(datetime.fromisoformat(v.strip().replace("Z", "+00:00").replace("z", "+00:00")))
    except (ValueError, OverflowError, OSError):
        return None
    return None


def from_team_chat_line(line: bytes, where: str) -> Union[Original, Skip, None]:
    """One line of a team-chat inbox file (a message envelope, docs/protocol.md §5) as an
    :class:`Original`; a :class:`Skip` when it is not a usable envelope; None for a blank line.
    Never raises."""
    from gitmail.core.model import IMPORT_MAX_TO, IMPORT_TEXT_LIMIT, PRIORITIES, SUBJECT_LIMIT

    if not line.strip():
        return None
    try:
        env = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        return Skip(where, "not UTF-8")
    except (ValueError, RecursionError) as e:
        return Skip(where, f"not JSON ({_line(getattr(e, 'msg', None) or type(e).__name__, 200)})")
    if not isinstance(env, dict):
        return Skip(where, "not a JSON object")
    missing = [k for k in ("id", "type", "from", "to", "payload", "created_at") if k not in env]
    if missing:
        return Skip(where, f"not a team-chat envelope: no {', '.join(missing)}")
    if env.get("schema_version", 1) != 1:
        return Skip(where, f"schema_version {_line(env.get('schema_version'), 40)} is not supported (1 is)")
    to = env["to"] if isinstance(env["to"], list) else [env["to"]]
    payload = env["payload"] if isinstance(env["payload"], dict) else {"payload": env["payload"]}
    if not all(isinstance(v, str) and v for v in (env["id"], env["from"], env["type"])):
        return Skip(where, "id, from and type must be non-empty strings")
    text_key = next((k for k in TEAM_CHAT_TEXT if isinstance(payload.get(k), str)), None)
    body = payload[text_key] if text_key else ""
    rest = {k: v for k, v in payload.items() if k != text_key}
    try:
        if rest:
            body = (body + "\n\n" if body else "") + json.dumps(rest, ensure_ascii=False, indent=2, sort_keys=True)
    except (ValueError, RecursionError):
        return Skip(where, "payload cannot be shown as JSON")
    task_id = env.get("task_id") if isinstance(env.get("task_id"), str) else None
    subject = next((payload[k] for k in ("subject", "title") if isinstance(payload.get(k), str)), None)
    if subject is None:
        subject = env["type"] + (f" {task_id}" if task_id else "")
    priority = env.get("priority") if env.get("priority") in PRIORITIES else "normal"

    def opt(k: str) -> Optional[str]:
        v = env.get(k)
        return _line(v, IMPORT_TEXT_LIMIT) if isinstance(v, str) and v else None

    return Original(source="team-chat", where=where, sender=_line(env["from"], IMPORT_TEXT_LIMIT),
                    to=[_line(t, IMPORT_TEXT_LIMIT) for t in to if isinstance(t, str)][:IMPORT_MAX_TO],
                    date=_team_chat_date(env["created_at"]), message_id=_message_id(env["id"]),
                    subject=_line(subject, SUBJECT_LIMIT), body=_valid(body), priority=str(priority),
                    original_type=_line(env["type"], IMPORT_TEXT_LIMIT), trace_id=opt("trace_id"), task_id=task_id
                    and _line(task_id, IMPORT_TEXT_LIMIT))


def raw_team_chat(path: Path) -> Iterator[Union[Entry, Skip]]:
    """The lines of a team-chat team folder (``inboxes/*.jsonl``; a folder of ``*.jsonl``
    files is taken as the inboxes folder itself), files by name, lines in order. Raises
    :class:`UsageError` when there is no inbox file."""
    import os
    import stat

    from gitmail.api.views import clean

    inboxes = path / "inboxes" if (path / "inboxes").is_dir() else path
    # As a Maildir's entries (raw_maildir): an inbox file that is a link (to another team's
    # inbox, to any file of the user's) is not read, nor one replaced by something else
    # between the listing and the open.
    files = sorted(inboxes.glob("*.jsonl")) if inboxes.is_dir() else []
    if not any(f.is_file() for f in files):
        raise UsageError(f"{path}: not a team-chat folder (no inboxes/*.jsonl)")
    for f in files:
        name = clean(f.relative_to(path)) if f.is_relative_to(path) else clean(f.name)
        if f.is_symlink() or not f.is_file():
            yield Skip(name, _NOT_REGULAR)
            continue
        try:
            fd = os.open(f, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as err:
            yield Skip(name, f"unreadable file ({err.strerror})")
            continue
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                yield Skip(name, _NOT_REGULAR)
                continue
            n = 0
            while True:
                raw = fh.readline(TEAM_CHAT_LINE_LIMIT + 1)
                if not raw:
                    break
                n += 1
                where = f"{name} line {n}"
                if len(raw) > TEAM_CHAT_LINE_LIMIT:
                    while raw and not raw.endswith(b"\n"):  # skip the rest of the line
                        raw = fh.readline(TEAM_CHAT_LINE_LIMIT)
                    yield Skip(where, f"line over {TEAM_CHAT_LINE_LIMIT} bytes")
                    continue
                yield Entry(raw, where)


def read_team_chat(path: Path) -> Iterator[Union[Original, Skip]]:
    """The envelopes of a team-chat team folder (see :func:`raw_team_chat`). Raises
    :class:`UsageError` when there is no inbox file."""
    return parse_all("team-chat", raw_team_chat(path))


# source -> its raw reader: each yields :class:`Entry` (or :class:`Skip`) and raises
# :class:`UsageError` (when first iterated) for a path that is not such an archive.
RAW_READERS = {"mbox": raw_mbox, "maildir": raw_maildir, "team-chat": raw_team_chat}


def parse(source: str, entry: Union[Entry, Skip]) -> Union[Original, Skip, None]:
    """One raw entry of a ``source`` archive as an :class:`Original`, a :class:`Skip` (passed
    through, or why it cannot be imported) or None (a blank team-chat line). Never raises;
    a pure function of its arguments, so entries may be parsed in any process."""
    if isinstance(entry, Skip):
        return entry
    if source == "team-chat":
        return from_team_chat_line(entry.raw, entry.where)
    return from_email_bytes(entry.raw, source, entry.where)


def parse_all(source: str, entries: Iterable[Union[Entry, Skip]]) -> Iterator[Union[Original, Skip]]:
    """:func:`parse` of each of ``entries``, in order, blank lines left out."""
    for e in entries:
        got = parse(source, e)
        if got is not None:
            yield got
