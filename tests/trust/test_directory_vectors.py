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


def test_layout_2_paths_and_ids_match_the_spec_and_git(tmp_path: Path) -> None:
    """docs/protocol.md §8 "Layouts": the shard of each name, the shard files of allowed_signers,
    and the tree id, checked against the code and against git itself (hash-object, mktree)."""
    import subprocess

    v = _vectors()
    (vector,) = v["layout-2"]
    lines = vector.splitlines()
    members = [Member.model_validate_json(b.rstrip("\n")) for b in v["directory-entry"]]
    d = dirmod.Directory(None, {m.name: m for m in members})
    d.policy = d.policy.model_copy(update={"directory_layout": dirmod.FANOUT})
    files = d.files()
    assert sorted(p for p in files if p.startswith("members/")) == [x for x in lines if x.startswith("members/")]
    shards = {p.split(" ")[0]: p.split(" ")[1] for p in lines if p.startswith("allowed_signers/")}
    assert sorted(p for p in files if p.startswith("allowed_signers")) == sorted(shards)
    whole = v["allowed-signers"][0].encode("utf-8")
    assert b"".join(files[p] for p in sorted(shards)) != b"" and set(whole.splitlines()) == {
        ln for p in shards for ln in files[p].splitlines()}
    subprocess.run(["git", "init", "-q", "--bare", str(tmp_path / "r")], check=True)
    tree_in = b""
    for path, oid in shards.items():
        got = subprocess.run(["git", "hash-object", "-w", "--stdin"], input=files[path], cwd=tmp_path / "r",
                             capture_output=True, check=True).stdout.decode().strip()
        assert got == oid, path
        tree_in += b"100644 blob %s\t%s\n" % (oid.encode(), path.split("/")[1].encode())
    tree = subprocess.run(["git", "mktree"], input=tree_in, cwd=tmp_path / "r", capture_output=True,
                          check=True).stdout.decode().strip()
    want = next(x.split(" ")[1] for x in lines if x.startswith("allowed_signers "))
    assert tree == want == dirmod.signers_oid(d.members, dirmod.FANOUT, 40)
