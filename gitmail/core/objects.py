"""Typed access to git objects through pygit2 (its lookups return the untyped ``Object``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence, Union, cast

if TYPE_CHECKING:
    import pygit2

OidLike = Union[str, "pygit2.Oid"]


def commit(pg: "pygit2.Repository", oid: OidLike) -> "pygit2.Commit":
    """The commit ``oid``. Raises ``KeyError`` if missing, ``TypeError`` if not a commit."""
    import pygit2

    obj = pg[oid]
    if not isinstance(obj, pygit2.Commit):
        raise TypeError(f"{oid} is not a commit")
    return obj


def tree(pg: "pygit2.Repository", oid: OidLike) -> "pygit2.Tree":
    import pygit2

    obj = pg[oid]
    if not isinstance(obj, pygit2.Tree):
        raise TypeError(f"{oid} is not a tree")
    return obj


def blob_data(pg: "pygit2.Repository", oid: OidLike) -> bytes:
    """The bytes of blob ``oid``. Raises ``KeyError`` / ``TypeError``."""
    import pygit2

    obj = pg[oid]
    if not isinstance(obj, pygit2.Blob):
        raise TypeError(f"{oid} is not a blob")
    return obj.data


def first_parent(pg: "pygit2.Repository", c: "pygit2.Commit") -> Optional["pygit2.Commit"]:
    """The first parent of ``c``, or None for a root commit."""
    return commit(pg, c.parent_ids[0]) if c.parent_ids else None


def signed_commit(
    pg: "pygit2.Repository",
    author: "pygit2.Signature",
    committer: "pygit2.Signature",
    message: str,
    tree_id: OidLike,
    parents: Sequence[str],
    sign: "Callable[[bytes], str]",
) -> str:
    """Write a commit signed by ``sign(commit bytes) -> armored signature``; return its hex oid."""
    import pygit2

    plist: list[Union[str, pygit2.Oid]] = [pygit2.Oid(hex=p) for p in parents]
    text = cast(str, pg.create_commit_string(author, committer, message, tree_id, plist))
    return str(pg.create_commit_with_signature(text, sign(text.encode("utf-8")), "gpgsig"))


if TYPE_CHECKING:
    from typing import Callable
