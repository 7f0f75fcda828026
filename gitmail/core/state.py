"""Read / archive state in a local ref (docs/protocol.md, "Read and archive state").

``refs/gitmail/state/<member>`` points straight at a blob: the canonical JSON of
:class:`~gitmail.core.model.State`, mapping each mailbox path to sorted ranges
of message ordinals (1 = the first commit on that mailbox ref) that are read or
archived. One ref per member, whatever the number of messages; the update is
one atomic ref write; a referenced blob survives ``git gc``; ``git cat-file -p
refs/gitmail/state/<member>`` shows it; deleting the ref marks everything unread.
No refspec names ``refs/gitmail/``, so no fetch or push ever carries it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Optional

from gitmail.core import refs
from gitmail.core.model import MailboxState, State, canonical_json
from gitmail.core.objects import blob_data

if TYPE_CHECKING:
    from gitmail.core.repo import Repo

Ranges = list[tuple[int, int]]


def normalize_ranges(ordinals: Iterable[int]) -> Ranges:
    """Sorted, merged, inclusive ranges covering ``ordinals``."""
    return add([], ordinals)


def expand(ranges: Ranges) -> set[int]:
    return {o for a, b in ranges for o in range(a, b + 1)}


def add(ranges: Ranges, ordinals: Iterable[int]) -> Ranges:
    """``ranges`` plus ``ordinals``, merged."""
    new = list(ranges)
    for o in ordinals:
        new.append((o, o))
    return merge(new)


def remove(ranges: Ranges, ordinals: Iterable[int]) -> Ranges:
    """``ranges`` without ``ordinals`` (ranges are split as needed)."""
    out = list(ranges)
    for o in sorted(set(ordinals)):
        nxt: Ranges = []
        for a, b in out:
            if a <= o <= b:
                if a < o:
                    nxt.append((a, o - 1))
                if o < b:
                    nxt.append((o + 1, b))
            else:
                nxt.append((a, b))
        out = nxt
    return out


def merge(ranges: Ranges) -> Ranges:
    out: Ranges = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def load(repo: "Repo", member: str) -> tuple[Optional[str], State]:
    """``(blob oid or None, State)`` of ``member``; an unreadable blob counts as empty."""
    oid = repo.ref_target(refs.state(member))
    if oid is None:
        return None, State()
    try:
        return oid, State.model_validate_json(blob_data(repo.pg, oid))
    except (ValueError, TypeError):
        return oid, State()


def save(repo: "Repo", member: str, old_oid: Optional[str], st: State) -> str:
    """Write ``st`` as a blob and move the state ref to it (compare-and-swap on ``old_oid``).

    Caller holds :meth:`Repo.lock`. Returns the new blob oid.
    """
    blob = str(repo.pg.create_blob(canonical_json(st.model_dump(mode="json"))))
    repo.set_ref(refs.state(member), blob, old_oid, "gitmail: state")
    return blob


def update(
    st: State, changes: dict[str, list[int]], flag: str, value: bool
) -> State:
    """Set ``flag`` ('read' or 'archived') to ``value`` for ordinals per mailbox path."""
    for path, ords in changes.items():
        mb = st.mailboxes.setdefault(path, MailboxState())
        cur = getattr(mb, flag)
        setattr(mb, flag, add(cur, ords) if value else remove(cur, ords))
    return st
