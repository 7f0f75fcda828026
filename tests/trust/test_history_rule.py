"""A mailbox moves only by a fast-forward along a first-parent line with no merge
(docs/protocol.md §7, "Verification"): one rule, ``gitmail.core.objects.mailbox_move_problem``,
that a sync, ``verify`` and ``verify --all`` apply, and that they report in the same words.

Each history is pushed with plain git to a real ``git daemon`` without the guard (a host
that runs no server hooks), as a hostile member would: a merge on a new mailbox, a merge
above the verified tip, a force push, and, on a mailbox the reader watches but does not
index (a group's, when the reader is not in it), a merge and a commit too large to read.
Before the rule had one home, a sync took those last two silently (it set its verified tip
to them) while ``verify --all`` reported them, and sync and ``verify`` worded a merge and
a rewrite differently.
"""

from __future__ import annotations

import json
from pathlib import Path

import pygit2

from gitmail.core import objects, refs
from gitmail.core.objects import signed_commit
from gitmail.core.repo import open_repo
from tests.sync import forge
from tests.sync.conftest import NetOrg, guard_runtime, unguarded  # noqa: F401 (fixtures)
from tests.trust.test_zip_bombs import _bomb_commit


def _merge(clone: Path, parents: list[str]) -> str:
    """max's signed commit carrying a valid message to alex, with ``parents``."""
    pg = open_repo(clone).pg
    tree = str(objects.commit(pg, parents[0]).tree_id)
    sig = pygit2.Signature("max", "max@gitmail.invalid", 1_700_000_000, 0)
    return signed_commit(pg, sig, sig, "merge\n", tree, parents, forge.key_of("max").sign)


def _two_lines(clone: Path, base: "str | None") -> list[str]:
    """Two signed messages from max to alex, each on ``base`` (None: each a root)."""
    return [forge.signed(clone, "alex", "max", forge.key_of("max"), parent=base, body=f"side {i}") for i in range(2)]


def _reported(o: NetOrg, *sync_args: str) -> tuple[list[str], list[str], list[str]]:
    """The problems of alex's sync (with ``sync_args``), ``verify`` (alex's own mailboxes) and
    ``verify --all`` (every mailbox), each from --json; both verifies fail (exit 7) when they
    report one."""
    s = json.loads(o.ok("alex", "sync", "--json", *sync_args).out)["problems"]
    out = []
    for args in ((), ("--all",)):
        r = o.as_("alex", "verify", "--json", *args)
        problems = json.loads(r.out)["problems"]
        assert r.code == (7 if problems else 0), r.out
        out.append(problems)
    return s, out[0], out[1]


def _one(problems: list[str], path: str) -> str:
    mine = [p for p in problems if p.startswith(path + ":")]
    assert len(mine) == 1, problems
    return mine[0]


PATH = "gitmail/mail/alex/max"


def _merge_pushed(o: NetOrg, base: "str | None") -> tuple[str, str]:
    """A merge of two messages on ``base`` pushed to alex's mailbox from max; ``(its id, the one
    problem line that sync, verify and verify --all all give for the mailbox)``."""
    clone = o.clones["max"]
    merge = _merge(clone, _two_lines(clone, base))
    assert forge.push(clone, merge, "refs/heads/" + PATH)[0] == 0
    s, v, a = _reported(o)
    assert _one(s, PATH) == _one(v, PATH) == _one(a, PATH)
    return merge, _one(s, PATH)


def test_a_merge_on_a_new_mailbox_is_refused_in_the_same_words_everywhere(unguarded: NetOrg) -> None:
    o = unguarded
    merge, said = _merge_pushed(o, None)
    assert said == f"{PATH}: history contains a merge at {merge[:10]}; mailbox refs must be linear"
    assert json.loads(o.ok("alex", "list", "--json").out)["messages"] == []  # nothing of it taken


def test_a_merge_above_the_verified_tip_keeps_the_verified_copy_in_the_same_words(unguarded: NetOrg) -> None:
    o = unguarded
    o.ok("max", "send", "alex", "first")
    o.ok("alex", "sync")
    o.ok("max", "sync")
    _, said = _merge_pushed(o, forge.tip(o.clones["max"], PATH))
    assert said == f"{PATH}: {objects.REWRITTEN}; kept the verified copy"
    assert [m["subject"] for m in json.loads(o.ok("alex", "list", "--json").out)["messages"]] == ["first"]


def test_a_force_push_is_reported_in_the_same_words_by_sync_and_verify(unguarded: NetOrg) -> None:
    o = unguarded
    for i in range(2):
        o.ok("max", "send", "alex", f"m{i}")
    o.ok("alex", "sync")
    code, out = forge.push(o.clones["max"], "origin/gitmail/mail/alex/max~1", "refs/heads/gitmail/mail/alex/max",
                           "--force")
    assert code == 0, out
    s, v, a = _reported(o)
    path = "gitmail/mail/alex/max"
    assert _one(s, path) == _one(v, path) == _one(a, path) == f"{path}: {objects.REWRITTEN}; kept the verified copy"


def test_outside_the_view_a_merge_and_an_unreadable_commit_are_refused_not_taken(unguarded: NetOrg) -> None:
    """A sync moves the verified tip of a mailbox it watches but does not index (a group's
    mailbox when the reader is not in the group) by the same rule: a merge, or a commit too
    large to read, is reported, and the verified tip stays where it was (none), in the
    words ``verify --all`` uses. Before, the sync took both silently."""
    o = unguarded
    clone = o.clones["max"]
    merge = _merge(clone, _two_lines(clone, None))
    ops, dev = refs.mail_path("team:ops", "max"), refs.mail_path("team:dev", "max")
    assert forge.push(clone, merge, f"refs/heads/{ops}")[0] == 0
    bomb = _bomb_commit(clone, merge)
    assert forge.push(clone, bomb, f"refs/heads/{dev}")[0] == 0
    s, v, a = _reported(o, "--all")
    assert v == []  # alex's own mailboxes are fine
    for path, words in ((ops, f"history contains a merge at {merge[:10]}"),
                        (dev, "the history below it cannot be read")):
        assert _one(s, path) == _one(a, path), (s, a)
        assert words in _one(s, path)
        assert open_repo(o.clones["alex"]).ref_target(refs.verified(path)) is None
