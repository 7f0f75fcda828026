"""A directory file is canonical JSON of values of their exact types, with at most
dirmod.MAX_UNKNOWN bytes of fields this version does not know (docs/protocol.md §8): checked
by the client and the guard alike, on an outsider's self-registration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitmail.core import directory as dirmod
from gitmail.core.model import Member, OrgPolicy, canonical_json
from gitmail.core.repo import open_repo
from tests.core.forge import stranger_key
from tests.sync.conftest import NetOrg
from tests.trust.dirforge import current_entries, entry, push_dir, write_dir_commit


def _pad(n: int) -> dict[str, Any]:
    """Unknown fields whose canonical JSON is exactly ``n`` bytes."""
    return {"x": "A" * (n - len('{"x":""}'))}


def _dupe(e: dict[str, Any]) -> bytes:
    """``e`` with a second "role" key before the real one (admin first): not canonical."""
    body = canonical_json(e)[1:]
    return b'{"role":"admin",' + body


CASES: dict[str, tuple[Callable[[dict[str, Any]], tuple[dict[str, Any], bytes | None, bytes | None]], str]] = {
    # name: (entry -> (entry, its raw bytes or None, org.json raw or None), words of the verdict)
    "duplicate-keys": (lambda e: (e, _dupe(e), None), "not canonical JSON"),
    "spaces": (lambda e: (e, json.dumps(e, sort_keys=True).encode(), None), "not canonical JSON"),
    "string-for-integer": (lambda e: ({**e, "schema_version": "1"}, None, None), "schema_version"),
    "unknown-over-the-bound": (lambda e: ({**e, **_pad(dirmod.MAX_UNKNOWN + 1)}, None, None),
                               f"unknown fields over {dirmod.MAX_UNKNOWN} bytes"),
    "policy-retyped": (lambda e: (e, None, canonical_json({**OrgPolicy().model_dump(mode="json"),
                                                            "body_limit": "1048576"})), "body_limit"),
}


def _register(o: NetOrg, tmp: Path, case: str) -> str:
    """An outsider's self-registration of 'eve' made hostile by ``case``."""
    key = stranger_key(tmp)
    tip, entries = current_entries(o.clones["alex"])
    e, raw, policy_raw = CASES[case][0](entry("eve", key.public_key))
    return write_dir_commit(o.clones["alex"], [*entries, e], key, tip, raw={"eve": raw} if raw else None,
                            policy_raw=policy_raw)


@pytest.mark.parametrize("case", list(CASES))
def test_a_directory_file_not_in_the_one_form_is_refused_by_the_client(unguarded: NetOrg, tmp_path: Path,
                                                                       case: str) -> None:
    """Before: duplicate keys (the last wins: an auditor's `git show` reads "admin" first),
    another spelling, "1" for 1, 15 MiB of unknown fields (twenty such registrations made
    every member's ledger 315 MB) and a newcomer retyping org.json were all accepted."""
    o = unguarded
    oid = _register(o, tmp_path, case)
    assert push_dir(o.clones["alex"], oid).returncode == 0  # no guard: the server takes it
    r = o.as_("max", "sync")
    assert r.code == 0 and f"directory commit {oid[:10]} rejected" in r.err and CASES[case][1] in r.err, r.err
    assert open_repo(o.clones["max"]).ref_target("refs/gitmail/verified/directory") != oid
    assert "eve" not in o.ok("max", "members", "--json").out


@pytest.mark.parametrize("case", list(CASES))
def test_a_directory_file_not_in_the_one_form_is_refused_by_the_guard(net: NetOrg, tmp_path: Path, case: str) -> None:
    p = push_dir(net.clones["alex"], _register(net, tmp_path, case))
    assert p.returncode != 0 and "malformed directory" in p.stderr and CASES[case][1] in p.stderr, p.stderr


def test_unknown_fields_up_to_the_bound_are_kept(net: NetOrg, tmp_path: Path) -> None:
    """A later version's fields, up to the bound, are kept and ignored (§8), guard and client."""
    key = stranger_key(tmp_path)
    tip, entries = current_entries(net.clones["alex"])
    e = {**entry("eve", key.public_key), **_pad(dirmod.MAX_UNKNOWN)}
    p = push_dir(net.clones["alex"], write_dir_commit(net.clones["alex"], [*entries, e], key, tip))
    assert p.returncode == 0, p.stderr
    net.ok("max", "sync")
    assert "eve" in json.dumps(json.loads(net.ok("max", "members", "--json").out))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["schema_version", "name", "email", "role", "kind", "display_name", "x"]),
                       st.one_of(st.integers(-2, 2), st.text(max_size=5), st.booleans(), st.none()), max_size=7),
       st.booleans())
def test_parse_file_takes_only_the_canonical_form_of_a_valid_entry(d: dict[str, Any], spaced: bool) -> None:
    """Property: parse_file accepts exactly the bytes that are canonical JSON of an entry the
    strict model takes, and gives that entry; anything else is one ValueError."""
    from pydantic import ValidationError

    data = json.dumps(d, sort_keys=True, separators=(", ", ": ") if spaced else (",", ":"),
                      ensure_ascii=False).encode()
    try:
        Member.model_validate(d, strict=True)
        valid = True
    except ValidationError:
        valid = False
    canonical = data == canonical_json(d)
    try:
        got = dirmod.parse_file(Member, data)
    except ValueError:
        assert not (valid and canonical)
        return
    assert valid and canonical and got == Member.model_validate(d, strict=True)
