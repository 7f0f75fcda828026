"""Differential: the shell notice (hooks/notice.sh, vis()) and the Python sanitiser show a
subject alike, for every string of one hostile corpus (issue #10 hole 11).

Real repos: max sends each subject to alex; alex fetches, and the installed post-merge hook
runs with no Python in reach, so what it prints is the shell notice's own work.
"""

from __future__ import annotations

import os
import random
import re
from types import SimpleNamespace
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
        row = SimpleNamespace(subject=s, sender="max", id="ab" * 32, date="", encrypted=False)
        py = hooks_mod._describe(row, 1, ["max"], decrypt=False)  # type: ignore[arg-type]
        assert py.split(": \"", 1)[1].rsplit('"  Run', 1)[0] == expected, py


def _awk_vis() -> str:
    """hooks/notice.sh's own ord table and vis() function, as one awk program over lines."""
    text = (Path(__file__).resolve().parents[2] / "hooks" / "notice.sh").read_text()
    table = re.search(r"for \(i = 1; i < 256; i\+\+\) ord\[sprintf\(\"%c\", i\)\] = i", text)
    func = re.search(r"    function vis\(.*?\n      return out s\n    }\n", text, re.S)
    assert table and func, "notice.sh no longer has its ord table and vis()"
    return f"BEGIN {{ {table.group()} }}\n{func.group()}\n{{ print vis($0) }}\n"


def test_shell_vis_and_python_clean_agree_on_every_invisible_character() -> None:
    """Differential, exhaustive: every Default_Ignorable_Code_Point (the ``regex`` package's
    Unicode data, which clean() uses), alone and between letters, gets the same visible form
    from the shell notice's vis() as from clean(); the joiners and variation selectors stay."""
    import regex

    di = regex.compile(r"\p{Default_Ignorable_Code_Point}")
    chars = [chr(c) for c in range(0x80, 0x110000) if not 0xD800 <= c <= 0xDFFF and di.match(chr(c))]
    assert len(chars) > 4000  # the tag and variation-selector blocks are in it
    cases = [f"a{ch}b" for ch in chars]
    _shell_agrees(cases)
    kept = {ch for ch, case in zip(chars, cases) if clean(case) == case}
    assert kept == {"\u200c", "\u200d", *map(chr, range(0xFE00, 0xFE10)), *map(chr, range(0xE0100, 0xE01F0))}


def test_shell_vis_and_python_clean_agree_on_random_text() -> None:
    """Differential, many cases in one awk run: random strings over the hostile alphabet."""
    rng = random.Random(1011)
    alphabet = ([chr(c) for c in range(1, 0x20) if c != 0x0A] + ["\x7f"] + [chr(c) for c in range(0x80, 0xA0)]
                + list("\u061c\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
                + list("ab\\ é日✓\u200b\u200d\u2027\u202f\u2065\u206a\u061b\u061d\ufeff\u00ad\u034f\u3164\ufe0f")
                + ["\U0001f4ec", "\U000e0041", "\U000e0100", "\U000e01f0"])
    _shell_agrees(["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24))) for _ in range(3000)])


def _shell_agrees(cases: list[str]) -> None:
    """Each of ``cases`` (one line each) through the shell notice's vis() in one awk run: the
    same as clean() gives."""
    p = subprocess.run(["awk", _awk_vis()], input="\n".join(cases).encode() + b"\n", capture_output=True,
                       env={**os.environ, "LC_ALL": "C"}, timeout=120)
    assert p.returncode == 0, p.stderr
    got = p.stdout.decode("utf-8").split("\n")[:-1]
    assert len(got) == len(cases)
    for case, shell in zip(cases, got):
        assert shell == clean(case), (case, shell, clean(case))
