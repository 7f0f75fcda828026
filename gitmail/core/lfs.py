"""Git LFS for attachments: pointers, endpoint discovery, the local object
layout, and transfers through the batch API (docs/attachments.md).

Sources:

* pointer files: git-lfs ``docs/spec.md`` (spec v1) -- ``version``, ``oid
  sha256:<64 hex>``, ``size <bytes>``, one ``key value`` per line, LF endings;
  parsed strictly (sorted keys, ``oid sha256:``, decimal ``size``);
* the batch API: git-lfs ``docs/api/batch.md`` (``POST <endpoint>/objects/batch``,
  ``basic`` transfer adapter), spoken with the standard library's ``http.client``
  (one deadline per transfer, bounded replies, streamed downloads), with
  credentials from ``git credential`` or ``ssh ... git-lfs-authenticate``;
* endpoint discovery: git-lfs ``docs/api/server-discovery.md`` and
  ``lfsapi/endpoint_finder.go`` -- ``lfs.pushurl``, ``lfs.url``,
  ``remote.<name>.lfspushurl``, ``remote.<name>.lfsurl`` from the member's own git
  config (never ``.lfsconfig``: docs/attachments.md), the org policy's
  ``lfs_url``, then ``<remote url>[.git]/info/lfs``;
* the local layout: ``<git dir>/lfs/objects/<oid[0:2]>/<oid[2:4]>/<oid>``, the
  layout of the stock client's cache and of its standalone transfer agent for
  local remotes (a bare org repo at PATH keeps its objects in ``PATH/lfs``).

Nothing here prints. Every failure is an :class:`AttachmentError` (missing
object, size or sha256 mismatch, refused request) or an
:class:`LFSUnreachableError` (the store cannot be reached right now).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Optional, Protocol
from urllib.parse import unquote, urlparse, urlsplit, urlunsplit

from gitmail import git
from gitmail.errors import AttachmentError, GitmailError, LFSUnreachableError, UsageError

if TYPE_CHECKING:
    from gitmail.core.repo import Repo

POINTER_VERSION = "https://git-lfs.github.com/spec/v1"
POINTER_MAX = 1024  # bytes: git-lfs never reads a bigger blob as a pointer
CHUNK = 256 * 1024  # bytes per read while copying or transferring
OBJECT_MODE = 0o644  # mode of stored objects, as the stock client leaves them
_OID = re.compile(r"^[0-9a-f]{64}$")

# (label, bytes done, bytes total): called as a transfer advances.
Progress = Callable[[str, int, int], None]


def no_progress(label: str, done: int, total: int) -> None:
    return None


# -- pointers --------------------------------------------------------------------------


def check_oid(oid: str) -> str:
    """``oid`` if it is 64 lower-case hex digits (a sha256), else :class:`AttachmentError`.

    Every oid is checked before it becomes part of a path or URL.
    """
    if not isinstance(oid, str) or not _OID.match(oid):
        raise AttachmentError(f"malformed LFS object id {str(oid)[:80]!r}: expected 64 lower-case hex digits")
    return oid


def format_pointer(oid: str, size: int) -> bytes:
    """The canonical pointer file (spec v1) for ``oid`` (sha256 hex) and ``size`` (bytes, 0 to
    :data:`MAX_SIZE`; :class:`AttachmentError` otherwise, as for a malformed oid)."""
    if not 0 <= int(size) <= MAX_SIZE:
        raise AttachmentError(f"an LFS object of {size} bytes cannot be named by a pointer")
    return f"version {POINTER_VERSION}\noid sha256:{check_oid(oid)}\nsize {int(size)}\n".encode()


def parse_pointer(data: bytes) -> Optional[tuple[str, int]]:
    """``(oid, size)`` of a pointer file exactly as :func:`format_pointer` writes it, or None.

    The reader's rule is the writer's form, byte for byte (docs/attachments.md, "Pointer
    format"): ``version <spec v1 URL>``, ``oid sha256:<64 lower-case hex>``, ``size <decimal
    without leading zeros, at most :data:`MAX_SIZE`>``, each line ending in LF, nothing else. Every such
    blob is a pointer to the stock git-lfs client too (``git lfs pointer --check``), so a
    checkout with it shows the object gitmail shows. The spec's other forms (extension lines,
    which make the stored object a transformed file; keys git-lfs itself refuses; CRLF) are
    refused: gitmail never writes them (tests/attachments/test_pointer_agreement.py)."""
    m = _POINTER.fullmatch(data) if len(data) <= POINTER_MAX else None
    size = int(m.group(2)) if m is not None else -1
    return (m.group(1).decode("ascii"), size) if m is not None and size <= MAX_SIZE else None


_POINTER = re.compile(rb"version " + re.escape(POINTER_VERSION.encode()) + rb"\noid sha256:([0-9a-f]{64})\n"
                      rb"size (0|[1-9][0-9]{0,18})\n")
MAX_SIZE = 2**63 - 1  # bytes: git-lfs reads a pointer's size as a signed 64-bit integer


# -- the local layout ------------------------------------------------------------------


def object_path(root: Path, oid: str) -> Path:
    """``root/objects/aa/bb/<oid>``: where a store rooted at ``root`` (an ``lfs`` dir) keeps ``oid``."""
    check_oid(oid)
    return root / "objects" / oid[0:2] / oid[2:4] / oid


def cache_root(repo: "Repo") -> Path:
    """This clone's own LFS directory, ``<git dir>/lfs`` (where git-lfs caches too)."""
    return repo.git_dir / "lfs"


def has_local(root: Path, oid: str, size: int) -> bool:
    """True when the store at ``root`` holds ``oid`` with ``size`` bytes."""
    try:
        return object_path(root, oid).stat().st_size == size
    except OSError:
        return False


def read_local(root: Path, oid: str, size: int, progress: Progress = no_progress, label: str = "") -> bytes:
    """The content of ``oid`` from the store at ``root``, verified (size and sha256).

    Raises :class:`AttachmentError` when it is missing or does not match.
    """
    path = object_path(root, oid)
    try:
        with open(path, "rb") as f:
            data = _read_verified(f, oid, size, progress, label)
    except FileNotFoundError:
        raise AttachmentError(f"LFS object {oid[:12]} is missing from {root}") from None
    except OSError as e:
        raise AttachmentError(f"cannot read LFS object {oid[:12]} in {root}: {e.strerror}") from None
    return data


def _read_verified(f: IO[bytes], oid: str, size: int, progress: Progress, label: str) -> bytes:
    """Read ``f`` to the end, stopping early past ``size``; check size and sha256."""
    h, parts, done = hashlib.sha256(), [], 0
    while True:
        chunk = f.read(CHUNK)
        if not chunk:
            break
        done += len(chunk)
        if done > size:
            raise AttachmentError(f"LFS object {oid[:12]} is larger than its pointer says ({size} bytes)")
        h.update(chunk)
        parts.append(chunk)
        progress(label, done, size)
    if done != size:
        raise AttachmentError(f"LFS object {oid[:12]} has {done} bytes; its pointer says {size}")
    if h.hexdigest() != oid:
        raise AttachmentError(f"LFS object {oid[:12]} does not match its sha256 (content altered or corrupt)")
    return b"".join(parts)


def write_local(root: Path, oid: str, size: int, src: Path | bytes, verified: bool = False) -> Path:
    """Store ``src`` (a file, or bytes) as ``oid`` under ``root``; return the object's path.

    Hashes while copying into ``root/tmp`` and renames only when size and
    sha256 match (so a file that changed since it was hashed is refused);
    ``verified``: ``src`` is bytes already checked against ``oid`` (no second
    hash). A hard link is tried first for a file already in another store.
    Raises :class:`AttachmentError`.
    """
    dst = object_path(root, oid)
    if has_local(root, oid, size):
        return dst
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        (root / "tmp").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AttachmentError(f"cannot create the LFS store {root}: {e.strerror}") from None
    if isinstance(src, Path) and src.name == oid and _matches(src, oid, size) and _try_link(src, dst):
        return dst
    fd, tmp = tempfile.mkstemp(dir=root / "tmp", prefix=oid[:12] + "-")
    try:
        with os.fdopen(fd, "wb") as out:
            if verified and isinstance(src, bytes):
                out.write(src)
            else:
                _copy_verified(src, out, oid, size)
        os.chmod(tmp, OBJECT_MODE)
        os.replace(tmp, dst)
    except OSError as e:
        raise AttachmentError(f"cannot write LFS object {oid[:12]} to {root}: {e.strerror}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dst


def _matches(src: Path, oid: str, size: int) -> bool:
    """Whether file ``src`` holds exactly the object ``oid`` of ``size`` bytes. A store's file is
    checked before it is linked into another store: a damaged or altered one would otherwise be
    the reader's cached copy for good (it was linked unverified, and ``has_local`` checks sizes
    only)."""
    try:
        _copy_verified(src, None, oid, size)
    except (AttachmentError, OSError):
        return False
    return True


def _try_link(src: Path, dst: Path) -> bool:
    try:
        os.link(src, dst)
        return True
    except FileExistsError:
        return True
    except OSError:
        return False


def _copy_verified(src: Path | bytes, out: Optional[IO[bytes]], oid: str, size: int) -> None:
    """Copy ``src`` to ``out`` (None: only read it), checking its size and sha256 against
    ``size`` and ``oid``. Raises :class:`AttachmentError` (``OSError`` reading a file)."""
    h, n = hashlib.sha256(), 0
    if isinstance(src, bytes):
        h.update(src)
        if out is not None:
            out.write(src)
        n = len(src)
    else:
        with open(src, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
                if out is not None:
                    out.write(chunk)
                n += len(chunk)
    if n != size or h.hexdigest() != oid:
        raise AttachmentError(f"{src if isinstance(src, Path) else 'content'} changed while it was being attached; try again")


# -- endpoint discovery ----------------------------------------------------------------

# Where an endpoint may come from (docs/attachments.md, "Finding the LFS store"). Never
# from a file in the work tree or in a commit (.lfsconfig): anyone who can push a code
# branch could otherwise send a member's attachments to a server of their choosing.
TRUSTED_KEYS = ("lfs.pushurl", "lfs.url", "remote.{remote}.lfspushurl", "remote.{remote}.lfsurl")


@dataclass(frozen=True)
class Endpoint:
    """Where the org's LFS objects live.

    ``url``: an http(s) batch API base (it may hold ``user:password@``: use
    :attr:`shown` in messages), or a ``file://`` URL; ``local``: the store
    directory (an ``lfs`` dir) for a local endpoint, else None; ``source``:
    the setting it came from (shown in errors and ``--json``); ``ssh``:
    ``(user@host, port or None, path)`` of an SSH remote, whose
    ``git-lfs-authenticate`` gives the batch API's URL and header.
    """

    url: str
    local: Optional[Path]
    source: str
    ssh: Optional[tuple[str, Optional[str], str]] = None

    @property
    def shown(self) -> str:
        """``url`` with any password and query string hidden (:func:`gitmail.git.redact`)."""
        return git.redact(self.url)


def discover(repo: "Repo", operation: str = "download", policy_url: Optional[str] = None) -> Endpoint:
    """The LFS endpoint of ``repo``'s org remote for ``operation`` (``download``/``upload``).

    First match (git-lfs ``lfsapi/endpoint_finder.go`` order, trusted
    sources only): the member's git config (system, global, local; never
    ``.lfsconfig``) ``lfs.pushurl`` (upload), ``lfs.url``,
    ``remote.<remote>.lfspushurl`` (upload), ``remote.<remote>.lfsurl``;
    then ``policy_url`` (the org's signed policy); else derived from the
    remote's URL (``git remote get-url [--push]``, so ``insteadOf`` applies):
    a local path or ``file://`` URL gives the remote's own store
    (``<path>/lfs``, or ``<path>/.git/lfs`` for a non-bare repo);
    ``https://host/x`` gives ``https://host/x.git/info/lfs``; ``git://host:port/x``
    gives ``https://host:port/x.git/info/lfs`` (``lfs.gitprotocol`` sets the
    scheme); ``git@host:x`` / ``ssh://[user@]host[:port]/x`` give
    ``https://host/x.git/info/lfs`` plus :attr:`Endpoint.ssh` for
    ``git-lfs-authenticate``. With no remote (the org repo itself) the store
    is this repo's ``lfs`` dir. Raises :class:`AttachmentError` for a URL it
    cannot use.
    """
    remote = repo.remote
    upload = operation == "upload"
    keys = [k.format(remote=remote) for k in TRUSTED_KEYS if (remote or "{remote}" not in k)
            and (upload or "push" not in k)]
    found = _config_values(repo, keys + ["lfs.gitprotocol"])
    for key in keys:
        if found.get(key.lower()):
            return _endpoint(found[key.lower()], repo.path, f"git config {key}")
    if policy_url:
        return _endpoint(policy_url, repo.path, "the org policy's lfs_url")
    if not remote:
        return Endpoint(cache_root(repo).as_uri(), cache_root(repo), "this repository")
    args = ["remote", "get-url", *(["--push"] if upload else []), remote]
    url = git.run(args, repo.path, check=False).stdout.decode("utf-8", "replace").strip()
    if not url:
        raise AttachmentError(f"remote {remote!r} has no URL: cannot find the org's LFS store")
    return _endpoint(url, repo.path, f"remote.{remote}.url", clone=True,
                     git_protocol=found.get("lfs.gitprotocol") or "https")


def _config_values(repo: "Repo", keys: list[str]) -> dict[str, str]:
    """Lower-cased key -> last value of ``keys``, from ``git config`` (no ``--file``: the member's own)."""
    pattern = "^(" + "|".join(re.escape(k) for k in keys) + ")$"
    proc = git.run(["config", "-z", "--get-regexp", pattern], repo.path, check=False)
    out: dict[str, str] = {}
    for item in proc.stdout.split(b"\0"):
        key, _, value = item.partition(b"\n")
        if key and value.strip():
            out[key.decode("utf-8", "replace").lower()] = value.decode("utf-8", "replace").strip()
    return out


_SCP = re.compile(r"^(?:(?P<user>[^@/\[\]]+)@)?(?P<host>\[[^\]]+\]|[^:/\[\]]+):(?!//)(?P<path>.*)$")


def _endpoint(value: str, base: Path, source: str, clone: bool = False, git_protocol: str = "https") -> Endpoint:
    """The endpoint for an LFS URL (``clone``: a git remote URL, which gets ``.git/info/lfs``)."""
    shown = git.redact(value)
    p = urlparse(value)
    scp = None if "://" in value or re.match(r"^[A-Za-z]:[\\/]", value) else _SCP.match(value)
    if scp and "/" not in scp.group("host"):
        host = scp.group("host").strip("[]")
        port = None
        if ":" in host and scp.group("host").startswith("["):  # [host:port]:path
            host, _, port = host.rpartition(":")
        user = scp.group("user")
        return _ssh_endpoint(user, host, port, scp.group("path"), source, clone)
    if p.scheme in ("ssh", "git+ssh", "ssh+git"):
        if not p.hostname:
            raise AttachmentError(f"unusable LFS URL {shown} (from {source}): no host")
        return _ssh_endpoint(p.username, p.hostname, str(p.port) if p.port else None, p.path.lstrip("/"), source, clone)
    if p.scheme == "git":  # git-lfs: the same host and port, spoken to over lfs.gitprotocol
        return Endpoint(_lfs_suffix(git_protocol + value[3:], clone), None, source)
    if p.scheme in ("http", "https"):
        if not p.hostname:
            raise AttachmentError(f"unusable LFS URL {shown} (from {source}): no host")
        return Endpoint(_lfs_suffix(value, clone), None, source)
    if p.scheme == "file":
        from urllib.request import url2pathname

        path = Path(url2pathname(p.path))
    elif not p.scheme or (len(p.scheme) == 1 and value[1:2] == ":"):
        path = Path(value).expanduser()
        path = path if path.is_absolute() else (base / path)
    else:
        raise AttachmentError(f"unsupported LFS URL {shown} (from {source}): use http(s)://, ssh, file:// or a path")
    path = path.resolve()
    if path.name != "lfs":  # a repository, not a store: git-lfs uses its git dir's lfs/
        path = path / ".git" / "lfs" if (path / ".git").is_dir() else path / "lfs"
    return Endpoint(path.as_uri(), path, source)


def _ssh_endpoint(user: Optional[str], host: str, port: Optional[str], path: str, source: str, clone: bool) -> Endpoint:
    if not host or host.startswith("-"):
        raise AttachmentError(f"unusable ssh host {host!r} (from {source})")
    user_host = f"{user}@{host}" if user else host
    # git-lfs: the HTTPS fallback is on the same host, without the ssh port.
    url = _lfs_suffix(f"https://{host}/{path.lstrip('/')}", clone)
    return Endpoint(url, None, source, ssh=(user_host, port, path))


def _lfs_suffix(url: str, clone: bool) -> str:
    url = url.rstrip("/")
    if not clone:
        return url
    return (url if url.endswith(".git") else url + ".git") + "/info/lfs"


# -- stores ------------------------------------------------------------------------------


class Store(Protocol):
    """An LFS store that objects are uploaded to and downloaded from."""

    endpoint: Endpoint

    def has(self, oid: str, size: int) -> bool: ...

    def put(self, oid: str, size: int, src: Path, progress: Progress = no_progress, label: str = "") -> None: ...

    def fetch_into(self, root: Path, oid: str, size: int, progress: Progress = no_progress, label: str = "") -> Path: ...


def open_store(endpoint: Endpoint, repo: Optional["Repo"] = None) -> Store:
    """A :class:`LocalStore` or :class:`HTTPStore` for ``endpoint``.

    ``repo``: whose git config and credential helpers an HTTP store uses
    (``gitmail.lfsTimeout``, ``http.proxy``, ``http.sslCAInfo``, ``http.sslVerify``).
    """
    if endpoint.local is not None:
        return LocalStore(endpoint)
    return HTTPStore(endpoint, repo.path if repo is not None else Path.cwd())


class LocalStore:
    """A store on disk (``<root>/objects/aa/bb/<oid>``): no server needed."""

    def __init__(self, endpoint: Endpoint) -> None:
        assert endpoint.local is not None
        self.endpoint = endpoint
        self.root = endpoint.local

    def _reachable(self) -> None:
        if not self.root.parent.is_dir():
            raise LFSUnreachableError(f"the org's LFS store {self.root} cannot be reached (no directory {self.root.parent})")

    def has(self, oid: str, size: int) -> bool:
        """True when the object is there with the right size."""
        self._reachable()
        return has_local(self.root, oid, size)

    def put(self, oid: str, size: int, src: Path, progress: Progress = no_progress, label: str = "") -> None:
        """Store the file ``src`` (hard-linked when possible, else copied and verified)."""
        self._reachable()
        write_local(self.root, oid, size, src)
        progress(label, size, size)

    def fetch_into(self, root: Path, oid: str, size: int, progress: Progress = no_progress, label: str = "") -> Path:
        """Copy (or hard-link) the object into the store at ``root``, verified; its path there.

        :class:`AttachmentError` when it is missing or does not match its oid.
        """
        self._reachable()
        src = object_path(self.root, oid)
        if not src.exists():
            raise AttachmentError(f"LFS object {oid[:12]} is missing from the org's store ({self.root})")
        try:
            dst = write_local(root, oid, size, src)
        except AttachmentError:
            raise AttachmentError(f"LFS object {oid[:12]} in the org's store ({self.root}) does not match its "
                                  "sha256 (content altered or corrupt)") from None
        progress(label, size, size)
        return dst


# -- the batch API over HTTP -------------------------------------------------------------

LFS_JSON = "application/vnd.git-lfs+json"
TIMEOUT = 30.0  # seconds: connecting, and each wait for data (also cut short by the deadline)
TRANSFER_TIMEOUT = 300.0  # seconds: the whole of one object's transfer (git config gitmail.lfsTimeout)
BATCH_MAX = 1024 * 1024  # bytes: the most of a batch reply read (one object's answer is < 2 KB)
ERROR_BODY_MAX = 64 * 1024  # bytes of an error reply read for its message
MAX_REDIRECTS = 3  # redirects followed for one request (storage behind the LFS API often redirects)
TIMEOUT_KEY = "gitmail.lfsTimeout"


def transfer_timeout(config: dict[str, str]) -> float:
    """Seconds allowed for one object's whole transfer: ``config[gitmail.lfstimeout]``
    (git config ``gitmail.lfsTimeout``, lower-cased key), else 300.

    Raises :class:`UsageError` for a value that is not a number of seconds in (0, 86400].
    """
    raw = config.get(TIMEOUT_KEY.lower())
    if raw is None or raw.strip() == "":
        return TRANSFER_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 86400:
        raise UsageError(f"git config {TIMEOUT_KEY} is {raw[:40]!r}: expected seconds, a number above 0 and at most 86400")
    return value


class _Timeout(Exception):
    pass


class HTTPStore:
    """A store behind the LFS batch API (git-lfs ``docs/api/batch.md``, ``basic`` transfers).

    Credentials as git-lfs finds them: the action's own header (from the
    server, or ``git-lfs-authenticate`` over ssh), else ``user:password@``
    in the URL, else after a 401 ``git credential fill`` (then ``approve``
    on success, ``reject`` on a second 401). Every request is bounded: one
    deadline (:func:`transfer_timeout`) covers an object's batch request,
    transfer and verify, and a watchdog closes the socket when it passes, so
    a server trickling bytes cannot hold a transfer longer; batch replies are
    read up to :data:`BATCH_MAX` bytes; downloads stream into the cache's
    ``tmp/`` with their sha256 checked before they are renamed into place.
    """

    def __init__(self, endpoint: Endpoint, cwd: Path) -> None:
        self.endpoint = endpoint
        self.cwd = cwd
        settings = _config_settings(cwd)
        self.timeout = transfer_timeout(settings)
        self._settings = settings
        self._proxy = settings.get("http.proxy")
        self._creds: dict[str, dict[str, str]] = {}  # origin -> what git credential fill gave
        self._asked_for: set[str] = {_origin(_split_userinfo(endpoint.url)[0])}  # origins git credential is asked for
        self._approved: set[str] = set()
        self._ssh: dict[str, tuple[str, dict[str, str]]] = {}
        self.ssh_error: Optional[str] = None

    # -- the API base for an operation

    def _api(self, operation: str) -> tuple[str, dict[str, str]]:
        """Batch API base URL and headers for ``operation`` (ssh: ``git-lfs-authenticate``'s)."""
        if self.endpoint.ssh is None:
            return self.endpoint.url, {}
        if operation not in self._ssh:
            from gitmail.errors import GitError

            user_host, port, path = self.endpoint.ssh
            try:
                ans = git.lfs_authenticate(self.cwd, user_host, port, path, operation, min(TIMEOUT, self.timeout))
            except GitError as e:
                # As git-lfs: a host without git-lfs-authenticate may still serve LFS over
                # https with credentials from a helper; keep why, for the error if that fails.
                lines = e.stderr.decode("utf-8", "replace").strip().splitlines()
                self.ssh_error = git.redact(lines[-1][:200] if lines else f"exit code {e.returncode}")
                self._ssh[operation] = (self.endpoint.url, {})
            else:
                headers = _headers(ans.get("header"), self.endpoint.shown)
                href = ans.get("href")
                self._ssh[operation] = (str(href).rstrip("/") if isinstance(href, str) and href else self.endpoint.url,
                                        headers)
                self._asked_for.add(_origin(_split_userinfo(self._ssh[operation][0])[0]))
        return self._ssh[operation]

    def _tls(self, operation: str) -> bool:
        """Whether the batch API for ``operation`` is reached over https (its actions must be too)."""
        return self._api(operation)[0].lower().startswith("https:")

    # -- operations

    def has(self, oid: str, size: int) -> bool:
        """True when an upload batch asks for no action (the server has it)."""
        deadline = time.monotonic() + self.timeout
        return not self._batch("upload", oid, size, deadline).get("actions")

    def put(self, oid: str, size: int, src: Path, progress: Progress = no_progress, label: str = "") -> None:
        """Upload ``src`` unless the server has it: batch, PUT (streamed), verify."""
        deadline = time.monotonic() + self.timeout
        actions = self._batch("upload", oid, size, deadline).get("actions") or {}
        if not actions:
            progress(label, size, size)
            return
        up = _action(actions, "upload", oid, self.endpoint.shown, self._tls("upload"))
        with open(src, "rb") as f:
            body = _ProgressReader(f, size, progress, label)
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size), **up[1]}
            status, reason, _ = self._request("PUT", up[0], headers, body, deadline, ERROR_BODY_MAX)
        if status >= 300:
            raise _status_error(f"upload of LFS object {oid[:12]} to", up[0], status, reason)
        if "verify" in actions:
            href, vh = _action(actions, "verify", oid, self.endpoint.shown, self._tls("upload"))
            body2 = json.dumps({"oid": oid, "size": size}).encode()
            status, reason, _ = self._request("POST", href, {"Content-Type": LFS_JSON, "Accept": LFS_JSON, **vh},
                                              body2, deadline, ERROR_BODY_MAX)
            if status >= 300:
                raise _status_error(f"verify of LFS object {oid[:12]} by", href, status, reason)

    def fetch_into(self, root: Path, oid: str, size: int, progress: Progress = no_progress, label: str = "") -> Path:
        """Download ``oid`` into the store at ``root`` (streamed to ``root/tmp``, size and sha256
        checked while it streams, renamed into place only when both match); its path there."""
        deadline = time.monotonic() + self.timeout
        actions = self._batch("download", oid, size, deadline).get("actions") or {}
        href, headers = _action(actions, "download", oid, self.endpoint.shown, self._tls("download"))
        try:
            (root / "tmp").mkdir(parents=True, exist_ok=True)
            object_path(root, oid).parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise AttachmentError(f"cannot create the LFS store {root}: {e.strerror}") from None
        sink = _DownloadSink(root, oid, size, progress, label)
        try:
            status, reason, _ = self._request("GET", href, headers, None, deadline, ERROR_BODY_MAX, sink)
            if status == 404:
                raise AttachmentError(f"LFS object {oid[:12]} is missing from the org's store ({git.redact(href)})")
            if status != 200:
                raise _status_error(f"download of LFS object {oid[:12]} from", href, status, reason)
            return sink.place()
        finally:
            sink.discard()

    # -- the batch request

    def _batch(self, operation: str, oid: str, size: int, deadline: float) -> dict[str, Any]:
        """The batch reply's entry for ``oid`` (batch.md "Response"), checked."""
        base, headers = self._api(operation)
        body = json.dumps({"operation": operation, "transfers": ["basic"], "hash_algo": "sha256",
                           "objects": [{"oid": check_oid(oid), "size": size}]}).encode()
        url = base + "/objects/batch"
        status, reason, data = self._request("POST", url, {"Accept": LFS_JSON, "Content-Type": LFS_JSON, **headers},
                                             body, deadline, BATCH_MAX)
        if status >= 300:
            detail = _message(data)
            err = _status_error(f"the {operation} request for LFS object {oid[:12]} to", url, status, reason, detail)
            if self.ssh_error and status in (401, 403):
                err.message += f" (ssh git-lfs-authenticate failed: {self.ssh_error})"
            raise err
        try:
            reply = json.loads(data)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
            reply = None
        objs = reply.get("objects") if isinstance(reply, dict) else None
        if not isinstance(objs, list):
            raise AttachmentError(f"the LFS server {git.redact(url)} sent a batch reply that is not the batch API's JSON")
        obj = next((o for o in objs if isinstance(o, dict) and o.get("oid") == oid), None)
        if obj is None:
            raise AttachmentError(f"the LFS server {git.redact(url)} did not answer for object {oid[:12]}")
        error = obj.get("error")
        if isinstance(error, dict):
            code, msg = error.get("code"), str(error.get("message", ""))[:200]
            if code == 404:
                raise AttachmentError(f"LFS object {oid[:12]} is missing from the org's store ({git.redact(url)})")
            raise AttachmentError(f"the LFS server {git.redact(url)} refused object {oid[:12]}: {code} {msg}".rstrip())
        if obj.get("actions") is not None and not isinstance(obj.get("actions"), dict):
            raise AttachmentError(f"the LFS server {git.redact(url)} sent malformed actions for object {oid[:12]}")
        return obj

    # -- one request, with credentials

    def _request(self, method: str, url: str, headers: dict[str, str], body: Any, deadline: float, limit: int,
                 sink: Optional["_DownloadSink"] = None, hops: int = 0) -> tuple[int, str, bytes]:
        """``(status, reason, body up to limit)``; a 401 is answered with git's credentials once;
        redirects (301, 302, 303, 307, 308; a body is sent again only on 307/308) are followed
        up to :data:`MAX_REDIRECTS` times, never from ``https`` to plain ``http``; when the origin
        changes, every header but the content's own is dropped (an action's header is a
        credential: docs/attachments.md). A URL Python cannot read (a port out of range, a
        broken IPv6 host) is this object's refusal, not an internal error."""
        _usable(url)
        status, reason, data, location = self._authed(method, url, headers, body, deadline, limit, sink)
        if status not in (301, 302, 303, 307, 308) or not location:
            return status, reason, data
        if hops >= MAX_REDIRECTS:
            raise AttachmentError(f"the LFS server {git.redact(url)} redirected more than {MAX_REDIRECTS} times")
        from urllib.parse import urljoin

        target, _ = _split_userinfo(url)
        new = urljoin(target, location)
        _usable(new, f"the LFS server {git.redact(url)} redirected to")
        if urlsplit(target).scheme == "https" and urlsplit(new).scheme != "https":
            raise AttachmentError(f"the LFS server {git.redact(url)} redirected from https to "
                                  f"{urlsplit(new).scheme or 'a URL without a scheme'}; not followed")
        if _origin(_split_userinfo(new)[0]) != _origin(target):
            headers = {k: v for k, v in headers.items() if k.lower() in _CONTENT_HEADERS}
        if status in (307, 308) and body is not None:
            if hasattr(body, "seek"):
                body.seek(0)
        elif method != "GET":
            method, body = "GET", None
            headers = {k: v for k, v in headers.items() if k.lower() not in ("content-type", "content-length")}
        return self._request(method, new, headers, body, deadline, limit, sink, hops + 1)

    def _authed(self, method: str, url: str, headers: dict[str, str], body: Any, deadline: float, limit: int,
                sink: Optional["_DownloadSink"]) -> tuple[int, str, bytes, Optional[str]]:
        explicit = any(k.lower() == "authorization" for k in headers)
        target, userinfo = _split_userinfo(url)
        origin = _origin(target)
        cred: Optional[dict[str, str]] = None
        if not explicit and userinfo is not None:
            headers = {**headers, "Authorization": _basic(*userinfo)}
        elif not explicit and origin in self._creds:
            cred = self._creds[origin]
            headers = {**headers, "Authorization": _basic(cred["username"], cred["password"])}
        for _ in range(2):
            status, reason, data, location = self._once(method, target, headers, body, deadline, limit, sink)
            if status != 401 or explicit or userinfo is not None:
                break
            if cred is not None:
                git.credential_reject(self.cwd, cred)
                self._creds.pop(origin, None)
                raise AttachmentError(f"the LFS server {git.redact(target)} refused the credentials git's credential "
                                      f"helper gave (HTTP 401)")
            if origin not in self._asked_for:
                # Only for where the user pointed gitmail (the batch API's origin): git would
                # otherwise ask the user's helper, or a desktop password prompt, for any host a
                # batch reply names, and send what was typed there.
                raise AttachmentError(f"the LFS server's URL {git.redact(target)} (another host than the batch "
                                      "API's) asks for credentials (HTTP 401); gitmail gives none there")
            cred = git.credential_fill(self.cwd, target)
            if cred is None:
                raise AttachmentError(f"the LFS server {git.redact(target)} asks for credentials (HTTP 401) and no git "
                                      "credential helper has any for it (see git-credential(1))")
            self._creds[origin] = cred
            headers = {**headers, "Authorization": _basic(cred["username"], cred["password"])}
            if hasattr(body, "seek"):
                body.seek(0)
        if status < 300 and cred is not None and origin not in self._approved:
            git.credential_approve(self.cwd, cred)
            self._approved.add(origin)
        return status, reason, data, location

    def _once(self, method: str, url: str, headers: dict[str, str], body: Any, deadline: float, limit: int,
              sink: Optional["_DownloadSink"]) -> tuple[int, str, bytes, Optional[str]]:
        import http.client

        p = urlsplit(url)
        if p.scheme not in ("http", "https") or not p.hostname:
            raise AttachmentError(f"the LFS server gave a URL gitmail cannot use: {git.redact(url)}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._timed_out(url)
        conn, path = self._connection(p, min(TIMEOUT, remaining))
        fired = threading.Event()

        def watchdog() -> None:  # the deadline covers every byte, however slowly it comes
            fired.set()
            sock = conn.sock
            if sock is not None:
                try:
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:
                    pass

        timer = threading.Timer(remaining, watchdog)
        timer.daemon = True
        timer.start()
        try:
            conn.connect()
            # Headers and body go in separate writes: without this, Nagle's algorithm and the
            # peer's delayed ACK add ~40 ms to each request (urllib3 sets it too).
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.request(method, path, body=body, headers={"User-Agent": USER_AGENT, **headers})
            resp = conn.getresponse()
            if sink is not None and resp.status == 200:
                sink.consume(resp, fired.is_set)
                return resp.status, resp.reason, b"", None
            data = _read_limited(resp, limit, url)
            if fired.is_set():  # a reply cut short by the watchdog may look complete
                raise _Timeout()
            return resp.status, resp.reason, data, resp.getheader("Location")
        except AttachmentError:
            if fired.is_set():
                raise self._timed_out(url) from None
            raise
        except (OSError, http.client.HTTPException, _Timeout) as e:
            if fired.is_set() or time.monotonic() >= deadline:
                raise self._timed_out(url) from None
            raise LFSUnreachableError(f"the org's LFS server {git.redact(url)} cannot be reached: {_reason(e)}") from None
        finally:
            timer.cancel()
            conn.close()

    def _timed_out(self, url: str) -> LFSUnreachableError:
        return LFSUnreachableError(f"the org's LFS server {git.redact(url)} did not finish within {self.timeout:g} s "
                                   f"(git config {TIMEOUT_KEY})")

    def _connection(self, p: Any, timeout: float) -> tuple[Any, str]:
        """An unconnected http.client connection for URL parts ``p`` (through ``http.proxy`` or the
        environment's proxy) and the request target."""
        import http.client
        from urllib.request import getproxies_environment, proxy_bypass

        path = (p.path or "/") + (f"?{p.query}" if p.query else "")
        proxy = self._proxy or getproxies_environment().get(p.scheme)
        if proxy and proxy_bypass(p.hostname):
            proxy = None
        port = p.port or (443 if p.scheme == "https" else 80)
        if proxy:
            q = urlsplit(proxy if "://" in proxy else "http://" + proxy)
            pconn = http.client.HTTPConnection(q.hostname or "", q.port or 1080, timeout=timeout, blocksize=CHUNK)
            if p.scheme == "http":
                return pconn, f"http://{p.hostname}:{port}{path}"
            conn = http.client.HTTPSConnection(q.hostname or "", q.port or 1080, timeout=timeout,
                                               context=_tls_context(self._settings), blocksize=CHUNK)
            conn.set_tunnel(p.hostname, port)
            return conn, path
        if p.scheme == "https":
            return http.client.HTTPSConnection(p.hostname, port, timeout=timeout,
                                               context=_tls_context(self._settings), blocksize=CHUNK), path
        return http.client.HTTPConnection(p.hostname, port, timeout=timeout, blocksize=CHUNK), path


USER_AGENT = "gitmail-lfs"


def _config_settings(cwd: Path) -> dict[str, str]:
    keys = ["http.proxy", "http.sslcainfo", "http.sslverify", TIMEOUT_KEY.lower()]
    pattern = "^(" + "|".join(re.escape(k) for k in keys) + ")$"
    proc = git.run(["config", "-z", "--get-regexp", pattern], cwd, check=False)
    out: dict[str, str] = {}
    for item in proc.stdout.split(b"\0"):
        key, _, value = item.partition(b"\n")
        if key:
            out[key.decode("utf-8", "replace").lower()] = value.decode("utf-8", "replace").strip()
    return out


_TLS: dict[tuple[Optional[str], bool], ssl.SSLContext] = {}


def _tls_context(settings: dict[str, str]) -> ssl.SSLContext:
    """TLS as git's settings say: ``GIT_SSL_CAINFO`` / ``http.sslCAInfo``, ``GIT_SSL_NO_VERIFY`` / ``http.sslVerify``.

    Made on first use and kept: loading the CA store costs ~0.1 s.
    """
    cafile = os.environ.get("GIT_SSL_CAINFO") or settings.get("http.sslcainfo") or None
    no_verify = bool(os.environ.get("GIT_SSL_NO_VERIFY")) or settings.get("http.sslverify", "true").lower() in (
        "false", "no", "off", "0")
    if (cafile, no_verify) in _TLS:
        return _TLS[(cafile, no_verify)]
    ctx = _TLS[(cafile, no_verify)] = ssl.create_default_context(cafile=cafile)
    if no_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _split_userinfo(url: str) -> tuple[str, Optional[tuple[str, str]]]:
    """``url`` without ``user:password@``, and the two (percent-decoded) when there was a password."""
    p = urlsplit(url)
    if "@" not in p.netloc:
        return url, None
    userinfo, _, hostport = p.netloc.rpartition("@")
    user, sep, password = userinfo.partition(":")
    bare = urlunsplit((p.scheme, hostport, p.path, p.query, p.fragment))
    return bare, ((unquote(user), unquote(password)) if sep else None)


_CONTENT_HEADERS = ("accept", "content-type", "content-length")  # kept across origins: no credential


def _usable(url: str, said: str = "the LFS server gave") -> None:
    """Raise :class:`AttachmentError` unless ``url`` is an ``http``/``https`` URL with a host and a
    port Python can read."""
    try:
        p = urlsplit(url)
        p.port  # noqa: B018 (raises ValueError for a port out of range or not a number)
        ok = p.scheme in ("http", "https") and bool(p.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise AttachmentError(f"{said} a URL gitmail cannot use ({git.redact(url)[:200]!r}); not followed")


def _origin(url: str) -> str:
    p = urlsplit(url)
    return f"{p.scheme}://{p.hostname}:{p.port or (443 if p.scheme == 'https' else 80)}"


def _basic(user: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode("utf-8")).decode("ascii")


def _action(actions: dict[str, Any], name: str, oid: str, shown: str, https: bool = False) -> tuple[str, dict[str, str]]:
    """``(href, header)`` of the batch reply's ``name`` action, checked: the header map holds
    only what HTTP can carry (:func:`_headers`), and an endpoint reached over ``https`` gets no
    plain ``http`` href (the content and the action's header would cross the network in clear
    where the user configured TLS)."""
    a = actions.get(name)
    if not isinstance(a, dict) or not isinstance(a.get("href"), str):
        raise AttachmentError(f"the LFS server {shown} gave no {name} action for object {oid[:12]}")
    if https and not a["href"].lower().startswith("https:"):
        raise AttachmentError(f"the LFS server {shown} (https) gave a {name} URL that is not https for object "
                              f"{oid[:12]}; not followed")
    return a["href"], _headers(a.get("header"), shown)


# An HTTP header name (RFC 9110 token) and a value gitmail sends (visible Latin-1, spaces and tabs
# inside; no CR or LF, which http.client refuses with a ValueError of its own).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}")
_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]{0,8192}")


def _headers(header: object, shown: str) -> dict[str, str]:
    """The header map of an LFS reply (an action's, ``git-lfs-authenticate``'s), each name and
    value as text; raises :class:`AttachmentError` when one cannot be sent as an HTTP header."""
    if not isinstance(header, dict):
        return {}
    out = {str(k): str(v) for k, v in header.items()}
    for k, v in out.items():
        if not _TOKEN.fullmatch(k) or not _VALUE.fullmatch(v):
            raise AttachmentError(f"the LFS server {shown} sent a header that is not HTTP's: {k[:40]!r}")
    return out


def _read_limited(resp: Any, limit: int, url: str) -> bytes:
    """The response body, refused past ``limit`` bytes (read in chunks: never more held)."""
    length = resp.getheader("Content-Length")
    if length and length.isdigit() and int(length) > limit:
        raise AttachmentError(f"the LFS server {git.redact(url)} sent a reply of {length} bytes; "
                              f"at most {limit} are accepted")
    parts, n = [], 0
    while chunk := resp.read(min(CHUNK, limit + 1 - n)):
        parts.append(chunk)
        n += len(chunk)
        if n > limit:
            raise AttachmentError(f"the LFS server {git.redact(url)} sent a reply over {limit} bytes; not read further")
    return b"".join(parts)


def _message(data: bytes) -> str:
    """The ``message`` of an LFS error reply (batch.md "Response Errors"), one line, or ''."""
    try:
        msg = json.loads(data).get("message", "")
    except (ValueError, AttributeError, RecursionError):
        return ""
    return " ".join(str(msg).split())[:200]


def _status_error(what: str, url: str, status: int, reason: str, detail: str = "") -> GitmailError:
    """The error for an HTTP status: 5xx and 429 are for later (unreachable), others are refusals."""
    text = f"{what} the LFS server {git.redact(url)} failed: HTTP {status} {reason}".rstrip()
    if detail:
        text += f" ({detail})"
    if status >= 500 or status == 429:
        return LFSUnreachableError(text + "; try again later")
    return AttachmentError(text)


def _reason(e: BaseException) -> str:
    s = " ".join(str(getattr(e, "strerror", None) or e or type(e).__name__).split())
    return git.redact(s)[:160]


class _DownloadSink:
    """Streams a download into ``root/tmp``, hashing as it goes; :meth:`place` renames it into the store."""

    def __init__(self, root: Path, oid: str, size: int, progress: Progress, label: str) -> None:
        self.root, self.oid, self.size, self.progress, self.label = root, oid, size, progress, label
        self.tmp: Optional[str] = None

    def consume(self, resp: Any, expired: Callable[[], bool]) -> None:
        length = resp.getheader("Content-Length")
        if length and length.isdigit() and int(length) != self.size:
            raise AttachmentError(f"LFS object {self.oid[:12]}: the server sends {length} bytes; its pointer says "
                                  f"{self.size}")
        fd, self.tmp = tempfile.mkstemp(dir=self.root / "tmp", prefix=self.oid[:12] + "-")
        h, done = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            while chunk := resp.read(min(CHUNK, self.size + 1 - done)):
                if expired():
                    raise _Timeout()
                done += len(chunk)
                if done > self.size:
                    raise AttachmentError(f"LFS object {self.oid[:12]} is larger than its pointer says "
                                          f"({self.size} bytes)")
                h.update(chunk)
                out.write(chunk)
                self.progress(self.label, done, self.size)
        if expired():
            raise _Timeout()
        if done != self.size:
            raise AttachmentError(f"LFS object {self.oid[:12]} has {done} bytes; its pointer says {self.size}")
        if h.hexdigest() != self.oid:
            raise AttachmentError(f"LFS object {self.oid[:12]} from the server does not match its sha256 "
                                  "(content altered or corrupt); not saved")

    def place(self) -> Path:
        assert self.tmp is not None
        dst = object_path(self.root, self.oid)
        try:
            os.chmod(self.tmp, OBJECT_MODE)
            os.replace(self.tmp, dst)
        except OSError as e:
            raise AttachmentError(f"cannot write LFS object {self.oid[:12]} to {self.root}: {e.strerror}") from None
        self.tmp = None
        return dst

    def discard(self) -> None:
        if self.tmp is not None and os.path.exists(self.tmp):
            os.unlink(self.tmp)
        self.tmp = None


class _ProgressReader:
    """A file wrapper that reports bytes read (the request body of an upload)."""

    def __init__(self, f: IO[bytes], size: int, progress: Progress, label: str) -> None:
        self.f, self.size, self.progress, self.label = f, size, progress, label

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.progress(self.label, self.f.tell(), self.size)
        return data

    def tell(self) -> int:
        return self.f.tell()

    def seek(self, pos: int, whence: int = 0) -> int:
        return self.f.seek(pos, whence)
