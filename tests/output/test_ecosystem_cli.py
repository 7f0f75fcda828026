"""Issue #13 small ecosystem fixes: `git mail --help` shows a manual, `--version` everywhere, and
`gitmail hook claude install` writes a command that runs without gitmail on PATH."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import gitmail
from gitmail.cli.main import COMMANDS
from tests.conftest import Org

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GITMAIL = str(BIN / "gitmail")


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "GITMAIL_NOTICE": "never", **extra}


def test_version_is_one_number_everywhere() -> None:
    want = f"gitmail, version {gitmail.__version__}\n"
    assert metadata.version("gitmail") == gitmail.__version__
    for argv in ([GITMAIL, "--version"], [str(BIN / "git-mail"), "--version"], ["git", "mail", "--version"]):
        p = subprocess.run(argv, capture_output=True, text=True, env=_env(PATH=f"{BIN}:/usr/bin:/bin"))
        assert (p.returncode, p.stdout, p.stderr) == (0, want, ""), (argv, p)


def test_the_manual_page_names_every_command() -> None:
    page = (ROOT / "man" / "git-mail.1").read_text()
    named = set(re.findall(r"^\.B (\S+)$", page, re.M))
    assert set(COMMANDS) <= named, set(COMMANDS) - named
    assert (ROOT / "man" / "gitmail.1").read_text() == ".so man1/git-mail.1\n"


def test_git_mail_help_shows_the_manual_of_an_installed_gitmail(tmp_path: Path) -> None:
    if shutil.which("man") is None:
        import pytest

        pytest.skip("no man(1) on this system: git help cannot show any manual page")
    src = tmp_path / "src"  # a copy, so the build leaves nothing in the work tree
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "man", "hooks", "gitmail"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, symlinks=True)
        else:
            shutil.copy(ROOT / name, src / name)
    for junk in src.rglob("__pycache__"):
        shutil.rmtree(junk, ignore_errors=True)
    prefix = tmp_path / "prefix"
    # --ignore-installed: install beside, never over, the gitmail running these tests.
    p = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--ignore-installed", "--disable-pip-version-check", "--prefix", str(prefix), str(src)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert (prefix / "share" / "man" / "man1" / "git-mail.1").is_file()
    env = _env(PATH=f"{prefix / 'bin'}:/usr/bin:/bin", MANPAGER="cat", PAGER="cat", MANWIDTH="80")
    env.pop("MANPATH", None)
    for argv in (["git", "mail", "--help"], ["git", "help", "mail"]):
        p = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path)
        assert p.returncode == 0 and "No manual entry" not in p.stderr, (argv, p.stderr)
        text = re.sub(r".\x08", "", p.stdout)  # man's overstrike bold, if any
        assert "git-mail, gitmail - a mailbox that lives in git" in text and "COMMANDS" in text, text[:500]
    assert Path(sys.executable).parent.joinpath("gitmail").is_file()  # the test venv is untouched


def test_claude_hook_install_writes_an_absolute_command_that_runs_with_an_empty_path(org: Org) -> None:
    org.ok("max", "send", "alex", "hello agent", "--plain")
    org.ok("alex", "sync")
    clone = org.clones["alex"]
    p = subprocess.run([GITMAIL, "hook", "claude", "install", "--repo", str(clone), "--json"],
                       capture_output=True, text=True, env=_env())
    assert p.returncode == 0, p.stderr
    settings = json.loads((clone / ".claude" / "settings.json").read_text())
    cmd = settings["hooks"]["SessionStart"][0]["hooks"][0]["command"]
    assert cmd == f"{GITMAIL} hook claude session-start --background-sync"
    env = {k: v for k, v in _env().items() if k not in ("PATH", "VIRTUAL_ENV")}
    for path in ("", None):  # PATH empty, and PATH unset
        run_env = dict(env, PATH=path) if path is not None else env
        r = subprocess.run(["/bin/sh", "-c", cmd.replace("--background-sync", "")], cwd=clone, capture_output=True,
                           text=True, env=run_env)
        assert r.returncode == 0 and r.stderr == "", r.stderr
        ctx = json.loads(r.stdout)["hookSpecificOutput"]["additionalContext"]
        assert '"subject": "hello agent"' in ctx
    # --command overrides (shell-quoted), and a second install updates rather than adds.
    custom = str(org.root / "my tools" / "gitmail")
    p = subprocess.run([GITMAIL, "hook", "claude", "install", "--repo", str(clone), "--command", custom],
                       capture_output=True, text=True, env=_env())
    assert p.returncode == 0, p.stderr
    hooks = json.loads((clone / ".claude" / "settings.json").read_text())["hooks"]
    assert [g["hooks"][0]["command"] for g in hooks["UserPromptSubmit"]] == \
        [f"'{custom}' hook claude prompt --background-sync"]
    assert len(hooks["SessionStart"]) == 1


def test_shell_completion_still_served() -> None:
    p = subprocess.run([GITMAIL], capture_output=True, text=True,
                       env=_env(_GITMAIL_COMPLETE="bash_complete", COMP_WORDS="gitmail memb", COMP_CWORD="1"))
    assert (p.returncode, p.stdout.split()) == (0, ["plain,members"]), p
