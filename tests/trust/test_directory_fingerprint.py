"""Issue 10, hole 5: the org fingerprint (directory root commit + first admin key), printed by init and
whoami, and ``gitmail init --org URL --fingerprint FP`` refusing an org whose fingerprint differs."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gitmail.core.signing import generate_key

from tests.conftest import Org, git, run
from tests.core.forge import key_of

FP = re.compile(r"^[0-9a-f]{40}:SHA256:[A-Za-z0-9+/]{43}$")


def test_fingerprint_printed_by_init_and_whoami(tmp_path: Path) -> None:
    org = Org(tmp_path)
    r = run("init", "--name", "max", "--org", org.url, "--repo", str(tmp_path / "m"))
    assert r.code == 0
    line = [ln for ln in r.out.splitlines() if ln.startswith("Org fingerprint: ")][0]
    fp = line.split(": ", 1)[1]
    assert FP.match(fp)
    org.clones["max"] = tmp_path / "m"
    from gitmail.core.signing import fingerprint

    root = git("rev-list", "--max-parents=0", "refs/gitmail/verified/directory", cwd=tmp_path / "m").stdout.strip()
    assert fp == f"{root}:{fingerprint(key_of(org, 'max').public_key)}"
    r = run("init", "--name", "alex", "--org", org.url, "--repo", str(tmp_path / "a"), "--json")
    assert json.loads(r.out)["fingerprint"] == fp
    org.clones["alex"] = tmp_path / "a"
    assert json.loads(org.ok("alex", "whoami", "--json").out)["fingerprint"] == fp
    assert f"fingerprint:     {fp}" in org.ok("max", "whoami").out


def test_init_refuses_an_org_with_another_fingerprint(tmp_path: Path) -> None:
    org = Org(tmp_path)
    org.join("max")
    fp = json.loads(org.ok("max", "whoami", "--json").out)["fingerprint"]
    # The server's directory is replaced by another root (a rewrite on a host without the guard).
    other = Org(tmp_path / "other")
    (tmp_path / "other").mkdir()
    generate_key(tmp_path / "other-max")
    other.join("max", "--key", str(tmp_path / "other-max"))  # another admin key: another org
    git("push", "-q", "--force", org.url, "refs/gitmail/verified/directory:refs/heads/gitmail/directory",
        cwd=other.clones["max"])
    target = tmp_path / "newbie"
    r = run("init", "--name", "alex", "--org", org.url, "--repo", str(target), "--fingerprint", fp)
    assert r.code == 7 and r.err.count("\n") == 1 and "org fingerprint mismatch" in r.err, r
    assert not target.exists()  # nothing written: no clone, no config
    existing = tmp_path / "existing"
    git("init", "-q", str(existing))
    before = (existing / ".git" / "config").read_bytes()
    r = run("init", "--name", "alex", "--org", org.url, "--repo", str(existing), "--fingerprint", fp)
    assert r.code == 7 and (existing / ".git" / "config").read_bytes() == before


def test_init_with_the_right_fingerprint_joins(tmp_path: Path) -> None:
    org = Org(tmp_path)
    org.join("max")
    fp = json.loads(org.ok("max", "whoami", "--json").out)["fingerprint"]
    r = run("init", "--name", "alex", "--org", org.url, "--repo", str(tmp_path / "a"), "--fingerprint", fp)
    assert r.code == 0, r.err
    r = run("init", "--name", "eve", "--repo", str(tmp_path / "e"), "--fingerprint", fp)
    assert r.code == 2 and "--fingerprint needs --org" in r.err
