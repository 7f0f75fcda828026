"""The packed line's rules as properties (docs/protocol.md §3, "Packed mailboxes"), on a real
repository: any sequence of packed commits is accepted exactly when every step only adds
entries or moves them forward, and the first step that drops an entry or moves one back
is the one named."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pygit2
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from gitmail.core import packed
from gitmail.core.model import Member
from gitmail.core.signing import Signer, generate_key

SENDERS = ["ana", "bo", "cy"]
CHAIN = 6  # commits on each sender's mailbox


class World:
    """A repository holding one linear mailbox chain per sender, and the owner's key."""

    def __init__(self, root: Path) -> None:
        self.pg = pygit2.init_repository(str(root / "repo"), bare=True)
        self.signer: Signer = generate_key(root / "key", comment="owner")
        self.member = Member(name="owner", email="owner@gitmail.invalid", signing_key=self.signer.public_key)
        sig = pygit2.Signature("x", "x@gitmail.invalid", 1_700_000_000, 0)
        tree = self.pg.TreeBuilder().write()
        self.chains: dict[str, list[str]] = {}
        for s in SENDERS:
            parent: list[pygit2.Oid] = []
            line = []
            for i in range(CHAIN):
                oid = self.pg.create_commit(None, sig, sig, f"{s} {i}\n", tree, parent)
                line.append(str(oid))
                parent = [oid]
            self.chains[s] = line


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield World(tmp_path_factory.mktemp("packed-rules"))


# One step: for each sender, None (no entry) or an index on its chain.
steps = st.lists(st.fixed_dictionaries({s: st.one_of(st.none(), st.integers(0, CHAIN - 1)) for s in SENDERS}),
                 min_size=1, max_size=5)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps)
def test_a_line_is_good_exactly_when_entries_only_appear_or_move_forward(world: World, plan: list[dict]) -> None:
    maps = [{s: world.chains[s][i] for s, i in step.items() if i is not None} for step in plan]
    tip: "str | None" = None
    old: dict[str, str] = {}
    for m in maps:
        tip = packed.write_commit(world.pg, old, m, world.member, world.signer, tip)
        old = m
    assert tip is not None
    why, got = packed.line_problem(world.pg, None, tip, [world.signer.public_key])
    first_bad = None
    before: dict[str, int] = {}
    for n, step in enumerate(plan):
        now = {s: i for s, i in step.items() if i is not None}
        if any(s not in now for s in before):
            first_bad = ("drops", n)
            break
        if any(now[s] < before[s] for s in before):
            first_bad = ("backwards", n)
            break
        before = now
    if first_bad is None:
        assert why is None and got == maps[-1], why
    else:
        assert why is not None and first_bad[0] in why, (why, first_bad, plan)


def test_a_step_signed_by_another_key_or_with_a_stray_parent_is_refused(world: World, tmp_path: Path) -> None:
    other = generate_key(tmp_path / "other", comment="not the owner")
    good = packed.write_commit(world.pg, {}, {"ana": world.chains["ana"][1]}, world.member, world.signer, None)
    assert packed.line_problem(world.pg, None, good, [world.signer.public_key])[0] is None
    forged = packed.write_commit(world.pg, {"ana": world.chains["ana"][1]}, {"ana": world.chains["ana"][2]},
                                 world.member, other, good)
    why, _ = packed.line_problem(world.pg, good, forged, [world.signer.public_key])
    assert why is not None and "not signed by the owner's key" in why
    # Parents that are not exactly the moved entries: a stray one hides nothing from the rule.
    from gitmail.core.objects import signed_commit

    from gitmail.core.objects import commit

    c = commit(world.pg, good)
    sig = pygit2.Signature("owner", "owner@gitmail.invalid", 1_700_000_001, 0)
    stray = signed_commit(world.pg, sig, sig, packed.COMMIT_MESSAGE, str(c.tree_id),
                          [good, world.chains["bo"][0]], world.signer.sign)
    why, _ = packed.line_problem(world.pg, good, stray, [world.signer.public_key])
    assert why is not None and "extra parents" in why
    # Not a fast-forward: a line that does not contain the old tip.
    other_line = packed.write_commit(world.pg, {}, {"bo": world.chains["bo"][0]}, world.member, world.signer, None)
    why, _ = packed.line_problem(world.pg, good, other_line, [world.signer.public_key])
    assert why is not None and "not a fast-forward" in why
