"""``api.send.Judge`` asks "is message M in mailbox P's undelivered record?" two ways: one ref
lookup a message, or, for a big batch (``many``), one ``git for-each-ref`` listing a mailbox.
The two are one rule written twice for speed; this keeps them equal (and equal to the refs
themselves) on a real repository, for mailboxes whose names are prefixes of one another,
escaped, broadcast and group addresses."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitmail.api.send import Judge
from gitmail.core import refs, sync
from gitmail.core.repo import open_repo

RECIPIENTS = ["max", "maxi", "ma", "Max", "*", "team:ops", "Mac CLI 小克"]
SENDERS = ["alex", "alexa", "al", "Alex"]
IDS = ["a" * 64, "ab" * 32, "b" * 64]


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    path = tmp_path_factory.mktemp("judge")
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    tree = subprocess.run(["git", "mktree"], cwd=path, input=b"", capture_output=True, check=True).stdout.strip()
    commit = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit-tree", tree, "-m", "x"],
                            cwd=path, capture_output=True, check=True, text=True).stdout.strip()
    yield path, commit


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sets(st.tuples(st.sampled_from(RECIPIENTS), st.sampled_from(SENDERS), st.sampled_from(IDS)), max_size=8))
def test_one_lookup_and_one_listing_agree(clone: tuple[Path, str], records: set[tuple[str, str, str]]) -> None:
    path, commit = clone
    old = subprocess.run(["git", "for-each-ref", "--format=delete %(refname)", sync.UNDELIVERED], cwd=path,
                         capture_output=True, check=True, text=True).stdout
    new = "".join(f"create {sync.undelivered_ref(refs.mail_path(r, s), m)} {commit}\n" for r, s, m in records)
    for batch in (old, new):  # one ref deleted and created again is two transactions
        subprocess.run(["git", "update-ref", "--stdin"], cwd=path, input=batch, check=True, text=True)
    repo = open_repo(path)
    one, many = Judge(repo, sync.Delivery()), Judge(repo, sync.Delivery(), many=True)
    for r in RECIPIENTS:
        for s in SENDERS:
            for m in IDS:
                box = refs.mail_path(r, s)
                want = (r, s, m) in records
                assert one._is_undelivered(box, m) == want, (box, m)
                assert many._is_undelivered(box, m) == want, (box, m)
