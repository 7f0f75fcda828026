"""Import from where teams are today: mbox, Maildir, team-chat (``gitmail import``).

Each message of the archive becomes a message of type ``imported`` signed by
the importing member (docs/protocol.md §5, "Imported messages"): the
original's subject and body become the message's, and what the original
claims (sender, recipients, date, Message-ID) goes into the typed payload
(:class:`gitmail.core.model.Imported`); an import never claims another
member's signature. Messages are composed by the one composer
(:func:`gitmail.api.send.prepare`) and written through the bulk writer, then
delivered in one push.

Idempotent: the key of an original is ``(source, message_id)``; the
importer reads the keys of the imported messages already on the target
mailbox (decrypting its own encrypted ones) and of this run, and adds only
new ones.

Archives are read by :mod:`gitmail.api.archives` (hostile input, sanitised
there). A message that cannot be read or breaks a rule is skipped with one
line saying where and why. Part of the library API (:mod:`gitmail.api`).
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Union


from gitmail.api.archives import RAW_READERS, SOURCES, Entry, Original, Skip, parse, parse_all
from gitmail.api.results import ImportResult, SkippedEntry
from gitmail.api.send import (CHUNK, PARALLEL_MIN, Draft, Prepared, forked_preparers, prepare_stream,
                              write_prepared)
from gitmail.api.session import RepoLike, Session, resolve_recipients, session
from gitmail.core import workers
from gitmail.errors import GitmailError, UsageError


# -- what is already imported ----------------------------------------------------------


def _tip(s: Session, path: str) -> Optional[str]:
    """The member's tip of mailbox ``path``: the outbox when it holds unsent mail, else the last
    fetched state (the org's ref itself in a clone without a remote). A clone that has neither
    a copy of the pair nor delivered to it (a second clone of the member, another member's
    pair never written to from here) fetches it first, and with packing on reads the
    recipient's packed entry when the org repo has no ref for it (docs/protocol.md §3): the
    imported messages already there are found, not imported again (§5, "Importing the same
    archive twice therefore adds nothing")."""
    from gitmail.core import refs

    r = s.repo
    tip = r.ref_target(refs.outbox(path) if r.remote else refs.head(path))
    if tip is None and r.remote:
        from gitmail.core.sync import fetch, known_tip

        tip = known_tip(r, path)
        if tip is None:
            from gitmail.errors import GitError

            try:
                fetch(r, [refs.exact_pattern(path)])
                tip = known_tip(r, path)
                if tip is None and s.directory.policy.packing:
                    from gitmail.api.packing import packed_tip_of

                    tip = packed_tip_of(s)(path)
            except GitError:
                pass  # offline: imported as before; delivery re-parents onto the pair's tip later
    return tip


def _memo_file(s: Session, path: str) -> Path:
    from gitmail.core.address import to_ref

    d = s.repo.data_dir / "imported"
    d.mkdir(mode=0o700, exist_ok=True)  # private, as the cache: it names originals of encrypted mail
    return d / (to_ref(s.me) + "--" + path.replace("/", "--") + ".json")


def _load_memo(s: Session, path: str) -> tuple[Optional[str], set[tuple[str, str]]]:
    import json

    try:
        d = json.loads(_memo_file(s, path).read_text("utf-8"))
        return str(d["tip"]), {(str(a), str(b)) for a, b in d["keys"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None, set()


def _save_memo(s: Session, path: str, tip: str, keys: set[tuple[str, str]]) -> None:
    import json

    from gitmail.core.files import write_atomic

    try:
        write_atomic(_memo_file(s, path), json.dumps({"tip": tip, "keys": sorted(keys)}), mode=0o600)
    except OSError:
        pass  # only an optimisation: the next import reads the mailbox again


def imported_keys(s: Session, path: str) -> set[tuple[str, str]]:
    """``(source, message_id)`` of every imported message the member wrote on mailbox ``path``
    (read from :func:`_tip` down).

    Encrypted ones are opened with the member's key. Raises :class:`UsageError` when one
    cannot be opened (then what is imported cannot be told; nothing is written). What an
    earlier import saw is remembered with the tip it read from (``.git/gitmail/imported/``,
    private to the clone); when that tip is still on the mailbox's first-parent line only
    the commits above it are read, else the whole mailbox.
    """
    import orjson
    import pygit2

    from gitmail.core.model import IMPORTED
    from gitmail.core.objects import blob_data, chain, load_commit, parent_ids
    from gitmail.core.private import Opener
    from gitmail.core.store import message_blob, read_message

    r = s.repo
    tip = _tip(s, path)
    if tip is None:
        return set()
    known_tip, known = _load_memo(s, path)
    oids, _ = chain(r.pg, tip, known_tip)
    out: set[tuple[str, str]] = set()
    if known_tip is not None and (tip == known_tip or (oids and parent_ids(r.pg, oids[-1]) == [known_tip])):
        out = known  # the remembered tip is below this one: read only what lies above it
    opener = Opener(r, s.me, s.directory.read_body_limit)
    for oid in oids:
        c = load_commit(r.pg, oid)
        if isinstance(c, str):
            continue
        try:  # only the type and payload are needed: a JSON parse, not the full model (5x faster)
            raw = orjson.loads(blob_data(r.pg, message_blob(r.pg, c)))
        except (KeyError, ValueError, TypeError, pygit2.GitError, GitmailError):
            continue
        if not isinstance(raw, dict) or raw.get("type") != IMPORTED or raw.get("from") != s.me:
            continue
        p = raw.get("payload")
        if raw.get("encrypted") is not None:
            try:
                msg = read_message(r.pg, c)
            except GitmailError:
                continue
            opened = opener.open(r.pg, c, msg)
            if opened is None:
                why = opener.key_error or "it does not open with your key"
                raise UsageError(f"cannot tell what is already imported: message {msg.id[:8]} on {path} "
                                 f"is encrypted and {why}")
            p = opened[0].payload
        if isinstance(p, dict) and isinstance(p.get("source"), str) and isinstance(p.get("message_id"), str):
            out.add((p["source"], p["message_id"]))
    _save_memo(s, path, tip, out)
    return out


# -- importing -------------------------------------------------------------------------


@dataclass
class _Plan:
    skipped: list[SkippedEntry] = field(default_factory=list)
    already: int = 0




# -- both cores ----------------------------------------------------------------------
# An archive of at least PARALLEL_MIN entries is parsed by forked workers (gitmail.core.workers),
# CHUNK entries per task, then composed and encrypted by them (send.prepare_stream); signing
# and writing stay here, as the chain is sequential.


def _parse_chunk(job: tuple[str, list[Union[Entry, Skip]]]) -> list[Union[Original, Skip, None]]:
    source, entries = job
    return [parse(source, e) for e in entries]


def _draft(rcpt: str, o: Original) -> Draft:
    from gitmail.core.model import IMPORTED

    return Draft(to=[rcpt], body=o.body, subject=o.subject, priority=o.priority, type=IMPORTED,
                 payload=o.payload())


def import_archive(
    repo: RepoLike,
    *,
    mbox: Optional[Union[str, Path]] = None,
    maildir: Optional[Union[str, Path]] = None,
    team_chat: Optional[Union[str, Path]] = None,
    to: Optional[str] = None,
    as_: Optional[str] = None,
    encrypt: Optional[bool] = None,
) -> ImportResult:
    """Import an archive as ``imported`` messages from the acting member to ``to`` (default:
    the member's own mailbox ``mail/<me>/<me>``); see the module doc.

    Exactly one of ``mbox`` (file), ``maildir`` (folder with ``cur``/``new``) and
    ``team_chat`` (a team folder with ``inboxes/*.jsonl``). ``encrypt`` as in
    :func:`gitmail.api.send.send`. Entries already imported to that mailbox are
    counted in ``already``; unreadable or rule-breaking ones are listed in
    ``skipped``. Raises :class:`UsageError` (no or several sources, a path that
    is not such an archive, ``to`` a group or ``*``), :class:`UnknownRecipientError`,
    :class:`KeyError_`.
    """
    from gitmail.core import refs
    from gitmail.core.address import BROADCAST, GROUP_PREFIX
    from gitmail.core.model import IMPORTED

    given = [(src, p) for src, p in zip(SOURCES, (mbox, maildir, team_chat)) if p is not None]
    if len(given) != 1:
        raise UsageError("give exactly one of --mbox FILE, --maildir DIR or --team-chat DIR")
    source, raw_path = given[0]
    if not str(raw_path).strip():  # Path("") is the current folder: never taken for an archive
        raise UsageError(f"--{source}: give a {'file' if source == 'mbox' else 'folder'} name")
    path = Path(raw_path).expanduser()
    s = session(repo, as_)
    [rcpt] = resolve_recipients(s, [to or s.me])
    if rcpt == BROADCAST or rcpt.startswith(GROUP_PREFIX):
        raise UsageError("an import goes to one member's mailbox: name one member with --to")
    mailbox_path = refs.mail_path(rcpt, s.me)
    from gitmail.core import private

    # The policy's answer once, for every entry: --plain under encryption=required (or --encrypt
    # with a reader without a key) is an error of the command (exit 2), as for send, not a
    # skipped entry each while the import "succeeds" with nothing imported.
    private.decide(s.directory, s.me, [rcpt], encrypt)
    try:  # the archive first: one that is not there is refused before anything is recorded
        entries = RAW_READERS[source](path)
        head = list(itertools.islice(entries, PARALLEL_MIN))  # raises UsageError: not such an archive
    except OSError as e:
        raise UsageError(f"{path}: cannot be read ({e.strerror or type(e).__name__})") from None
    known = imported_keys(s, mailbox_path)
    seen = set(known)
    originals: list[Original] = []
    plan = _Plan()
    forked = len(head) == PARALLEL_MIN and workers.can_fork()
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(forked_preparers(s, encrypt, clear_copies=False)) if forked else None
        if pool is not None:
            # The workers parse (the standard library's parser makes cycles there, not here):
            # this process only gathers long-lived objects until the end, which the cycle
            # collector would walk again and again (0.4 s of a 10,000-message import).
            stack.enter_context(workers.collector_paused())
        everything = itertools.chain(head, entries)
        try:
            if pool is not None:
                jobs = ((source, part) for part in workers.chunks(everything, CHUNK))
                parsed: Iterator[Union[Original, Skip, None]] = (
                    x for part in workers.ordered_map(pool, _parse_chunk, jobs, 2 * workers.cores()) for x in part)
            else:
                parsed = parse_all(source, everything)
            for got in parsed:
                if got is None:
                    continue
                if isinstance(got, Skip):
                    plan.skipped.append(SkippedEntry(where=got.where, reason=got.reason))
                elif got.key in seen:
                    if got.key in known or source == "team-chat":  # imported before; one message in two inboxes
                        plan.already += 1
                    else:  # a second copy in this very archive: said as such, not as "already imported"
                        plan.skipped.append(SkippedEntry(where=got.where, reason="the same Message-ID as an earlier "
                                                         "message of this archive (that one is imported)"))
                else:
                    seen.add(got.key)
                    originals.append(got)
        except OSError as e:
            raise UsageError(f"{path}: cannot be read ({e.strerror or type(e).__name__})") from None
        # Oldest first, so the mailbox reads in the original order; undated ones after, as found.
        originals.sort(key=lambda o: (o.date is None, o.date or ""))
        written: list[tuple[str, str]] = []  # the keys of the originals written

        def ready() -> Iterator[Prepared]:
            """The prepared messages, in order, as the workers finish them; rule-breaking
            ones listed as skipped. Each original is let go once its message is prepared
            (the draft generator has passed it): the archive is not held twice till the end."""
            outcomes = prepare_stream(s, (_draft(rcpt, o) for o in originals), encrypt, pool)
            for i, got in enumerate(outcomes):
                o = originals[i]
                originals[i] = None  # type: ignore[call-overload]  # freed: its key and place are kept below
                if isinstance(got, GitmailError):
                    if not isinstance(got, UsageError):
                        raise got  # a key or recipient problem concerns every message: stop, nothing written
                    plan.skipped.append(SkippedEntry(where=o.where, reason=str(got)))
                    continue
                written.append(o.key)
                del o
                yield got

        # Written while the workers compose the next ones (the pack is stored only at the end).
        with workers.collector_paused():
            results = write_prepared(s, ready(), mailbox=mailbox_path) if originals else []
            if results and not any(x.outcome == "refused" for x in results):
                # Every message written lies below the new tip: remember them, so that the next
                # import reads only what is newer (a re-parented delivery just means a full read).
                tip = _tip(s, mailbox_path)
                if tip is not None:
                    _save_memo(s, mailbox_path, tip, known | set(written))
            outcome = reason = None
            for want in ("refused", "queued", "delivered"):
                hit = next((x for x in results if x.outcome == want), None)
                if hit is not None:
                    outcome, reason = hit.outcome, hit.reason
                    break
            imported = ImportResult(source=source, path=str(path), mailbox=mailbox_path,
                                    added=[x.stored.id if x.stored else x.message.id for x in results],
                                    already=plan.already, skipped=plan.skipped, outcome=outcome, reason=reason)
            # Freed here, by their reference counts, before the cycle collector runs again:
            # it would walk every one of them once more.
            originals.clear()
            written.clear()
            results.clear()
            hit = None
    return imported
