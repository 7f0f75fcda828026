"""The refs layout (docs/protocol.md, "Refs").

In the org repo (shared, pushed):

* ``refs/heads/gitmail/directory``: the directory branch.
* ``refs/heads/gitmail/mail/<recipient>/<sender>``: one writer per ref; the
  messages ``sender`` wrote to ``recipient`` (a member, ``*`` or ``team:NAME``),
  each component in ref-safe form (:mod:`gitmail.core.address`).
* ``refs/heads/gitmail/state/<member>``: the member's read/archive state,
  sealed to their own key (opt-in; :mod:`gitmail.core.statesync`).
* ``refs/heads/gitmail/packed/<member>``: the tips of the member's inbox refs
  they have packed away (org policy ``packing``; :mod:`gitmail.core.packed`).

In a clone (local, never pushed by any refspec):

* ``refs/remotes/<remote>/gitmail/...``: remote-tracking copies (plain ``git fetch``).
* ``refs/gitmail/outbox/<recipient>/<sender>``: queued messages not yet pushed.
* ``refs/gitmail/verified/<path>``: the last verified tip of each shared ref.
* ``refs/gitmail/state/<member>``: a blob with the member's read/archive flags.
* ``refs/gitmail/state-log/<member>``, ``refs/gitmail/state-base/<member>``: the
  shared state's merged event log and the local state last applied (blobs).
"""

from __future__ import annotations

from typing import Iterable, Sequence

from gitmail.core.address import BROADCAST, check_address, from_ref, to_ref

HEADS = "refs/heads/"
SHARED = "gitmail/"  # below refs/heads/ in the org repo
DIRECTORY = "gitmail/directory"
MAIL = "gitmail/mail/"
OUTBOX = "refs/gitmail/outbox/"
VERIFIED = "refs/gitmail/verified/"
STATE = "refs/gitmail/state/"
STATE_SHARED = "gitmail/state/"  # below refs/heads/ in the org repo
PACKED = "gitmail/packed/"  # below refs/heads/ in the org repo
STATE_LOG = "refs/gitmail/state-log/"
STATE_BASE = "refs/gitmail/state-base/"
ALL = SHARED + "*"  # every shared ref (sync --all, auditors; an earlier version's member refspec)
OURS = "+" + HEADS + SHARED  # how gitmail's own fetch refspecs in a remote's config begin


def member_paths(member: str, groups: "list[str] | tuple[str, ...]") -> list[str]:
    """The shared refs a member fetches (docs/protocol.md §3 "What a member fetches"), as
    ref patterns below ``refs/heads/``: the directory, their inbox, the broadcast mailbox and
    the mailbox of each group in ``groups`` (addresses ``team:NAME``) and their packed ref
    (what they packed away of their inbox), in that order.

    A single ref is written with a trailing ``*`` (``gitmail/directory*``): git's glob
    also matches the empty string, so a ref missing on the server is not an error, and
    protocol v2 still asks only for that prefix (``ref-prefix``).
    """
    return [exact_pattern(DIRECTORY), f"{MAIL}{to_ref(member)}/*", f"{MAIL}{to_ref(BROADCAST)}/*",
            *[f"{MAIL}{to_ref(g)}/*" for g in sorted(set(groups))], exact_pattern(packed_path(member))]


def exact_pattern(path: str) -> str:
    """``path`` as a fetch pattern that tolerates a missing ref (see :func:`member_paths`)."""
    return path + "*"


def longer_names(components: "Iterable[str]") -> list[str]:
    """The ref-safe names that extend another's (``agent10`` extends ``agent1``), sorted; ``[]``
    for an org where no name begins another. At most one entry per name: a hostile member
    registering chains of names (``x``, ``xx``, ``xxx``...) grows it by one entry per name,
    never by the pairs. Work: each name's prefixes looked up once."""
    have = set(components)
    return sorted(c for c in have if any(c[:k] in have for k in range(1, len(c))))


def exclusions(patterns: "Sequence[str]", longer: "Sequence[str]") -> list[str]:
    """The negative refspecs (``^refs/heads/...``, git 2.29 and later) that keep each single-ref
    pattern ``<folder>/<name>*`` in ``patterns`` (:func:`exact_pattern`) from also matching
    the refs of the names that extend ``name`` (``packed/agent1*`` would bring
    ``packed/agent10``): docs/protocol.md §3 "What a member fetches".

    ``longer``: :func:`longer_names` of the directory's names (sorted). One
    ``^<folder>/<name><c>*`` per next byte ``c``; where another pattern in ``patterns`` asks
    for a ref below that prefix (a clone holding both ``agent1`` and ``agent10``), each other
    name there is excluded by its exact ref instead, so no wanted ref is ever excluded. A
    pattern whose folder a ``<folder>/*`` pattern already fetches whole gets none. Refs under
    names the directory does not hold (possible only where no guard refuses them) are not
    excluded. Work: a bisection per pattern, and one pass over each distinct name's longer
    names.
    """
    from bisect import bisect_left, bisect_right

    singles = [p[:-1] for p in patterns if p.endswith("*") and not p.endswith("/*")]
    broad = {p[:-1] for p in patterns if p.endswith("/*")}
    wanted = set(singles)
    ordered = sorted(wanted)  # thousands of mailboxes delivered to: a prefix is looked up, not scanned

    def asked_below(prefix: str) -> bool:
        i = bisect_left(ordered, prefix)
        return i < len(ordered) and ordered[i].startswith(prefix)

    by_name: dict[str, dict[str, list[str]]] = {}  # name -> next byte -> the longer names

    def after(name: str) -> dict[str, list[str]]:
        got = by_name.get(name)
        if got is None:
            got = by_name[name] = {}
            # Ref-safe names are ASCII: every name beginning with ``name`` sorts below name + DEL.
            for x in longer[bisect_right(longer, name):bisect_left(longer, name + "\x7f")]:
                got.setdefault(x[len(name)], []).append(x)
        return got

    out: list[str] = []
    for stem in singles:
        folder, _, name = stem.rpartition("/")
        if any(stem[: i + 1] in broad for i, ch in enumerate(stem) if ch == "/"):
            continue
        for c, names in sorted(after(name).items()):
            if asked_below(stem + c):
                out += [f"^{HEADS}{folder}/{x}" for x in names if f"{folder}/{x}" not in wanted]
            else:
                out.append(f"^{HEADS}{stem}{c}*")
    return list(dict.fromkeys(out))


def refspec(path: str, remote: str) -> str:
    """The forced fetch refspec of a shared path or pattern into its remote-tracking ref."""
    return f"+{head(path)}:{tracking(path, remote)}"


def refspec_path(spec: str, remote: str) -> "str | None":
    """Inverse of :func:`refspec` (None for a refspec of another shape)."""
    src, _, dst = spec.partition(":")
    if not src.startswith(OURS) or not dst.startswith(f"refs/remotes/{remote}/{SHARED}"):
        return None
    path = src[len("+" + HEADS):]
    return path if refspec(path, remote) == spec else None


def mail_path(recipient: str, sender: str) -> str:
    """``gitmail/mail/<r>/<s>`` for normalised addresses (shared path below refs/heads/)."""
    return f"{MAIL}{to_ref(recipient)}/{to_ref(sender)}"


def split_mail_path(path: str) -> tuple[str, str]:
    """Inverse of :func:`mail_path`: ``(recipient, sender)`` addresses.

    Only the canonical name of a mailbox counts (docs/protocol.md §3): raises
    :class:`~gitmail.errors.AddressError` unless ``mail_path(*result) == path``
    and both are addresses in normal form (so ``mail/bob/%20`` and
    ``mail/bob/%61lice`` are not mailboxes).
    """
    rest = path[len(MAIL) :]
    r, _, s = rest.partition("/")
    rcpt, sender = check_address(from_ref(r)), check_address(from_ref(s))
    if mail_path(rcpt, sender) != path:
        from gitmail.errors import AddressError

        raise AddressError(f"not a canonical mailbox name: {path!r}")
    return rcpt, sender


def head(path: str) -> str:
    """The org repo's ref for a shared path."""
    return HEADS + path


def tracking(path: str, remote: str | None) -> str:
    """Where a clone sees the org's copy of ``path``: remote-tracking, or the ref itself."""
    return f"refs/remotes/{remote}/{path}" if remote else HEADS + path


def outbox(path: str) -> str:
    return OUTBOX + path[len(MAIL) :]


def verified(path: str) -> str:
    return VERIFIED + path[len(SHARED) :]


def state(member: str) -> str:
    return STATE + to_ref(member)


def state_path(member: str) -> str:
    """``gitmail/state/<m>``: the shared path of ``member``'s state (below refs/heads/)."""
    return STATE_SHARED + to_ref(member)


def packed_path(member: str) -> str:
    """``gitmail/packed/<m>``: the shared path of ``member``'s packed mailboxes (below refs/heads/)."""
    return PACKED + to_ref(member)


def member_of(path: str, prefix: str) -> "str | None":
    """The member name ``path`` ends in below ``prefix`` (``gitmail/state/``, ``gitmail/packed/``),
    when the rest is exactly one canonical ref-safe component of a member address (not ``*``,
    not a group); else None."""
    from gitmail.core.address import GROUP_PREFIX
    from gitmail.errors import GitmailError

    if not path.startswith(prefix):
        return None
    rest = path[len(prefix):]
    if "/" in rest or not rest:
        return None
    try:
        name = check_address(from_ref(rest))
    except GitmailError:
        return None
    if name == BROADCAST or name.startswith(GROUP_PREFIX) or to_ref(name) != rest:
        return None
    return name


def state_log(member: str) -> str:
    return STATE_LOG + to_ref(member)


def state_base(member: str) -> str:
    return STATE_BASE + to_ref(member)
