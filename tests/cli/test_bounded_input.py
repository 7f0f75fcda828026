"""What a user hands gitmail is read bounded (gitmail/cli/inputs.py): ``send alex - < /dev/zero``,
``send --batch /dev/zero`` and ``key rotate --key /dev/zero`` read until the kernel killed
gitmail (350 MB a second). Each now ends at once with one line and its exit status, having
written nothing. Real processes and devices; peak memory measured by the kernel."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from gitmail.cli.inputs import MAX_BATCH, MAX_MESSAGE
from gitmail.core.signing import MAX_KEY_FILE
from tests.conftest import Org, git

GITMAIL = str(Path(sys.executable).parent / "gitmail")
PEAK_MB = 400  # MAX_BATCH (256 MiB) read once, plus the interpreter: far below what /dev/zero took


def _gitmail(*args: str, stdin: "int | None" = None) -> "tuple[subprocess.CompletedProcess[bytes], float]":
    """Run the console script; its result and the peak memory (MB) of the largest child so far."""
    p = subprocess.run([GITMAIL, *args], stdin=stdin, capture_output=True, timeout=120,
                       env={**os.environ, "GITMAIL_NOTICE": "never"})
    return p, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def test_endless_input_is_refused_at_its_bound_and_nothing_is_written(org: Org) -> None:
    max_ = str(org.clones["max"])
    before = git("for-each-ref", cwd=max_).stdout
    with open("/dev/zero", "rb") as zero:
        p, peak = _gitmail("send", "alex", "-", "--repo", max_, stdin=zero.fileno())
    assert p.returncode == 2 and p.stderr == f"gitmail: the message on standard input is over {MAX_MESSAGE} bytes\n".encode(), p
    p, peak = _gitmail("send", "--batch", "/dev/zero", "--repo", max_)
    assert p.returncode == 2 and p.stderr == f"gitmail: the batch is over {MAX_BATCH} bytes\n".encode(), p
    p, peak = _gitmail("key", "rotate", "--key", "/dev/zero", "--repo", max_)
    assert p.returncode == 5 and f"is over {MAX_KEY_FILE} bytes" in p.stderr.decode(), p
    assert peak < PEAK_MB, f"{peak:.0f} MB"
    assert git("for-each-ref", cwd=max_).stdout == before


def test_a_message_on_stdin_that_is_not_utf8_is_refused(org: Org) -> None:
    p = subprocess.run([GITMAIL, "send", "alex", "-", "--repo", str(org.clones["max"])], input=b"caf\xe9\n",
                       capture_output=True, timeout=60, env={**os.environ, "GITMAIL_NOTICE": "never"})
    assert p.returncode == 2 and p.stderr == b"gitmail: the message on standard input is not UTF-8 (byte 3)\n", p
    ok = subprocess.run([GITMAIL, "send", "alex", "-", "--repo", str(org.clones["max"]), "--json"],
                        input="café\n".encode(), capture_output=True, timeout=60,
                        env={**os.environ, "GITMAIL_NOTICE": "never"})
    assert ok.returncode == 0, ok
    org.ok("alex", "sync")
    assert json.loads(org.ok("alex", "list", "--json").out)["messages"][0]["subject"] == "café"
