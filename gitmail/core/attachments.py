"""Attachments: checking files, storing them once, fetching, verifying and saving
them safely (docs/attachments.md).

Sending: :func:`prepare` checks every file first (nothing is written when one
is bad), :func:`store` puts the content in the sender's clone (LFS: the local
cache ``.git/lfs/objects``; blob: the object database) and returns the
:class:`Attachment` entries and the tree entries of the message commit;
:func:`upload` (called by the sender and by delivery, gitmail.core.sync) moves LFS content to
the org's store before the commits that point at it are pushed.

Receiving: :func:`save_all` fetches each attachment (local cache first),
verifies size and sha256, and writes it into a directory under a sanitised
name that never replaces an existing file.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, Union, cast

from gitmail.core import lfs
from gitmail.core.lfs import Progress, no_progress
from gitmail.errors import AttachmentError, LFSUnreachableError

if TYPE_CHECKING:
    import pygit2

    from gitmail.core.model import Attachment, Message, OrgPolicy, SealedAttachment
    from gitmail.core.repo import Repo

TREE_DIR = "attachments"
GITATTRIBUTES = b"attachments/** filter=lfs diff=lfs merge=lfs -text\n"
NAME_MAX_BYTES = 200  # UTF-8 bytes of a sanitised name (room for " (99)" and temp names in 255)
EXT_MAX_BYTES = 16  # an extension longer than this is not kept when a name is shortened
FALLBACK_NAME = "attachment"
INBOX_ENV = "GITMAIL_INBOX"
BLOB_MODE = 0o100644
ATTACHMENT_COUNT_ANY = 1 << 30  # prepare() given only a per-attachment limit: no count bound
FILE_MODE_MAX = 0o600  # decrypted or fetched content on disk: never wider (docs/attachments.md)
DIR_MODE_MAX = 0o700

_FORBIDDEN = set('<>:"/\\|?*')
_BAD_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
_RESERVED = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"} | {
    f"{d}{n}" for d in ("COM", "LPT") for n in [*"0123456789", "¹", "²", "³"]
}
# Objects known to be in the org's store during this process: (git dir, oid).
_UPLOADED: set[tuple[str, str]] = set()


# -- names -----------------------------------------------------------------------------


def safe_name(name: str) -> str:
    """A file name that is safe to create in any directory, on any common OS.

    Rules (docs/attachments.md, "File names"): NFC; only the last component
    of a ``/`` or ``\\`` path (``.`` and ``..`` dropped); control, format,
    unassigned, private-use and line/paragraph separator characters and
    ``< > : " / \\ | ? *`` become ``_``; other white space becomes a space;
    leading dots, dashes and spaces and trailing dots and spaces go; a
    Windows device name (CON, NUL, COM1, ...; any extension) gets a ``_``
    prefix; over :data:`NAME_MAX_BYTES` UTF-8 bytes the stem is shortened and
    a short extension kept; an empty result is ``attachment``. Idempotent.
    """
    s = unicodedata.normalize("NFC", str(name))
    parts = [p for p in re.split(r"[/\\]", s) if p not in ("", ".", "..")]
    s = parts[-1] if parts else ""
    s = "".join(_safe_char(c) for c in s)
    s = re.sub(r" {2,}", " ", s).lstrip(".- ").rstrip(". ")
    if s.split(".")[0].rstrip(" ").upper() in _RESERVED:
        s = "_" + s  # before shortening: the prefix counts toward the bound (else 201 bytes, and not idempotent)
    if len(s.encode("utf-8")) > NAME_MAX_BYTES:
        s = _shorten(s)
    return s or FALLBACK_NAME


def _safe_char(c: str) -> str:
    if c in _FORBIDDEN or unicodedata.category(c) in _BAD_CATEGORIES:
        return "_"
    return " " if c.isspace() else c


def _shorten(s: str) -> str:
    stem, ext = _split_ext(s)
    if len(ext.encode("utf-8")) > EXT_MAX_BYTES:
        stem, ext = s, ""
    room = NAME_MAX_BYTES - len(ext.encode("utf-8"))
    stem = stem.encode("utf-8")[:room].decode("utf-8", "ignore").rstrip(". ")
    return (stem + ext) if stem else ext.lstrip(".")


def _split_ext(name: str) -> tuple[str, str]:
    """``("report", ".csv")``; a name with no dot past its first character has no extension."""
    i = name.rfind(".")
    return (name[:i], name[i:]) if i > 0 else (name, "")


def human_size(n: int) -> str:
    """``512 B``, ``4.2 KB``, ``10.0 MB`` (units of 1024 bytes)."""
    if n < 1024:
        return f"{n} B"
    v = float(n)
    for unit in ("KB", "MB", "GB", "TB"):
        v /= 1024
        if v < 1024 or unit == "TB":
            return f"{v:.1f} {unit}"
    raise AssertionError("unreachable")


# -- bounds (docs/protocol.md §13) -------------------------------------------------------


@dataclass(frozen=True)
class Bounds:
    """The attachment limits of one message: bytes per attachment, attachments per
    message, and bytes of all of them together."""

    per_file: int
    count: int
    total: int

    @classmethod
    def of(cls, policy: "OrgPolicy") -> "Bounds":
        """The bounds an org policy sets; the total is never below the per-attachment limit
        (one attachment at the limit is always allowed)."""
        return cls(policy.attachment_limit, policy.attachment_count_limit,
                   max(policy.attachment_total_limit, policy.attachment_limit))

    def widest(self, other: "Bounds") -> "Bounds":
        return Bounds(max(self.per_file, other.per_file), max(self.count, other.count),
                      max(self.total, other.total))


def bounds_problems(sizes: Sequence[tuple[str, int]], bounds: Bounds, sealed_to: Optional[int] = None) -> list[str]:
    """Why the attachments ``sizes`` (``(name, bytes)`` per entry, duplicates counted)
    break ``bounds``; empty when they do not. One line per problem.

    ``sealed_to``: the sizes are ciphertexts sealed to that many readers (the
    guard's view of an encrypted message): each is first turned into the
    smallest plaintext that could have produced it (:func:`gitmail.core.crypto.plain_min`).
    The one rule for the sender (:func:`prepare`), the guard and the reader.
    """
    from gitmail.core import crypto

    if sealed_to is not None:
        sizes = [(n, crypto.plain_min(sz, sealed_to)) for n, sz in sizes]
    out = []
    for name, size in sizes:
        if size > bounds.per_file:
            out.append(f"attachment {name} is {size} bytes ({human_size(size)}); the limit is "
                       f"{bounds.per_file} bytes per attachment")
    if len(sizes) > bounds.count:
        out.append(f"{len(sizes)} attachments; the limit is {bounds.count} per message")
    total = sum(sz for _, sz in sizes)
    if total > bounds.total:
        out.append(f"attachments total {total} bytes ({human_size(total)}); the limit is "
                   f"{bounds.total} bytes per message")
    return out


_READ_BOUNDS: dict[str, Bounds] = {}


def read_bounds(pg: "pygit2.Repository", directory_tip: Optional[str]) -> Bounds:
    """The bounds a reader applies to any message: for each limit, the largest value it
    had in any commit of the verified directory history ending at ``directory_tip``
    (docs/protocol.md §13): lowering a limit never makes mail sent before unreadable.
    A commit whose ``org.json`` cannot be parsed counts with the default policy."""
    from gitmail.core.model import OrgPolicy
    from gitmail.core.objects import blob_data

    if directory_tip is None:
        return Bounds.of(OrgPolicy())
    if directory_tip in _READ_BOUNDS:
        return _READ_BOUNDS[directory_tip]
    from gitmail.core.objects import commit, first_parent_line

    out: Optional[Bounds] = None
    for oid, _ in first_parent_line(pg, directory_tip):  # the directory is linear (the guard and clients see to it)
        c = commit(pg, oid)
        try:
            b = Bounds.of(OrgPolicy.model_validate_json(blob_data(pg, c.tree["org.json"].id)))
        except (KeyError, ValueError):
            b = Bounds.of(OrgPolicy())
        out = b if out is None else out.widest(b)
    result = out or Bounds.of(OrgPolicy())
    _READ_BOUNDS[directory_tip] = result
    return result


# -- sending ------------------------------------------------------------------------------


@dataclass
class Source:
    """A file about to be attached: where it is, its safe name, size (bytes), sha256, type,
    and its content as read and hashed (``data``: attachments are at most the org's limit,
    10 MB by default, so holding them spares a second read and hash)."""

    path: Path
    name: str
    size: int
    oid: str
    media_type: str
    data: bytes = b""


# Folders no file is attached from, whatever the caller says: the kernel's views of processes
# and devices (``/proc/self/environ`` is a "regular file" of size 0 that reads as the process's
# environment, its tokens included).
PSEUDO_FOLDERS: tuple[tuple[str, str], ...] = (
    ("/proc", "the kernel's /proc (process state, not a file on disk)"),
    ("/sys", "the kernel's /sys (not a file on disk)"),
)


def prepare(paths: Sequence[Union[str, Path]], policy: Union[int, "OrgPolicy", Bounds],
            never_from: Sequence[tuple[Path, str]] = ()) -> list[Source]:
    """Check and hash every file in ``paths``; nothing is written anywhere.

    ``policy``: the org policy (or its :class:`Bounds`; a bare int is the
    per-attachment limit only). ``never_from``: ``(folder, what it is in words)`` whose
    files are never attached (gitmail's own data: the clone's git directory, whose cache
    holds decrypted mail, and the keys' folder), besides :data:`PSEUDO_FOLDERS`; a path is
    judged where it really is (symbolic links resolved). Raises :class:`AttachmentError`
    (one line) for a missing file, a directory, an unreadable file, one in such a folder,
    one holding a private key, one over the per-attachment limit, or too many files or
    bytes together (checked before anything is read).
    """
    from gitmail.core.model import OrgPolicy

    if isinstance(policy, int):
        bounds = Bounds(policy, ATTACHMENT_COUNT_ANY, ATTACHMENT_COUNT_ANY)
    else:
        bounds = Bounds.of(policy) if isinstance(policy, OrgPolicy) else policy
    if len(paths) > bounds.count:
        raise AttachmentError(f"cannot attach {len(paths)} files: the org's limit is {bounds.count} per message")
    sizes = []
    for p in paths:
        try:
            sizes.append((str(p), Path(p).stat().st_size))
        except (OSError, ValueError):  # ValueError: a NUL in the path
            pass  # reported by _prepare_one with its reason
    total = sum(sz for _, sz in sizes)
    if total > bounds.total:
        raise AttachmentError(f"cannot attach these files: together {human_size(total)}, over the org's limit of "
                              f"{human_size(bounds.total)} per message")
    folders: list[tuple[Union[str, Path], str]] = [*PSEUDO_FOLDERS, *never_from]
    kept = [(os.path.realpath(f), why) for f, why in folders]
    out = [_prepare_one(Path(p), bounds.per_file, kept) for p in paths]
    problems = bounds_problems([(s.name, s.size) for s in out], bounds)  # sizes as read (files may grow)
    if problems:
        raise AttachmentError(f"cannot attach these files: {problems[0]}")
    return out


def _prepare_one(path: Path, limit: int, kept: Sequence[tuple[str, str]] = ()) -> Source:
    shown = str(path)
    try:
        real = os.path.realpath(path)
        for folder, why in kept:
            if real == folder or real.startswith(folder.rstrip("/") + "/"):
                raise AttachmentError(f"cannot attach {shown}: it is in {why}; gitmail does not send it")
        st = path.stat()
    except FileNotFoundError:
        raise AttachmentError(f"cannot attach {shown}: no such file") from None
    except OSError as e:
        raise AttachmentError(f"cannot attach {shown}: {e.strerror}") from None
    except ValueError:  # "embedded null byte": no file has such a name
        raise AttachmentError(f"cannot attach {shown}: a file name cannot hold a NUL byte") from None
    if stat.S_ISDIR(st.st_mode):
        raise AttachmentError(f"cannot attach {shown}: it is a directory (attach files, or an archive of it)")
    if not stat.S_ISREG(st.st_mode):
        raise AttachmentError(f"cannot attach {shown}: not a regular file")
    if st.st_size > limit:
        raise AttachmentError(
            f"cannot attach {shown}: {human_size(st.st_size)} is over the org's limit of {human_size(limit)} per attachment"
        )
    data = _read_file(path, shown, limit, st.st_size)
    secret = private_key_kind(data)
    if secret is not None:
        raise AttachmentError(f"cannot attach {shown}: it holds {secret}; gitmail does not send private keys")
    name = safe_name(path.name)
    import mimetypes

    media = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Source(path, name, len(data), hashlib.sha256(data).hexdigest(), media, data)


# Private keys by what starts them (docs/attachments.md, "Private keys"): PEM (OpenSSH,
# PKCS#1/#8, EC, encrypted or not), OpenPGP and age identities anywhere (inside a JSON string,
# as a cloud service account's "private_key" holds one, or an indented YAML block), PuTTY key
# files at a line's start.
_PRIVATE_KEYS = re.compile(
    rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
    rb"|(?<![0-9A-Z-])AGE-SECRET-KEY-1[0-9A-Z]{20}"
    rb"|^[ \t]*PuTTY-User-Key-File-[0-9]+:", re.M)
_KINDS = ((b"-----BEGIN OPENSSH", "an OpenSSH private key"), (b"-----BEGIN PGP", "an OpenPGP private key"),
          (b"-----BEGIN", "a PEM private key"), (b"AGE-SECRET-KEY-1", "an age identity (a private key)"),
          (b"PuTTY", "a PuTTY private key"))


def private_key_kind(data: bytes) -> Optional[str]:
    """What private key ``data`` holds, in words ("an OpenSSH private key"), or None: what
    begins one (:data:`_PRIVATE_KEYS`) anywhere in it, a line's start for PuTTY's. A sender never attaches one: an
    agent a hostile message talked into attaching ``~/.ssh/id_ed25519`` or its own gitmail
    key would hand the sender its identity. Anything else (an archive, a key inside another
    format) is not looked into."""
    m = _PRIVATE_KEYS.search(data)
    if m is None:
        return None
    return next(words for start, words in _KINDS if m.group().lstrip(b" \t").startswith(start))


def _read_file(path: Path, shown: str, limit: int, size: int) -> bytes:
    """The file's content, read once; refused as soon as it is over ``limit`` (it may have grown
    since ``stat`` said ``size``; nothing bigger than what is read is ever allocated)."""
    parts: list[bytes] = []
    total = 0
    try:
        with open(path, "rb") as f:
            want = min(size, limit) + 1  # the whole file and one byte more in one read, usually
            while chunk := f.read(want):
                parts.append(chunk)
                total += len(chunk)
                if total > limit:
                    raise AttachmentError(f"cannot attach {shown}: it grew over the org's limit of {human_size(limit)}")
                want = min(lfs.CHUNK, limit + 1 - total)
    except PermissionError:
        raise AttachmentError(f"cannot attach {shown}: permission denied (not readable)") from None
    except OSError as e:
        raise AttachmentError(f"cannot attach {shown}: {e.strerror}") from None
    return parts[0] if len(parts) == 1 else b"".join(parts)


def store(
    repo: "Repo", sources: list[Source], storage: str
) -> tuple[list["Attachment"], dict[str, tuple[str, int]]]:
    """Store the content of ``sources`` in this clone, once per distinct content.

    ``storage``: ``"lfs"`` (content into ``.git/lfs/objects``, a pointer blob
    in the tree, plus a ``.gitattributes`` marking ``attachments/**`` as LFS)
    or ``"blob"`` (the content itself is the tree's blob). Returns the
    message's attachment entries and ``extra_tree`` (path -> (blob hex,
    mode)) for :func:`gitmail.core.store.write_message_commit`. Tree paths
    are ``attachments/<n>-<safe name>``, n from 1.
    """
    from gitmail.core.model import Attachment

    pg = repo.pg
    blobs: dict[str, str] = {}  # sha256 -> blob hex (pointer or content)
    atts: list[Attachment] = []
    tree: dict[str, tuple[str, int]] = {}
    for i, src in enumerate(sources, 1):
        if src.oid not in blobs:
            blobs[src.oid] = _store_one(repo, pg, src, storage)
        path = f"{TREE_DIR}/{i}-{src.name}"
        tree[path] = (blobs[src.oid], BLOB_MODE)
        atts.append(Attachment(name=src.name, size=src.size, media_type=src.media_type, oid=src.oid,
                               storage=storage, path=path))
    if storage == "lfs" and sources:
        tree[".gitattributes"] = (str(pg.create_blob(GITATTRIBUTES)), BLOB_MODE)
    return atts, tree


def _store_one(repo: "Repo", pg: "pygit2.Repository", src: Source, storage: str) -> str:
    # src.data is what was hashed (prepare/encrypt_sources): what is stored is what the oid names.
    if len(src.data) != src.size:
        raise AttachmentError(f"internal error: attachment {src.name!r} has no content to store")
    if storage == "lfs":
        lfs.write_local(lfs.cache_root(repo), src.oid, src.size, src.data, verified=True)
        return str(pg.create_blob(lfs.format_pointer(src.oid, src.size)))
    return str(pg.create_blob(src.data))


def upload(repo: "Repo", atts: Sequence["Attachment"], progress: Progress = no_progress) -> None:
    """Upload the LFS attachments ``atts`` from this clone's cache to the org's store.

    Objects the store already has are skipped (batch API: no actions). Raises
    :class:`LFSUnreachableError` (nothing lost: the content stays in the
    cache and the message stays queued) or :class:`AttachmentError`.
    """
    todo = {(a.oid, a.size): a.name for a in atts if a.storage == "lfs" and (str(repo.git_dir), a.oid) not in _UPLOADED}
    if not todo:
        return
    endpoint = lfs.discover(repo, "upload", _policy_lfs_url(repo))
    cache = lfs.cache_root(repo)
    if endpoint.local is not None and endpoint.local.resolve() == cache.resolve():
        return
    st = lfs.open_store(endpoint, repo)
    for (oid, size), name in todo.items():
        if lfs.has_local(cache, oid, size):
            st.put(oid, size, lfs.object_path(cache, oid), progress, f"Uploading {name}")
        elif not st.has(oid, size):
            raise AttachmentError(
                f"attachment {name!r} ({oid[:12]}) is neither in this clone's .git/lfs nor in the org's LFS store; "
                "the message cannot be delivered"
            )
        _UPLOADED.add((str(repo.git_dir), oid))


def is_oid(oid: str) -> bool:
    """Whether ``oid`` is a well-formed LFS oid (64 lowercase hex digits: docs/attachments.md)."""
    try:
        lfs.check_oid(oid)
        return True
    except AttachmentError:
        return False


# -- receiving ------------------------------------------------------------------------------


def inbox_dir(repo: "Repo", member: str) -> Path:
    """Where a member's attachments are saved: ``$GITMAIL_INBOX``, else git config
    ``gitmail.inbox``, else ``~/gitmail/inbox/<ref-safe member>/``."""
    from gitmail.core.address import to_ref

    configured = os.environ.get(INBOX_ENV) or repo.config.get("gitmail.inbox")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / "gitmail" / "inbox" / to_ref(member)


@dataclass
class Saved:
    """The outcome for one attachment: ``path`` where it was saved, or ``error`` (one line)."""

    attachment: "Attachment"
    name: str  # the sanitised name it was saved under (before any " (n)" suffix)
    path: Optional[Path] = None
    error: Optional[str] = None


def save_all(
    repo: "Repo", msg: "Message", commit: "pygit2.Commit", dest: Path, limit: Union[int, Bounds],
    progress: Progress = no_progress
) -> list[Saved]:
    """Fetch, verify and save every attachment of ``msg`` (carried by ``commit``) into ``dest``.

    ``limit``: the reader's :class:`Bounds` (:func:`read_bounds`; an int is a
    per-attachment limit alone). A message over the count or total bound has
    nothing saved; a bigger attachment is not fetched. Identical content
    (same oid) is fetched and written once; every entry carrying it reports
    that one path. Never raises for one bad attachment: its :class:`Saved`
    has the error; the others are still saved.
    """
    bounds = limit if isinstance(limit, Bounds) else Bounds(limit, ATTACHMENT_COUNT_ANY, ATTACHMENT_COUNT_ANY)
    refused = refuse_over_bounds(msg.attachments, [(a.name, a.size) for a in msg.attachments], bounds)
    if refused is not None:
        return refused
    out = []
    done: dict[str, Path] = {}  # oid -> where that content was saved in this call
    for a in msg.attachments:
        name = safe_name(a.name)
        if a.oid in done:  # identical content: saved once, reported at the same path
            out.append(Saved(a, name, done[a.oid]))
            continue
        try:
            data = fetch(repo, a, commit, bounds.per_file, progress)
            done[a.oid] = write_new(dest, name, data, a.oid)
            out.append(Saved(a, name, done[a.oid]))
        except (AttachmentError, LFSUnreachableError) as e:
            out.append(Saved(a, name, error=f"{name}: {e.message}"))
    return out


def refuse_over_bounds(atts: Sequence["Attachment"], sizes: Sequence[tuple[str, int]],
                       bounds: Bounds) -> Optional[list[Saved]]:
    """None when ``sizes`` (the true sizes of ``atts``) keep within ``bounds``; else one
    :class:`Saved` error per attachment, nothing fetched: a message over the count or
    total bound is not saved at all (saving part of it would hide what is missing)."""
    # The per-attachment limit is each file's own affair (the others are still saved).
    problems = bounds_problems(sizes, Bounds(ATTACHMENT_COUNT_ANY, bounds.count, bounds.total))
    if not problems:
        return None
    why = "; ".join(problems)
    return [Saved(a, safe_name(n), error=f"{safe_name(n)}: {why}; no attachment of this message is saved")
            for a, (n, _) in zip(atts, sizes)]


def fetch(
    repo: "Repo", a: "Attachment", commit: "pygit2.Commit", limit: int, progress: Progress = no_progress
) -> bytes:
    """The verified content of attachment ``a`` of ``commit``.

    LFS: the tree's pointer must match ``a`` (oid, size); the content comes
    from this clone's cache, else the org's store, and is cached (verified)
    in ``.git/lfs/objects``. Blob: the tree's blob. Either way size and
    sha256 are checked. Raises :class:`AttachmentError` /
    :class:`LFSUnreachableError`.
    """
    lfs.check_oid(a.oid)
    if a.size > limit:
        raise AttachmentError(f"{human_size(a.size)} is over the org's limit of {human_size(limit)}; not fetched")
    data = _tree_blob(repo, commit, a.path, a.size if a.storage == "blob" else lfs.POINTER_MAX)
    if a.storage == "blob":
        _verify(data, a.oid, a.size)
        return data
    ptr = lfs.parse_pointer(data)
    if ptr is None or ptr != (a.oid, a.size):
        raise AttachmentError(f"the LFS pointer at {a.path!r} does not match the message (oid/size)")
    cache = lfs.cache_root(repo)
    if lfs.has_local(cache, a.oid, a.size):
        try:
            return lfs.read_local(cache, a.oid, a.size)
        except AttachmentError:  # a damaged cache copy: dropped (has_local checks its size only), fetched again
            try:
                os.unlink(lfs.object_path(cache, a.oid))
            except OSError:
                pass
    st = lfs.open_store(lfs.discover(repo, "download", _policy_lfs_url(repo)), repo)
    st.fetch_into(cache, a.oid, a.size, progress, f"Downloading {safe_name(a.name)}")  # streamed and verified
    return lfs.read_local(cache, a.oid, a.size)


def _policy_lfs_url(repo: "Repo") -> Optional[str]:
    """The org's signed policy's ``lfs_url`` (docs/attachments.md), or None."""
    from gitmail.core import directory, refs

    tip = repo.ref_target(refs.verified(refs.DIRECTORY))  # verified by directory.load: signed by an admin
    if tip is None:
        return None
    try:
        policy = directory.from_tree(repo.pg, cast("pygit2.Commit", repo.pg[tip])).policy
    except Exception:  # an unreadable directory is reported by directory.load: the remote decides here
        return None
    value = getattr(policy, "lfs_url", None)
    return value if isinstance(value, str) and value else None


def _tree_blob(repo: "Repo", commit: "pygit2.Commit", path: str, limit: int) -> bytes:
    """The blob at ``path`` in the commit's tree, read only when its header gives at most
    ``limit`` bytes (what the signed message says it holds). Raises :class:`AttachmentError`."""
    from gitmail.core.objects import TooLargeError, blob_data

    try:
        entry = commit.tree[path]
    except (KeyError, ValueError, TypeError):
        raise AttachmentError(f"the message commit has no entry {str(path)[:80]!r}") from None
    if entry.type_str != "blob":
        raise AttachmentError(f"the message commit's entry {str(path)[:80]!r} is not a file")
    try:
        return blob_data(repo.pg, entry.id, limit)
    except TooLargeError:
        raise AttachmentError(f"the file at {str(path)[:80]!r} is larger than the message says; not read") from None
    except (KeyError, ValueError, TypeError):
        raise AttachmentError(f"the message commit has no entry {str(path)[:80]!r}") from None


def _verify(data: bytes, oid: str, size: int) -> None:
    if len(data) != size:
        raise AttachmentError(f"content has {len(data)} bytes; the message says {size}")
    if hashlib.sha256(data).hexdigest() != oid:
        raise AttachmentError("content does not match its sha256 (altered or corrupt); not saved")


def write_new(dest: Path, name: str, data: bytes, oid: str) -> Path:
    """Write ``data`` as ``dest/name`` without ever replacing a file; return the path.

    ``name`` must already be safe (:func:`safe_name`). Writes a hidden temp
    file in ``dest`` then hard-links it to the first free name among
    ``name``, ``name (1).ext``, ... (atomic: never clobbers, even in a race).
    A regular file already there with the same content is reused.

    Modes: the user's umask, but never wider than :data:`FILE_MODE_MAX`
    (0600) for the file and :data:`DIR_MODE_MAX` (0700) for each folder this
    creates (the content may be decrypted mail). A full disk or a read-only
    folder raises :class:`AttachmentError` naming the cause; nothing
    half-written stays.
    """
    try:
        make_private_dirs(dest)
        fd, tmp = tempfile.mkstemp(dir=dest, prefix=".gitmail-", suffix=".part")
    except OSError as e:
        raise AttachmentError(f"cannot write to {dest}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, FILE_MODE_MAX & ~_umask())
        return _place(Path(tmp), dest, name, data, oid)
    except OSError as e:
        raise AttachmentError(f"cannot write to {dest}: {e.strerror}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def make_private_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents, each ``DIR_MODE_MAX & ~umask`` (0700 at most);
    existing folders are left as they are. Raises ``OSError``."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    mode = DIR_MODE_MAX & ~_umask()
    for d in reversed(missing):
        try:
            d.mkdir(mode=mode)
        except FileExistsError:
            continue  # made by a concurrent save
        os.chmod(d, mode)  # mkdir's mode is masked again by the umask; this is what we meant


def tighten_dir(path: Path) -> None:
    """Drop group and other permissions of an existing folder of ours (the default inbox,
    made 0755 by versions before 0700 was the rule); never raises."""
    try:
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode) and st.st_mode & 0o077 and st.st_uid == os.getuid():
            os.chmod(path, stat.S_IMODE(st.st_mode) & DIR_MODE_MAX)
    except OSError:
        pass


def _place(tmp: Path, dest: Path, name: str, data: bytes, oid: str) -> Path:
    stem, ext = _split_ext(name)
    for i in range(1000):
        cand = dest / (name if i == 0 else f"{stem} ({i}){ext}")
        if _same_file(cand, data, oid):
            return cand
        try:
            os.link(tmp, cand)
            return cand
        except FileExistsError:
            continue
        except OSError:  # no hard links here: the rename fallback has a tiny window
            if os.path.lexists(cand):
                continue
            os.rename(tmp, cand)
            return cand
    raise AttachmentError(f"too many files called {name!r} in {dest}")


def _same_file(p: Path, data: bytes, oid: str) -> bool:
    try:
        st = os.lstat(p)
        if not stat.S_ISREG(st.st_mode) or st.st_size != len(data):
            return False
        return hashlib.sha256(p.read_bytes()).hexdigest() == oid
    except OSError:
        return False


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


def encrypt_sources(sources: list["Source"], keys: list[str]) -> tuple[list["Source"], list["SealedAttachment"]]:
    """Encrypt each file to ``keys``; the ciphertext sources to store and what the envelope says.

    Works on the content :func:`gitmail.core.attachments.prepare` read and
    hashed (``Source.data``); the ciphertext stays in memory (``<n>.age``).
    Each file is padded with zeros to :func:`gitmail.core.crypto.pad_size`
    before it is sealed (the sealed ``size`` is the true one); identical
    files are sealed once and share one ciphertext (stored once).
    """
    from gitmail.core import crypto
    from gitmail.core.model import SealedAttachment
    out: list[Source] = []
    sealed: list[SealedAttachment] = []
    ciphers: dict[str, tuple[bytes, str]] = {}  # plaintext sha256 -> (ciphertext, its sha256)
    for i, src in enumerate(sources, 1):
        if src.oid not in ciphers:
            c = crypto.seal(crypto.pad(src.data), keys)
            ciphers[src.oid] = (c, hashlib.sha256(c).hexdigest())
        cipher, oid = ciphers[src.oid]
        out.append(Source(src.path, f"{i}.age", len(cipher), oid, "application/octet-stream", cipher))
        sealed.append(SealedAttachment(name=src.name, media_type=src.media_type, size=src.size,
                                       sha256=src.oid, cipher_oid=oid))
    return out, sealed
