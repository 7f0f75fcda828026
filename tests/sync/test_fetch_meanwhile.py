"""The subprocess gateway's ``meanwhile``: work done while git runs (``gitmail.git.run``), and a
sync's imports done while it fetches (``gitmail.api.audit._import_while``)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gitmail import git
from gitmail.errors import GitError
from tests.sync.conftest import NetOrg, unguarded  # noqa: F401  (fixture)


def test_the_result_is_that_of_a_plain_run_and_meanwhile_runs_while_git_does(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    data = b"hello\n" * 200_000  # 1.2 MB on stdin: more than a pipe holds
    plain = git.run(["hash-object", "--stdin"], tmp_path, input=data)
    seen: list[bool] = []

    def meanwhile(ended: object) -> None:
        assert callable(ended)
        seen.append(ended())
        while not ended():
            time.sleep(0.001)
        seen.append(ended())

    got = git.run(["hash-object", "--stdin"], tmp_path, input=data, meanwhile=meanwhile)
    assert (got.returncode, got.stdout, got.stderr) == (plain.returncode, plain.stdout, plain.stderr)
    assert got.stdout.strip() == subprocess.run(["git", "hash-object", "--stdin"], input=data, cwd=tmp_path,
                                                capture_output=True).stdout.strip()
    assert seen[-1] is True and len(seen) == 2


def test_a_failing_git_is_the_same_error_with_meanwhile(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    with pytest.raises(GitError) as plain:
        git.run(["cat-file", "-p", "0" * 40], tmp_path)
    with pytest.raises(GitError) as got:
        git.run(["cat-file", "-p", "0" * 40], tmp_path, meanwhile=lambda ended: None)
    assert (got.value.returncode, got.value.stderr) == (plain.value.returncode, plain.value.stderr)
    assert b"0000000000" in got.value.stderr
    # check=False hands back the failed process, as without meanwhile
    p = git.run(["cat-file", "-p", "0" * 40], tmp_path, check=False, meanwhile=lambda ended: None)
    assert p.returncode == plain.value.returncode and p.stderr == plain.value.stderr


def test_when_the_work_meanwhile_fails_git_is_killed_not_waited_for(tmp_path: Path) -> None:
    """git fetches from a server that takes the connection and never answers (git would wait
    for ever): the error raised meanwhile comes out at once, and no git is left running."""
    import socket

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    before = _gits(tmp_path)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        url = f"git://127.0.0.1:{server.getsockname()[1]}/org.git"

        def boom(ended: object) -> None:
            server.accept()  # git has connected and waits for the server's answer
            raise RuntimeError("the work done meanwhile failed")

        t = time.monotonic()
        with pytest.raises(RuntimeError, match="meanwhile failed"):
            git.run(["fetch", "-q", url], tmp_path, meanwhile=boom)
        assert time.monotonic() - t < 10
    assert _gits(tmp_path) == before


def _gits(cwd: Path) -> set[int]:
    """Pids of git processes whose working directory is ``cwd``."""
    out = set()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if (d / "comm").read_text().strip() == "git" and (d / "cwd").resolve() == cwd.resolve():
                out.add(int(d.name))
        except OSError:
            pass
    return out


def test_a_sync_that_brings_mail_imports_while_git_fetches_what_it_needs_after(unguarded: NetOrg) -> None:  # noqa: F811
    """The sync hands its imports to the fetch (called while git has not ended), and they are
    what the ingest of new mail needs: with the imports left out meanwhile, the sync still
    imports every one of them (a name a sync would not need would cost a quiet sync). The
    mailbox is checked on the worker pool, as one of :data:`PARALLEL_MIN` new messages is."""
    from gitmail.api import audit

    o = unguarded
    o.ok("alex", "send", "max", "one for max")
    o.ok("alex", "send", "max", "two for max")
    code = ("import json, sys\n"
            "from gitmail.api import audit\n"
            "calls = []\n"
            "audit._import_while = lambda ended: calls.append(ended())\n"
            "from gitmail.core import store\n"
            "store.PARALLEL_MIN = 1\n"
            "from gitmail.cli.main import main\n"
            f"assert main(['sync', '-q', '--repo', {str(o.clones['max'])!r}]) == 0\n"
            "print(json.dumps([calls, [m for m in audit._AFTER_FETCH if m in sys.modules]]))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    calls, loaded = json.loads(p.stdout.splitlines()[-1])
    assert calls == [False], p.stdout  # called once, while git was fetching
    assert sorted(loaded) == sorted(audit._AFTER_FETCH)
    assert "one for max" in o.ok("max", "list").out


def test_the_imports_stop_once_git_has_ended() -> None:
    from gitmail.api import audit

    asked: list[int] = []

    def ended() -> bool:
        asked.append(1)
        return len(asked) > 2  # git ends after two imports

    audit._import_while(ended)
    assert len(asked) == 3  # asked before each import, and no import after the answer changed
