"""The server-side guard: what ``hooks/pre-receive`` checks (docs/sync.md, "The guard").

Installed into a bare org repo with ``gitmail guard install PATH``. For every
ref a push updates under ``refs/heads/gitmail/`` it rejects:

* a ref name that is neither the directory, a valid mailbox
  (``gitmail/mail/<recipient>/<sender>``, canonical ref-safe components,
  a recipient the directory knows), a member's state ref nor a member's
  packed ref (``gitmail/packed/<member>``, canonical);
* deleting the directory, or a non-fast-forward update (history only grows;
  merges are refused: mailboxes and the directory are linear);
* deleting a mailbox, unless the org's policy has ``packing`` on, the recipient
  is a member (not ``*``, not a group) and that member's packed map after this
  push records exactly the mailbox's tip for its sender (the pair is packed,
  :mod:`gitmail.core.packed`); creating a mailbox whose sender has an entry in
  the recipient's packed map after this push, unless it goes on from that entry
  (checked as an update from it);
* a directory commit the rules refuse (:func:`gitmail.core.directory.verify_range`,
  the very function clients run: unsigned, bad signature, another member's entry
  changed, an entry field outside the grammar of docs/protocol.md §8, a key that
  is or was another member's, rotating back to a retired key, a confusable or
  mixed-script name, ...);
* a message commit that is not good (:func:`gitmail.core.store.check_message`:
  unsigned, a signature that does not match the sender's key in the directory,
  a sender who is not the signer, a key retired or revoked before the message,
  a malformed or misfiled message);
* an update of a member's shared read state, ``gitmail/state/<member>``, that is
  not a linear fast-forward of commits signed by that member's current key, each
  holding only ``state.age`` sealed to that member's encryption key alone
  (:func:`gitmail.core.statesync.guard_problems`); deleting it;
* an update of a member's packed ref, ``gitmail/packed/<member>``, when the org's
  policy has ``packing`` off; deleting it; one that is not a fast-forward along the
  first-parent line of commits each signed by that member's current key, each
  holding one well-formed ``mailboxes`` map that never drops an entry nor moves
  one backwards, whose extra parents are exactly the entries it adds or moves
  (:func:`gitmail.core.packed.line_problem`); one that adds or moves an entry
  while the pair's mailbox ref, as it stands after this push, is neither that
  commit nor descends from it;
* a message whose attachments break the org's bounds (:func:`gitmail.core.attachments.bounds_problems`:
  ``attachment_limit`` each, ``attachment_count_limit`` entries, ``attachment_total_limit``
  together), as declared in ``message.json`` (a good message's tree holds exactly that:
  :func:`gitmail.core.store.layout_problem`);
* a response (``answer``, ``shutdown_response``, ``plan_approval_response``) to a request
  that none of its recipients sent its sender (:func:`unasked`, docs/protocol.md §5);
* a message in clear while the org's policy is ``encryption=required`` (§9).

Other refs pass untouched. A push is all or nothing (pre-receive). The hook
opens the repository with ``RepositoryOpenFlag.FROM_ENV`` so that the pushed
objects, still in git's quarantine directory, are visible.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence, TextIO

from gitmail.core import refs
from gitmail.core.msgtypes import RESPONSE_OF

if TYPE_CHECKING:
    import pygit2

    from gitmail.core.directory import Directory
    from gitmail.core.model import Message

ZERO = "0" * 40
CHAINED_SUFFIX = ".gitmail-chained"  # a pre-existing hook we run after our checks
MAX_NEW_COMMITS = 100_000


@dataclass
class Update:
    """One line of pre-receive input; ``old``/``new`` are None for a missing ref. ``malformed``:
    a line not of git's form (the push is refused; ``ref`` holds the line)."""

    old: Optional[str]
    new: Optional[str]
    ref: str
    malformed: bool = False


# Two oids and a ref name (no space or control character: git check-ref-format refuses them).
_UPDATE = re.compile(r"([0-9a-f]{40}|[0-9a-f]{64}) ([0-9a-f]{40}|[0-9a-f]{64}) ([^ \x00-\x1f\x7f]+)")


def parse_updates(text: str) -> list[Update]:
    """The ``<old-oid> <new-oid> <refname>`` lines git gives ``pre-receive`` on stdin
    (githooks(5)), each ending in LF. Split on LF alone: a ref name may hold any character
    ``git check-ref-format`` allows, and that includes U+0085, U+2028 and U+2029, which
    ``str.splitlines`` also breaks at (a ref ``mail/alex/max<U+2028>zz`` was judged as
    ``mail/alex/max``). A line of any other form becomes a ``malformed`` update, which
    refuses the push: what the guard cannot read, it does not let through."""
    out = []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # after the last LF
    for line in lines:
        m = _UPDATE.fullmatch(line)
        if m is None:
            out.append(Update(None, None, line, malformed=True))
            continue
        old, new, ref = m.groups()
        out.append(Update(None if set(old) == {"0"} else old, None if set(new) == {"0"} else new, ref))
    return out


def _shared(u: Update) -> bool:
    return u.ref.startswith(refs.HEADS + refs.SHARED)


def check_push(pg: "pygit2.Repository", updates: list[Update], cache: Optional[dict[str, "Directory"]] = None) -> list[str]:
    """Every reason to refuse this push (empty: accept). One line per reason.

    ``cache`` (the warm guard's) keeps the directory parsed at its current tip
    between pushes; a directory commit's tree never changes, so neither does
    what it parses to.
    """
    shared = [u for u in updates if _shared(u)]
    if not shared:
        return []
    dir_ref = refs.head(refs.DIRECTORY)
    errors: list[str] = []
    directory, derr = _directory_after(pg, next((u for u in shared if u.ref == dir_ref), None), cache)
    errors += derr
    after = _After(pg, shared)
    try:
        _check_refs(pg, shared, directory, after, dir_ref, errors)
    finally:
        after.requests.close()
    return errors


def _check_refs(pg: "pygit2.Repository", shared: list[Update], directory: "Directory", after: "_After",
                dir_ref: str, errors: list[str]) -> None:
    """Append to ``errors`` every reason to refuse an update of ``shared`` but the directory's."""
    for u in shared:
        if u.ref == dir_ref:
            continue
        if u.ref.startswith(refs.HEADS + refs.STATE_SHARED):
            errors += check_state(pg, u, directory)
            continue
        if u.ref.startswith(refs.HEADS + refs.PACKED):
            errors += check_packed(pg, u, directory, after)
            continue
        if not u.ref.startswith(refs.HEADS + refs.MAIL):
            errors.append(f"{u.ref}: not a gitmail ref (only {dir_ref}, {refs.head(refs.MAIL)}<recipient>/<sender>, "
                          f"{refs.head(refs.STATE_SHARED)}<member> and {refs.head(refs.PACKED)}<member>)")
            continue
        errors += check_mailbox(pg, u, directory, after)


def _directory_after(pg: "pygit2.Repository", u: Optional[Update],
                     cache: Optional[dict[str, "Directory"]] = None) -> tuple["Directory", list[str]]:
    """The directory the messages of this push are checked against, and directory errors."""
    from pathlib import Path

    from gitmail.core.directory import LEDGER_FILE, verify_range

    ref = refs.head(refs.DIRECTORY)
    current = _ref(pg, ref)
    kept = Path(pg.path) / "gitmail" / LEDGER_FILE
    if u is None:
        return _directory_at(pg, current, kept, cache), []
    if u.new is None:
        return _directory_at(pg, current, kept, cache), [f"{ref}: deleting the directory is not allowed"]
    old = u.old or current
    err = _linear(pg, u.ref, old, u.new)
    if err:
        return _directory_at(pg, current, kept, cache), [err]
    # The ledger of the accepted tip is kept in the org repo, so a guard that starts cold (a
    # new daemon, or the in-process check) verifies only what came since, not the whole history.
    d, problems = verify_range(pg, old, u.new, kept=kept)
    return (d, [f"{ref}: {p}" for p in problems]) if problems else (d, [])


def _directory_at(pg: "pygit2.Repository", current: Optional[str], kept: "Path",
                  cache: Optional[dict[str, "Directory"]]) -> "Directory":
    """The directory at the org repo's current tip ``current``: from ``cache`` (the warm
    guard's, one entry), else from the ledger the guard kept for that tip (the tip it verified
    when the directory last moved), else parsed from the tree (:func:`from_tree`; an
    unreadable one is the empty directory). Reading the tree took 0.37 to 0.54 s at 10,000
    members, the kept ledger 60 to 90 ms; a push that moves the directory needs neither
    (its commits are verified from the kept ledger, :func:`verify_range`)."""
    from gitmail.core.directory import Directory, from_tree, kept_ledger
    from gitmail.core.objects import commit as commit_at
    from gitmail.errors import VerificationError

    if not current:
        return Directory()
    hit = cache.get(current) if cache is not None else None
    if hit is not None:
        return hit
    ledger = kept_ledger(kept, current)
    try:
        d = ledger.directory() if ledger is not None else from_tree(pg, commit_at(pg, current))
    except VerificationError:
        return Directory()
    if cache is not None:
        cache.clear()  # one entry: the current tip (threads share it; a lost entry is only re-parsed)
        cache[current] = d
    return d


def check_mailbox(pg: "pygit2.Repository", u: Update, directory: "Directory",
                  after: Optional["_After"] = None) -> list[str]:
    """Reasons to refuse the update ``u`` of a mailbox ref (empty: fine).

    ``after``: the refs once the whole push is accepted (the recipient's packed ref may
    move in it: a deletion and a re-creation are judged against the packed map as it
    stands after the push); default: this update alone.
    """
    from gitmail.core.store import check_message

    path = u.ref[len(refs.HEADS) :]
    names = _mailbox_names(path, directory)
    if isinstance(names, str):
        return [f"{u.ref}: {names}"]
    rcpt, sender = names
    after = after or _After(pg, [u])
    if u.new is None:
        why = _deletion_problem(u, rcpt, sender, directory, after)
        return [f"{u.ref}: {why}"] if why else []
    base = u.old
    if base is None and directory.policy.packing and rcpt in directory.members:
        # A pair packed away and written to again: its chain goes on from the packed tip.
        base = after.packed_map(rcpt).get(sender)
    err = _linear(pg, u.ref, base, u.new)
    if err:
        if base is not None and base != u.old:
            err += f" (the mailbox is packed at {base[:10]}: a new ref must go on from there)"
        return [err]
    from gitmail.core.attachments import Bounds, bounds_problems

    errors = []
    bounds = Bounds.of(directory.policy)  # the policy in force now: a limit applies to what is sent after it changes
    for oid in _new_commits(pg, base, u.new):
        short = oid[:10]
        msg, check = check_message(pg, oid, rcpt, sender, directory, sending=True)
        if not check.good:
            errors.append(f"{u.ref}: commit {short} refused: {check.status}: {check.detail}")
            continue
        # The declared entries within the bounds. What the tree holds is exactly what they
        # declare (each file the LFS pointer to, or a blob of, its entry's size: a good
        # message passed store.layout_problem), so bounding the entries bounds the tree.
        declared = [(a.name, int(a.size)) for a in getattr(msg, "attachments", [])]
        problems = bounds_problems(declared, bounds, _sealed_readers(msg, directory))
        if msg is not None and msg.encrypted is None and directory.policy.encryption == "required":
            # The sender's rule (docs/protocol.md §9, "When"), which a hostile writer skips: the
            # org repo is where it can be held for every reader.
            problems.append("the org requires encryption (encryption=required): clear mail is refused")
        if msg is not None and msg.type in RESPONSE_OF:
            problems += [why for why in [unasked(pg, msg, sender, directory, after)] if why]
        for problem in problems:
            errors.append(f"{u.ref}: commit {short} refused: {problem}")
    return errors


def unasked(pg: "pygit2.Repository", msg: "Message", responder: str, directory: "Directory",
            after: "_After") -> Optional[str]:
    """Why the response ``msg`` from ``responder`` answers no request it was sent, or None
    (docs/protocol.md §5): a good request of the matching type with its ``request_id``, from
    one of its recipients other than the responder, on ``mail/<responder>/<that recipient>``
    (the ref as it stands after this push, else the responder's packed map). A request id is
    in clear in every request's commit, so without this any member could "approve" a plan
    they were never asked about; a reader only marks such a response (``answers_request``).

    Candidates are the commits whose trailer paragraph names that request
    (:mod:`gitmail.guard.requests`, an index kept in the org repo, so only what arrived
    since the last push is read); each is checked in full
    (:func:`gitmail.core.store.check_message`) before it counts."""
    from gitmail.core.store import check_message

    want = RESPONSE_OF[msg.type]
    rid = msg.request_id or ""
    asked = [x for x in dict.fromkeys(msg.to) if x != responder and x in directory.members]
    for x in asked:
        path = refs.mail_path(responder, x)
        tip = after.tip(refs.head(path)) or after.packed_map(responder).get(x)
        if tip is None:
            continue
        for oid in after.requests.candidates(path, tip, want, rid):
            try:
                found, check = check_message(pg, oid, responder, x, directory)
            except KeyError:
                continue
            if check.good and found is not None and found.type == want and found.request_id == rid:
                return None
    return (f"a {msg.type} answers a {want} that one of its recipients sent to {responder}; "
            f"none with request_id {rid!r} is on mail/{responder}/<recipient> for "
            f"{', '.join(repr(x) for x in asked) or 'any recipient but the sender'}")


def _deletion_problem(u: Update, rcpt: str, sender: str, directory: "Directory", after: "_After") -> Optional[str]:
    """Why the deletion ``u`` of mailbox ``rcpt``/``sender`` is refused, or None when the pair
    is packed: packing on, a member's inbox, and the member's packed map after this push
    records exactly the ref's tip for ``sender`` (so no message becomes unreachable)."""
    if not directory.policy.packing:
        return "deleting a mailbox is not allowed (messages are never removed)"
    if rcpt not in directory.members:
        return "deleting a broadcast or group mailbox is not allowed (only a member's own inbox pairs are packed)"
    packed_ref = refs.head(refs.packed_path(rcpt))
    entry = after.packed_map(rcpt).get(sender)
    if entry is None:
        return (f"deleting a mailbox is allowed only once it is packed, and {packed_ref} "
                f"has no entry for {sender!r}")
    if u.old is None or entry != u.old:
        return (f"deleting a mailbox is allowed only once it is packed, and the entry of {sender!r} in "
                f"{packed_ref} ({entry[:10]}) is not the mailbox's tip ({(u.old or 'none')[:10]})")
    return None


def check_packed(pg: "pygit2.Repository", u: Update, directory: "Directory",
                 after: Optional["_After"] = None) -> list[str]:
    """Reasons to refuse the update ``u`` of a member's packed ref (:mod:`gitmail.core.packed`).

    The line must pass :func:`gitmail.core.packed.line_problem` with the owner's current
    key (packed commits have several parents: not :func:`_linear`), and every entry it adds
    or moves must be the tip of the pair's mailbox ref (after this push, else before it
    when the push deletes it), or below it on its first-parent line; a pair with no ref
    cannot be recorded. ``after``: as for :func:`check_mailbox`.
    """
    from gitmail.core import packed
    from gitmail.core.objects import extends

    if not directory.policy.packing:
        return [f"{u.ref}: packing is off in this org (org policy packing); packed refs are refused"]
    owner = packed.owner_of(u.ref[len(refs.HEADS) :])
    if owner is None or owner not in directory.members:
        return [f"{u.ref}: not a valid packed ref name ({refs.head(refs.PACKED)}<member>, "
                "a member of the directory in canonical ref-safe form)"]
    if u.new is None:
        return [f"{u.ref}: deleting a member's packed mailboxes is not allowed"]
    old_map = packed.trusted_map(pg, u.old)
    why, new_map = packed.line_problem(pg, u.old, u.new, [directory.members[owner].signing_key], old_map,
                                       limit=MAX_NEW_COMMITS)
    if why:
        return [f"{u.ref}: {why}"]
    after = after or _After(pg, [u])
    errors = []
    for sender, entry in new_map.items():
        if old_map.get(sender) == entry:
            continue
        pair = refs.head(refs.mail_path(owner, sender))
        # After this push, else now (a pack that deletes the pair in the same push): an
        # entry always names a tip the guard has already checked, never commits of its own.
        tip = after.tip(pair) or _ref(pg, pair)
        if tip is None:
            errors.append(f"{u.ref}: the entry of {sender!r} ({entry[:10]}) names a mailbox with no ref "
                          f"on the org repo ({pair}); only a mailbox ref's tip can be packed")
            continue
        try:
            ok = extends(pg, tip, entry)
        except KeyError:
            ok = False
        if not ok:
            errors.append(f"{u.ref}: the entry of {sender!r} ({entry[:10]}) is not on the line of {pair} "
                          f"(its tip {tip[:10]} must be that commit or descend from it)")
    return errors


class _After:
    """The shared refs as they will stand once this push is accepted: a ref the push
    updates at its new value (None: deleted), any other at its value on the server.
    A push is all or nothing, so a check may rely on the rest of the push: a part that
    is refused refuses the whole."""

    def __init__(self, pg: "pygit2.Repository", updates: Sequence[Update]) -> None:
        self.pg = pg
        self._new = {u.ref: u.new for u in updates}
        self._maps: dict[Optional[str], dict[str, str]] = {}  # packed tip -> map: a pack deletes many refs
        from gitmail.guard.requests import Requests

        self.requests = Requests(pg, self.before)

    def tip(self, ref: str) -> Optional[str]:
        return self._new[ref] if ref in self._new else _ref(self.pg, ref)

    def packed_map(self, member: str) -> dict[str, str]:
        """``member``'s packed map (sender -> packed tip) after this push ({} without a packed ref)."""
        return self._map_at(self.tip(refs.head(refs.packed_path(member))))

    def before(self, path: str) -> Optional[str]:
        """Mailbox ``path``'s tip on the server before this push: its ref, else its
        recipient's packed entry (None: neither)."""
        tip = _ref(self.pg, refs.head(path))
        if tip is not None:
            return tip
        try:
            rcpt, sender = refs.split_mail_path(path)
        except Exception:
            return None
        return self._map_at(_ref(self.pg, refs.head(refs.packed_path(rcpt)))).get(sender)

    def _map_at(self, tip: Optional[str]) -> dict[str, str]:
        if tip not in self._maps:
            from gitmail.core import packed

            self._maps[tip] = packed.trusted_map(self.pg, tip)
        return self._maps[tip]


def check_state(pg: "pygit2.Repository", u: Update, directory: "Directory") -> list[str]:
    """Reasons to refuse the update ``u`` of a member's shared state ref (:func:`gitmail.core.statesync.guard_problems`)."""
    from gitmail.core import statesync

    linear = _linear(pg, u.ref, u.old, u.new) if u.new is not None else None
    return statesync.guard_problems(pg, u.ref, u.old, u.new, directory.members, linear)


def _sealed_readers(msg: object, directory: "Directory") -> Optional[int]:
    """For an encrypted message, how many readers its attachments are sealed to (their
    sizes are ciphertext sizes; more readers, a longer age header, a smaller plaintext
    allowed for); None for a clear one. The envelope's count, but never more than the readers
    the directory gives now: a sender who lists made-up readers gains no allowance."""
    from gitmail.core.private import readers

    env = getattr(msg, "encrypted", None)
    if not env:
        return None
    recipients = env.get("recipients") if isinstance(env, dict) else None
    claimed = len(recipients) if isinstance(recipients, list) else 1
    return max(1, min(claimed, len(readers(directory, getattr(msg, "from_"), getattr(msg, "to")))))


def _mailbox_names(path: str, directory: "Directory") -> tuple[str, str] | str:
    """``(recipient, sender)`` of a mailbox path, or why the name is not valid."""
    from gitmail.core.address import BROADCAST, GROUP_PREFIX, to_ref
    from gitmail.errors import GitmailError

    parts = path[len(refs.MAIL) :].split("/")
    if len(parts) != 2:
        return "not a valid mailbox name (gitmail/mail/<recipient>/<sender>)"
    try:
        rcpt, sender = refs.split_mail_path(path)
    except GitmailError as e:
        return f"not a valid mailbox name: {e}"
    if to_ref(rcpt) != parts[0] or to_ref(sender) != parts[1]:
        return "not a valid mailbox name (components must be in canonical ref-safe form)"
    if sender not in directory.members:
        return f"sender {sender!r} is not a member of the directory"
    known = rcpt == BROADCAST or rcpt in directory.members or (
        rcpt.startswith(GROUP_PREFIX) and rcpt[len(GROUP_PREFIX) :] in directory.groups
    )
    if not known:
        return f"recipient {rcpt!r} is not in the directory"
    return rcpt, sender


def _linear(pg: "pygit2.Repository", ref: str, old: Optional[str], new: str) -> Optional[str]:
    """Why ``old -> new`` is not a linear fast-forward, or None when it is."""
    from gitmail.core.objects import first_parent_line, unfollowed

    last = new
    for n, (oid, ps) in enumerate(first_parent_line(pg, new), 1):
        if oid == old:
            return None
        if len(ps) > 1:
            return f"{ref}: commit {oid[:10]} is a merge; gitmail history must be linear"
        if n > MAX_NEW_COMMITS:
            return f"{ref}: more than {MAX_NEW_COMMITS} new commits in one push"
        last = oid
    if old is None:
        return None
    cut = unfollowed(pg, last)  # the line ended here: say so when the commit was too large to read
    if cut:
        return f"{ref}: {cut}"
    return f"{ref}: non-fast-forward update refused (gitmail history is never rewritten)"


def _new_commits(pg: "pygit2.Repository", old: Optional[str], new: str) -> list[str]:
    """Commit ids after ``old`` up to ``new``, oldest first (the range is known to be linear)."""
    from gitmail.core.objects import first_parent_line

    out = [oid for oid, _ in first_parent_line(pg, new, old)]
    out.reverse()
    return out


def _ref(pg: "pygit2.Repository", name: str) -> Optional[str]:
    try:
        return str(pg.references[name].resolve().target)
    except (KeyError, ValueError):
        return None


def open_quarantined(path: Optional[str] = None) -> "pygit2.Repository":
    """The repository as the hook sees it, pushed objects in quarantine included."""
    import pygit2

    return pygit2.Repository(path or os.environ.get("GIT_DIR", "."), pygit2.enums.RepositoryOpenFlag.FROM_ENV)


def verdict(updates: list[Update], open_repo: "Callable[[], pygit2.Repository]",
            cache: Optional[dict[str, "Directory"]] = None) -> tuple[int, str]:
    """Check a push: ``(0, "")`` to accept, or ``(1, text)`` with the ``gitmail guard:`` lines.

    ``open_repo`` opens the repository with the pushed objects visible (only
    called when a gitmail ref is updated: other pushes never pay for pygit2).
    An exception refuses the push rather than let an unchecked one through.
    """
    bad = [u.ref for u in updates if u.malformed]
    if bad:
        return 1, "".join(f"gitmail guard: {line}\n" for line in
                          ["push refused:", *(f"an update line git would not write: {b[:200]!r}" for b in bad)])
    try:
        errors = check_push(open_repo(), updates, cache) if any(_shared(u) for u in updates) else []
    except Exception as e:  # refuse rather than let an unchecked push through
        errors = [f"internal error while checking the push: {type(e).__name__}: {e}"]
    if not errors:
        return 0, ""
    return 1, "".join(f"gitmail guard: {line}\n" for line in ["push refused:", *errors])


def main(stdin: Optional[TextIO] = None, stderr: Optional[TextIO] = None, hook_path: Optional[str] = None) -> int:
    """Run as ``pre-receive``: 0 to accept, 1 to refuse (reasons on stderr, shown as ``remote:``).

    The whole check in this process (hooks written with ``--no-daemon``, and
    hooks installed by gitmail before the warm guard existed).
    """
    data = (stdin or sys.stdin).read()
    code = check(data, stderr)
    return code or _run_chained(hook_path or sys.argv[0], data)


def check(data: str, stderr: Optional[TextIO] = None) -> int:
    """Check the push ``data`` (pre-receive input) in this process; print the refusal on ``stderr``."""
    err = stderr or sys.stderr
    code, text = verdict(parse_updates(data), open_quarantined)
    if text:
        err.write(text)
        err.flush()
    return code


def _run_chained(hook_path: str, data: str) -> int:
    """Run the pre-receive hook that was there before the guard, with the same input."""
    chained = Path(hook_path).with_name(Path(hook_path).name + CHAINED_SUFFIX)
    if not (chained.is_file() and os.access(chained, os.X_OK)):
        return 0
    return subprocess.run([str(chained)], input=data.encode("utf-8", "surrogateescape"), check=False).returncode
