"""What one ``gitmail send`` loads (issue 15): start-up is most of a send's cost, so the CLI
loads neither the library modules a send does not use nor pydantic's plugin discovery."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import Org

SKIPPED = ("importlib.metadata", "gitmail.api.setup", "gitmail.api.protocol", "gitmail.api.audit")


def test_a_cli_send_loads_neither_plugin_discovery_nor_unused_library_modules(org: Org) -> None:
    code = ("import sys\n"
            "from gitmail.cli.main import main\n"
            f"code = main(['send', 'alex', 'hello', '--quiet', '--repo', {str(org.clones['max'])!r}])\n"
            f"print(code, *[m in sys.modules for m in {SKIPPED!r}])\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert p.stdout.split() == ["0"] + ["False"] * len(SKIPPED), p.stdout + p.stderr
    org.ok("alex", "sync")
    assert "hello" in org.ok("alex", "list").out


def test_the_stand_in_for_pydantics_plugin_loader_gives_way_to_the_real_one() -> None:
    code = ("import sys\n"
            "from gitmail.cli.main import _skip_pydantic_plugins\n"
            "_skip_pydantic_plugins()\n"
            "from gitmail.core.model import Member\n"
            "Member(name='max', email='m@x', signing_key='ssh-ed25519 AAAA')\n"
            "before = 'importlib.metadata' in sys.modules\n"
            "import pydantic.plugin\n"
            "from pydantic.plugin import _loader\n"
            "print(before, _loader.PYDANTIC_ENTRY_POINT_GROUP, 'importlib.metadata' in sys.modules)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.stdout.split() == ["False", "pydantic", "True"], p.stdout + p.stderr


def test_lazy_library_names_resolve_to_the_functions() -> None:
    code = ("from gitmail import api\n"
            "import gitmail.api.audit, gitmail.api.setup\n"
            "print(api.sync.__module__, api.init.__module__, api.respond.__module__, gitmail.api.audit.sync is api.sync)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.stdout.split() == ["gitmail.api.audit", "gitmail.api.setup", "gitmail.api.protocol", "True"], \
        p.stdout + p.stderr


def test_a_delivered_send_pushes_once_and_lists_no_refs_through_git(org: Org, tmp_path: Path) -> None:
    """Optimistic delivery: no fetch before the push; the outbox is listed in-process (pygit2 is
    loaded by then) and nothing is listed again to record reasons when nothing is queued."""
    trace = tmp_path / "trace"
    gitmail = str(Path(sys.executable).parent / "gitmail")
    subprocess.run([gitmail, "send", "alex", "one push", "--quiet", "--repo", str(org.clones["max"])],
                   env={**os.environ, "GIT_TRACE2_PERF": str(trace)}, check=True, capture_output=True)
    client = [" ".join(line.rsplit("|", 1)[-1].split()[1:2]) for line in trace.read_text().splitlines()
              if "| start " in line and "| d0 |" in line]
    assert client.count("push") == 1 and "fetch" not in client and "for-each-ref" not in client, client
