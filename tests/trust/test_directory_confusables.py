"""Issue 10, hole 2: a name that looks like an existing member's (Unicode TR39 skeleton) is refused,
and so is a name that mixes scripts unless the org allows it (client and guard)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gitmail.errors import DirectoryError

from tests.conftest import Org, run
from tests.core.forge import stranger_key
from tests.sync.conftest import NetOrg
from tests.trust.dirforge import current_entries, entry, push_dir, write_dir_commit

CYRILLIC_A = "\u0430"


def _join(org: Org, name: str) -> tuple[int, str]:
    r = run("init", "--name", name, "--org", org.url, "--repo", str(org.root / f"c-{len(name)}-{ord(name[0])}"))
    return r.code, r.err


def test_lookalike_of_existing_member_is_refused(org: Org) -> None:
    code, err = _join(org, "m" + CYRILLIC_A + "x")  # "mаx": Cyrillic а, beside max
    assert code == DirectoryError.exit_code and "looks like the member name 'max'" in err
    code, err = _join(org, "\uff4d\uff41\uff58")  # fullwidth ｍａｘ: one script, same skeleton
    assert code == DirectoryError.exit_code and "looks like" in err


def test_mixed_script_needs_the_org_policy(org: Org) -> None:
    name = "b" + "\u043e" + "b"  # "bоb": Latin b, Cyrillic о
    code, err = _join(org, name)
    assert code == DirectoryError.exit_code and "mixes scripts" in err
    org.ok("max", "org", "allow_mixed_script=true")
    code, err = _join(org, name)
    assert code == 0, err


@pytest.mark.parametrize("name", ["José", "山田たろう", "Mac CLI 小克", "김민준", "عليّ", "Ödön 2", "e\u0301lise"])
def test_single_script_names_are_fine(name: str) -> None:
    from gitmail.core.address import is_mixed_script

    assert not is_mixed_script(name)


def test_skeleton_is_tr39_like() -> None:
    from gitmail.core.address import skeleton

    assert skeleton("alice") == skeleton(CYRILLIC_A + "lice") == skeleton("\uff41lice")
    assert skeleton("alice") != skeleton("alicia")


def test_guard_refuses_a_lookalike_registration(net: NetOrg, tmp_path: Path) -> None:
    newcomer = stranger_key(tmp_path)
    tip, entries = current_entries(net.clones["alex"])
    e = entry("m" + CYRILLIC_A + "x", newcomer.public_key)
    p = push_dir(net.clones["alex"], write_dir_commit(net.clones["alex"], [*entries, e], newcomer, tip,
                                                      policy={"schema_version": 1, "allow_mixed_script": True}))
    assert p.returncode != 0 and "gitmail guard" in p.stderr
    # the newcomer may not change the policy either; with the policy unchanged, the name itself is refused:
    p = push_dir(net.clones["alex"], write_dir_commit(net.clones["alex"], [*entries, e], newcomer, tip))
    assert p.returncode != 0 and "looks like the member name 'max'" in p.stderr
    e = entry("b\u043eb", newcomer.public_key)
    p = push_dir(net.clones["alex"], write_dir_commit(net.clones["alex"], [*entries, e], newcomer, tip))
    assert p.returncode != 0 and "mixes scripts" in p.stderr


# Invisible characters a renderer shows as nothing (Default_Ignorable_Code_Point): "m\u034fax"
# was registered beside max and shown as "max" by list, read, the shell notice and the Claude
# hooks, since neither the control-character rule nor the skeleton saw them.
INVISIBLE = ["m\u034fax", "max\u3164", "ma\u115fx", "max\ufe0f", "max\U000e0100", "ma\u180bx"]


@pytest.mark.parametrize("name", INVISIBLE)
def test_a_name_with_an_invisible_character_is_refused(org: Org, name: str) -> None:
    code, err = _join(org, name)
    assert code == 2 and "contains an invisible character (U+" in err and err.count("\n") == 1, err


def test_the_skeleton_drops_invisible_characters_as_tr39_does() -> None:
    from gitmail.core.address import skeleton

    assert all(skeleton(n) == skeleton("max") for n in INVISIBLE)


def test_a_crafted_registration_with_an_invisible_character_fails_the_readers_and_the_guard(
        net: NetOrg, tmp_path: Path) -> None:
    """A hostile newcomer writes the directory commit themself (no client check): the guard
    refuses it; pushed where no guard runs, every reader's directory check refuses it."""
    from tests.conftest import git

    newcomer = stranger_key(tmp_path)
    tip, entries = current_entries(net.clones["alex"])
    commit = write_dir_commit(net.clones["alex"], [*entries, entry("m\u034fax", newcomer.public_key)], newcomer, tip)
    p = push_dir(net.clones["alex"], commit)
    assert p.returncode != 0 and "invisible character (U+034F)" in p.stderr, p.stderr
    bare = net.bare  # the same commit straight into the org repo's objects and ref: no guard on this path
    git("fetch", "-q", str(net.clones["alex"]), commit, cwd=bare)
    git("update-ref", "refs/heads/gitmail/directory", commit, tip, cwd=bare)
    r = net.as_("max", "sync")
    assert "invisible character (U+034F)" in r.err + r.out, r
    assert [m["name"] for m in json.loads(net.ok("max", "members", "--json").out)["members"]] == \
        ["alex", "max"]


# -- look-alike is transitive, and reserved addresses have no look-alikes ----------------------


def test_a_lookalike_through_a_third_character_is_refused(org: Org) -> None:
    """`aIex` (capital i) beside alex: the skeleton took each character's least direct homoglyph,
    and l -> 1 but I -> I (its only listed homoglyph is l), so it registered. Now the classes
    are transitive: l, I and 1 are one class. So are S-comma and S-cedilla."""
    from gitmail.core.address import skeleton

    assert skeleton("alex") == skeleton("aIex") == skeleton("a1ex")
    assert skeleton("\u0218tefan") == skeleton("\u015etefan")
    code, err = _join(org, "aIex")
    assert code == DirectoryError.exit_code and "looks like the member name 'alex'" in err, err


@pytest.mark.parametrize("name,looks", [("\uff0a", "*"), ("\u2217", "*"), ("team\uff1aops", "team:..."),
                                        ("\uff54\uff45\uff41\uff4d:ops", "team:..."), ("\uff0e\uff0e", "..")])
def test_a_name_that_looks_like_a_reserved_address_is_refused(org: Org, name: str, looks: str) -> None:
    """`＊` or `team：ops` (fullwidth) passed normalize, which refuses only the exact forms, and
    listings showed broadcast-looking mail "from *" or group mail "from team:ops"."""
    code, err = _join(org, name)
    assert code == DirectoryError.exit_code and f"looks like the reserved address {looks!r}" in err, err


def test_guard_refuses_a_name_that_looks_like_a_group(net: NetOrg, tmp_path: Path) -> None:
    newcomer = stranger_key(tmp_path)
    tip, entries = current_entries(net.clones["alex"])
    e = entry("team\uff1aops", newcomer.public_key)
    p = push_dir(net.clones["alex"], write_dir_commit(net.clones["alex"], [*entries, e], newcomer, tip))
    assert p.returncode != 0 and "looks like the reserved address 'team:...'" in p.stderr, p.stderr


def _pairs() -> list[tuple[str, str]]:
    import unicodedata

    from confusable_homoglyphs import confusables

    out = []
    for ch, alts in confusables.confusables_data.items():
        for h in alts:
            c = h["c"].replace("\u200e", "").replace("\u200f", "")
            # the skeleton folds NFKD first: pairs of characters it keeps as they are
            if len(ch) == 1 and len(c) == 1 and all(unicodedata.normalize("NFKD", x) == x for x in (ch, c)):
                out.append((ch, c))
    return out


@given(st.sampled_from(_pairs()), st.sampled_from(_pairs()))
def test_every_homoglyph_pair_shares_a_skeleton_and_look_alike_is_transitive(p: tuple[str, str],
                                                                              q: tuple[str, str]) -> None:
    from gitmail.core.address import skeleton

    a, b = p
    assert skeleton("x" + a) == skeleton("x" + b)
    c, d = q
    if skeleton(b) == skeleton(c):  # a ~ b ~ c ~ d: a looks like d
        assert skeleton(a) == skeleton(d)
