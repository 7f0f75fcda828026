"""Fixtures: an isolated environment, a local org repo and member clones.

Everything is real: ``git`` repositories on disk, the real CLI entry point.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, TypeVar

import pytest

from gitmail.cli.main import main

# The console script's warm server (gitmail.cli.launch) is off for the suite: every test runs
# the CLI as it always did and leaves no server behind. tests/cli/test_warm.py turns it on.
os.environ["GITMAIL_WARM"] = "off"

T = TypeVar("T")


def read_terminal(master: int) -> bytes:
    """Everything written to the pseudo-terminal whose master side is ``master``, until the
    process on it closes it (Linux then says EIO, not end of file)."""
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    return out


def wait_for(what: Callable[[], Optional[T]], timeout: float = 30.0) -> T:
    """Poll ``what`` every 50 ms until it returns something true; that value (an assertion
    error after ``timeout`` seconds). For processes the tests start in the background."""
    deadline = time.monotonic() + timeout
    while True:
        got = what()
        if got or time.monotonic() > deadline:
            assert got, f"timed out waiting for {what}"
            return got
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HOME and GITMAIL_HOME; no user or repo defaults leak in."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GITMAIL_HOME", str(home / "gitmail"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GITMAIL_NOTICE", "never")
    monkeypatch.setenv("GITMAIL_WARM", "off")
    for var in ("GITMAIL_USER", "GITMAIL_REPO", "GITMAIL_REMOTE", "GITMAIL_PASSPHRASE", "XDG_DATA_HOME",
                "GITMAIL_DEBUG", "SSH_AUTH_SOCK", "GITMAIL_UTC"):
        monkeypatch.delenv(var, raising=False)
    return home


@dataclass
class Result:
    code: int
    out: str
    err: str


def run(*args: str, stdin: str = "") -> Result:
    """Run the CLI in-process (the same ``main`` the console script calls)."""
    out, err = io.StringIO(), io.StringIO()
    import sys

    old_in = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        sys.stdin = old_in
    return Result(code, out.getvalue(), err.getvalue())


def heavy_imports(*argv: str) -> tuple[bool, bool]:
    """Run the CLI with ``argv`` in a new interpreter (it must exit 0); whether it loaded
    ``(pygit2, pydantic)``: what a quiet command must not pay for. A sync's imports made while
    git fetches (``gitmail.api.audit._import_while``: they cost no wait, and stop when git
    ends) are left out, so what is seen is what the command's own work needed."""
    import sys

    code = ("import sys\n"
            "from gitmail.api import audit\n"
            "audit._AFTER_FETCH = ()\n"
            "from gitmail.cli.main import main\n"
            f"assert main({list(argv)!r}) == 0\n"
            "print('pygit2' in sys.modules, 'pydantic' in sys.modules)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    pygit2, pydantic = p.stdout.split()
    return pygit2 == "True", pydantic == "True"


def recorded(monkeypatch: pytest.MonkeyPatch, owner: object, name: str,
             key: Callable[..., object] = lambda *a, **kw: a) -> list[object]:
    """Wrap ``owner.name`` (a module's function) so that each call still runs and appends
    ``key(*args, **kwargs)`` to the returned list: what a test counts (checks made, trees
    parsed, fingerprints computed) without changing what happens."""
    seen: list[object] = []
    real = getattr(owner, name)

    def wrapper(*a: object, **kw: object) -> object:
        seen.append(key(*a, **kw))
        return real(*a, **kw)

    monkeypatch.setattr(owner, name, wrapper)
    return seen


def git(*args: str, cwd: Path | str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=check)


def write_literal(repo: Path | str, kind: str, raw: bytes) -> str:
    """The id of ``raw``, an object of type ``kind`` written into ``repo`` byte for byte as an
    attacker would (``git hash-object --literally``: git checks nothing of its content)."""
    return subprocess.run(["git", "hash-object", "-t", kind, "-w", "--literally", "--stdin"], cwd=repo, input=raw,
                          capture_output=True, check=True).stdout.strip().decode()


class Org:
    """A local bare org repo and one clone per member, as real people would have."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root / "org.git")
        self.clones: dict[str, Path] = {}

    def join(self, name: str, *extra: str) -> Path:
        clone = self.root / f"clone-{len(self.clones)}"
        r = run("init", "--name", name, "--org", self.url, "--repo", str(clone), *extra)
        assert r.code == 0, r.err
        self.clones[name] = clone
        return clone

    def as_(self, name: str, *args: str, stdin: str = "") -> Result:
        """Run a command in ``name``'s clone."""
        return run(*args, "--repo", str(self.clones[name]), stdin=stdin)

    def ok(self, name: str, *args: str, stdin: str = "") -> Result:
        r = self.as_(name, *args, stdin=stdin)
        assert r.code == 0, f"{args}: exit {r.code}: {r.err}"
        return r


@pytest.fixture
def org(tmp_path: Path) -> Org:
    """An org with members max (admin) and alex, each in their own clone."""
    o = Org(tmp_path)
    o.join("max")
    o.join("alex")
    o.ok("max", "sync")
    return o


@contextlib.contextmanager
def chdir(p: Path) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(p)
    try:
        yield
    finally:
        os.chdir(old)


def clone_with_remote(tmp_path: Path, remote_url: str) -> Path:
    """A new repository ``tmp_path/clone`` whose gitmail remote ``origin`` is ``remote_url`` (nothing fetched)."""
    r = tmp_path / "clone"
    git("init", "-q", str(r))
    git("remote", "add", "origin", remote_url, cwd=r)
    git("config", "gitmail.remote", "origin", cwd=r)
    return r
