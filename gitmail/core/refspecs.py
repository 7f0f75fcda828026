"""gitmail's fetch refspecs in a clone's git config (docs/protocol.md §3 "What a member fetches").

gitmail owns exactly the ``remote.<r>.fetch`` lines that begin ``+refs/heads/gitmail/``
or ``^refs/heads/gitmail/`` (negative refspecs, git 2.29 and later): those of every member
the clone holds a key for, kept in step with the verified directory (:func:`keep`, called
whenever a directory is loaded), so that a plain ``git fetch`` or ``git pull`` brings the
member's mail and nobody else's. The user's other refspecs are never touched.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Callable, Iterable, Optional

from gitmail import git
from gitmail.core import refs

if TYPE_CHECKING:
    from gitmail.core.repo import Repo


def configured_paths(repo: "Repo") -> list[str]:
    """The shared paths of gitmail's own fetch refspecs in the remote's config (lines that begin
    ``+refs/heads/gitmail/``; what a plain ``git fetch`` or ``git pull`` brings), in order."""
    return configured(repo)[0]


def configured(repo: "Repo") -> tuple[list[str], list[str]]:
    """``(configured_paths, gitmail's own negative refspecs)`` from one read of the remote's
    config: the lines that begin ``^refs/heads/gitmail/`` (:func:`gitmail.core.refs.exclusions`),
    in order."""
    assert repo.remote
    values = git.config_get_all(repo.path, f"remote.{repo.remote}.fetch")
    found = (refs.refspec_path(v, repo.remote) for v in values)
    return [p for p in found if p], [v for v in values if v.startswith(_OURS_NEGATIVE)]


_OURS_NEGATIVE = "^" + refs.HEADS + refs.SHARED


def configure_paths(repo: "Repo", paths: list[str], exclude: "list[str] | tuple[str, ...]" = ()) -> None:
    """Make gitmail's own fetch refspecs exactly ``paths`` and the negative refspecs ``exclude``:
    every line of the remote's config that begins ``+refs/heads/gitmail/`` or
    ``^refs/heads/gitmail/`` is replaced; the user's other refspecs are kept."""
    remote = repo.remote
    assert remote
    key = f"remote.{remote}.fetch"
    # Exit 5: no line matched (nothing of ours was there yet).
    ours = "^[+^]" + re.escape(refs.HEADS + refs.SHARED)
    git.run(["config", "--local", "--unset-all", key, ours], repo.path, check=False)
    for p in dict.fromkeys(paths):
        git.config_add(repo.path, key, refs.refspec(p, remote))
    for x in dict.fromkeys(exclude):
        git.config_add(repo.path, key, x)


_LONGER = "longer-names.json"  # in the clone's data dir: refs.longer_names() of the verified directory's names


def longer_names(repo: "Repo") -> list[str]:
    """The directory's names that extend another's (:func:`gitmail.core.refs.longer_names`,
    ref-safe, sorted), as :func:`keep` last wrote them; ``[]`` when none were written (or the
    file is unreadable)."""
    import json

    try:
        got = json.loads((repo.data_dir / _LONGER).read_text("utf-8"))
    except (OSError, ValueError):
        return []
    return sorted(x for x in got if isinstance(x, str)) if isinstance(got, list) else []


def fetch_refspecs(repo: "Repo", paths: list[str]) -> list[str]:
    """The command-line refspecs that fetch ``paths`` (shared paths or patterns) into their
    remote-tracking refs and nothing else: one forced refspec each, then the negative
    refspecs that stop single-ref patterns matching longer names (:func:`longer_names`)."""
    assert repo.remote
    paths = list(dict.fromkeys(paths))
    specs = [refs.refspec(p, repo.remote) for p in paths]
    longer = longer_names(repo)
    return [*specs, *refs.exclusions(paths, longer)] if longer else specs


def group_paths(paths: list[str]) -> list[str]:
    """The group addresses (``team:NAME``) whose mailboxes ``paths`` fetch."""
    from gitmail.core.address import GROUP_PREFIX, from_ref

    out = []
    for p in paths:
        if p.startswith(refs.MAIL) and p.endswith("/*"):
            try:
                a = from_ref(p[len(refs.MAIL):-2])
            except Exception:  # noqa: BLE001 - not one of ours: ignored
                continue
            if a.startswith(GROUP_PREFIX):
                out.append(a)
    return out


def clone_identities(repo: "Repo") -> list[str]:
    """The identities with a key in this clone (``gitmail.<name>.key``), sorted."""
    return sorted({k[len("gitmail."):-len(".key")] for k in repo.config
                   if k.startswith("gitmail.") and k.endswith(".key") and k.count(".") >= 2})


_REFSPECS_MARK = "refspecs"  # in the clone's data dir: what the configured refspecs were computed from


def _refspecs_key(repo: "Repo", directory_tip: Optional[str]) -> str:
    return "\n".join([directory_tip or "", *clone_identities(repo)])


def current(repo: "Repo", directory_tip: Optional[str]) -> bool:
    """True when the configured refspecs and :func:`longer_names` were computed from the directory
    at ``directory_tip`` and the clone's present identities (so a sync that brought no
    directory change loads no directory, and no pydantic)."""
    try:
        return ((repo.data_dir / _REFSPECS_MARK).read_text("utf-8") == _refspecs_key(repo, directory_tip)
                and (repo.data_dir / _LONGER).exists())
    except OSError:
        return False


def forget(repo: "Repo") -> None:
    """Drop the record of what the refspecs were computed from: the next :func:`keep` recomputes them."""
    (repo.data_dir / _REFSPECS_MARK).unlink(missing_ok=True)


def directory_tip(repo: "Repo") -> Optional[str]:
    """The fetched directory tip (remote-tracking), without opening the repository."""
    found = git.for_each_ref(repo.path, [refs.tracking(refs.DIRECTORY, repo.remote)])
    return next(iter(found.values()), None)


def keep(repo: "Repo", tip: Optional[str], groups_of: Callable[[str], Optional[list[str]]],
         names: "Iterable[str]" = ()) -> None:
    """Make gitmail's fetch refspecs those of every member this clone holds a key for
    in the verified directory at ``tip`` (``groups_of(name)``: a member's group addresses,
    None for a name that is not a member): their inboxes, the broadcast
    mailbox and their groups' mailboxes (docs/protocol.md §3), with the negative refspecs
    that keep their single-ref patterns to their own refs; and record :func:`longer_names`
    of ``names`` (every name the directory holds or held) for every later fetch. A no-op
    when they were computed from this directory and these identities; called whenever a
    directory is loaded, so a plain ``git pull`` follows a group change as soon as any
    gitmail command saw it."""
    if repo.remote is None or current(repo, tip):
        return
    import json

    from gitmail.core.address import to_ref
    from gitmail.core.files import write_atomic

    longer = refs.longer_names(to_ref(n) for n in names)
    write_atomic(repo.data_dir / _LONGER, json.dumps(longer, separators=(",", ":")), only_if_changed=True)
    repo.reload_config()  # an identity may have been added since the repo was opened (init)
    want: list[str] = []
    for name in clone_identities(repo):
        groups = groups_of(name)
        if groups is not None:
            want += [p for p in refs.member_paths(name, groups) if p not in want]
    if not want:
        return  # no member's key here yet (init before registration): nothing to keep
    exclude = refs.exclusions(want, longer)
    if configured(repo) != (want, exclude):
        configure_paths(repo, want, exclude)
    write_atomic(repo.data_dir / _REFSPECS_MARK, _refspecs_key(repo, tip))
