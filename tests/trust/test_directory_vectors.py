"""docs/protocol.md §8 test vectors: directory entries and the allowed-signers file they produce,
parsed out of the spec and checked byte for byte against the code."""

from __future__ import annotations

import re
from pathlib import Path

from gitmail.core import directory as dirmod
from gitmail.core.model import Member, canonical_json

SPEC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
BLOCK = re.compile(r"^```(\w+) test-vector ([\w-]+)\n(.*?)^```$", re.S | re.M)


def _vectors() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for _lang, kind, body in BLOCK.findall(SPEC.read_text("utf-8")):
        out.setdefault(kind, []).append(body)
    return out


def test_spec_has_the_vectors() -> None:
    v = _vectors()
    assert len(v["directory-entry"]) >= 2 and len(v["allowed-signers"]) == 1


def test_directory_entries_round_trip_byte_for_byte() -> None:
    for body in _vectors()["directory-entry"]:
        stored = body.rstrip("\n").encode("utf-8")  # the file has no final newline
        m = Member.model_validate_json(stored)
        dirmod.validate_member(m)
        assert canonical_json(m.stored()) == stored


def test_allowed_signers_file_byte_for_byte() -> None:
    v = _vectors()
    members = [Member.model_validate_json(b.rstrip("\n")) for b in v["directory-entry"]]
    d = dirmod.Directory(None, {m.name: m for m in members})
    dirmod.validate(d)
    assert d.allowed_signers().encode("utf-8") == v["allowed-signers"][0].encode("utf-8")
    assert d.files()["allowed_signers"] == v["allowed-signers"][0].encode("utf-8")
