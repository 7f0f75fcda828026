"""Keys held by ssh-agent, and the `git mail` entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Org, git


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A real ssh-agent on a private socket, stopped afterwards."""
    sock = tmp_path / "agent.sock"
    out = subprocess.run(["ssh-agent", "-s", "-a", str(sock)], capture_output=True, text=True, check=True).stdout
    pid = next(part.split("=")[1] for part in out.replace(";", "\n").splitlines() if part.startswith("SSH_AGENT_PID="))
    monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
    yield sock
    subprocess.run(["kill", pid], check=False)


def test_signing_through_ssh_agent(org: Org, tmp_path: Path, agent: Path) -> None:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    subprocess.run(["ssh-add", "-q", str(key)], check=True, env=dict(os.environ, SSH_AUTH_SOCK=str(agent)))
    key.unlink()  # from now on only the agent holds the private key
    org.join("agented", "--key", f"{key}.pub")
    r = org.ok("agented", "send", "alex", "signed by the agent", "--json")
    assert json.loads(r.out)["encrypted"] is False  # an agent-held key cannot decrypt, so none is published
    org.ok("alex", "sync")
    got = json.loads(org.ok("alex", "list", "--json").out)["messages"]
    assert got[0]["from"] == "agented" and got[0]["verified"] is True
    v = git("verify-commit", "origin/gitmail/mail/alex/agented", cwd=org.clones["alex"])
    assert 'Good "git" signature for agented' in v.stderr


def test_agent_without_the_key(org: Org, tmp_path: Path, agent: Path) -> None:
    key = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    from tests.conftest import run

    r = run("init", "--name", "nokey", "--key", f"{key}.pub", "--repo", str(org.clones["max"]))
    assert r.code == 5 and r.err == f"gitmail: ssh-agent does not hold the key {key}.pub\n"


def test_git_mail_subcommand(org: Org) -> None:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    p = subprocess.run(["git", "mail", "whoami", "--json"], cwd=org.clones["alex"], capture_output=True, text=True,
                       env=env)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["name"] == "alex"
