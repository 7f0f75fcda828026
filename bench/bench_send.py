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
/proc), and the ratios against the baseline measured in the same run. gitmail
runs two ways in the same run: in-process (``GITMAIL_WARM=off``: the whole CLI
in the process started) and warm (the console script hands the command to the
warm CLI server, gitmail.cli.warm; its CPU, the forked children's included,
which it reaps, is read from /proc: utime, stime, cutime, cstime). The bench
starts with no warm server: the first warm send is cold (it runs in-process
and starts the server) and is reported on its own, with the server's start-up.
Targets (issue 15): CPU per message at most 2x the baseline on a file-path
org and at most 3x through ``git daemon`` with the guard; one interactive
send at most 2x the baseline's wall time on a file-path org.

Both sides run from a clean install, as a user has them: the bench builds a
wheel of this tree and installs it (no dependencies) into a fresh venv whose
one ``.pth`` line points at the development venv's site-packages for the
dependencies, and runs gitmail, the baseline and the floors with that venv's
interpreter. The development venv's editable install adds a finder to every
interpreter's start-up (~25 ms of CPU: ``pathlib``, ``re``, ``urllib``), which
made both sides slower by the same amount and so flattered every ratio;
``--editable`` measures there instead, as earlier runs did.

One-at-a-time runs alternate baseline and gitmail message by message (load on
a shared machine drifts); ``--repeat R`` repeats them and reports medians.
Both run with compiled bytecode (a ``PYTHONDONTWRITEBYTECODE`` in the caller's
environment would make every gitmail start-up compile its modules again, which
no installed copy does). Then the floors: what the interpreter, each heavy
import and one plain ``git push`` cost alone (CPU per process, medians), and
the git processes of one send (``GIT_TRACE2_PERF``).
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from dataclasses import dataclass
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.sync.daemon import GitDaemon  # noqa: E402

DEV_PY = sys.executable
PY = DEV_PY  # the interpreter of the measured install (main() sets it)
GITMAIL = str(Path(PY).parent / "gitmail")
BASELINE = str(ROOT / "bench" / "baseline_mailbox.py")


def clean_install(root: Path) -> str:
    """A venv at ``root`` with this tree installed from a wheel (not editable), its
    dependencies taken from the development venv; the venv's interpreter."""
    wheels = root / "wheel"
    subprocess.run([DEV_PY, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(ROOT)], check=True, capture_output=True, cwd=root)
    venv = root / "venv"
    subprocess.run([DEV_PY, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
    py = venv / "bin" / "python"
    subprocess.run([DEV_PY, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index",
                    *map(str, wheels.glob("*.whl"))], check=True, capture_output=True, cwd=root)
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    deps = subprocess.run([DEV_PY, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "zz-gitmail-bench-deps.pth").write_text(deps + "\n")  # a path line: its .pth files are not run
    where = subprocess.run([str(py), "-c", "import gitmail; print(gitmail.__file__)"], check=True,
                           capture_output=True, text=True, cwd=root).stdout.strip()
    assert where.startswith(str(venv)), where
    return str(py)


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def proc_cpu(pid: int, children: bool = False) -> float:
    """CPU seconds (user + system) a live process has used so far (Linux /proc); ``children``:
    with its children that it has waited for (cutime + cstime)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


Cmd = tuple[list[str], dict[str, str]]  # argv and environment of one process


def run_all(cmds: list[Cmd], procs: int) -> float:
    """Run ``cmds`` (each a whole process), ``procs`` at a time; the wall time."""
    t = time.perf_counter()

    def one(cmd: Cmd) -> None:
        r = subprocess.run(cmd[0], env=cmd[1], capture_output=True)
        if r.returncode != 0:
            raise SystemExit(f"{cmd[0][:3]} failed: {r.stderr.decode(errors='replace')}")

    with ThreadPoolExecutor(procs) as pool:
        list(pool.map(one, cmds))
    return time.perf_counter() - t


@dataclass
class Run:
    label: str
    n: int
    wall: float  # seconds, whole run
    client: float  # CPU seconds per message, processes this script waited for
    server: float = 0.0  # CPU seconds per message: git daemon + guard, the warm CLI server

    @property
    def cpu(self) -> float:
        return self.client + self.server

    @property
    def wall_per(self) -> float:
        return self.wall / self.n


class WarmServer:
    """The warm CLI server of the bench's environment, seen from /proc."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def pid(self) -> Optional[int]:
        d = Path(self.env["XDG_RUNTIME_DIR"]) / f"gitmail-cli-{os.getuid()}"
        for lock in d.glob("*.lock") if d.is_dir() else []:
            text = lock.read_text().strip()
            if text.isdigit() and Path(f"/proc/{text}").exists():
                return int(text)
        return None

    def wait_up(self, timeout: float = 120.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.pid()
            if pid and list(Path(self.env["XDG_RUNTIME_DIR"]).glob("gitmail-cli-*/*.sock")):
                return pid
            time.sleep(0.05)
        raise SystemExit("the warm server did not start")

    def cpu(self) -> float:
        """CPU seconds of the server and its children so far: the reaped ones (its cutime and
        cstime) and the live ones (workers between commands, a child on its way out) with
        what they reaped. Read until the list of children is the same before and after."""
        pid = self.pid()
        if pid is None:
            return 0.0

        def children() -> list[str]:
            try:
                return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                return []

        total = 0.0
        for _ in range(100):
            kids = children()
            total = sum(proc_cpu(int(k), children=True) for k in kids) + proc_cpu(pid, children=True)
            if children() == kids:
                break
        return total

    def stop(self) -> None:
        pid = self.pid()
        if pid:
            os.kill(pid, signal.SIGTERM)
            while Path(f"/proc/{pid}").exists() and self.pid() == pid:
                time.sleep(0.02)


def measure(label: str, cmds: list[Cmd], procs: int, warm: Optional[WarmServer] = None) -> Run:
    c0 = children_cpu()
    w0 = warm.cpu() if warm else 0.0
    wall = run_all(cmds, procs)
    c1 = children_cpu()
    w1 = warm.cpu() if warm else 0.0
    return Run(label, len(cmds), wall, (c1 - c0) / len(cmds), (w1 - w0) / len(cmds))


def measure_group(labels: list[str], make: Callable[[int], list[list[Cmd]]], repeat: int = 1,
                  warm: Optional[WarmServer] = None) -> list[Run]:
    """One process at a time, alternating ``make(round)[0][i]``, ``[1][i]``, ... message by message
    (load on a shared machine drifts); ``repeat`` rounds, the round with the median CPU ratio of
    the last to the first. The warm server's CPU (``warm``) is counted for every command."""
    rounds: list[list[Run]] = []
    for r in range(repeat):
        groups = make(r)
        wall = [0.0] * len(groups)
        cpu = [0.0] * len(groups)
        srv = [0.0] * len(groups)
        for cmds in zip(*groups):
            for j, cmd in enumerate(cmds):
                c0, w0 = children_cpu(), warm.cpu() if warm else 0.0
                wall[j] += run_all([cmd], 1)
                cpu[j] += children_cpu() - c0
                srv[j] += (warm.cpu() if warm else 0.0) - w0
        n = len(groups[0])
        rounds.append([Run(labels[j], n, wall[j], cpu[j] / n, srv[j] / n) for j in range(len(groups))])
    rounds.sort(key=lambda runs: runs[-1].cpu / runs[0].cpu)
    return rounds[len(rounds) // 2]


def cpu_of(cmd: list[str], env: dict[str, str], n: int = 7, cwd: Optional[Path] = None) -> float:
    """Median CPU seconds (user + system, children included) of ``cmd`` over ``n`` runs."""
    out = []
    for _ in range(n):
        c0 = children_cpu()
        subprocess.run(cmd, env=env, check=True, capture_output=True, cwd=cwd)
        out.append(children_cpu() - c0)
    return statistics.median(out)


FLOOR_IMPORTS = [
    ("python, no site (-S -c pass)", None),
    ("python -c pass (this venv's site)", ""),
    ("import click", "import click"),
    ("import pydantic + gitmail.core.model", "from gitmail.cli.main import _skip_pydantic_plugins as s; s(); "
                                             "import gitmail.core.model"),
    ("import pygit2", "import pygit2"),
    ("import cryptography ssh keys", "from cryptography.hazmat.primitives.serialization import ssh"),
    ("import pyrage", "import pyrage"),
]


def floors(clone: Path, env: dict[str, str]) -> list[tuple[str, float]]:
    """CPU per process of the interpreter and each heavy import alone, and of one raw git push."""
    rows = [(FLOOR_IMPORTS[0][0], cpu_of([PY, "-S", "-c", "pass"], env))]
    for label, code in FLOOR_IMPORTS[1:]:
        rows.append((label, cpu_of([PY, "-c", code or "pass"], env)))
    env = {**env, "GIT_AUTHOR_NAME": "raw", "GIT_AUTHOR_EMAIL": "raw@example.invalid",
           "GIT_COMMITTER_NAME": "raw", "GIT_COMMITTER_EMAIL": "raw@example.invalid"}
    tree = subprocess.run(["git", "hash-object", "-t", "tree", "-w", "--stdin"], input=b"", cwd=clone, env=env,
                          check=True, capture_output=True).stdout.decode().strip()
    pushes = []
    for i in range(7):
        c = subprocess.run(["git", "commit-tree", tree, "-m", f"raw {i}"], cwd=clone, env=env, check=True,
                           capture_output=True).stdout.decode().strip()
        c0 = children_cpu()
        subprocess.run(["git", "push", "-q", "origin", f"{c}:refs/heads/raw/{i}"], cwd=clone, env=env, check=True,
                       capture_output=True)
        pushes.append(children_cpu() - c0)
    rows.append(("git push of one commit (client + receive-pack)", statistics.median(pushes)))
    return rows


def git_processes(cmd: list[str], env: dict[str, str], trace: Path) -> tuple[int, list[str]]:
    """The git processes one command runs (GIT_TRACE2_PERF ``start`` events): count and names."""
    trace.unlink(missing_ok=True)
    subprocess.run(cmd, env={**env, "GIT_TRACE2_PERF": str(trace)}, check=True, capture_output=True)
    names = []
    for line in trace.read_text().splitlines():
        fields = line.split("|", 8)  # time and source | depth | thread | event | ... | argv (may hold "|")
        if len(fields) == 9 and fields[3].strip() == "start":
            argv = fields[8].split()
            names.append(" ".join(a.rsplit("/", 1)[-1] for a in argv[:2]))
    return len(names), names


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


def gitmail_cmds(clones: dict[str, Path], senders: list[str], per: int, env: dict[str, str],
                 r: int = 0, tag: str = "") -> list[Cmd]:
    # Interleaved so the 8 workers each hold a different sender (one process per send).
    return [([GITMAIL, "send", "boss", f"{s} message {i} r{r}{tag}", "--repo", str(clones[s]), "--quiet"], env)
            for i in range(per) for s in senders]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer messages (a smoke run)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of the one-at-a-time runs (median reported)")
    ap.add_argument("--seq", type=int, help="messages of each one-at-a-time round [30; --quick 10]")
    ap.add_argument("--per", type=int, help="messages per process of the 8-process runs [100; --quick 5]")
    ap.add_argument("--editable", action="store_true",
                    help="measure the development venv's editable install (not a clean install)")
    a = ap.parse_args()
    global PY, GITMAIL
    seq, procs, per = (10, 8, 5) if a.quick else (30, 8, 100)
    seq, per = a.seq or seq, a.per or per
    repeat = 1 if a.quick else a.repeat
    senders = [f"agent{i}" for i in range(procs)]
    rows: list[tuple[Run, Run]] = []  # (gitmail, its same-run baseline)
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="gitmail-bench-send-") as tmp:
        root = Path(tmp)
        PY = DEV_PY if a.editable else clean_install(root)
        GITMAIL = str(Path(PY).parent / "gitmail")
        home = root / "home"
        home.mkdir()
        env = {**os.environ, "HOME": str(home), "GITMAIL_HOME": str(home / "gitmail"), "GIT_CONFIG_NOSYSTEM": "1",
               "GITMAIL_NOTICE": "never", "XDG_RUNTIME_DIR": str(root / "run"), "GITMAIL_WARM": "off"}
        (root / "run").mkdir(mode=0o700)
        for k in ("GITMAIL_USER", "GITMAIL_REPO", "GITMAIL_REMOTE", "PYTHONDONTWRITEBYTECODE", "GITMAIL_WARM_IDLE"):
            env.pop(k, None)
        warm_env = {**env, "GITMAIL_WARM": "on", "GITMAIL_WARM_IDLE": "3600"}  # no idle exit mid-run
        server = WarmServer(warm_env)
        # Bytecode as an installed copy has it (the baseline is one file: Python compiles it each run).
        subprocess.run([PY, "-m", "compileall", "-q", str(ROOT / "gitmail")], env=env, check=True, capture_output=True)
        box = root / "baseline"
        box.mkdir()

        def base_cmds(r: int, who: list[str], n: int) -> list[Cmd]:
            return [([PY, BASELINE, str(box), "send", s, "boss", f"m{i} r{r}"], env) for i in range(n) for s in who]

        # A file-path org.
        fp = root / "fp"
        fp.mkdir()
        clones = setup_org(fp, str(fp / "org.git"), ["boss", *senders], env)
        # The first warm send: no server yet; it runs in-process and starts one.
        assert server.pid() is None
        c0 = children_cpu()
        cold_wall = run_all(gitmail_cmds(clones, ["agent0"], 1, warm_env, tag=" cold"), 1)
        cold_cpu = children_cpu() - c0
        server.wait_up()
        start_cpu = server.cpu()
        b, g, w = measure_group(["baseline, one at a time", "gitmail file org, one at a time",
                                 "gitmail warm, file org, one at a time"],
                                lambda r: [base_cmds(r, ["agent0"], seq), gitmail_cmds(clones, ["agent0"], seq, env, r),
                                           gitmail_cmds(clones, ["agent0"], seq, warm_env, r, " warm")],
                                repeat, server)
        rows += [(g, b), (w, b)]
        one_send = [GITMAIL, "send", "boss", "traced", "--repo", str(clones["agent0"]), "--quiet"]
        n_git, git_names = git_processes(one_send, env, root / "trace")
        base_par = measure(f"baseline, {procs}x{per}", base_cmds(0, senders, per), procs)
        rows.append((measure(f"gitmail file org, {procs}x{per}", gitmail_cmds(clones, senders, per, env), procs),
                     base_par))
        base_par = measure(f"baseline, {procs}x{per}", base_cmds(2, senders, per), procs)
        rows.append((measure(f"gitmail warm, file org, {procs}x{per}",
                             gitmail_cmds(clones, senders, per, warm_env, tag=" warm"), procs, server), base_par))
        floor_rows = floors(clones["agent0"], env)
        # git daemon with the guard: the server's CPU counts (git daemon's children are reaped,
        # and so counted, when it stops; the warm guard daemon lives apart and is read from /proc).
        srv = root / "srv"
        srv.mkdir()
        d = GitDaemon(srv)
        bare = d.create("org.git", guard=True)
        from gitmail.guard import daemon as guard_daemon

        os.environ["XDG_RUNTIME_DIR"] = env["XDG_RUNTIME_DIR"]

        def guard_cpu() -> float:
            st = guard_daemon.status(bare)
            return proc_cpu(st["pid"]) if st else 0.0

        def served(run: Callable[[], list[Run]], pushed: list[int]) -> list[Run]:
            """``run()`` against a freshly started git daemon; the git daemon's and the guard's CPU
            per message added to each run's server CPU (``pushed``: the messages each run sent
            through the daemon during the whole call, every round of a repeated group included;
            each pushed message gets an equal share)."""
            d.start()
            g0 = guard_cpu()
            try:
                runs = run()
                guard = guard_cpu() - g0
            finally:
                c1 = children_cpu()
                d.stop()
            total = children_cpu() - c1 + guard
            for r, n in zip(runs, pushed):
                # Per message pushed, not per message of the run reported (a repeated group
                # reports its median round: dividing by that round's count overstated the
                # server's share by the number of rounds, the "outliers" of earlier runs).
                r.server += total / sum(pushed) if n else 0.0
            return runs

        try:
            gd = root / "gd"
            gd.mkdir()
            d.start()
            clones = setup_org(gd, d.url(), ["boss", *senders], env)
            d.stop()
            b2, g2, w2 = served(lambda: measure_group(
                ["baseline, one at a time", "gitmail git daemon + guard, one at a time",
                 "gitmail warm, git daemon + guard, one at a time"],
                lambda r: [base_cmds(r, ["agent0"], seq), gitmail_cmds(clones, ["agent0"], seq, env, r),
                           gitmail_cmds(clones, ["agent0"], seq, warm_env, r, " warm")],
                repeat, server), [0, seq * repeat, seq * repeat])
            rows += [(g2, b2), (w2, b2)]
            base_par2 = measure(f"baseline, {procs}x{per}", base_cmds(1, senders, per), procs)
            rows.append((served(lambda: [measure(f"gitmail git daemon + guard, {procs}x{per}",
                                                 gitmail_cmds(clones, senders, per, env), procs)],
                                [procs * per])[0], base_par2))
            base_par2 = measure(f"baseline, {procs}x{per}", base_cmds(3, senders, per), procs)
            rows.append((served(lambda: [measure(f"gitmail warm, git daemon + guard, {procs}x{per}",
                                                 gitmail_cmds(clones, senders, per, warm_env, tag=" warm"), procs,
                                                 server)], [procs * per])[0], base_par2))
        finally:
            guard_daemon.stop(bare)
            d.stop()
            server.stop()
    load1 = os.getloadavg()
    print(f"load average (1, 5, 15 min) at start {load0[0]:.1f} {load0[1]:.1f} {load0[2]:.1f}, "
          f"at end {load1[0]:.1f} {load1[1]:.1f} {load1[2]:.1f}; {os.cpu_count()} CPUs; measured: "
          + ("the development venv's editable install" if a.editable else "a clean install (a wheel in a fresh venv)"))
    print(f"{'run':50} {'n':>5} {'wall/msg ms':>12} {'client ms':>10} {'server ms':>10} {'cpu/msg ms':>11} "
          f"{'base cpu ms':>11} {'cpu x':>6} {'wall x':>7}")
    for r, base in rows:
        print(f"{r.label:50} {r.n:5d} {1000 * r.wall_per:12.1f} {1000 * r.client:10.1f} {1000 * r.server:10.1f} "
              f"{1000 * r.cpu:11.1f} {1000 * base.cpu:11.1f} {r.cpu / base.cpu:6.2f} {r.wall_per / base.wall_per:7.2f}")
    print("baselines: one at a time alternates with gitmail message by message (median of "
          f"{repeat} rounds); {procs}x{per} runs just before gitmail's. warm: through the warm CLI server "
          "(server ms: the server and its forked children, plus git daemon + guard where there is one).")
    print(f"first warm send, cold (no server yet: in-process, and starts one): wall {1000 * cold_wall:.0f} ms, "
          f"client CPU {1000 * cold_cpu:.0f} ms; the server's start-up (imports, models): {1000 * start_cpu:.0f} ms CPU")
    (fs, fsb), (fw, _), (fp_, fpb), (fpw, fpwb), (gs, gsb), (gw, _), (gp, gpb), (gpw, gpwb) = rows
    targets = [
        ("CPU/msg, file org, one at a time <= 2x", fs, fsb, fw, 2.0, "cpu"),
        (f"CPU/msg, file org, {procs}x{per} <= 2x", fp_, fpb, fpw, 2.0, "cpu"),
        ("CPU/msg, git daemon + guard, one at a time <= 3x", gs, gsb, gw, 3.0, "cpu"),
        (f"CPU/msg, git daemon + guard, {procs}x{per} <= 3x", gp, gpb, gpw, 3.0, "cpu"),
        ("wall of one interactive send, file org <= 2x", fs, fsb, fw, 2.0, "wall"),
    ]
    print(f"{'target':58} {'in-process':>11} {'warm':>11}")
    for label, inproc, base, warm_run, limit, what in targets:
        wbase = fpwb if warm_run is fpw else gpwb if warm_run is gpw else base
        ratios = [(x.cpu / b.cpu) if what == "cpu" else (x.wall_per / b.wall_per)
                  for x, b in ((inproc, base), (warm_run, wbase))]
        print(f"target {label:51} " + " ".join(f"{r:5.2f}x {'met' if r <= limit else 'MISS'}" for r in ratios))
    print(f"git processes of one send to a file org: {n_git} ({', '.join(git_names)})")
    print("floors, CPU per process (median of 7); imports: python -c 'import X' and its excess over 'pass':")
    interp = floor_rows[1][1]
    for j, (what_, cpu) in enumerate(floor_rows):
        extra = f"  (+{1000 * (cpu - interp):6.1f} ms)" if 2 <= j < len(FLOOR_IMPORTS) else ""
        print(f"  {what_:50} {1000 * cpu:7.1f} ms{extra}")
    print(f"  baseline_mailbox.py send (same run)                {1000 * fsb.client:7.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
