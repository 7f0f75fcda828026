#!/usr/bin/env python3
"""The cost of one send, side by side with a plain file-append mailbox (issue 15).

Run:  .venv/bin/python bench/bench_send.py [--quick]

Baseline: bench/baseline_mailbox.py, a stdlib-only CLI that appends a JSON line
to a per-recipient file under ``flock`` (what the simplest agent mailboxes do).
gitmail: the real CLI (``gitmail send``), every message signed, encrypted
(the org default) and pushed; with a ``git daemon`` org the guard checks
every push.

For each of (1) one send at a time and (2) 8 processes x M sends to one
recipient, it prints wall time and CPU per message: the client's (the
processes this script starts and waits for) and the server's (``git daemon``
and what it forks, which it reaps, plus the warm guard daemon's own CPU from
/proc), and the ratios against the baseline measured in the same run.
Targets (issue 15): CPU per message at most 2x the baseline on a file-path
org and at most 3x through ``git daemon`` with the guard; one interactive
send at most 2x the baseline's wall time on a file-path org.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from dataclasses import dataclass

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.sync.daemon import GitDaemon  # noqa: E402

PY = sys.executable
GITMAIL = str(Path(PY).parent / "gitmail")
BASELINE = str(ROOT / "bench" / "baseline_mailbox.py")


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a live process has used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_all(cmds: list[list[str]], procs: int, env: dict[str, str]) -> float:
    """Run ``cmds`` (each a whole process), ``procs`` at a time; the wall time."""
    t = time.perf_counter()

    def one(cmd: list[str]) -> None:
        r = subprocess.run(cmd, env=env, capture_output=True)
        if r.returncode != 0:
            raise SystemExit(f"{cmd[:3]} failed: {r.stderr.decode(errors='replace')}")

    with ThreadPoolExecutor(procs) as pool:
        list(pool.map(one, cmds))
    return time.perf_counter() - t


@dataclass
class Run:
    label: str
    n: int
    wall: float  # seconds, whole run
    client: float  # CPU seconds per message, processes this script waited for
    server: float = 0.0  # CPU seconds per message, git daemon + guard

    @property
    def cpu(self) -> float:
        return self.client + self.server

    @property
    def wall_per(self) -> float:
        return self.wall / self.n


def measure(label: str, cmds: list[list[str]], procs: int, env: dict[str, str]) -> Run:
    c0 = children_cpu()
    wall = run_all(cmds, procs, env)
    return Run(label, len(cmds), wall, (children_cpu() - c0) / len(cmds))


def setup_org(root: Path, url: str, names: list[str], env: dict[str, str]) -> dict[str, Path]:
    clones = {}
    for n in names:
        clone = root / f"clone-{n}"
        subprocess.run([GITMAIL, "init", "--name", n, "--org", url, "--repo", str(clone)], env=env, check=True,
                       capture_output=True)
        clones[n] = clone
    for c in clones.values():
        subprocess.run([GITMAIL, "sync", "--repo", str(c)], env=env, check=True, capture_output=True)
    return clones


def gitmail_cmds(clones: dict[str, Path], senders: list[str], per: int) -> list[list[str]]:
    # Interleaved so the 8 workers each hold a different sender (one process per send).
    return [[GITMAIL, "send", "boss", f"{s} message {i}", "--repo", str(clones[s]), "--quiet"]
            for i in range(per) for s in senders]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer messages (a smoke run)")
    a = ap.parse_args()
    seq, procs, per = (10, 8, 5) if a.quick else (30, 8, 100)
    senders = [f"agent{i}" for i in range(procs)]
    rows: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="gitmail-bench-send-") as tmp:
        root = Path(tmp)
        home = root / "home"
        home.mkdir()
        env = {**os.environ, "HOME": str(home), "GITMAIL_HOME": str(home / "gitmail"), "GIT_CONFIG_NOSYSTEM": "1",
               "GITMAIL_NOTICE": "never", "XDG_RUNTIME_DIR": str(root / "run")}
        (root / "run").mkdir(mode=0o700)
        for k in ("GITMAIL_USER", "GITMAIL_REPO", "GITMAIL_REMOTE"):
            env.pop(k, None)
        box = root / "baseline"
        box.mkdir()
        base_seq = measure("baseline, one at a time", [[PY, BASELINE, str(box), "send", "agent0", "boss", f"m{i}"]
                                                        for i in range(seq)], 1, env)
        base_par = measure(f"baseline, {procs}x{per}", [[PY, BASELINE, str(box), "send", s, "boss", f"m{i}"]
                                                         for i in range(per) for s in senders], procs, env)
        rows += [base_seq, base_par]
        # A file-path org.
        fp = root / "fp"
        fp.mkdir()
        clones = setup_org(fp, str(fp / "org.git"), ["boss", *senders], env)
        rows.append(measure("gitmail file org, one at a time",
                            gitmail_cmds(clones, ["agent0"], seq), 1, env))
        rows.append(measure(f"gitmail file org, {procs}x{per}", gitmail_cmds(clones, senders, per), procs, env))
        # git daemon with the guard: the server's CPU counts.
        srv = root / "srv"
        srv.mkdir()
        d = GitDaemon(srv)
        bare = d.create("org.git", guard=True)
        d.start()
        try:
            gd = root / "gd"
            gd.mkdir()
            clones = setup_org(gd, d.url(), ["boss", *senders], env)
            from gitmail.guard import daemon as guard_daemon

            def server_cpu() -> float:
                # git daemon's reaped children are counted when it exits; the warm guard lives apart.
                st = guard_daemon.status(bare)
                return proc_cpu(st["pid"]) if st else 0.0

            os.environ["XDG_RUNTIME_DIR"] = env["XDG_RUNTIME_DIR"]
            g0 = server_cpu()
            r1 = measure("gitmail git daemon + guard, one at a time", gitmail_cmds(clones, ["agent0"], seq), 1, env)
            r2 = measure(f"gitmail git daemon + guard, {procs}x{per}", gitmail_cmds(clones, senders, per), procs, env)
            guard_total = server_cpu() - g0
        finally:
            guard_daemon.stop(bare)
            c1 = children_cpu()
            d.stop()
            daemon_total = children_cpu() - c1  # git daemon and the receive-packs it reaped (setup included)
        srv_per = (daemon_total + guard_total) / (r1.n + r2.n)
        for r in (r1, r2):
            r.server = srv_per
        rows += [r1, r2]
    print(f"{'run':48} {'n':>5} {'wall s':>8} {'wall/msg ms':>12} {'client ms':>10} {'server ms':>10} {'cpu/msg ms':>11} {'cpu x':>6} {'wall x':>7}")
    for r in rows:
        base = base_seq if "one at a time" in r.label else base_par
        print(f"{r.label:48} {r.n:5d} {r.wall:8.2f} {1000 * r.wall_per:12.1f} {1000 * r.client:10.1f} "
              f"{1000 * r.server:10.1f} {1000 * r.cpu:11.1f} {r.cpu / base.cpu:6.2f} {r.wall_per / base.wall_per:7.2f}")
    print("server CPU of the git-daemon runs is their average over both runs and the org's set-up pushes.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
