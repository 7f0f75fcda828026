"""Export to real mail clients: mbox or Maildir (``gitmail export``).

Each message of the member's view becomes an RFC 5322 message built with the
standard library's :mod:`email` and written with :mod:`mailbox`: From and To
(the member's display name and email as registered, neither unique, so the
shown name also carries the member name when it differs: ``"max (mallory)"``),
Date, Subject, Message-ID (``<ID@gitmail>``), In-Reply-To and References (so
clients thread them), ``X-Gitmail-From`` (the member name the signature proves,
when verified), ``X-Gitmail-Verified`` (the verdict: ``good``, or the
status and why), ``X-Gitmail-Priority`` / ``X-Gitmail-Type``, and each
attachment as a MIME part with its media type. Encrypted mail is decrypted
for the member (only verified mail is ever decrypted). Incremental: messages
whose Message-ID the mailbox already holds are skipped. Part of the library
API (:mod:`gitmail.api`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

from gitmail.api.mailbox import Item, load_item, save_attachments
from gitmail.api.search import since_date
from gitmail.api.session import RepoLike, Session, session
from gitmail.core import cache
from gitmail.errors import UsageError, local_storage_error

if TYPE_CHECKING:
    import mailbox as mboxlib
    from email.headerregistry import Address
    from email.message import EmailMessage

    from gitmail.api.results import ExportReport
    from gitmail.core.directory import Directory

DOMAIN = "gitmail"  # Message-ID is <ID@gitmail>
ADDR_DOMAIN = "gitmail.invalid"  # for recipients with no e-mail address (broadcast, groups)


@dataclass
class ExportResult:
    path: Path
    format: str  # mbox | maildir
    added: list[str]  # Message-IDs written
    skipped: int  # already in the mailbox

    def model(self) -> "ExportReport":
        """The JSON result of ``gitmail export`` (docs/json.md, ``ExportReport``)."""
        from gitmail.api.results import ExportReport

        return ExportReport(path=str(self.path), format=self.format, added=self.added, skipped=self.skipped)


def msgid(id: str) -> str:
    return f"<{id}@{DOMAIN}>"


def _one_line(text: str) -> str:
    """Header text from another member: one line, unsafe characters visibly escaped."""
    from gitmail.api.views import clean, flat

    return clean(flat(text))


def _address(d: "Directory", name: str) -> "Address":
    from email.headerregistry import Address

    from gitmail.core.address import to_ref

    m = d.members.get(name)
    email = m.email if m is not None else f"{to_ref(name)}@{ADDR_DOMAIN}"
    user, _, host = email.rpartition("@")
    # The member name, which the signature proves, is always in the shown name: a display name
    # and an email are whatever the member registered, and neither is unique (a member named
    # mallory registered as "max <max@...>" was exported as From: max <max@...>).
    shown = name if m is None or not m.display_name or m.display_name == name else f"{m.display_name} ({name})"
    try:
        a = Address(_one_line(shown), user or "unknown", host or ADDR_DOMAIN)
        if _one_address(a):
            return a
    except (ValueError, IndexError):
        pass
    return Address(_one_line(shown), to_ref(name) or "unknown", ADDR_DOMAIN)


def _one_address(a: "Address") -> bool:
    """Whether a mail reader parses ``a`` back as exactly this one address: the directory's
    grammar lets an email hold what RFC 5322 does not (``max@corp.example,Max``), and the
    header then read as two addresses, the first another member's. Such an email is shown
    as the member's ref-safe name at :data:`ADDR_DOMAIN` instead."""
    from email.utils import getaddresses

    got = getaddresses([str(a)])
    return len(got) == 1 and got[0][1] == a.addr_spec


def to_email(s: Session, it: Item, files: list[tuple[str, str, bytes]]) -> "EmailMessage":
    """One message as RFC 5322 (``files``: ``(name, media type, bytes)`` of its saved attachments)."""
    from email.message import EmailMessage
    from email.utils import format_datetime
    row, m = it.row, it.message
    d = s.directory
    e = EmailMessage()
    e["From"] = _address(d, row.sender)
    e["To"] = [_address(d, r) for r in row.recipients] or "undisclosed-recipients:;"
    if row.date:
        e["Date"] = format_datetime(datetime.fromisoformat(row.date.replace("Z", "+00:00")))
    e["Subject"] = _one_line(m.subject if m else row.subject)
    e["Message-ID"] = msgid(row.id)
    refs = [x for x in dict.fromkeys([row.thread, row.in_reply_to]) if x and x != row.id]
    if row.in_reply_to:
        e["In-Reply-To"] = msgid(row.in_reply_to)
    if refs:
        e["References"] = " ".join(msgid(x) for x in refs)
    e["X-Gitmail-From"] = _one_line(row.sender)  # the member whose key signed it (when verified)
    e["X-Gitmail-Verified"] = "good" if row.status == "good" else _one_line(f"{row.status}: {row.detail}")
    e["X-Gitmail-Priority"] = row.priority
    e["X-Gitmail-Type"] = _one_line(row.type)
    if row.encrypted:
        e["X-Gitmail-Encrypted"] = "yes"
    body = m.body if m is not None else ""
    if m is not None and m.payload:
        body = (body + "\n\n" if body else "") + json.dumps(m.payload, ensure_ascii=False, indent=2)
    if it.error:
        body = f"[{it.error}]\n" + body
    e.set_content(body)
    for name, media, data in files:
        maintype, _, subtype = media.partition("/")
        if not subtype:
            maintype, subtype = "application", "octet-stream"
        e.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return e


def _files(s: Session, it: Item) -> list[tuple[str, str, bytes]]:
    """The verified attachments of ``it`` as bytes (saved into a private temporary folder)."""
    if it.message is None or not it.message.attachments or it.row.status != "good" or it.error:
        return []
    import tempfile

    out = []
    with tempfile.TemporaryDirectory(prefix="gitmail-export-") as tmp:
        for sv in save_attachments(s, it, tmp, None):
            if sv.path is not None:
                out.append((sv.name, sv.attachment.media_type or "application/octet-stream", sv.path.read_bytes()))
    return out


def _existing(box: "mboxlib.Mailbox[mboxlib.Message]") -> set[str]:
    return {str(m.get("Message-ID", "")).strip() for m in box}


def _target(mbox: "Optional[Union[str, Path]]", maildir: "Optional[Union[str, Path]]") -> Path:
    """Where ``export`` writes, checked before anything is read or written: an mbox is a regular
    file that is absent, empty or begins ``From `` (an mbox's first line), a Maildir a folder or
    absent, either in a folder that exists. Reading a device as an mbox (``--mbox /dev/full``,
    which reads as endless zero bytes) took all memory; a file of something else got mail
    appended to it. Raises :class:`UsageError`."""
    import stat

    given = str(mbox if mbox is not None else maildir)
    option = "--mbox" if mbox is not None else "--maildir"
    if not given.strip():
        raise UsageError(f"{option}: give a {'file' if mbox is not None else 'folder'} name")
    if "\x00" in given:
        raise UsageError(f"{option}: a path cannot hold a NUL byte")
    path = Path(given).expanduser()
    if not path.parent.is_dir():
        raise UsageError(f"{path}: no such folder {path.parent}")
    try:
        st = path.stat()
    except FileNotFoundError:
        return path
    except OSError as e:
        raise UsageError(f"{path}: {e.strerror}") from None
    if mbox is None:
        if not stat.S_ISDIR(st.st_mode):
            raise UsageError(f"{path}: not a folder (a Maildir is one)")
        parts = {p.name for p in path.iterdir()} if os.access(path, os.R_OK | os.X_OK) else None
        if parts is not None and parts and not {"cur", "new", "tmp"} <= parts:
            raise UsageError(f"{path}: a folder that is not a Maildir (no cur, new and tmp); nothing written")
        if parts == set():  # an empty folder made for it: a Maildir's three folders (OSError: exit 13)
            for sub in ("tmp", "new", "cur"):
                (path / sub).mkdir(mode=0o700)
        return path
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{path}: not a regular file (an mbox is one)")
    if st.st_size:
        with open(path, "rb") as f:
            if f.read(5) != b"From ":
                raise UsageError(f"{path}: not an mbox file (it does not begin with 'From '); nothing written")
    return path


def export(
    repo: RepoLike,
    *,
    mbox: Optional[Union[str, Path]] = None,
    maildir: Optional[Union[str, Path]] = None,
    all_: bool = False,
    since: Optional[str] = None,
    as_: Optional[str] = None,
) -> ExportResult:
    """Write the member's inbox (``all_``: archived and sent mail too) to an mbox file or a
    Maildir folder, adding only messages not already there; oldest first.

    ``since``: ISO date or date-time. Raises :class:`UsageError` (neither or both of
    ``mbox``/``maildir``, a bad date, a path that is not a mailbox) and ``OSError``.
    """
    import mailbox as mboxlib

    if (mbox is None) == (maildir is None):
        raise UsageError("give exactly one of --mbox FILE or --maildir DIR")
    path = _target(mbox, maildir)
    s = session(repo, as_)
    s.refresh()
    rows = cache.export_rows(s.db, include_all=all_, since=since_date(since))
    box: "mboxlib.Mailbox[mboxlib.Message]"
    try:
        box = mboxlib.mbox(path) if mbox is not None else mboxlib.Maildir(path, create=True)
    except (mboxlib.Error, NotADirectoryError, IsADirectoryError) as ex:
        raise UsageError(f"{path}: not a usable {'mbox file' if mbox is not None else 'Maildir'} ({ex})") from None
    except OSError as ex:
        # A folder that takes no new file (``/proc/self``: ENOENT on create); a full or
        # read-only disk and a denied permission keep their own exit codes (errors.py).
        if local_storage_error(ex) is not None:
            raise
        raise UsageError(f"{path}: cannot be created here ({ex.strerror or ex}); nothing written") from None
    try:
        box.lock()
        have = _existing(box)
        added = []
        for row in rows:
            if msgid(row.id) in have:
                continue
            it = load_item(s, row)
            e = to_email(s, it, _files(s, it))
            if isinstance(box, mboxlib.Maildir):
                mm = mboxlib.MaildirMessage(e)
                mm.set_subdir("cur")
                mm.set_flags("S" if row.read or not row.inbox else "")
                box.add(mm)
            else:
                box.add(e)
            have.add(msgid(row.id))
            added.append(row.id)
        box.flush()
    finally:
        box.unlock()
        box.close()
    return ExportResult(path, "mbox" if mbox is not None else "maildir", added, len(rows) - len(added))
