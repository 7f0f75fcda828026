"""Git LFS for attachments: pointers, endpoint discovery, the local object
layout, and transfers through the batch API (docs/attachments.md).

Sources:

* pointer files: git-lfs ``docs/spec.md`` (spec v1) -- ``version``, ``oid
  sha256:<64 hex>``, ``size <bytes>``, one ``key value`` per line, LF endings;
  parsed with :class:`dulwich.lfs.LFSPointer` plus the strict checks below;
* the batch API: git-lfs ``docs/api/batch.md`` (``POST <endpoint>/objects/batch``,
  ``basic`` transfer adapter), spoken through :class:`dulwich.lfs.HTTPLFSClient`;
* endpoint discovery: git-lfs ``docs/api/server-discovery.md`` and
  ``git-lfs-config(5)`` -- ``lfs.url``, ``remote.<name>.lfsurl``, the same keys
  in ``.lfsconfig``, then ``<remote url>[.git]/info/lfs``;
* the local layout: ``<git dir>/lfs/objects/<oid[0:2]>/<oid[2:4]>/<oid>``, the
  layout of the stock client's cache and of its standalone transfer agent for
  local remotes (a bare org repo at PATH keeps its objects in ``PATH/lfs``).

Nothing here prints. Every failure is an :class:`AttachmentError` (missing
object, size or sha256 mismatch, refused request) or an
:class:`LFSUnreachableError` (the store cannot be reached right now).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Optional, Protocol
from urllib.parse import urlparse

from gitmail import git
from gitmail.errors import AttachmentError, LFSUnreachableError

if TYPE_CHECKING:
    from gitmail.core.repo import Repo

POINTER_VERSION = "https://git-lfs.github.com/spec/v1"
POINTER_MAX = 1024  # bytes: git-lfs never reads a bigger blob as a pointer
CHUNK = 256 * 1024  # bytes per read while copying or transferring
TIMEOUT = 60.0  # seconds: HTTP connect/read timeout
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
    """The canonical pointer file (spec v1) for ``oid`` (sha256 hex) and ``size`` (bytes)."""
    from dulwich.lfs import LFSPointer

    return LFSPointer(check_oid(oid), int(size)).to_bytes()


def parse_pointer(data: bytes) -> Optional[tuple[str, int]]:
    """``(oid, size)`` of a spec v1 pointer file, or None when ``data`` is not one."""
    from dulwich.lfs import LFSPointer

    if len(data) > POINTER_MAX or not data.startswith(b"version " + POINTER_VERSION.encode()):
        return None
    p = LFSPointer.from_bytes(data)
    if p is None or not _OID.match(p.oid):
        return None
    return p.oid, p.size


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
    if isinstance(src, Path) and src.name == oid and _try_link(src, dst):
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


def _try_link(src: Path, dst: Path) -> bool:
    try:
        os.link(src, dst)
        return True
    except FileExistsError:
        return True
    except OSError:
        return False


def _copy_verified(src: Path | bytes, out: IO[bytes], oid: str, size: int) -> None:
    h, n = hashlib.sha256(), 0
    if isinstance(src, bytes):
        h.update(src)
        out.write(src)
        n = len(src)
    else:
        with open(src, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
                out.write(chunk)
                n += len(chunk)
    if n != size or h.hexdigest() != oid:
        raise AttachmentError(f"{src if isinstance(src, Path) else 'content'} changed while it was being attached; try again")


# -- endpoint discovery ----------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """Where the org's LFS objects live.

    ``url``: an http(s) batch API base, or a ``file://`` URL; ``local``: the
    store directory (an ``lfs`` dir) for a local endpoint, else None;
    ``source``: the setting it came from (shown in errors and ``--json``).
    """

    url: str
    local: Optional[Path]
    source: str


def discover(repo: "Repo") -> Endpoint:
    """The LFS endpoint of ``repo``'s org remote, found the way git-lfs finds it.

    Order (git-lfs server-discovery.md, git-lfs-config(5)): git config
    ``lfs.url``, ``remote.<remote>.lfsurl``; the same two keys in
    ``.lfsconfig`` (work tree, else ``HEAD:.lfsconfig``); else derived from
    ``remote.<remote>.url``: a local path or ``file://`` URL gives the
    remote's own store (``<path>/lfs``, or ``<path>/.git/lfs`` for a non-bare
    repo), ``https://host/x`` gives ``https://host/x.git/info/lfs`` and
    ``git@host:x`` / ``ssh://host/x`` give ``https://host/x.git/info/lfs``.
    With no remote (the org repo itself) the store is this repo's ``lfs`` dir.
    """
    remote = repo.remote
    keys = ["lfs.url"] + ([f"remote.{remote}.lfsurl"] if remote else [])
    found = _config_values(repo, [], keys)
    source = "git config"
    if not found:
        args = _lfsconfig_args(repo)
        found = _config_values(repo, args, keys) if args is not None else {}
        source = ".lfsconfig"
    for key in keys:
        if found.get(key.lower()):
            return _endpoint(found[key.lower()], repo.path, f"{source} {key}")
    if not remote:
        return Endpoint(cache_root(repo).as_uri(), cache_root(repo), "this repository")
    url = repo.config.get(f"remote.{remote}.url", "")
    if not url:
        raise AttachmentError(f"remote {remote!r} has no URL: cannot find the org's LFS store")
    return _endpoint(_derive(url), repo.path, f"remote.{remote}.url")


def _config_values(repo: "Repo", args: list[str], keys: list[str]) -> dict[str, str]:
    """Lower-cased key -> last value of ``keys`` in one ``git config --get-regexp`` call."""
    pattern = "^(" + "|".join(re.escape(k) for k in keys) + ")$"
    proc = git.run(["config", *args, "-z", "--get-regexp", pattern], repo.path, check=False)
    out: dict[str, str] = {}
    for item in proc.stdout.split(b"\0"):
        key, _, value = item.partition(b"\n")
        if key and value.strip():
            out[key.decode("utf-8", "replace").lower()] = value.decode("utf-8", "replace").strip()
    return out


def _lfsconfig_args(repo: "Repo") -> Optional[list[str]]:
    """``git config`` arguments that read the repo's ``.lfsconfig``, or None when it has none."""
    top = git.run(["rev-parse", "--show-toplevel"], repo.path, check=False)
    if top.returncode == 0:
        f = Path(top.stdout.decode().strip()) / ".lfsconfig"
        if f.is_file():
            return ["--file", str(f)]
    blob = git.run(["rev-parse", "--verify", "--quiet", "HEAD:.lfsconfig"], repo.path, check=False)
    if blob.returncode == 0:
        return ["--blob", blob.stdout.decode().strip()]
    return None


def _derive(url: str) -> str:
    """The LFS URL git-lfs derives from a git remote URL (local paths stay paths)."""
    m = re.match(r"^(?:[^@/]+@)?([^:/]+):(?!//)(.+)$", url)
    if m and "://" not in url and not re.match(r"^[A-Za-z]:[\\/]", url):
        url = f"https://{m.group(1)}/{m.group(2).lstrip('/')}"
    p = urlparse(url)
    if p.scheme in ("ssh", "git", "git+ssh", "ssh+git"):
        url = f"https://{p.hostname}{p.path}"
    elif p.scheme not in ("http", "https"):
        return url  # a local path or file:// URL
    url = url.rstrip("/")
    return (url if url.endswith(".git") else url + ".git") + "/info/lfs"


def _endpoint(value: str, base: Path, source: str) -> Endpoint:
    p = urlparse(value)
    if p.scheme in ("http", "https"):
        return Endpoint(value.rstrip("/"), None, source)
    if p.scheme == "file":
        from urllib.request import url2pathname

        path = Path(url2pathname(p.path))
    elif not p.scheme or (len(p.scheme) == 1 and value[1:2] == ":"):
        path = Path(value).expanduser()
        path = path if path.is_absolute() else (base / path)
    else:
        raise AttachmentError(f"unsupported LFS URL {value!r} (from {source}): use http(s)://, file:// or a path")
    path = path.resolve()
    if path.name != "lfs":  # a repository, not a store: git-lfs uses its git dir's lfs/
        path = path / ".git" / "lfs" if (path / ".git").is_dir() else path / "lfs"
    return Endpoint(path.as_uri(), path, source)


# -- stores ------------------------------------------------------------------------------


class Store(Protocol):
    """An LFS store that objects are uploaded to and downloaded from."""

    endpoint: Endpoint

    def has(self, oid: str, size: int) -> bool: ...

    def put(self, oid: str, size: int, src: Path, progress: Progress = no_progress, label: str = "") -> None: ...

    def get(self, oid: str, size: int, progress: Progress = no_progress, label: str = "") -> bytes: ...


def open_store(endpoint: Endpoint) -> Store:
    """A :class:`LocalStore` or :class:`HTTPStore` for ``endpoint``."""
    if endpoint.local is not None:
        return LocalStore(endpoint)
    return HTTPStore(endpoint)


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

    def get(self, oid: str, size: int, progress: Progress = no_progress, label: str = "") -> bytes:
        """The verified content; :class:`AttachmentError` when missing or altered."""
        self._reachable()
        try:
            return read_local(self.root, oid, size, progress, label)
        except AttachmentError as e:
            if not object_path(self.root, oid).exists():
                raise AttachmentError(f"LFS object {oid[:12]} is missing from the org's store ({self.root})") from None
            raise e


class HTTPStore:
    """A store behind the LFS batch API (basic transfer adapter), via dulwich's client."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.client = _client(endpoint.url)

    def _batch(self, operation: str, oid: str, size: int) -> Any:
        """The batch response object for ``oid`` (batch.md "Response")."""
        from dulwich.lfs import LFSError

        try:
            resp = self.client.batch(operation, [{"oid": check_oid(oid), "size": size}])
        except LFSError as e:
            raise _lfs_error(e, self.endpoint.url) from None
        obj = next((o for o in resp.objects if o.oid == oid), None)
        if obj is None:
            raise AttachmentError(f"the LFS server {self.endpoint.url} did not answer for object {oid[:12]}")
        if obj.error is not None:
            if obj.error.code == 404:
                raise AttachmentError(f"LFS object {oid[:12]} is missing from the org's store ({self.endpoint.url})")
            raise AttachmentError(f"the LFS server refused object {oid[:12]}: {obj.error.code} {obj.error.message}")
        return obj

    def has(self, oid: str, size: int) -> bool:
        """True when an upload batch asks for no action (the server has it)."""
        return not self._batch("upload", oid, size).actions

    def put(self, oid: str, size: int, src: Path, progress: Progress = no_progress, label: str = "") -> None:
        """Upload ``src`` unless the server has it: batch, PUT (streamed), verify."""
        obj = self._batch("upload", oid, size)
        if not obj.actions:
            progress(label, size, size)
            return
        if "upload" not in obj.actions:
            raise AttachmentError(f"the LFS server gave no upload action for object {oid[:12]}")
        with open(src, "rb") as f:
            # Without a progress callback, one buffer goes out in one send.
            body: Any = f.read() if progress is no_progress else _ProgressReader(f, size, progress, label)
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
            resp = self._call("PUT", obj.actions["upload"], headers, body)
        if resp.status >= 400:
            raise AttachmentError(f"upload of LFS object {oid[:12]} failed: HTTP {resp.status} {resp.reason}")
        if "verify" in obj.actions:
            import json

            body2 = json.dumps({"oid": oid, "size": size}).encode()
            resp = self._call("POST", obj.actions["verify"], {"Content-Type": "application/vnd.git-lfs+json"}, body2)
            if resp.status >= 400:
                raise AttachmentError(f"the LFS server could not verify object {oid[:12]}: HTTP {resp.status}")

    def get(self, oid: str, size: int, progress: Progress = no_progress, label: str = "") -> bytes:
        """Download, streaming, stopping past ``size``; verified (size and sha256)."""
        obj = self._batch("download", oid, size)
        if not obj.actions or "download" not in obj.actions:
            raise AttachmentError(f"the LFS server gave no download action for object {oid[:12]}")
        resp = self._call("GET", obj.actions["download"], {}, None, stream=True)
        try:
            if resp.status == 404:
                raise AttachmentError(f"LFS object {oid[:12]} is missing from the org's store ({self.endpoint.url})")
            if resp.status >= 400:
                raise AttachmentError(f"download of LFS object {oid[:12]} failed: HTTP {resp.status} {resp.reason}")
            return _read_verified(resp, oid, size, progress, label)
        finally:
            resp.release_conn()

    def _call(self, method: str, action: Any, headers: dict[str, str], body: Any, stream: bool = False) -> Any:
        """One transfer request as the action says (its headers win); maps network errors."""
        import urllib3

        from dulwich.lfs import _get_lfs_user_agent

        h = {"User-Agent": _get_lfs_user_agent(None), **headers, **(action.header or {})}
        try:
            return self.client._get_pool_manager().request(
                method, action.href, headers=h, body=body, preload_content=not stream, retries=False
            )
        except urllib3.exceptions.HTTPError as e:
            raise LFSUnreachableError(f"the org's LFS server {self.endpoint.url} cannot be reached: {_short(e)}") from None


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


def _client(url: str) -> Any:
    """A dulwich HTTP LFS client with timeouts (dulwich's default has none)."""
    from dulwich.lfs import HTTPLFSClient

    class _Client(HTTPLFSClient):
        def _get_pool_manager(self) -> Any:
            if self._pool_manager is None:
                from dulwich.client import default_urllib3_manager

                self._pool_manager = default_urllib3_manager(self.config, timeout=TIMEOUT)
            return self._pool_manager

    return _Client(url)


def _short(e: BaseException) -> str:
    s = str(getattr(e, "reason", None) or e)
    return s.split(": ", 1)[-1][:160] if len(s) > 160 else s


def _lfs_error(e: Exception, url: str) -> Exception:
    """Map a dulwich ``LFSError`` to unreachable (network) or :class:`AttachmentError`."""
    msg = str(e)
    if msg.startswith("Request to "):
        return LFSUnreachableError(f"the org's LFS server {url} cannot be reached: {_short(e.__cause__ or e)}")
    first = msg.splitlines()[0][:200] if msg else type(e).__name__
    return AttachmentError(f"the LFS server {url} refused the request: {first}")
