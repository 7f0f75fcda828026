"""gitmail guard install checks that the repo's owner can run the hook it wrote (issue 13)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gitmail import guard
from tests.conftest import run


def _bare(tmp_path: Path) -> Path:
    bare = tmp_path / "org.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(bare)], check=True)
    return bare


def test_install_by_the_owner_runs_clean(tmp_path: Path) -> None:
    bare = _bare(tmp_path)
    r = run("guard", "install", str(bare), "--json")
    assert r.code == 0 and json.loads(r.out)["warning"] is None and "warning" not in r.err
    assert guard.check_runnable(bare) is None


def test_an_interpreter_the_owner_cannot_run_is_reported(tmp_path: Path) -> None:
    """A private copy of the interpreter: its owner can run it, the repo's owner cannot."""
    bare = _bare(tmp_path)
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    exe = private / "python"
    exe.symlink_to(Path(sys.executable).resolve())
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        shutil.chown(bare, nobody.pw_uid, nobody.pw_gid)
        for p in bare.rglob("*"):
            os.lchown(p, nobody.pw_uid, nobody.pw_gid)
        why = guard.check_runnable(bare, python=str(exe))
        assert why is not None and f"uid {nobody.pw_uid}" in why and "cannot run" in why
    else:
        os.chmod(private, 0o700)
        assert guard.check_runnable(bare, python=str(exe)) is None  # our own repo, our own folder


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the repo to another user")
def test_cli_warns_when_the_owner_cannot_run_it(tmp_path: Path) -> None:
    bare = _bare(tmp_path)
    nobody = pwd.getpwnam("nobody")
    for p in [bare, *bare.rglob("*")]:
        os.lchown(p, nobody.pw_uid, nobody.pw_gid)
    # Ground truth from another tool: can nobody import the guard with this interpreter?
    probe = subprocess.run(["runuser", "-u", "nobody", "--", sys.executable, "-c",
                            "import sys; del sys.path[0]; import gitmail.guard"], capture_output=True, cwd="/")
    r = run("guard", "install", str(bare))
    assert r.code == 0 and (bare / "hooks" / "pre-receive").exists()
    assert ("gitmail: warning: the repo's owner" in r.err) == (probe.returncode != 0), (probe.stderr, r.err)
