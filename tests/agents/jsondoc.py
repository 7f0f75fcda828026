"""Real ``--json`` examples of every command, for docs/json.md and its test.

``python -m tests.agents.jsondoc`` regenerates the examples section of
docs/json.md by running a scenario in a temporary org; tests/agents/test_json_docs.py runs the
same scenario and checks that every field the document shows still exists.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from gitmail.cli.main import main

EXAMPLE_ROOT = "/home/you/work"


@dataclass
class Example:
    title: str
    argv: list[str]  # as documented (without --repo)
    output: Any  # parsed JSON (or None when the command printed nothing)
    note: str = ""


def _run(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


@contextlib.contextmanager
def _isolated(root: Path) -> Iterator[None]:
    saved = dict(os.environ)
    home = root / "home"
    home.mkdir()
    os.environ.update({"HOME": str(home), "GITMAIL_HOME": str(home / "gitmail"), "GIT_CONFIG_NOSYSTEM": "1",
                       "GITMAIL_NOTICE": "never"})
    for v in ("GITMAIL_USER", "GITMAIL_REPO", "GITMAIL_REMOTE", "XDG_DATA_HOME", "GITMAIL_DEBUG"):
        os.environ.pop(v, None)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class Scenario:
    """A small org (max admin, alex, bob) in which each command runs once with --json."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.org = str(root / "org.git")
        self.examples: list[Example] = []

    def clone(self, who: str) -> str:
        return str(self.root / who)

    def cmd(self, who: str, title: str, *args: str, note: str = "", json_flag: bool = True,
            required: bool = True) -> Any:
        argv = [*args, "--json"] if json_flag else list(args)
        code, out, err = _run([*argv, "--repo", self.clone(who)])
        if code != 0:
            if required:
                raise AssertionError(f"{argv}: exit {code}: {err}")
            return None
        data = json.loads(out) if out.strip() else None
        shown = [a if not a.startswith(str(self.root)) else a.replace(str(self.root), EXAMPLE_ROOT) for a in argv]
        self.examples.append(Example(title, ["gitmail", *shown], _scrub(data, str(self.root)), note))
        return data

    def run(self) -> list[Example]:
        for who in ("max", "bob"):
            _run(["init", "--name", who, "--org", self.org, "--repo", self.clone(who)])
        self.cmd("alex", "init", "init", "--name", "alex", "--org", self.org)
        self.cmd("max", "group create", "group", "create", "backend", "alex", "bob")
        self.cmd("max", "group add", "group", "add", "backend", "max")
        self.cmd("max", "group remove", "group", "remove", "backend", "max")
        self.cmd("max", "group list", "group", "list")
        _run(["group", "create", "tmp", "bob", "--repo", self.clone("max")])
        self.cmd("max", "group delete", "group", "delete", "tmp")
        m = self.cmd("max", "send", "send", "alex", "Domain research is done. Pick your top 3?",
                     "--subject", "Domain research", "--require-ack")
        q = self.cmd("max", "send (protocol message)", "send", "alex", "Which database?", "--type", "question",
                     "--payload", '{"question": "Postgres or SQLite?"}')
        (self.root / "domains.csv").write_text("name,score\nexample.dev,9\n")
        att = self.cmd("max", "send (with an attachment)", "send", "alex", "CSV attached",
                       "--attach", str(self.root / "domains.csv"), required=False)
        self.cmd("max", "list --awaiting-ack", "list", "--awaiting-ack")
        self.cmd("alex", "sync", "sync")
        self.cmd("alex", "list", "list")
        self.cmd("alex", "read", "read", m["short_id"])
        if att:
            self.cmd("alex", "attachments", "attachments", att["short_id"], "--save-dir",
                     str(self.root / "saved"), required=False)
        self.cmd("alex", "mark", "mark", m["short_id"], "--unread")
        r = self.cmd("alex", "reply", "reply", m["short_id"], "example.dev, example.io, example.ai")
        self.cmd("alex", "respond", "respond", q["short_id"], "--answer", "SQLite")
        self.cmd("alex", "ack", "ack", m["short_id"])
        self.cmd("alex", "archive", "archive", m["short_id"])
        self.cmd("alex", "thread", "thread", r["short_id"])
        self.cmd("alex", "list --sent", "list", "--sent")
        self.cmd("alex", "search", "search", "database")
        self.cmd("alex", "export", "export", "--mbox", str(self.root / "alex.mbox"))
        self.cmd("alex", "members", "members")
        self.cmd("alex", "whoami", "whoami")
        self.cmd("alex", "verify", "verify")
        self.cmd("alex", "log", "log", "--limit", "2")
        self.cmd("alex", "show", "show", "refs/remotes/origin/gitmail/mail/alex/max")
        self.cmd("alex", "org", "org")
        self.cmd("alex", "key rotate", "key", "rotate")
        self.cmd("max", "sync (after replies)", "sync")
        self.cmd("max", "hook claude session-start", "hook", "claude", "session-start", json_flag=False,
                 note="The JSON Claude Code's SessionStart hook takes; nothing at all when nothing is unread.")
        _run(["send", "max", "one more thing", "--repo", self.clone("alex")])
        _run(["sync", "--repo", self.clone("max")])
        self.cmd("max", "hook claude prompt", "hook", "claude", "prompt", json_flag=False,
                 note="UserPromptSubmit: only messages not reported before; nothing at all when none.")
        self.cmd("alex", "hook claude install", "hook", "claude", "install")
        self.cmd("alex", "hooks install", "hooks", "install", required=False)
        self._outbox()
        return self.examples

    def _outbox(self) -> None:
        """A message queued while the org remote is unreachable, one dropped; then delivered."""
        import subprocess

        url = subprocess.run(["git", "remote", "get-url", "origin"], cwd=self.clone("alex"), capture_output=True,
                             text=True, check=True).stdout.strip()
        gone = str(self.root / "unreachable.git")
        subprocess.run(["git", "remote", "set-url", "origin", gone], cwd=self.clone("alex"), check=True)
        self.cmd("alex", "send (queued)", "send", "max", "Written offline")
        d = self.cmd("alex", "send (queued, to drop)", "send", "max", "Never mind", required=False)
        self.cmd("alex", "outbox", "outbox")
        if d:
            self.cmd("alex", "outbox drop", "outbox", "drop", d["short_id"], "--yes")
        self.cmd("alex", "outbox --undelivered", "outbox", "--undelivered")
        subprocess.run(["git", "remote", "set-url", "origin", url], cwd=self.clone("alex"), check=True)
        self.cmd("alex", "outbox retry", "outbox", "retry")


def _scrub(obj: Any, root: str) -> Any:
    """Replace the temporary directory in every string with a stable example path."""
    if isinstance(obj, str):
        return obj.replace(root, EXAMPLE_ROOT)
    if isinstance(obj, list):
        return [_scrub(x, root) for x in obj]
    if isinstance(obj, dict):
        return {k: _scrub(v, root) for k, v in obj.items()}
    return obj


def collect(tmp: Optional[Path] = None) -> list[Example]:
    """Run the scenario (in ``tmp`` or a new temporary directory) and return its examples."""
    if tmp is not None:
        with _isolated(tmp):
            return Scenario(tmp).run()
    with tempfile.TemporaryDirectory(prefix="gitmail-jsondoc-") as t:
        root = Path(t).resolve()
        with _isolated(root):
            return Scenario(root).run()


def key_paths(obj: Any, prefix: str = "") -> set[str]:
    """Every field path in ``obj`` (``a.b``, ``list[].field``)."""
    out: set[str] = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = f"{prefix}.{k}" if prefix else k
            out.add(p)
            if k not in ("payload", "refused", "hooks", "queued_in"):  # free-form objects
                out |= key_paths(v, p)
    elif isinstance(obj, list):
        for item in obj:
            out |= key_paths(item, prefix + "[]")
    return out


def _trim(obj: Any) -> Any:
    """Lists of objects cut to two items so the document stays readable."""
    if isinstance(obj, list):
        items = obj[:2] if obj and isinstance(obj[0], dict) else obj
        return [_trim(x) for x in items]
    if isinstance(obj, dict):
        return {k: _trim(v) for k, v in obj.items()}
    return obj


def render(examples: list[Example]) -> str:
    """The examples section of docs/json.md."""
    parts = []
    for ex in examples:
        parts.append(f"### `{ex.title}`\n")
        if ex.note:
            parts.append(ex.note + "\n")
        parts.append("```console\n$ " + " ".join(_shell(a) for a in ex.argv) + "\n```\n")
        body = json.dumps(_trim(ex.output), indent=2, ensure_ascii=False) if ex.output is not None else "(nothing)"
        parts.append("```json\n" + body + "\n```\n")
    return "\n".join(parts)


def _shell(a: str) -> str:
    import shlex

    return shlex.quote(a)


MARKER = "<!-- examples below are generated: python -m tests.agents.jsondoc -->"


def regenerate(doc: Path) -> None:
    """Rewrite everything after :data:`MARKER` in ``doc`` with fresh examples."""
    text = doc.read_text()
    head = text.split(MARKER)[0].rstrip("\n")
    doc.write_text(head + "\n\n" + MARKER + "\n\n" + render(collect()))


if __name__ == "__main__":
    regenerate(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/json.md"))
