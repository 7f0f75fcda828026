"""Message commits: writing them, reading them back, and checking them.

A message commit (docs/protocol.md, "Message commits") has:

* tree: ``message.json`` (the canonical message blob), plus attachment entries;
* author: the sender (display name and email from the directory), author date =
  message date (whole seconds, +0000);
* message: subject line, blank line, body, blank line, trailers
  (``Message-Id``, ``To`` (one per recipient), ``Thread``, ``In-Reply-To``,
  ``Priority``, ``Type``, ``Request-Id``, ``Trace-Id``);
* committer: the same identity, the time of writing;
* a ``gpgsig`` header holding an armored SSHSIG (namespace ``git``), and no other header
  (:func:`header_problem`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, NamedTuple, Optional, TypeVar, Union, cast

from gitmail.core.model import (
    MAX_BLOB,
    MAX_INT,
    Member,
    Message,
    date_seconds,
)
from gitmail.core.objects import (TREE_MODE, TooLargeError, author_name, blob_data, load_commit, signed_commit,
                                  tree_entries)
from gitmail.core.rules import content_problem
from gitmail.core.signing import Signer, signer_of
# The verification statuses (docs/protocol.md §7), in a module the cache reads without pydantic.
from gitmail.core.verdicts import (BAD_SIGNATURE, GOOD, MALFORMED, MISFILED, RETIRED_KEY, UNKNOWN_SENDER, UNSIGNED,
                                   WRONG_SIGNER)
from gitmail.errors import CorruptMessageError, VerificationError

if TYPE_CHECKING:
    import concurrent.futures
    import contextlib

    import pygit2

    from gitmail.core.directory import Directory

MESSAGE_FILE = "message.json"
T = TypeVar("T")

def author_of(member: Member) -> tuple[str, str]:
    """``(name, email)`` of a message commit's author and committer for ``member`` (§6)."""
    return author_name(member.display_name or member.name), author_name(member.email)


def commit_message(msg: Message) -> str:
    """The commit message text: subject, body, trailers (one paragraph each)."""
    subject = " ".join(msg.subject.split()) or "(no subject)"
    if msg.encrypted is not None:
        subject = "(encrypted message)"
    trailers = [f"Message-Id: <{msg.id}@gitmail>"]
    trailers += [f"To: {' '.join(t.split())}" for t in msg.to]
    if msg.thread:
        trailers.append(f"Thread: <{msg.thread}@gitmail>")
    if msg.in_reply_to:
        trailers.append(f"In-Reply-To: <{msg.in_reply_to}@gitmail>")
    trailers.append(f"Priority: {msg.priority}")
    trailers.append(f"Type: {msg.type}")
    if msg.request_id:
        trailers.append(f"Request-Id: {msg.request_id}")
    if msg.trace_id:
        trailers.append(f"Trace-Id: {msg.trace_id}")
    parts = [subject]
    body = msg.body.strip("\n") if msg.encrypted is None else ""
    if body and body != subject:
        parts.append(body)
    parts.append("\n".join(trailers))
    return "\n\n".join(parts) + "\n"


def write_message_commit(
    pg: "pygit2.Repository",
    msg: Message,
    author: Member,
    signer: Signer,
    parent: Optional[str],
    extra_tree: Optional[dict[str, tuple[str, int]]] = None,
    committed: Optional[int] = None,
) -> str:
    """Write blob, tree and signed commit for ``msg`` on top of ``parent``; return the commit oid.

    ``extra_tree`` maps tree paths to ``(blob oid, filemode)`` (attachments).
    ``committed``: the committer time (seconds; default now). The commit is
    only written to the object database; no ref moves.
    """
    import pygit2

    blob = pg.create_blob(msg.to_blob())
    tb = pg.TreeBuilder()
    tb.insert(MESSAGE_FILE, blob, pygit2.enums.FileMode.BLOB)
    if extra_tree:
        _insert_paths(pg, tb, extra_tree)
    tree = tb.write()
    import time

    from gitmail.core.objects import ident

    name, email = author_of(author)
    a = ident(name, email, date_seconds(msg.date))
    c = ident(name, email, int(time.time()) if committed is None else committed)
    return signed_commit(pg, a, c, commit_message(msg), str(tree), [parent] if parent else [], signer.sign)


def _insert_paths(pg: "pygit2.Repository", tb: "pygit2.TreeBuilder", paths: dict[str, tuple[str, int]]) -> None:
    import pygit2

    sub: dict[str, dict[str, tuple[str, int]]] = {}
    for path, (oid, mode) in paths.items():
        head, _, rest = path.partition("/")
        if rest:
            sub.setdefault(head, {})[rest] = (oid, mode)
        else:
            tb.insert(head, pygit2.Oid(hex=oid), mode)
    for name, entries in sub.items():
        child = pg.TreeBuilder()
        _insert_paths(pg, child, entries)
        tb.insert(name, child.write(), pygit2.enums.FileMode.TREE)


def resign(
    pg: "pygit2.Repository", commit: "pygit2.Commit", parent: Optional[str], signer: Signer
) -> str:
    """Re-parent an unpushed message commit onto ``parent`` and sign it again.

    Tree, author, committer, date and message stay the same, byte for byte (read from the
    raw commit: libgit2's parsed signature is trimmed), so the Message-ID does too.
    """
    raw = commit.read_raw()
    head, _, message = raw.partition(b"\n\n")
    who = {k: v for k, _, v in (ln.partition(b" ") for ln in head.split(b"\n")) if k in (b"author", b"committer")}
    return signed_commit(pg, who[b"author"].decode("utf-8"), who[b"committer"].decode("utf-8"),
                         message.decode("utf-8"), str(commit.tree_id), [parent] if parent else [], signer.sign)


def read_message(pg: "pygit2.Repository", commit: "pygit2.Commit") -> Message:
    """The message blob of a message commit. Raises :class:`CorruptMessageError`.
    (:func:`message_and_tree` also gives the tree's root entries.)

    ``message.json`` must be a regular file (mode 100644) holding canonical JSON (§4). Neither
    the tree nor the blob is inflated when its header gives a size over the bound
    (:data:`gitmail.core.objects.MAX_TREE`, :data:`gitmail.core.model.MAX_BLOB`): a
    compressed object a thousand times its pushed size cannot take a reader's memory.
    """
    return message_and_tree(pg, commit)[0]


def message_and_tree(pg: "pygit2.Repository", commit: "pygit2.Commit") -> tuple[Message, dict[str, tuple[int, str]]]:
    """The message blob of a message commit and its tree's root entries (name -> (mode, oid),
    read in git's form: :func:`message_blob`). Raises :class:`CorruptMessageError`."""
    import pygit2

    oid, root = _message_blob(pg, commit)
    try:
        data = blob_data(pg, oid, MAX_BLOB)
    except TooLargeError as e:
        raise CorruptMessageError(f"{MESSAGE_FILE} {str(e).split(' ', 1)[1]}") from None
    except (KeyError, TypeError, ValueError, pygit2.GitError) as e:
        raise CorruptMessageError(f"{MESSAGE_FILE} is not a readable blob ({type(e).__name__})") from None
    return Message.from_blob(data), root


def wellformed_message(pg: "pygit2.Repository", commit: "pygit2.Commit", body_limit: int) -> Message:
    """The message of a message commit that passes step 2 of docs/protocol.md §7,
    "Verification": its trees in git's form, ``message.json`` a regular file whose content
    passes every check of §4 "What a reader checks" (:func:`gitmail.core.rules.content_problem`,
    ``body_limit`` in bytes, the org's policy) and the tree's layout (:func:`layout_problem`).
    The one home of that step: a verdict (:func:`check_message`) and what a reader shows
    (a malformed message's content is not) both come from here. Raises
    :class:`CorruptMessageError` with the rule that failed."""
    msg, root = message_and_tree(pg, commit)
    problem = content_problem(msg, body_limit) or layout_problem(pg, root, msg)
    if problem is not None:
        raise CorruptMessageError(problem)
    return msg


def message_blob(pg: "pygit2.Repository", commit: "pygit2.Commit") -> str:
    """The id of a message commit's ``message.json``: the entry git finds, in a tree (and
    every folder under it) in git's own form, a regular file. Raises
    :class:`CorruptMessageError` saying which of these fails (docs/protocol.md §7,
    "Verification", step 2)."""
    return _message_blob(pg, commit)[0]


def _message_blob(pg: "pygit2.Repository", commit: "pygit2.Commit") -> tuple[str, dict[str, tuple[int, str]]]:
    import pygit2

    try:
        found = _tree_as_git_reads_it(pg, str(commit.tree_id))
    except (KeyError, pygit2.GitError, ValueError, TypeError) as e:
        raise CorruptMessageError(f"commit {str(commit.id)[:10]}: unreadable tree ({e})") from None
    if MESSAGE_FILE not in found:
        raise CorruptMessageError(f"commit {str(commit.id)[:10]} has no {MESSAGE_FILE}")
    mode, oid = found[MESSAGE_FILE]
    if mode != pygit2.enums.FileMode.BLOB:
        raise CorruptMessageError(f"{MESSAGE_FILE} is not a regular file (mode {mode:o})")
    return oid, found


def layout_problem(pg: "pygit2.Repository", root: dict[str, tuple[int, str]], msg: Message) -> Optional[str]:
    """Why a message commit's tree (``root``: its root entries, :func:`message_and_tree`) holds
    other than what ``msg`` says it holds (docs/protocol.md §6, "The tree"), or None:
    ``message.json``; ``message.age`` when the message is encrypted; ``attachments/``, a folder
    of regular files, exactly one at each attachment's ``path``, when there are attachments;
    ``.gitattributes``, exactly the line gitmail writes, when one of them is stored in LFS.
    Nothing else: a file no entry of ``message.json`` describes is bounded by nothing a
    reader or the guard checks, and is no part of the signed message an auditor reads."""
    from gitmail.core.attachments import BLOB_MODE, GITATTRIBUTES, TREE_DIR

    allowed = {MESSAGE_FILE}
    if msg.encrypted is not None:
        allowed.add("message.age")
    if msg.attachments:
        allowed.add(TREE_DIR)
    if any(a.storage == "lfs" for a in msg.attachments):
        allowed.add(".gitattributes")
    for name, (mode, oid) in sorted(root.items()):
        if name not in allowed:
            return f"the tree holds {name!r}, which this message does not describe"
        if name != TREE_DIR and mode != BLOB_MODE:
            return f"{name} is not a regular file (mode {mode:o})"
    if ".gitattributes" in root:
        try:
            same = blob_data(pg, root[".gitattributes"][1], len(GITATTRIBUTES)) == GITATTRIBUTES
        except (TooLargeError, KeyError, TypeError, ValueError):
            same = False
        if not same:
            return ".gitattributes is not the line gitmail writes for LFS attachments"
    if not msg.attachments:
        return None
    paths = [a.path for a in msg.attachments]
    if len(set(paths)) != len(paths) or any(not p.startswith(TREE_DIR + "/") or "/" in p[len(TREE_DIR) + 1:]
                                            for p in paths):
        return f"an attachment's path is not a file of {TREE_DIR}/ of its own"
    mode, folder = root.get(TREE_DIR, (0, ""))
    if mode != TREE_MODE:
        return f"the tree has no {TREE_DIR}/ folder"
    files = {name: (m, oid) for m, name, oid in tree_entries(pg, folder)}  # sized and in git's form already
    want = {p[len(TREE_DIR) + 1:] for p in paths}
    extra = sorted(files.keys() - want)
    if extra:
        return f"{TREE_DIR}/ holds {extra[0]!r}, which no attachment of this message names"
    gone = sorted(want - files.keys())
    if gone:
        return f"{TREE_DIR}/{gone[0]} is not in the tree"
    odd = sorted(n for n, (m, _) in files.items() if m != BLOB_MODE)
    if odd:
        return f"{TREE_DIR}/{odd[0]} is not a regular file (mode {files[odd[0]][0]:o})"
    for a in msg.attachments:
        why = _stored_as_declared(pg, a.path, files[a.path[len(TREE_DIR) + 1:]][1], a.storage, a.oid, a.size)
        if why is not None:
            return why
    return None


def _stored_as_declared(pg: "pygit2.Repository", path: str, oid: str, storage: str, sha256: str,
                        size: int) -> Optional[str]:
    """Why the blob ``oid`` at ``path`` is not what its attachment entry declares, or None
    (docs/protocol.md §6, "The tree"): for ``lfs`` storage exactly the pointer to ``sha256``
    and ``size`` (:func:`gitmail.core.lfs.parse_pointer`, at most ``POINTER_MAX`` bytes read);
    for ``blob`` storage ``size`` bytes, from the object's header (the content's sha256 is
    checked when it is saved, which reads it). Otherwise a verified message could name a
    10-byte file while its pointer asks every reader to download 9 MiB, or the reverse."""
    import pygit2

    from gitmail.core import lfs
    from gitmail.core.objects import BLOB, object_size

    try:
        if storage == "lfs":
            if lfs.parse_pointer(blob_data(pg, oid, lfs.POINTER_MAX)) != (sha256, size):
                return f"{path} is not the LFS pointer its entry declares (oid and size)"
            return None
        held = object_size(pg, oid, BLOB, MAX_INT)
    except TooLargeError:
        return f"{path} is not the LFS pointer its entry declares (oid and size)"
    except (KeyError, TypeError, ValueError, pygit2.GitError) as e:
        return f"{path} cannot be read ({type(e).__name__})"
    if held != size:
        return f"{path} holds {held} bytes; its entry declares {size}"
    return None


def _tree_as_git_reads_it(pg: "pygit2.Repository", tree: str) -> dict[str, tuple[int, str]]:
    """name -> (mode, oid) of a message's root tree, after every tree of the message (the root
    and each folder under it: ``attachments/``) is found in git's own form
    (:func:`gitmail.core.objects.tree_entries`, each sized first). A name then means one
    entry, the one ``git show`` finds, for every later lookup by path (attachments, the
    ciphertext). Raises ``ValueError`` (not git's form, too large), ``KeyError``, ``TypeError``."""
    root = tree_entries(pg, tree)
    folders = [oid for mode, _, oid in root if mode == TREE_MODE]
    seen = 1
    while folders:
        seen += 1
        if seen > MAX_TREES:
            raise ValueError(f"more than {MAX_TREES} folders")
        folders.extend(oid for mode, _, oid in tree_entries(pg, folders.pop()) if mode == TREE_MODE)
    return {name: (mode, oid) for mode, name, oid in root}


MAX_TREES = 64  # folders in one message's tree: attachments/ (and what a hostile sender adds)


@dataclass
class Check:
    """The result of checking one message commit."""

    status: str
    detail: str = ""
    signer: Optional[str] = None  # member name whose key made the signature

    @property
    def good(self) -> bool:
        return self.status == GOOD


def metadata_problem(commit: "pygit2.Commit", msg: Message, member: Member,
                     earlier: "Callable[[], list[Member]]" = list, raw: Optional[bytes] = None) -> Optional[str]:
    """Why the commit disagrees with the signed message, or None (docs/protocol.md §6, "The
    clear metadata is bound to the signed message").

    Read from the raw commit object (``raw``: its bytes, when the caller has read them), as git
    shows it, not as libgit2 parses it (the two differ on hostile lines: an author line
    without its time zone, or with the time glued to the email). The headers must be exactly
    what the writer writes: ``tree``, at most one ``parent``, ``author``, ``committer``, one
    ``gpgsig`` header holding the armor line by line, and no other (an ``encoding`` header
    would make git show the text re-encoded); :func:`header_problem`. The commit message
    equals :func:`commit_message` byte for byte; the author's name and email are rendered
    (:func:`author_of`) from ``member``'s current directory entry or one of its earlier
    versions, ``earlier()`` (called only when the current one does not match); the author
    time is the message date, ``+0000``; the committer is the same identity.
    """
    data = commit.read_raw() if raw is None else raw
    end = data.find(b"\n\n")
    if end < 0:
        return "commit has no message"
    if data[end + 2:] != commit_message(msg).encode("utf-8"):
        return "commit message (subject, body or trailers) disagrees with message.json"
    head = header_problem(data[:end])
    if isinstance(head, str):
        return head
    (name, email, when), (cname, cemail) = head

    def matches(m: Member) -> bool:
        n, e = author_of(m)
        return name == n.encode("utf-8") and email == e.encode("utf-8")

    if not matches(member) and not any(matches(m) for m in earlier()):
        return f"git author is not {msg.from_}'s directory entry"
    if when != date_seconds(msg.date):
        return "git author date disagrees with the message date"
    if (cname, cemail) != (name, email):
        return "git committer is not the author"
    return None


# The header lines of a message commit (docs/protocol.md §6), the rule in one expression; the
# shell notice reads them the same way (hooks/notice.sh, function commit, which also wants the
# committer's zone +0000). An identity is a name and an email free of "<", ">" and line breaks;
# a time is 0 or up to 11 digits without a leading zero.
_IDENT = rb"([^<>\n]*) <([^<>\n]*)> (0|[1-9][0-9]{0,10})"
_HEADERS = re.compile(
    rb"tree [0-9a-f]{40}\n(?:parent [0-9a-f]{40}\n)?"
    rb"author " + _IDENT + rb" \+0000\n"
    rb"committer " + _IDENT + rb" [+-][0-9]{4}\n"  # any zone: the committer time is the time of writing
    rb"gpgsig -----BEGIN SSH SIGNATURE-----\n(?: [A-Za-z0-9+/]+\n)* [A-Za-z0-9+/]+={0,2}\n -----END SSH SIGNATURE-----"
)


def header_problem(head: bytes) -> "str | tuple[tuple[bytes, bytes, int], tuple[bytes, bytes]]":
    """The header lines of a message commit (``head``: the raw object up to, not including, the
    blank line) checked against the writer's layout: ``tree <hex>``, at most one
    ``parent <hex>``, ``author <name> <<email>> <seconds> +0000``, ``committer`` likewise (any
    zone: the committer time is the time of writing), then
    ``gpgsig -----BEGIN SSH SIGNATURE-----``, base64 continuation lines (padding only on the
    last) and `` -----END SSH SIGNATURE-----``; nothing else. Returns why not, or
    ``((author name, email, seconds), (committer name, email))``."""
    m = _HEADERS.fullmatch(head)
    if m is None:
        return _header_reason(head)
    return (m.group(1), m.group(2), int(m.group(3))), (m.group(4), m.group(5))


def _header_reason(head: bytes) -> str:
    """Words for why ``head`` fails :data:`_HEADERS` (the verdict is that expression's alone)."""
    lines = head.split(b"\n")
    names = [ln.split(b" ", 1)[0] for ln in lines if ln[:1] not in (b" ", b"")]
    other = next((n for n in names if n not in (b"tree", b"parent", b"author", b"committer", b"gpgsig")), None)
    if other is not None:
        return f"commit has a header gitmail never writes ({other.decode('utf-8', 'replace')[:40]!r})"
    for kind in (b"tree", b"parent"):  # git reads either case of hex (§7 step 1); gitmail writes lower case
        for ln in lines:
            if ln.startswith(kind + b" ") and not re.fullmatch(kind + rb" [0-9a-f]{40}", ln):
                return f"git {kind.decode()} line is not {kind.decode()} and 40 lower-case hex digits"
    if names.count(b"parent") > 1:
        return "commit has more than one parent line"
    for kind in (b"author", b"committer"):
        line = next((ln for ln in lines if ln.startswith(kind + b" ")), b"")
        zone = rb" \+0000" if kind == b"author" else rb" [+-][0-9]{4}"
        if not re.fullmatch(kind + b" " + _IDENT + zone, line):
            return f"git {kind.decode()} line is not NAME <EMAIL> SECONDS {'+0000' if kind == b'author' else 'ZONE'}"
    if b"gpgsig" in names:
        return "gpgsig header is not the armored signature as gitmail writes it"
    return "commit headers are not tree, parent, author, committer and gpgsig in this order"


def check_message(
    pg: "pygit2.Repository",
    commit: "Union[pygit2.Commit, str]",
    recipient: str,
    sender: str,
    directory: "Directory",
    signer_key: "Optional[str | VerificationError]" = None,
    raw: Optional[bytes] = None,
    sending: bool = False,
) -> tuple[Optional[Message], Check]:
    """Check a commit (or commit id) found on ``gitmail/mail/<recipient>/<sender>``.

    Good means (docs/protocol.md §7, "Verification"): ``message.json`` is a
    canonical, valid message whose ``id`` matches its stored content; signed by a
    key of the member named in ``from``; that member is the ref's sender; the
    recipient folder is one of ``to``; the commit's metadata is the one rendered
    from the message. Never raises for a bad commit, however hostile; the returned
    :class:`Check` says what is wrong, and the message is returned only when its
    content is valid. ``signer_key`` is the result of :func:`signer_of` when the
    caller already computed it (e.g. in parallel); ``raw`` the commit object's bytes when
    the caller has read them. ``sending``: the guard's view, a message being pushed now, whose
    body is held to the org's limit in force (``policy.body_limit``); a reader holds every
    message to the widest limit of the directory's history (``Directory.read_body_limit``,
    docs/protocol.md §13).
    """
    try:
        return _check(pg, commit, recipient, sender, directory, signer_key, raw, sending)
    except Exception as e:  # a hostile object must become a verdict, never break the mailbox
        return None, Check(MALFORMED, f"cannot be checked: {type(e).__name__}: {str(e)[:200]}")


def _check(
    pg: "pygit2.Repository",
    commit: "Union[pygit2.Commit, str]",
    recipient: str,
    sender: str,
    directory: "Directory",
    signer_key: "Optional[str | VerificationError]",
    raw: Optional[bytes] = None,
    sending: bool = False,
) -> tuple[Optional[Message], Check]:
    if isinstance(commit, str):
        loaded = load_commit(pg, commit)
        if isinstance(loaded, str):
            return None, Check(MALFORMED, loaded)
        commit = loaded
    try:
        msg = wellformed_message(pg, commit, directory.policy.body_limit if sending else directory.read_body_limit)
    except CorruptMessageError as e:
        return None, Check(MALFORMED, str(e))
    if msg.stored_id() != msg.id:
        return msg, Check(MALFORMED, "Message-ID does not match the content")
    if raw is None:
        raw = commit.read_raw()  # once: for the signature here and the headers below
    try:
        if isinstance(signer_key, VerificationError):
            raise signer_key
        key = signer_key or signer_of(commit, raw)
    except VerificationError as e:
        status = UNSIGNED if str(e) == "unsigned" else BAD_SIGNATURE
        return msg, Check(status, str(e))
    if msg.encrypted is not None:
        from gitmail.core.private import check_ciphertext

        try:
            check_ciphertext(pg, commit, msg, directory)
        except VerificationError as e:
            return msg, Check(MALFORMED, str(e))
    who = directory.member_by_key(key)
    if who is None:
        return msg, Check(UNKNOWN_SENDER, "signed by a key no member holds")
    if who.name != msg.from_ or who.name != sender:
        return msg, Check(WRONG_SIGNER, f"signed by {who.name}, claims to be from {msg.from_}", who.name)
    why = directory.key_problem(pg, key, str(commit.id), recipient, sender)
    if why is not None:
        return msg, Check(RETIRED_KEY, why, who.name)
    if recipient not in msg.to:
        return msg, Check(MISFILED, f"on {recipient}'s mailbox but addressed to {', '.join(msg.to)}", who.name)
    problem = metadata_problem(commit, msg, who, lambda: directory.entries_of(pg, who.name), raw)
    if problem:
        return msg, Check(MALFORMED, problem, who.name)
    return msg, Check(GOOD, "", who.name)


class Brief(NamedTuple):
    """What the cache's index and ``gitmail verify`` keep of a checked message (:func:`brief`):
    a plain tuple, so the worker pool sends it back for a fraction of what pickling a
    :class:`Message` costs (issue 16 item 4)."""

    id: str
    from_: str
    to: list[str]
    date: str
    subject: str
    summary: str
    priority: str
    type: str
    request_id: Optional[str]
    in_reply_to: Optional[str]
    thread: Optional[str]
    require_ack: bool
    n_attach: int  # attachments listed
    attach_size: int  # their sizes summed (bytes, capped at 2^63 - 1)
    trace_id: Optional[str]
    payload: Optional[dict[str, Any]]  # of an open type only (its hint), else None
    sealed: Optional[Message]  # the whole message when it is encrypted (to be opened), else None

    @property
    def encrypted(self) -> bool:
        return self.sealed is not None


def brief(msg: Message) -> Brief:
    """The :class:`Brief` of ``msg``."""
    from gitmail.core.model import MAX_INT, is_open_type

    return Brief(msg.id, msg.from_, msg.to, msg.date, msg.subject, msg.summary, msg.priority, msg.type,
                 msg.request_id, msg.in_reply_to, msg.thread, msg.require_ack, len(msg.attachments),
                 min(sum(a.size for a in msg.attachments), MAX_INT) if msg.attachments else 0, msg.trace_id,
                 msg.payload if msg.payload is not None and is_open_type(msg.type) else None,
                 msg if msg.encrypted is not None else None)


Verdict = tuple[Optional[Brief], Check]


# -- checking many commits: in batches, on every core -------------------------------------

PARALLEL_MIN = 512  # commits: below this a batch is checked in-process (starting workers costs more)
_CHUNK = 250  # commits per task sent to a worker

# A worker's view of the repository, set in the parent just before the pool forks
# (the directory is inherited, never pickled) and opened lazily in each worker.
_WORKER: dict[str, object] = {}


def _check_chunk(task: tuple[list[str], str, str]) -> list[Verdict]:
    import pygit2

    chunk, recipient, sender = task
    pg = _WORKER.get("pg")
    if pg is None:
        pg = _WORKER["pg"] = pygit2.Repository(str(_WORKER["path"]))
    # threads=False: this process is one of a pool of one worker per core already.
    return _briefs(_check_many(cast("pygit2.Repository", pg), chunk, recipient, sender,
                               cast("Directory", _WORKER["directory"]), threads=False))


def _briefs(verdicts: list[tuple[Optional[Message], Check]]) -> list[Verdict]:
    return [(None if m is None else brief(m), c) for m, c in verdicts]


def _check_many(pg: "pygit2.Repository", oids: list[str], recipient: str, sender: str,
                directory: "Directory", threads: bool = True) -> list[tuple[Optional[Message], Check]]:
    """:func:`check_message` of each of ``oids`` (the signatures checked first, with ``threads``
    on every core)."""
    from gitmail.core.signing import signers

    loaded = [load_commit(pg, o) for o in oids]
    commits = [c for c in loaded if not isinstance(c, str)]
    raws = [c.read_raw() for c in commits]  # read once: for the signature and the headers
    read = iter(zip(signers(commits, threads, raws), raws))
    out: list[tuple[Optional[Message], Check]] = []
    for c in loaded:
        if isinstance(c, str):  # why it cannot be read: the verdict check_message gives its id
            out.append((None, Check(MALFORMED, c)))
            continue
        key, raw = next(read)
        out.append(check_message(pg, c, recipient, sender, directory, key, raw))
    return out


class Pending:
    """The verdicts of one submitted batch: :meth:`parts` yields them in order, a part as soon
    as it is checked (the caller indexes it while the workers check the next)."""

    def __init__(self, parts: "Callable[[], Iterator[list[Verdict]]]") -> None:
        self.parts = parts

    def get(self) -> list[Verdict]:
        """Every verdict of the batch (waits for the last)."""
        return [v for part in self.parts() for v in part]


class Checker:
    """Checks batches of message commits (:func:`check_message`), on every core for big batches.

    A batch of at least :data:`PARALLEL_MIN` commits goes to a pool of forked
    worker processes (one per core, started at the first such batch, each with
    its own pygit2 handle), so parsing and signature checks use every core;
    :meth:`submit` returns at once, so the caller can index the previous batch
    meanwhile. Smaller batches are checked in-process. Use as a context manager
    (the pool is stopped on exit). The verdicts are exactly those of
    :func:`check_message`.
    """

    def __init__(self, pg: "pygit2.Repository", directory: "Directory", workers: Optional[int] = None) -> None:
        import os

        from gitmail.core.objects import configure_reads

        configure_reads()
        self.pg = pg
        self.directory = directory
        self.workers = workers if workers is not None else (os.cpu_count() or 1)
        self._pool: "Optional[concurrent.futures.ProcessPoolExecutor]" = None
        self._stack: "Optional[contextlib.ExitStack]" = None

    def __enter__(self) -> "Checker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._stack is not None:
            self._stack.close()  # drops what is not started; the workers end after their task
            self._stack = None
            self._pool = None

    def submit(self, oids: list[str], recipient: str, sender: str) -> Pending:
        """Start checking ``oids`` (commits found on ``mail/<recipient>/<sender>``), in order."""
        from gitmail.core import workers

        # A process that runs other threads (the MCP server's) is never forked: the batch is
        # checked here. (Not can_fork(): an explicit ``workers`` is obeyed on one core too.)
        if self.workers < 2 or len(oids) < PARALLEL_MIN or (self._pool is None and not workers.alone()):
            return Pending(lambda: iter([_briefs(_check_many(self.pg, oids, recipient, sender, self.directory))]))
        pool = self._start()
        # The tasks are queued now and checked in order; each part is handed over as it is done.
        res = workers.map_now(pool, _check_chunk, [(oids[i : i + _CHUNK], recipient, sender)
                                                    for i in range(0, len(oids), _CHUNK)])
        return Pending(lambda: res)

    def _start(self) -> "concurrent.futures.ProcessPoolExecutor":
        import contextlib

        from gitmail.core import workers

        if self._pool is None:
            _WORKER.clear()
            _WORKER.update(path=self.pg.path, directory=self.directory)
            # fork: the workers inherit the loaded directory instead of re-verifying it
            self._stack = contextlib.ExitStack()
            self._pool = self._stack.enter_context(workers.pool(self.workers))
        return self._pool


def check_batches(
    checker: Checker, batches: "Iterable[tuple[T, list[str], str, str]]"
) -> "Iterator[tuple[T, list[str], Iterator[list[Verdict]]]]":
    """Check each ``(tag, commit ids, recipient, sender)`` batch; yield ``(tag, ids, parts)`` in
    order, ``parts`` yielding the verdicts of ``ids`` in order, a list at a time as they are checked.

    The next batch is submitted before this one is yielded, so the workers check
    it while the caller handles this one; at most two batches are held. The caller
    consumes ``parts`` before asking for the next batch.
    """
    pending: "Optional[tuple[T, list[str], Pending]]" = None
    for tag, oids, recipient, sender in batches:
        nxt = (tag, oids, checker.submit(oids, recipient, sender))
        if pending is not None:
            yield pending[0], pending[1], pending[2].parts()
        pending = nxt
    if pending is not None:
        yield pending[0], pending[1], pending[2].parts()
