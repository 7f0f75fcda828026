"""The parents gitmail follows through a commit libgit2 cannot parse are git's
(:func:`gitmail.core.objects.parent_ids`; git's commit.c, ``parse_commit_buffer``): the
``parent`` lines right after ``tree``, none elsewhere. Checked against ``git log --format=%P``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pygit2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitmail.core.objects import load_commit, parent_ids
from tests.conftest import git, write_literal


class Repo:
    def __init__(self, root: Path) -> None:
        self.path = root
        subprocess.run(["git", "init", "-q", str(root)], check=True)
        self.tree = write_literal(root, "tree", b"")
        base = f"tree {self.tree}\nauthor a <a@x> 1700000000 +0000\ncommitter a <a@x> 1700000000 +0000\n\nbase\n"
        self.base = [self.write(base.replace("base", f"base {i}").encode()) for i in range(2)]

    def write(self, raw: bytes) -> str:
        return write_literal(self.path, "commit", raw)

    def gits_parents(self, oid: str) -> list[str]:
        return git("log", "-1", "--format=%P", oid, cwd=self.path).stdout.split()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    return Repo(tmp_path_factory.mktemp("parents"))


BROKEN_AUTHOR = "author a <a@x 1700000000 +0000"  # no ">": libgit2 refuses the commit, git does not


@pytest.mark.parametrize("layout,want", [
    ("tree T\nparent P0\nBROKEN\ncommitter C\n", [0]),
    ("tree T\nparent P0\nparent P1\nBROKEN\ncommitter C\n", [0, 1]),
    ("tree T\nBROKEN\nparent P0\ncommitter C\n", []),  # a parent line after the author is no parent
    ("tree T\nBROKEN\ncommitter C\nparent P1\n", []),
    ("tree T\nparent P0\nBROKEN\nparent P1\ncommitter C\n", [0]),
    ("tree T\nparent UPPER0\nBROKEN\ncommitter C\n", [0]),  # git reads either case of hex
])
def test_a_commit_libgit2_refuses_has_the_parents_git_sees(repo: Repo, layout: str, want: list[int]) -> None:
    raw = (layout.replace("tree T", f"tree {repo.tree}").replace("BROKEN", BROKEN_AUTHOR)
           .replace("parent UPPER0", f"parent {repo.base[0].upper()}").replace("P0", repo.base[0])
           .replace("P1", repo.base[1]).replace("committer C", "committer a <a@x> 1700000000 +0000") + "\nhi\n")
    oid = repo.write(raw.encode())
    assert isinstance(load_commit(pygit2.Repository(str(repo.path)), oid), str)  # libgit2 refuses it
    got = parent_ids(pygit2.Repository(str(repo.path)), oid)
    assert got == [repo.base[i] for i in want] == repo.gits_parents(oid)


_LINES = st.sampled_from(["parent P0", "parent P1", "BROKEN", "committer C", "encoding x", " continued",
                          "parent UPPER1", "parent short"])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_LINES, max_size=6))
def test_any_header_order_gives_gits_parents(repo: Repo, lines: list[str]) -> None:
    head = "\n".join(["tree T", *lines]) + "\n"
    raw = (head.replace("tree T", f"tree {repo.tree}").replace("BROKEN", BROKEN_AUTHOR)
           .replace("parent UPPER1", f"parent {repo.base[1].upper()}").replace("P0", repo.base[0])
           .replace("P1", repo.base[1]).replace("committer C", "committer a <a@x> 1700000000 +0000") + "\nhi\n")
    oid = repo.write(raw.encode())
    p = git("log", "-1", "--format=%P", oid, cwd=repo.path, check=False)
    if p.returncode != 0:  # git itself cannot read it ("bad parents"): nothing to compare
        return
    assert parent_ids(pygit2.Repository(str(repo.path)), oid) == p.stdout.split()


def test_an_upper_case_parent_is_named_as_the_fault() -> None:
    """git reads a parent in either case of hex (§7 step 1); gitmail writes lower case, so such
    a commit is malformed (§6). The reason said "gpgsig header is not the armored signature as
    gitmail writes it", which sent a reader looking at a good signature."""
    from gitmail.core.store import header_problem

    sig = b"gpgsig -----BEGIN SSH SIGNATURE-----\n AAAA\n -----END SSH SIGNATURE-----"
    ident = b"author a <b> 1 +0000\ncommitter a <b> 1 +0000\n"
    good = b"tree " + b"a" * 40 + b"\nparent " + b"b" * 40 + b"\n" + ident + sig
    assert not isinstance(header_problem(good), str)
    upper = good.replace(b"parent " + b"b" * 40, b"parent " + b"B" * 40)
    assert header_problem(upper) == "git parent line is not parent and 40 lower-case hex digits"
    two = good.replace(b"\nauthor", b"\nparent " + b"c" * 40 + b"\nauthor")
    assert header_problem(two) == "commit has more than one parent line"
