"""Joining and running an org: init, members, whoami, org policy and key rotation (docs/protocol.md, "Joining", "Directory").

Part of the library API (:mod:`gitmail.api`): plain data in and out, only
:class:`gitmail.errors.GitmailError` raised, nothing printed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from gitmail.core import refs
from gitmail.core.address import to_ref
from gitmail.core.repo import Repo, open_repo
from gitmail.errors import (
    GitmailError,
    UsageError,
)

if TYPE_CHECKING:

    from gitmail.api.results import InitReport, KeyRevoked, KeyRotated, WhoAmIReport
    from gitmail.core.directory import Directory
    from gitmail.core.model import Member
    from gitmail.core.signing import Signer

from gitmail.api.session import RepoLike, Session, session


@dataclass
class InitResult:
    member: "Member"
    repo: Path
    remote: Optional[str]
    key_path: Path
    created_org: bool
    created_key: bool
    registered: bool
    fingerprint: Optional[str] = None

    def model(self) -> "InitReport":
        """The JSON result of ``gitmail init`` (docs/json.md, ``InitReport``)."""
        from gitmail.api.results import InitReport

        return InitReport(member=self.member.name, role=self.member.role, repo=str(self.repo), remote=self.remote,
                          key=str(self.key_path), created_org=self.created_org, created_key=self.created_key,
                          registered=self.registered, fingerprint=self.fingerprint)


def _is_local_path(url: str) -> bool:
    return "://" not in url and not re.match(r"^[^/]+:", url)


def init(
    repo: RepoLike,
    name: str,
    *,
    org: Optional[str] = None,
    email: Optional[str] = None,
    key: Optional[str] = None,
    display_name: Optional[str] = None,
    kind: str = "human",
    encryption_key: bool = True,
    fingerprint: Optional[str] = None,
) -> InitResult:
    """Make the repo at ``repo`` a mailbox for member ``name`` (docs/protocol.md, "Joining").

    With ``org`` a local path where nothing exists yet, creates the org repo
    there (bare). Creates or loads the member's key, registers the member in
    the directory (the first member becomes admin), adds the fetch refspec,
    sets ``gitmail.user`` (if unset), ``gitmail.NAME.key`` and
    ``gpg.ssh.allowedSignersFile``. Idempotent for a member already registered
    with the same key; raises :class:`DirectoryError` for a name taken by
    another key. ``encryption_key``: publish the key for end-to-end encryption
    too (docs/protocol.md, "Encryption"). ``fingerprint``: the org fingerprint
    the member was given (:func:`org_fingerprint`); an org whose directory has
    another one is refused with :class:`VerificationError` before anything is
    written (docs/protocol.md §7).
    """
    from gitmail.core import directory as dirmod
    from gitmail.core.address import normalize

    name = normalize(name)
    problem = dirmod.identity_problem(name, display_name or name, email or _default_email(name))
    if problem:  # before a repository, a remote or a key is made
        raise UsageError(problem)
    if fingerprint is not None:
        if not org:
            raise UsageError("--fingerprint needs --org URL (the org whose fingerprint it is)")
        _check_fingerprint(org, fingerprint)
    made: list[Path] = []  # what this call creates, taken away again if it fails before the member is in
    r, org, created_org = _open_member_repo(repo, org, made)
    before = _Before.of(r, made)
    signer: "Optional[Signer]" = None
    try:
        _configure_remote(r, org, name)
        if org is None and r.remote is not None and r.ref_target(refs.tracking(refs.DIRECTORY, r.remote)) is None:
            # A project's own clone: its origin is no org, and registering would push a new org's
            # directory into the project's repository. Making an org there is said out loud.
            url = r.config.get(f"remote.{r.remote}.url", "")
            raise UsageError(f"the remote {r.remote!r} ({url}) holds no gitmail org; to make one there, run "
                             f"'gitmail init --name {name} --org {url}'")
        signer, kp, created_key = _member_key(r, name, key)
        if created_key:
            from gitmail.core.signing import public_path

            made += [kp, public_path(kp)]
        member, registered = _register(r, name, signer, display_name=display_name, email=email, kind=kind,
                                       encryption_key=encryption_key)
    except GitmailError:
        _undo(r, name, signer.public_key if signer is not None else None, made, before)
        raise
    from gitmail import git

    if not r.config.get("gitmail.user"):
        git.config_set(r.path, "gitmail.user", name)
    ours = str(r.data_dir / "allowed_signers")
    theirs = git.run(["config", "--local", "--includes", "--path", "--get", "gpg.ssh.allowedSignersFile"], r.path,
                     check=False).stdout.decode("utf-8", "surrogateescape").strip()
    if theirs and theirs != ours:  # the clone's own file (a project's signers): kept in gitmail's, as an absolute path
        git.config_set(r.path, dirmod.USER_SIGNERS_KEY, dirmod.absolute_signers_path(theirs, r.path))
    git.config_set(r.path, "gpg.ssh.allowedSignersFile", ours)
    r.reload_config()
    d = dirmod.load(r)
    dirmod.write_signers(r, d)  # picks up the user's own allowed signers as they are now
    from gitmail.core import sync

    if r.remote is not None and sync.org_problem(r) is None:
        sync.org_found(r)  # fetched from it just now: the first send need not look again
    fp = dirmod.org_fingerprint(r.pg, d.tip) if d.tip else None
    return InitResult(member, r.path, r.remote, kp, created_org, created_key, registered, fp)


def _open_member_repo(repo: RepoLike, org: Optional[str], made: list[Path]) -> tuple[Repo, Optional[str], bool]:
    """The member's repository (created with ``git init`` when missing and an org is given),
    ``org`` resolved when it is a local path (a bare repo created there if nothing exists yet),
    and whether the org repo was created. What it creates is added to ``made``."""
    from gitmail import git
    from gitmail.errors import NotARepoError

    base = Path(repo.path if isinstance(repo, Repo) else (repo or os.environ.get("GITMAIL_REPO") or "."))
    created_org = False
    if org and _is_local_path(org):
        orgp = Path(org).expanduser().absolute()  # never a leading '-' git would read as an option
        if not orgp.exists():
            git.run(["init", "--quiet", "--bare", str(orgp)])
            made.append(orgp)
            created_org = True
        org = str(orgp.resolve())
    try:
        r = repo if isinstance(repo, Repo) else open_repo(base)
    except NotARepoError:
        if not org:
            raise
        if base.exists() and not base.is_dir():
            raise NotARepoError(f"{base} is a file, not a folder for the clone") from None
        made.append(base / ".git" if base.exists() else base)
        base.mkdir(parents=True, exist_ok=True)
        git.run(["init", "--quiet", str(base.absolute())])  # ('--bare' as a folder name is a folder)
        r = open_repo(base)
    return r, org, created_org


@dataclass
class _Before:
    """What an existing repository held before ``init`` changed it, to put back if it fails:
    its local git config (the bytes of ``.git/config``), its remotes, whether it had
    ``.git/gitmail/`` and any ref below ``refs/gitmail/``. None for a repository this
    ``init`` created (removed whole instead)."""

    config: bytes
    mode: int  # the config file's permission bits
    remotes: set[str]
    data_dir: bool
    gitmail_refs: bool

    @classmethod
    def of(cls, r: Repo, made: list[Path]) -> "Optional[_Before]":
        from gitmail import git

        if any(p in made for p in (r.path, r.git_dir)):
            return None
        try:
            config = (r.git_dir / "config").read_bytes()
            mode = (r.git_dir / "config").stat().st_mode & 0o7777
        except OSError:
            return None  # nothing can be put back: left as the failure leaves it
        remotes = set(_remote_urls(r))
        had_refs = bool(git.for_each_ref(r.path, ["refs/gitmail/"]))
        return cls(config, mode, remotes, (r.git_dir / "gitmail").exists(), had_refs)

    def restore(self, r: Repo) -> None:
        """Put the repository back: remotes ``init`` added removed (their remote-tracking refs
        with them), the config file as it was, ``.git/gitmail/`` and ``refs/gitmail/`` removed
        when they were not there before."""
        import shutil

        from gitmail import git
        from gitmail.core.files import write_atomic

        r.reload_config()
        added = set(_remote_urls(r)) - self.remotes
        for remote in sorted(added):
            git.run(["remote", "remove", remote], r.path, check=False)
        write_atomic(r.git_dir / "config", self.config, mode=self.mode)
        if not self.gitmail_refs:
            for ref in git.for_each_ref(r.path, ["refs/gitmail/"]):
                git.run(["update-ref", "-d", ref], r.path, check=False)
        if not self.data_dir:
            shutil.rmtree(r.git_dir / "gitmail", ignore_errors=True)
        r.reload_config()


def _undo(r: Repo, name: str, key: Optional[str], made: list[Path], before: "Optional[_Before]" = None) -> None:
    """After a failed ``init``: remove what it created (``made``: a new clone folder or its
    ``.git``, a bare org repo, a key it generated) and put an existing repository back as it
    was (``before``), unless the directory this clone saw lists ``name`` with ``key`` (the
    public key line ``init`` used; None: it had none yet), so the registration was published
    and the key is now the member's. A name listed with another key is someone else's."""
    import shutil

    from gitmail.core import directory as dirmod

    try:
        m = dirmod.load(r).members.get(name) if key is not None else None
    except GitmailError:
        return  # not known: keep everything
    if m is not None and key in m.all_keys():
        return
    for p in made:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    if before is not None:
        before.restore(r)


@dataclass
class Deinit:
    """What :func:`deinit` did: ``removed`` and ``kept``, one line each."""

    repo: Path
    removed: list[str]
    kept: list[str]
    dropped_queued: int

    def model(self) -> "Any":
        """The JSON result of ``gitmail deinit`` (docs/json.md, ``DeinitReport``)."""
        from gitmail.api.results import DeinitReport

        return DeinitReport(repo=str(self.repo), removed=self.removed, kept=self.kept,
                            dropped_queued=self.dropped_queued)


def deinit(repo: RepoLike = None, *, force: bool = False) -> Deinit:
    """Take gitmail out of the clone at ``repo``: what ``init`` and later commands put there.

    Removes gitmail's fetch refspecs (and the remote itself when nothing else is fetched
    through it and the config holds nothing else of it: ``init`` added it), every
    ``gitmail.*`` setting, ``gpg.ssh.allowedSignersFile`` where it names gitmail's file (the
    user's own file put back when ``init`` recorded one), the refs below ``refs/gitmail/``
    (this clone's outbox and read and archive flags) and the remote's ``gitmail/``
    remote-tracking refs, and ``.git/gitmail/``. The user's other settings, remotes,
    branches and refs are not touched. What stays: the member's registration in the org's
    directory, their keys (other clones may use them) and the mail on the org repo. The
    client hooks are the front-end's to remove (:func:`gitmail.hooks.uninstall`; ``gitmail
    deinit`` does, after this). ``kept`` ends with the way back (``gitmail init --name
    NAME``, with ``--org URL`` when the remote went). Idempotent: a clone without gitmail
    gives an empty ``removed``.

    Raises :class:`NotARepoError`, :class:`UsageError` when mail is still queued for
    delivery (``refs/gitmail/outbox/``) and ``force`` is false (nothing is changed then),
    :class:`GitmailError` when ``.git/gitmail`` cannot be removed (saying what was).
    """
    import shutil

    from gitmail import git
    from gitmail.core import directory as dirmod
    from gitmail.core import refspecs

    r = repo if isinstance(repo, Repo) else open_repo(repo)
    data = r.git_dir / "gitmail"  # not r.data_dir, which makes the folder
    had_data = data.exists()
    queued = sorted(git.for_each_ref(r.path, [refs.OUTBOX]))
    if queued and not force:
        shown = ", ".join(q[len(refs.OUTBOX):] for q in queued[:5]) + (f" and {len(queued) - 5} more"
                                                                       if len(queued) > 5 else "")
        raise UsageError(f"mail is still queued for delivery ({shown}): run 'gitmail sync' to deliver it "
                         "first, or --force to drop it")
    removed: list[str] = []
    kept: list[str] = []
    config = {k: v for k, v in r.config.items()}
    user = config.get("gitmail.user", "")
    remote = r.remote
    come_back = f"gitmail init --name {user}" if user else "gitmail init --name NAME"
    if remote:
        before = git.config_get_all(r.path, f"remote.{remote}.fetch")
        refspecs.configure_paths(r, [], ())
        after = git.config_get_all(r.path, f"remote.{remote}.fetch")
        if len(after) < len(before):
            removed.append(f"gitmail's fetch refspecs of the remote {remote!r} ({len(before) - len(after)})")
        url = git.run(["config", "--local", "--get", f"remote.{remote}.url"], r.path,
                      check=False).stdout.decode("utf-8", "surrogateescape").strip()
        if not after and before and not _remote_in_use(r, remote):
            # It fetched gitmail's refs and nothing else, and holds nothing of the user's: init added it.
            git.run(["remote", "remove", remote], r.path, check=False)
            removed.append(f"the remote {remote!r} ({url}), which fetched only gitmail's refs")
            come_back += f" --org {url}"
        else:
            kept.append(f"the remote {remote!r} ({url})" + ("" if after else ", now without a fetch refspec"))
    ours = str(data / "allowed_signers")
    signers = git.run(["config", "--local", "--get", "gpg.ssh.allowedSignersFile"], r.path,
                      check=False).stdout.decode("utf-8", "surrogateescape").strip()
    if signers == ours:
        theirs = config.get(dirmod.USER_SIGNERS_KEY.lower())
        if theirs:
            git.config_set(r.path, "gpg.ssh.allowedSignersFile", theirs)
            removed.append(f"gpg.ssh.allowedSignersFile pointing at gitmail's file (yours, {theirs}, put back)")
        else:
            git.run(["config", "--local", "--unset", "gpg.ssh.allowedSignersFile"], r.path, check=False)
            removed.append("gpg.ssh.allowedSignersFile pointing at gitmail's file")
            _drop_empty_section(r, "gpg.ssh", "gpg")
    names = git.run(["config", "--local", "--null", "--name-only", "--get-regexp", r"^gitmail\."], r.path,
                    check=False).stdout.decode("utf-8", "surrogateescape").split("\0")
    sections = sorted({n.rsplit(".", 1)[0] for n in names if n}, key=len, reverse=True)
    for sec in sections:
        git.run(["config", "--local", "--remove-section", sec], r.path, check=False)
    if sections:
        removed.append(f"gitmail's settings ({sum(1 for n in names if n)} in git config)")
    gone = sorted(git.for_each_ref(r.path, ["refs/gitmail/", *([f"refs/remotes/{remote}/gitmail/"] if remote else [])]))
    if gone:
        lines = "".join(f"delete {ref}\n" for ref in gone)
        git.run(["update-ref", "--no-deref", "--stdin"], r.path, input=lines.encode())
        removed.append(f"{len(gone)} refs below refs/gitmail/ and the remote's gitmail/ (outbox, read and "
                       "archive flags of this clone, remote-tracking copies)")
    try:
        if data.is_symlink() or (data.exists() and not data.is_dir()):
            data.unlink()  # not gitmail's folder: a file or a link where it belongs
        elif data.exists():
            shutil.rmtree(data)
    except OSError as e:
        from gitmail.errors import GitmailError

        done = "; ".join(removed) or "nothing else"
        raise GitmailError(f"{data} could not be removed ({e.strerror or e}); removed before it: {done}") from None
    if had_data:
        removed.append(f"{data} (the cache, locks, ledgers)")
    for k, v in sorted(config.items()):
        if k.startswith("gitmail.") and k.endswith(".key") and k.count(".") >= 2:
            kept.append(f"the key of {k[len('gitmail.'):-len('.key')]} ({v}): other clones may use it")
    if removed:
        kept.append("the registration in the org's directory, and the mail on the org repo")
        kept.append(f"the way back: {come_back}")
    return Deinit(Path(r.path).absolute(), removed, kept, len(queued))


def _remote_in_use(r: Repo, remote: str) -> bool:
    """Whether the user's config holds anything of ``remote`` besides its URL: other keys of its
    own (``pushurl``, ``prune``, ...), a branch that tracks or pushes to it, or the default push
    remote (``git remote remove`` would drop all of those)."""
    from gitmail import git

    def names(pattern: str) -> list[tuple[str, str]]:
        out = git.run(["config", "--local", "--null", "--get-regexp", pattern], r.path,
                      check=False).stdout.decode("utf-8", "surrogateescape").split("\0")
        pairs = []
        for entry in out:
            if entry:
                key, _, value = entry.partition("\n")  # --null: KEY LF VALUE NUL
                pairs.append((key, value))
        return pairs

    ere = "".join("\\" + c if c in ".[]{}()*+?^$|\\" else c for c in remote)  # git's regex is POSIX ERE
    own = [k for k, _ in names("^remote\\." + ere + "\\.") if k != f"remote.{remote}.url"]
    uses = [v for _, v in names("^branch\\..*\\.(remote|pushremote)$") + names("^remote\\.pushdefault$")]
    return bool(own) or remote in uses


def _drop_empty_section(r: Repo, section: str, *more: str) -> None:
    """Remove ``section`` (then each of ``more``) from the local config when no key is left in it
    (git keeps an empty ``[gpg "ssh"]`` header after the last key is unset)."""
    from gitmail import git

    for sec in (section, *more):
        left = git.run(["config", "--local", "--name-only", "--get-regexp", "^" + re.escape(sec) + r"\."],
                       r.path, check=False).stdout.strip()
        if left:
            return
        git.run(["config", "--local", "--remove-section", sec], r.path, check=False)


def _remote_urls(r: Repo) -> dict[str, str]:
    """Remote name -> fetch URL, as the clone's git config gives them (``remote.<name>.url``; a
    name may hold dots)."""
    return {k[len("remote."):-len(".url")]: v for k, v in r.config.items()
            if k.startswith("remote.") and k.endswith(".url")}


def _configure_remote(r: Repo, org: Optional[str], name: str) -> None:
    """Point ``gitmail.remote`` at the org (an existing remote with that URL, else ``origin``
    or ``gitmail``), add member ``name``'s fetch refspecs unless gitmail's are there, and fetch them."""
    from gitmail import git
    from gitmail.core import sync

    if org:
        remotes = _remote_urls(r)
        chosen = next((n for n, u in remotes.items() if u == org), None)
        if chosen is None:
            chosen = "origin" if "origin" not in remotes else "gitmail"
            git.run(["remote", "add", chosen, org], r.path)
            # A remote gitmail added is gitmail's: its fetch refspecs are only the member's
            # (below), not git's all-branches default. A user's own remote is left as it is.
            git.run(["config", "--local", "--unset-all", f"remote.{chosen}.fetch"], r.path)
        git.config_set(r.path, "gitmail.remote", chosen)
    elif not r.remote:
        if "origin" in _remote_urls(r):
            git.config_set(r.path, "gitmail.remote", "origin")
    r.reload_config()
    if r.remote:
        # The member's own refspecs (docs/protocol.md §3 "What a member fetches"): a plain
        # `git fetch`/`git pull` brings their mail; the first sync adds their groups.
        from gitmail.core import refspecs

        conf = refspecs.configured_paths(r)
        own = [p for p in refs.member_paths(name, []) if p not in conf]
        if own:  # a second identity in this clone adds its own lines beside the first's
            want = [*(p for p in conf if p != refs.ALL), *own]
            refspecs.configure_paths(r, want, refs.exclusions(want, refspecs.longer_names(r)))
        # The directory first, verified: its names say which longer names' refs the
        # member's single-ref patterns must not bring (refs.exclusions).
        from gitmail.core import directory as dirmod

        sync.fetch(r, [refs.exact_pattern(refs.DIRECTORY)])
        dirmod.load(r)
        sync.fetch_member(r, name)


def _member_key(r: Repo, name: str, key: Optional[str]) -> "tuple[Signer, Path, bool]":
    """The member's signing key (``key``: a file the user chose; else gitmail's own, generated
    when missing), recorded as ``gitmail.NAME.key``; its path; whether it was generated."""
    from gitmail import git
    from gitmail.core.signing import generate_key, load_key

    if key:
        kp = Path(key).expanduser().resolve()
        signer = load_key(kp)
        created = False
    else:
        kp = r.key_path(name)
        created = not kp.exists()
        signer = generate_key(kp, comment=f"gitmail {name}") if created else load_key(kp)
    git.config_set(r.path, f"gitmail.{name}.key", str(kp))
    return signer, kp, created


def _register(r: Repo, name: str, signer: "Signer", *, display_name: Optional[str], email: Optional[str], kind: str,
              encryption_key: bool) -> "tuple[Member, bool]":
    """The member's directory entry, registered with a signed directory commit unless it exists
    with this key (the first member becomes admin); whether it was registered now.
    Raises :class:`DirectoryError` for a name or key that belongs to someone else."""
    from gitmail.core import admin
    from gitmail.core import directory as dirmod
    from gitmail.core.model import Member
    from gitmail.errors import DirectoryError

    d = dirmod.load(r)
    existing = d.members.get(name)
    if existing is not None:
        if signer.public_key not in existing.all_keys():
            raise DirectoryError(f"member {name!r} is already registered with another key")
        return existing, False
    other = d.member_by_key(signer.public_key)
    if other is not None:
        raise DirectoryError(f"that key is already registered to member {other.name!r}")
    # The one ed25519 key also decrypts (age ssh-ed25519 recipient); a key that
    # lives only in ssh-agent cannot decrypt, so it publishes no encryption key.
    publish = encryption_key and not signer.source.startswith("ssh-agent")
    member = Member(
        name=name,
        display_name=display_name or name,
        email=email or _default_email(name),
        signing_key=signer.public_key,
        encryption_key=signer.public_key if publish else None,
        role="admin" if not d.members else "member",
        kind=kind,
    )

    def add(cur: "Directory") -> "Directory":
        if name in cur.members:
            raise DirectoryError(f"member {name!r} is already registered")
        if not cur.members:  # a new org starts in the fan-out layout (docs/protocol.md §8, "Layouts")
            cur.policy = cur.policy.model_copy(update={"directory_layout": dirmod.FANOUT})
        cur.members[name] = member
        return cur

    admin.change(r, signer, member, add, f"Register {name}")
    return member, True


def _default_email(name: str) -> str:
    """The email of a member who gave none (git needs one for the author line)."""
    return f"{to_ref(name)}@gitmail.invalid"


def _check_fingerprint(org: str, expected: str) -> None:
    """Fetch the org's directory into a throw-away repository and compare its fingerprint.

    Raises :class:`VerificationError` on a difference (or an org without a
    directory); writes nothing to the clone.
    """
    import tempfile

    import pygit2

    from gitmail import git
    from gitmail.core import directory as dirmod
    from gitmail.errors import VerificationError

    with tempfile.TemporaryDirectory(prefix="gitmail-tofu-") as tmp:
        git.run(["init", "--quiet", "--bare", tmp])
        try:
            git.run(["fetch", "--quiet", org, f"+{refs.head(refs.DIRECTORY)}:refs/heads/d"], Path(tmp),
                    stall=git.stall_timeout({}, org))
        except Exception:
            raise VerificationError(f"cannot read the directory of {org} to check its fingerprint") from None
        pg = pygit2.Repository(tmp)
        tip = str(pg.references["refs/heads/d"].target)
        d, problems = dirmod.verify_range(pg, None, tip)
        if problems or d.tip is None:
            raise VerificationError(f"the directory of {org} does not verify: {(problems or ['empty'])[0]}")
        actual = dirmod.org_fingerprint(pg, tip)
    if actual != expected.strip():
        raise VerificationError(f"org fingerprint mismatch: {org} has {actual}, expected {expected.strip()}")


def org_fingerprint(repo: RepoLike = None) -> Optional[str]:
    """The org fingerprint of this clone's verified directory (docs/protocol.md §7), or None when empty."""
    from gitmail.core import directory

    r = repo if isinstance(repo, Repo) else open_repo(repo)
    d = directory.load_existing(r)
    return directory.org_fingerprint(r.pg, d.tip) if d.tip else None


def members(repo: RepoLike = None) -> list["Member"]:
    """Every member of the org's verified directory, by name."""
    from gitmail.core import directory

    r = repo if isinstance(repo, Repo) else open_repo(repo)
    d = directory.load_existing(r)
    return [d.members[n] for n in sorted(d.members)]


@dataclass
class WhoAmI:
    name: str
    member: Optional["Member"]
    repo: Path
    git_dir: Path
    remote: Optional[str]
    remote_url: Optional[str]
    key_path: Path
    cache: Path
    allowed_signers: Path
    outbox: int
    fingerprint: Optional[str] = None

    def model(self) -> "WhoAmIReport":
        """The JSON result of ``gitmail whoami`` (docs/json.md, ``WhoAmIReport``)."""
        from gitmail.api.results import WhoAmIReport

        m = self.member
        return WhoAmIReport(name=self.name, registered=m is not None, role=m.role if m else None,
                            email=m.email if m else None, repo=str(self.repo), git_dir=str(self.git_dir),
                            remote=self.remote, remote_url=self.remote_url, key=str(self.key_path),
                            cache=str(self.cache), allowed_signers=str(self.allowed_signers), outbox=self.outbox,
                            fingerprint=self.fingerprint)


def whoami(repo: RepoLike = None, *, as_: Optional[str] = None) -> WhoAmI:
    """The acting identity and where its data lives (key, cache, allowed signers, remote)."""
    from gitmail.core import sync

    from gitmail.core import directory as dirmod

    s = session(repo, as_, member=False)
    r = s.repo
    d = s.directory
    return WhoAmI(
        name=s.me,
        member=s.directory.members.get(s.me),
        repo=r.path.resolve(),
        git_dir=r.git_dir,
        remote=r.remote,
        remote_url=r.config.get(f"remote.{r.remote}.url") if r.remote else None,
        key_path=r.key_path(s.me),
        cache=r.data_dir / "cache" / f"{to_ref(s.me)}.sqlite3",
        allowed_signers=r.data_dir / "allowed_signers",
        outbox=sum(len(sync.queued_chain(r, path, tip)) for path, tip in sync.outbox_paths(r, s.me).items()),
        fingerprint=dirmod.org_fingerprint(r.pg, d.tip) if d.tip else None,
    )


def set_policy(repo: RepoLike, changes: dict[str, Any], *, as_: Optional[str] = None) -> dict[str, Any]:
    """Change org policy fields (admins only; a signed directory commit). Returns the new policy.

    Raises :class:`UsageError` for an unknown field or a bad value,
    :class:`DirectoryError` when the acting member is not an admin.
    """
    from pydantic import ValidationError

    from gitmail.core import admin

    from gitmail.core.model import OrgPolicy

    s = session(repo, as_)
    known = set(OrgPolicy.model_fields) - {"schema_version"}
    for k in changes:
        if k not in known:
            raise UsageError(f"unknown policy setting {k!r}; known: {', '.join(sorted(known))}")
    try:
        new_policy = OrgPolicy.model_validate({**s.directory.policy.model_dump(), **changes})
    except ValidationError as e:
        err = e.errors()[0]
        raise UsageError(f"policy {'.'.join(str(x) for x in err['loc'])}: {err['msg']}") from None

    def mutate(d: "Directory") -> "Directory":
        d.policy = new_policy
        return d

    d = admin.change(s.repo, s.signer, s.member, mutate, "Org policy: " + ", ".join(f"{k}={v}" for k, v in changes.items()))
    return d.policy.model_dump(mode="json")


def org_policy(repo: RepoLike = None) -> dict[str, Any]:
    """The org policy of the verified directory, as a dict."""
    from gitmail.core import directory

    r = repo if isinstance(repo, Repo) else open_repo(repo)
    return directory.load_existing(r).policy.model_dump(mode="json")


@dataclass
class Rotation:
    member: "Member"
    old_key: str
    new_key: str
    key_path: Path

    def model(self) -> "KeyRotated":
        """The JSON result of ``gitmail key rotate`` (docs/json.md, ``KeyRotated``)."""
        from gitmail.api.results import KeyRotated

        return KeyRotated(member=self.member.name, old_key=self.old_key, new_key=self.new_key,
                          key_path=str(self.key_path))


def rotate_key(repo: RepoLike, *, as_: Optional[str] = None, key: Optional[str] = None) -> Rotation:
    """Publish a new key for the acting member, signed with the current one.

    The old key moves to ``previous_keys`` (old signatures stay good) and is
    kept by this clone (``gitmail.NAME.oldkey``) so mail already received
    stays readable; new mail is encrypted to the new key. ``key``: an
    existing ed25519 key file, else a new one is generated.
    """
    import time

    from gitmail import git
    from gitmail.core import admin
    from gitmail.core.address import to_ref
    from gitmail.core.repo import data_home
    from gitmail.core.signing import generate_key, load_key, public_path
    from gitmail.errors import DirectoryError

    s = session(repo, as_)
    old, member, old_path = s.signer, s.member, s.repo.key_path(s.me)
    given_path = Path(key).expanduser().resolve() if key else None
    given = load_key(given_path) if given_path is not None else None  # a bad key file fails before a fetch
    if given is not None and given.public_key in member.owned_keys():
        raise DirectoryError("that key is already one of yours (current, retired or revoked); rotate to a new key")
    if s.repo.remote:
        from gitmail.core import sync

        # The directory and every mailbox this member writes, from any of their clones:
        # the retired key stays valid up to those tips (docs/protocol.md §8). Before a key is
        # made: an org out of reach leaves no new key file behind.
        sync.fetch(s.repo, [refs.exact_pattern(refs.DIRECTORY), f"{refs.MAIL}*/{to_ref(s.me)}"])
        s.reload_directory()
        if s.directory.policy.packing:
            _adopt_packed_tips(s)
    if given_path is not None and given is not None:
        new_path, new = given_path, given
    else:
        new_path = data_home() / "keys" / f"{to_ref(s.me)}-{int(time.time())}"
        new = generate_key(new_path, comment=f"gitmail {s.me}")

    def mutate(d: "Directory") -> "Directory":
        m = d.members[s.me]
        d.members[s.me] = m.model_copy(update={
            "signing_key": new.public_key,
            "previous_keys": [m.signing_key, *m.previous_keys],
            "encryption_key": new.public_key if m.encryption_key else None,
            "retired": {**m.retired, m.signing_key: _sent_tips(s.repo, s.me, d.policy.packing)},
        })
        return d

    try:
        d = admin.change(s.repo, old, member, mutate, f"Rotate the key of {s.me}")
    except GitmailError:
        if given is None and not _key_landed(s.repo, s.me, new.public_key):
            for f in (new_path, public_path(new_path)):  # the key it made, unused
                f.unlink(missing_ok=True)
        raise
    git.config_add(s.repo.path, f"gitmail.{s.me}.oldkey", str(old_path))
    git.config_set(s.repo.path, f"gitmail.{s.me}.key", str(new_path))
    return Rotation(d.members[s.me], old.public_key, new.public_key, new_path)


def _key_landed(repo: "Repo", name: str, public_key: str) -> bool:
    """Whether the directory this clone last saw lists ``public_key`` as ``name``'s: a rotation
    that failed after its change was published keeps the key it made. Unknown counts as yes."""
    from gitmail.core import directory

    try:
        m = directory.load(repo).members.get(name)
    except GitmailError:
        return True
    return m is None or m.signing_key == public_key


def _adopt_packed_tips(s: Session) -> None:
    """Before a key is retired: for each mailbox this clone delivered to that has no ref on the
    org repo (its recipient packed it), take the recipient's recorded tip as the delivered one
    when it continues this clone's (another clone of the member delivered more), so the
    retired key's tips cover it (docs/protocol.md §3, "Packed mailboxes"). Reads each such
    recipient's packed commit alone, and their packed ref (their inbox) only when it records a
    tip this clone does not know (:func:`gitmail.core.sync.packed_ahead`)."""
    from gitmail.api.packing import packed_tip_of
    from gitmail.core import sync

    tips = packed_tip_of(s)
    for path in sync.sent_tips(s.repo, s.me):
        if s.repo.ref_target(refs.tracking(path, s.repo.remote)) is None:
            sync.packed_ahead(s.repo, path, tips)


def _sent_tips(r: Repo, me: str, packing: bool = False) -> dict[str, str]:
    """The tips of ``me``'s sent mailboxes: the queued (outbox) tip where there is one, else the org's.

    Recorded when a key is retired: a message signed by that key is good only at
    or below these tips (docs/protocol.md §8). ``packing`` (the org policy): a
    mailbox its recipient packed has no ref on the org repo; its tip is the last one
    this clone delivered there (``refs/gitmail/sent/``, which :func:`_adopt_packed_tips`
    moves to the recipient's packed tip when that continues it; docs/protocol.md §3,
    "Packed mailboxes").
    """
    from gitmail import git
    from gitmail.core.address import to_ref

    suffix = "/" + to_ref(me)
    tips: dict[str, str] = {}
    org = refs.tracking(refs.MAIL, r.remote)
    for full, oid in git.for_each_ref(r.path, [org]).items():
        path = refs.MAIL + full[len(org):]
        if path.endswith(suffix) and path.count("/") == 3:
            tips[path] = oid
    if packing:
        from gitmail.core.sync import sent_tips

        tips = {**sent_tips(r, me), **tips}
    for full, oid in git.for_each_ref(r.path, [refs.OUTBOX]).items():
        path = refs.MAIL + full[len(refs.OUTBOX):]
        if path.endswith(suffix) and path.count("/") == 3:
            tips[path] = oid
    return dict(sorted(tips.items()))


@dataclass
class Revocation:
    member: "Member"
    key: str

    def model(self) -> "KeyRevoked":
        """The JSON result of ``gitmail key revoke`` (docs/json.md, ``KeyRevoked``)."""
        from gitmail.api.results import KeyRevoked

        return KeyRevoked(member=self.member.name, revoked_key=self.key)


def revoke_key(repo: RepoLike, key: Optional[str] = None, *, as_: Optional[str] = None) -> Revocation:
    """Revoke one of the acting member's retired keys (docs/protocol.md §8, "Revoked keys").

    ``key``: the key line (``ssh-ed25519 AAAA...``), its ``SHA256:`` fingerprint,
    or a ``.pub`` file; default the most recently retired key. Afterwards every
    message signed by it, old or new, is flagged ``retired-key`` by clients and
    refused by the guard, and it leaves the allowed-signers file. The current key
    cannot be revoked: rotate first (``gitmail key rotate``). Signed with the
    current key. Raises :class:`UsageError` for a key that is not one of the
    member's retired keys, :class:`DirectoryError` when the directory refuses.
    """
    from gitmail.core import admin
    from gitmail.core.signing import fingerprint, normalize_public_key
    from gitmail.errors import GitmailError

    s = session(repo, as_)
    me = s.member
    if key is None:
        if not me.previous_keys:
            raise UsageError(f"{s.me} has no retired key to revoke (rotate first: gitmail key rotate)")
        target = me.previous_keys[0]
    else:
        text = key.strip()
        p = Path(text).expanduser()
        if not text.startswith(("ssh-", "SHA256:")) and p.is_file():
            text = p.read_text(errors="replace").strip()
        if text.startswith("SHA256:"):
            found = [k for k in me.owned_keys() if fingerprint(k) == text]
            if not found:
                raise UsageError(f"{text} is not a key of {s.me}")
            target = found[0]
        else:
            try:
                target = normalize_public_key(text)
            except GitmailError:
                raise UsageError(f"not a public key or fingerprint: {key[:60]!r}") from None
    if target == me.signing_key:
        raise UsageError("that is your current key: rotate first (gitmail key rotate), then revoke it")
    if target in me.revoked_keys:
        raise UsageError("that key is already revoked")
    if target not in me.previous_keys:
        raise UsageError(f"that key is not one of {s.me}'s retired keys")

    def mutate(d: "Directory") -> "Directory":
        m = d.members[s.me]
        d.members[s.me] = m.model_copy(update={
            "previous_keys": [k for k in m.previous_keys if k != target],
            "revoked_keys": [*m.revoked_keys, target],
            "retired": {k: v for k, v in m.retired.items() if k != target},
        })
        return d

    d = admin.change(s.repo, s.signer, me, mutate, f"Revoke a key of {s.me}")
    return Revocation(d.members[s.me], target)
