"""Differential: the shell notice (hooks/notice.sh, vis()) and the Python sanitiser show a
subject alike, for every string of one hostile corpus (issue #10 hole 11).

Real repos: max sends each subject to alex; alex fetches, and the installed post-merge hook
runs with no Python in reach, so what it prints is the shell notice's own work.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gitmail import hooks as hooks_mod
from gitmail.api.views import clean, flat
from tests.conftest import Org, git
from tests.output.corpus import HOSTILE, UNSAFE


def _shell_only(org: Org) -> Path:
    clone = org.clones["alex"]
    org.ok("alex", "hooks", "install")
    org.ok("alex", "list")  # writes .git/gitmail/inbox-refs: the shell notice can speak
    hook = clone / ".git" / "hooks" / "post-merge"
    hook.write_text(hook.read_text().replace(sys.executable, "/nonexistent/python3"))
    return hook


def _subject_of(line: str) -> str:
    head = '📬 1 new message from max (just now): "'
    assert line.startswith(head), repr(line)
    return line[len(head):].rsplit('"  Run: gitmail read ', 1)[0]


@pytest.mark.parametrize("encoding", ["C.UTF-8", "C"])
def test_shell_notice_and_python_show_each_subject_alike(org: Org, encoding: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LC_ALL", encoding)  # the user's locale must not change what awk matches
    hook = _shell_only(org)
    clone = org.clones["alex"]
    for s in HOSTILE:
        org.ok("max", "send", "alex", "body", "--subject", s, "--plain")
        git("fetch", "-q", "origin", cwd=clone)
        p = subprocess.run([str(hook), "0"], cwd=clone, capture_output=True, text=True, errors="surrogateescape")
        assert p.returncode == 0, p.stderr
        assert not UNSAFE.search(p.stdout), (s, p.stdout)
        shell = _subject_of(p.stdout.strip())
        expected = clean(flat(s))  # the commit's subject line is the flattened subject
        assert shell == expected, (s, shell, expected)
        row = {"subject": s, "sender": "max", "id": "ab" * 32, "date": "", "encrypted": 0}
        py = hooks_mod._describe([row], decrypt=False)
        assert py.split(": \"", 1)[1].rsplit('"  Run', 1)[0] == expected, py
